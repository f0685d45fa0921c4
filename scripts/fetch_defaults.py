"""Fetch the default model and data from the Hugging Face Hub into the folders config.yaml reads.

    python scripts/fetch_defaults.py [--dest ../shared]

writes DEST/models/all-MiniLM-L6-v2/ (sentence-transformers/all-MiniLM-L6-v2) and DEST/data/ag_news/train.csv and
test.csv (fancyzhx/ag_news: header `text,label`, labels 0-3 = World, Sports, Business, Sci/Tech). config.yaml
reads `../shared/...` relative to its own folder, so the default DEST is the folder beside the project. The full
train split (120,000 rows) is written; config.yaml's `dataset.max_train_samples` caps what a run uses.
Where the Hub cannot be reached, it says so in one line and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DATASET = "fancyzhx/ag_news"
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=str(ROOT.parent / "shared"),
                        help="the folder that gets models/ and data/ (default: ../shared beside the project)")
    args = parser.parse_args(argv)
    dest = Path(args.dest).resolve()
    try:
        from datasets import load_dataset
        from huggingface_hub import snapshot_download

        model_dir = dest / "models" / "all-MiniLM-L6-v2"
        snapshot_download(MODEL, local_dir=model_dir,
                          allow_patterns=["*.json", "*.txt", "model.safetensors", "README.md"])
        data_dir = dest / "data" / "ag_news"
        data_dir.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            load_dataset(DATASET, split=split).to_pandas()[["text", "label"]].to_csv(data_dir / f"{split}.csv", index=False)
    except Exception as error:  # offline, a proxy, a full disk: one line, not a traceback
        print(f"error: could not fetch {MODEL} and {DATASET} from the Hugging Face Hub into {dest}:"
              f" {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
        return 2
    print(f"model: {model_dir}\ndata: {data_dir} (train.csv, test.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
