#!/usr/bin/env bash
# The bench on a CUDA GPU (written for one H100; not yet run: the session that wrote it had no GPU).
#   bash bench/gpu.sh [OUT_JSON]        (default bench/results-gpu.json)
# Runs `python -m bench` for the bert-base-uncased architecture (random weights: speed only) in bf16 on CUDA,
# with GPU sizes (bench/run.py SIZES["gpu"]: all 7,600 test texts, 4,480 training samples per side),
# utilisation against a bf16 matmul peak measured in the same run at bert-base's shapes (768x768, 768x3072,
# 3072x768), then the study grid (configs/study.yaml: 30 fine-tuning runs, 27 million training samples)
# in GPU-hours from the measured samples/s, the project's way and the usual way.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results-gpu.json}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

python - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: no CUDA device visible to torch; run python -m bench on CPU instead")
print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}, torch {torch.__version__}")
PY
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true

python -m bench --device cuda --precision bf16 --models bert_base --out "$OUT"

python - "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["bert_base"]
g = r["study_grid_estimate"]
peak = r["peak_gflops"]
print(f"\nbert-base on {r['precision']}: peak {peak['value']/1000:.0f} TFLOP/s (bf16 matmul at {peak['rows']} rows)")
print(f"  eval {r['eval']['project']['texts_per_s']:.0f} texts/s, utilization {r['eval']['utilization']:.0%}")
for m in ("full", "lora"):
    t = r["train"][m]
    print(f"  train {m}: {t['project']['samples_per_s']:.0f} samples/s (usual way {t['reference']['samples_per_s']:.0f},"
          f" {t['speedup_vs_reference']:.1f}x), utilization {t['utilization']:.0%}")
print(f"study grid: {g['runs']} runs, {(g['full_samples'] + g['lora_samples'])/1e6:.0f}M training samples,"
      f" {g['eval_texts']/1e6:.1f}M evaluated texts")
for way in ("project", "usual_way"):
    h = g[way]
    print(f"  {way}: {h['train_hours']:.1f} GPU-hours training + {h['eval_hours']:.1f} evaluation"
          f" = {h['total_hours']:.1f} GPU-hours")
PY
