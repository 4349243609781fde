#!/usr/bin/env bash
# Runs a Python script with the official `openai` client from PyPI (pinned),
# in a virtual environment of its own created on first use; Debian's system
# packages (python3-grpcio) stay visible to it.
#
#   scripts/openai_venv.sh tests/python/openai_test.py --server ... --model ...
#
# Without network on first use: exit 77 (CTest: skipped), or 1 when CI=true.
set -euo pipefail
VERSION=1.109.1
VENV="${SPIKESERVE_OPENAI_VENV:-$HOME/.cache/spikeserve/openai-venv-$VERSION}"
if ! "$VENV/bin/python" -c "import openai, grpc" 2>/dev/null; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check \
      "openai==$VERSION"; then
    echo "cannot install openai==$VERSION from PyPI" >&2
    rm -rf "$VENV"
    if [ "${CI:-}" = true ]; then exit 1; fi
    exit 77
  fi
fi
exec "$VENV/bin/python" "$@"
