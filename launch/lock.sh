#!/usr/bin/env bash
# Refresh launch/requirements.lock: every dependency of every extra of pyproject.toml, plus
# the install's own tools (launch/lock.in), resolved to their newest releases by pip-tools'
# pip-compile on this machine kind (Linux x86_64, Python 3.11). torch is left out of the
# lock on purpose: pyproject.toml pins its version, and each site installs the build of it
# that fits (the CPU wheel here, a CUDA build on a GPU cluster).
#
#   bash launch/lock.sh            # then review `git diff launch/requirements.lock`,
#                                  # run the README's two commands from a fresh clone,
#                                  # and commit the lock with what you had to change
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS=7.7.0
TOOLS=${LOCK_TOOLS_VENV:-${TMPDIR:-/tmp}/interp-lock-tools}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x "$TOOLS/bin/pip-compile" ] || { "$PY" -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q "pip-tools==$PIP_TOOLS"; }
"$TOOLS/bin/pip-compile" --quiet --all-extras --strip-extras --no-emit-index-url \
  --no-emit-find-links --unsafe-package torch --newline LF \
  --output-file launch/requirements.lock pyproject.toml launch/lock.in
echo "launch/requirements.lock: $(grep -c '==' launch/requirements.lock) pins"
