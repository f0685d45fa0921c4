"""The study's grid (configs/study.yaml) in hours at measured rates: what `python -m bench` and the GPU bench
report as the cost of the published study's runs. Everything but the Hub data set's size is read from the file."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "configs" / "study.yaml"
# configs/study.yaml names the Hub's AG News; its size is a fact of that data set, not a setting.
STUDY_TRAIN_ROWS, STUDY_TEST_ROWS = 120_000, 7_600


def study_grid(study_path: Path, rates: dict) -> dict:
    """Hours of the study's grid (its tasks x models x variants x seeds, epochs and validation size) at each way's
    training rates (`full`, `lora`: samples/s; every adapter counts as `lora`) and evaluation rate (`eval`:
    texts/s)."""
    from core.config import METHODS, load_config
    from pipeline.plan import build_plan

    study = load_config(study_path)
    validation = study.dataset.validation_size
    train_rows = STUDY_TRAIN_ROWS - validation
    samples = {"full": 0.0, "lora": 0.0}
    eval_texts, runs = 0.0, 0
    for run in build_plan(study):
        if not METHODS[run.method]["trains"]:
            continue
        runs += 1
        epochs = run.training.epochs
        samples["full" if run.method == "full" else "lora"] += epochs * train_rows
        eval_texts += epochs * validation + (epochs * train_rows if run.training.eval_on_train else 0) + STUDY_TEST_ROWS
    grid = {"config": str(study_path.relative_to(ROOT)) if study_path.is_relative_to(ROOT) else str(study_path),
            "runs": runs, "train_rows": train_rows, "full_samples": samples["full"], "lora_samples": samples["lora"],
            "eval_texts": eval_texts}
    for way, rate in rates.items():
        train = samples["full"] / rate["full"] + samples["lora"] / rate["lora"]
        grid[way] = {"train_hours": train / 3600, "eval_hours": eval_texts / rate["eval"] / 3600,
                     "total_hours": (train + eval_texts / rate["eval"]) / 3600, "rates": rate}
    return grid
