#!/usr/bin/env bash
# Sets up everything kvmppc-cosim needs on a Debian machine, idempotently:
#   - Debian packages binutils-powerpc-linux-gnu (guest assembler), gdb-multiarch (real GDB client) and
#     qemu-system-ppc (the speed peer and the oracle; ipxe-qemu holds the option ROMs it loads even with
#     -nodefaults) and u-boot-qemu (Debian's U-Boot for QEMU's ppce500: the real guest of
#     configs/uboot.toml), installed with apt-get when missing and running as root;
#   - python3-venv, python3-dev and gcc when the venv module, the Python headers or a C compiler are
#     missing (the instruction counter is a tiny C extension);
#   - a virtual environment in .venv with the project and its test dependencies.
set -euo pipefail
cd "$(dirname "$0")"

need=()
# to build the venv and the one C extension: venv (+ensurepip), the Python headers and a C compiler
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
[ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || need+=(python3-dev)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v powerpc-linux-gnu-as >/dev/null 2>&1 || need+=(binutils-powerpc-linux-gnu)
command -v gdb-multiarch >/dev/null 2>&1 || need+=(gdb-multiarch)
command -v qemu-system-ppc >/dev/null 2>&1 || need+=(qemu-system-ppc ipxe-qemu)
[ -f /usr/lib/u-boot/qemu-ppce500/uboot.elf ] || need+=(u-boot-qemu)   # the real guest: Debian's U-Boot
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: warning: missing ${need[*]} (not root or no apt-get): gdb, rebuild and QEMU tests will be skipped, and without venv, headers or a C compiler the install below fails" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.cosim-installed
# (again when the package's metadata or any of its C extensions' sources changed since)
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
        || [ -n "$(find cosim \( -name '*.c' -o -name '*.h' \) -newer "$stamp" -print -quit)" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi
