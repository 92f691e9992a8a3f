# The C block-counting hook of the vCPU core, and the guest ELFs shipped as package data: guests/ (where
# guests/build.py writes them, next to their sources) is installed as the resource package cosim.guests;
# the example scenarios in configs/ as cosim.configs (found by name: cosim/bundled.py).
from setuptools import Extension, find_packages, setup

setup(
    ext_modules=[Extension("cosim.vcpu._icount", ["cosim/vcpu/_icount.c"], include_dirs=["cosim"],
                           depends=["cosim/baton.h"]),
                 Extension("cosim.vcpu._atomics", ["cosim/vcpu/_atomics.c"]),    # issue 20
                 Extension("cosim._baton", ["cosim/_baton.c"], depends=["cosim/baton.h"])],   # issue 22
    packages=[*find_packages(include=["cosim", "cosim.*"]), "cosim.guests", "cosim.configs"],
    package_dir={"cosim.guests": "guests", "cosim.configs": "configs"},
    package_data={"cosim": ["py.typed"], "cosim.guests": ["*.elf"],
                  "cosim.configs": ["*.toml", "strategies/*.toml"]},
    exclude_package_data={"cosim.guests": ["*.S", "*.inc", "*.ld", "*.md"]},
)
