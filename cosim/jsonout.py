"""Every JSON document cosim writes carries `schema_version` and the tool's name and version, and goes
to a file or, for `-`, to stdout."""
from __future__ import annotations

import json
import sys

from . import SCHEMA_VERSION, __version__, outfile


def stamped(kind: str, doc: dict) -> dict:
    """`doc` with schema_version and tool {name, version, document kind} first."""
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "kvmppc-cosim", "version": __version__,
                                                       "document": kind}, **doc}


def write_json(path: str, kind: str, doc: dict) -> None:
    text = json.dumps(stamped(kind, doc), indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        outfile.write(path, text)      # whole or not at all; OutputError (one line) on failure
