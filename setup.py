# Only the C block-counting hook of the vCPU core needs this file; everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(ext_modules=[Extension("cosim.vcpu._icount", ["cosim/vcpu/_icount.c"])])
