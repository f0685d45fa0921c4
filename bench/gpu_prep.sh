#!/usr/bin/env bash
# Run HERE (not on the GPU machine), once, before a device call: what bench/gpu.sh needs that does not travel.
#   bash bench/gpu_prep.sh
# * .gpu/ag_news, .gpu/all-MiniLM-L6-v2: ../shared stays behind. The model's weights are stored in fp16 and
#   gzipped (42 MB instead of 91 MB, to fit the 64 MiB a call carries); loaded, they are fp32 again, rounded to
#   fp16's precision, the same for every arm. bench/gpu.sh unpacks and reads them there.
# * .whl/: transformers, peft and pydantic (the image has transformers 5.17 and no pydantic); bench/gpu.sh installs them.
# Both folders are ignored through .git/info/exclude; name them in the call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
exclude="$(git rev-parse --git-path info/exclude)"
for folder in /.gpu/ /.whl/; do grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >>"$exclude"; done

rm -rf .gpu && mkdir -p .gpu/ag_news .gpu/all-MiniLM-L6-v2
cp "$SHARED"/data/ag_news/{train.csv,test.csv,classes.txt} .gpu/ag_news/
cp "$SHARED"/models/all-MiniLM-L6-v2/{config.json,special_tokens_map.json,tokenizer.json,tokenizer_config.json,vocab.txt} \
   .gpu/all-MiniLM-L6-v2/
python - "$SHARED/models/all-MiniLM-L6-v2/model.safetensors" .gpu/all-MiniLM-L6-v2/model.safetensors <<'PY'
import sys
import torch
from safetensors.torch import load_file, save_file
tensors = load_file(sys.argv[1])
save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, sys.argv[2], metadata={"format": "pt"})
PY
gzip -6 .gpu/all-MiniLM-L6-v2/model.safetensors  # 41.9 MB; bench/gpu.sh unpacks it there

mkdir -p .whl
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    transformers==5.24.0 peft==0.21.2 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 \
    typing-inspection==0.4.2
du -sh .gpu .whl
echo "carried with the working tree: $(du -sc .gpu .whl | tail -1 | cut -f1) KiB (limit 64 MiB in all)"
