#!/usr/bin/env bash
# The bench on one CUDA GPU, in bf16, for the bert-base-uncased architecture (random weights: speed only).
#   bash bench/gpu.sh [OUT_DIR] [KEY=VALUE ...]     (OUT_DIR default bench/; KEY=VALUE: config.yaml overrides,
#                                                    e.g. dataset.source=... 'models=[...]' where ../shared is absent)
# Writes OUT_DIR/results-gpu.json and OUT_DIR/results-gpu-batch128.json (python -m bench, GPU sizes: all 7,600
# test texts, 4,480 training samples per side) and OUT_DIR/peak-gpu.json, then prints:
#   * utilisation against the card's bf16 matmul peak, measured here twice: at bert-base's own Linear shapes
#     (what the bench divides by) and at 8192 x 8192 x 8192 (the card's best case);
#   * the study's grid (configs/study.yaml: 30 fine-tuning runs, 27 million training samples, 5.6 million
#     evaluated texts) in GPU-hours from the measured rates, the project's way and the usual way.
# Run 1 keeps config.yaml's training settings (batch 32, the CPU-tuned default) with evaluation batches of 256
# (evaluation order and batching do not change predictions); run 2 trains with batch 128, a GPU-sized batch.
# Last, python -m bench.profile_step shows where a batch-32 training step's time goes (host vs device).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench}"
shift || true
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

python - "$OUT/peak-gpu.json" <<'PY'
import json, sys
import torch
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: no CUDA device visible to torch; run python -m bench on the CPU instead")
import transformers, peft
from bench.flops import measure_peak
device = torch.device("cuda")
print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()},"
      f" torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
square = measure_peak([(8192, 8192)], 8192, torch.bfloat16, device, seconds_per_shape=2.0)
print(f"bf16 matmul peak at 8192 x 8192 x 8192: {square['gflops'] / 1000:.0f} TFLOP/s")
json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "bf16_8192_cubed": square},
          open(sys.argv[1], "w"), indent=2)
PY
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true

python -m bench --device cuda --precision bf16 --models bert_base --out "$OUT/results-gpu.json" \
    training.eval_batch_size=256 "$@"
python -m bench --device cuda --precision bf16 --models bert_base --out "$OUT/results-gpu-batch128.json" \
    training.eval_batch_size=256 training.batch_size=128 "$@"

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
square = json.loads((out / "peak-gpu.json").read_text())["bf16_8192_cubed"]["gflops"]
for name in ("results-gpu.json", "results-gpu-batch128.json"):
    results = json.loads((out / name).read_text())
    r, batch = results["bert_base"], results["settings"]["project_full"]["batch_size"]
    peak = r["peak_gflops"]
    print(f"\n{name}: bert-base, {r['precision']}, training batch {batch}; bf16 peak {peak['value'] / 1000:.0f} TFLOP/s"
          f" at its shapes ({peak['rows']} rows), {square / 1000:.0f} at 8192^3")
    e = r["eval"]
    print(f"  eval {e['project']['texts_per_s']:.0f} texts/s vs per-text {e['per_text']['texts_per_s']:.0f}"
          f" ({e['speedup_vs_per_text']:.1f}x), utilization {e['utilization']:.0%}"
          f" ({e['project']['achieved_gflops'] / square:.0%} of the 8192^3 peak); {e['project']['seconds']:.2f} s"
          f" for {e['project']['texts']} texts, cold first pass {e['project']['cold_first_pass_seconds']:.2f} s")
    for method in ("full", "lora"):
        t = r["train"][method]
        print(f"  train {method}: {t['project']['samples_per_s']:.0f} samples/s vs usual way"
              f" {t['reference']['samples_per_s']:.0f} ({t['speedup_vs_reference']:.1f}x), utilization"
              f" {t['utilization']:.0%} ({t['project']['achieved_gflops'] / square:.0%} of the 8192^3 peak)")
    g = r["study_grid_estimate"]
    print(f"  study grid: {g['runs']} runs, {(g['full_samples'] + g['lora_samples']) / 1e6:.0f}M training samples,"
          f" {g['eval_texts'] / 1e6:.1f}M evaluated texts")
    for way in ("project", "usual_way"):
        h = g[way]
        print(f"    {way}: {h['train_hours']:.2f} GPU-hours training + {h['eval_hours']:.2f} evaluation"
              f" = {h['total_hours']:.2f}")
PY

python -m bench.profile_step --device cuda --samples 640 "$@"
