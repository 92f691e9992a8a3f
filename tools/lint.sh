#!/usr/bin/env bash
# Static checks of the pure modules (protocol, data, config): ruff, then mypy. Run by .ci/run before the
# tests; needs the test extra (./setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
pure=(cosim/wire.py cosim/gdb/packets.py cosim/gdb/commands.py cosim/strategies.py cosim/cpu_models.py
      cosim/isa.py cosim/config.py cosim/findings.py cosim/exit_rate.py cosim/schedule.py cosim/lockstep.py
      cosim/mutation.py cosim/holdtime.py cosim/hw cosim/board)
.venv/bin/ruff check --quiet "${pure[@]}"
.venv/bin/python -m mypy --no-error-summary --follow-imports silent "${pure[@]}"
