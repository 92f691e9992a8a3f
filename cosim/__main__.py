"""python -m cosim ... is the `cosim` command."""
import sys

from .cli import main

sys.exit(main())
