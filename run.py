#!/usr/bin/env python3
"""python run.py CONFIG [--json PATH] [--gdb [HOST:]PORT]  (the same as `cosim run CONFIG ...`)."""
import sys

if __name__ == "__main__":
    try:                  # a Ctrl-C while Python is still importing: one line, not a traceback
        from cosim.cli import main
        sys.exit(main(["run", *sys.argv[1:]]) if sys.argv[1:2] not in (["compare"], ["run"], ["list"], ["sweep"], ["replay"]) else main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
