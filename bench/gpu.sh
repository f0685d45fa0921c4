#!/usr/bin/env bash
# The bench on one CUDA GPU, every setting pinned here (bench/NOTES.md "GPU" explains the method):
#   bash bench/gpu.sh OUT_DIR [--quick] [--config PATH] [--levers NAME ...] [-- KEY=VALUE ...]
# Writes OUT_DIR/results-gpu.json (python -m bench.gpu) and OUT_DIR/gpu-output.txt (everything printed).
# --quick is the dry mode the tests run on a CPU (tiny sizes); KEY=VALUE after -- go to every arm before the
# pinned settings below (data, model, precision, caps: what the pins leave open).
# On a GPU machine, where ../shared does not travel, the data and model come from .gpu/ (bench/gpu_prep.sh
# copies them there) and the transformers, peft and pydantic wheels from .whl/ (bench/gpu_prep.sh downloads them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bash bench/gpu.sh OUT_DIR [--quick] [--config PATH] [--levers NAME ...] [-- KEY=VALUE ...]}"
shift
OPTIONS=() EXTRA=()
while (($#)); do
    if [[ "$1" == -- ]]; then shift; EXTRA=("$@"); break; fi
    OPTIONS+=("$1"); shift
done
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# On the GPU machine (nvidia-smi there): the versions requirements.txt names, over the image's
if compgen -G ".whl/*.whl" >/dev/null && command -v nvidia-smi >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The data and model bench/gpu_prep.sh put in .gpu/ (not in the --quick dry mode, which names its own). The weights
# travel as gzipped fp16; they are widened to fp32 again in /tmp (the project loads a checkpoint's own dtype),
# so .gpu/ itself never grows.
DATA=()
if [[ -f .gpu/all-MiniLM-L6-v2/model.safetensors.gz && -d .gpu/ag_news && " ${OPTIONS[*]} " != *" --quick "* ]]; then
    MODEL=/tmp/bench-gpu-minilm
    if [[ ! -f $MODEL/model.safetensors ]]; then
        mkdir -p "$MODEL"
        cp .gpu/all-MiniLM-L6-v2/*.json .gpu/all-MiniLM-L6-v2/vocab.txt "$MODEL/"
        python3 - .gpu/all-MiniLM-L6-v2/model.safetensors.gz "$MODEL/model.safetensors" <<'PY'
import gzip, sys
from safetensors.torch import load, save_file
tensors = load(gzip.open(sys.argv[1]).read())
save_file({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, sys.argv[2], metadata={"format": "pt"})
PY
    fi
    DATA=(dataset.source="$PWD/.gpu/ag_news" "models=[$MODEL]")
fi

# Every arm: validation large enough for a standard error of at most 1 point (1,000 of the 5,000 local rows);
# precision auto (bf16 on a GPU); a fresh token cache.
COMMON=("${DATA[@]}" dataset.validation_size=1000 training.precision=auto
        dataset.cache_dir=/tmp/bench-gpu-tokens "${EXTRA[@]}")
# The baseline: config.yaml's own settings, pinned per task so that a config.yaml change cannot move them.
BASELINE=(training.batch_size=32 training.eval_batch_size=32
          tasks.B.training.batch_size=32 tasks.B.training.learning_rate=1e-4
          tasks.C.training.batch_size=8 tasks.C.training.learning_rate=4e-3)
# Candidate GPU settings: batch 128 (LoRA also 32), learning rates scaled by sqrt and linearly from the
# baseline's, evaluation batch 256, pinned batches copied without blocking; the third holds bf16 weights.
# The chosen arm, per method, is the best by validation accuracy.
GPU=(training.eval_batch_size=256 training.non_blocking=true tasks.B.training.batch_size=128)
ARM1=("${GPU[@]}" tasks.B.training.learning_rate=2e-4 tasks.C.training.batch_size=128 tasks.C.training.learning_rate=1.6e-2)
ARM2=("${GPU[@]}" tasks.B.training.learning_rate=4e-4 tasks.C.training.batch_size=32 tasks.C.training.learning_rate=8e-3)
ARM3=("${ARM1[@]}" training.bf16_weights=true)

set -o pipefail
python3 -m bench.gpu "$OUT" --epochs 3 --budget-seconds 380 "${OPTIONS[@]}" \
    --common "${COMMON[@]}" --baseline "${BASELINE[@]}" \
    --chosen "${ARM1[@]}" --chosen "${ARM2[@]}" --chosen "${ARM3[@]}" 2>&1 | tee "$OUT/gpu-output.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null \
    | tee -a "$OUT/gpu-output.txt" || true
