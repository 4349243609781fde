#!/usr/bin/env bash
# Writes the GPTQ W4A8 plans of the default model (issue 24 acceptance 2,
# docs/w4a8.md "GPTQ") into ${2:-build/plans}, each a JSON plan and its
# weights file (PLAN.w4.gguf, 13-66 MB: built, not committed):
#   smollm2-135m-instruct-w4a8-gptq.json    every module W4A8
#   smollm2-135m-instruct-w4a8-gptq50.json  the 50 modules least damaged
#       at 4 bits (37% of the quantized weights; the ranking of
#       docs/w4a8-ranking-mixed-rotnorm.log), the rest W8A8
# Both with the default plan's settings (per-token scales, smoothing, both
# rotations, QFeP), calibrated on the mixed-genre text, group 32 with
# minimums. About 3 minutes on 2 cores.
#   scripts/make_gptq_plans.sh [BUILD_DIR] [OUT_DIR] [MODEL]
set -euo pipefail
build="${1:-build}"
out="${2:-$build/plans}"
model="${3:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
mkdir -p "$out"
bash scripts/make_texts.sh "$build/texts" >&2
common=(--model "$model" --text "$build/texts/calib-mixed.txt"
  --mode per-token-dynamic --smooth 0.5 --rotate --rotate_norm
  --w4_group 32 --w4_min --w4_gptq)
"$build/tools/spikeserve-calibrate" "${common[@]}" --weight_bits 4 \
  --out "$out/smollm2-135m-instruct-w4a8-gptq.json" >&2
sites=$(grep -oE '^calibrate: +[0-9]+\.[a-z_]+ +KL' \
  docs/w4a8-ranking-mixed-rotnorm.log | awk '{print $2}' | head -50 |
  paste -sd, -)
"$build/tools/spikeserve-calibrate" "${common[@]}" --weight_bits "$sites" \
  --out "$out/smollm2-135m-instruct-w4a8-gptq50.json" >&2
echo "wrote $out/smollm2-135m-instruct-w4a8-gptq{,50}.json and their .w4.gguf"
