"""Saved runs on a real model: `predict --file` and `export` against each run's own predictions.csv.

    python -m scripts.roundtrip --config configs/methods.yaml --out docs/results/methods/roundtrip.json RUN_ID ...

For each complete run of the config's output_dir: its first `--texts` test texts go through
`main.py predict --file` (label agreement with predictions.csv and the largest probability difference) and
through the folder `main.py export` writes, loaded with transformers, or with PEFT from `DIR/adapter` for the
methods that cannot merge (label agreement). Runs the commands as a user would, in subprocesses; scratch
files go to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _main_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT)


def _exported_labels(folder: Path, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    if (folder / "adapter").is_dir():  # prompt, prefix and P-tuning: base model + adapter (README: export)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder / "adapter"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.eval()
    with torch.no_grad():
        logits = [model(**tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                                    return_tensors="pt")).logits for i in range(0, len(texts), batch_size)]
    return torch.cat(logits).argmax(-1).numpy()


def check(run_id: str, config_path: str, output_dir: Path, max_length: int, texts: int, scratch: Path) -> dict:
    saved = pd.read_csv(output_dir / run_id / "predictions.csv").head(texts)
    probabilities = [c for c in saved.columns if c.startswith("prob_")]
    inputs, predicted = scratch / f"{run_id}.csv", scratch / f"{run_id}.predictions.csv"
    saved[["text"]].to_csv(inputs, index=False)
    done = _main_py("predict", run_id, "--config", config_path, "--file", str(inputs), "--out", str(predicted))
    if done.returncode != 0:
        raise SystemExit(f"{run_id}: predict failed: {done.stderr.strip().splitlines()[-1]}")
    again = pd.read_csv(predicted)
    result = {"predict_label_agreement": float((again["predicted"].to_numpy() == saved["predicted"].to_numpy()).mean()),
              "predict_max_prob_diff": float(np.abs(again[probabilities].to_numpy()
                                                    - saved[probabilities].to_numpy()).max())}
    exported = scratch / f"{run_id}-export"
    done = _main_py("export", run_id, str(exported), "--config", config_path)
    if done.returncode != 0:
        return {**result, "export_label_agreement": None, "export_files": done.stderr.strip().splitlines()[-1:]}
    labels = _exported_labels(exported, saved["text"].tolist(), max_length)
    return {**result, "export_label_agreement": float((labels == saved["predicted"].to_numpy()).mean()),
            "export_files": sorted(p.name for p in exported.iterdir())[:8]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_ID")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--texts", type=int, default=200, help="test texts per run (its first ones)")
    args = parser.parse_args(argv)
    config_path = str(Path(args.config).resolve())  # the commands run from the project root
    config = load_config(config_path)
    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        for run_id in args.runs:
            out[run_id] = check(run_id, config_path, Path(config.output_dir), config.dataset.max_length, args.texts,
                                Path(scratch))
            print(run_id, out[run_id], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
