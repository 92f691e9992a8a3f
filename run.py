#!/usr/bin/env python3
"""python run.py CONFIG [--json PATH] [--gdb [HOST:]PORT]  (the same as `cosim run CONFIG ...`)."""
import sys

from cosim.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]) if sys.argv[1:2] not in (["compare"], ["run"], ["list"], ["sweep"], ["replay"]) else main(sys.argv[1:]))
