"""python -m cosim ... is the `cosim` command."""
import sys

try:                      # a Ctrl-C while Python is still importing: one line, not a traceback
    from .cli import main
    sys.exit(main())
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
