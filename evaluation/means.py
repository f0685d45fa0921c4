"""<output_dir>/means.csv: one row per base run (the run id without _s<seed>), its seeds pooled, rebuilt from the
run folders with summary.csv (evaluation/report.rebuild_outputs).

Per base run: a readable `label`; its seeds' mean test accuracy with the Student-t interval over seeds (none for
one seed, nor for a deterministic run, whose seeds all predict the same: `seeds` says so); and against the
reference, one pooled paired test over test texts (evaluation/statistics.py: each text's correctness averaged
over the run's seeds, minus the reference's; paired bootstrap over texts): `accuracy_diff` with its interval, `p`
and `p_holm`. The Holm family is every other base run in the folder, fixed by the runs that were planned, not by
their results: a base run that cannot be tested (every seed failed, or scored on other texts) stays in the family
with p = 1, so leaving it out never makes the others look surer. `within_noise_of_best`: the reference, and every
run with p_holm >= SIGNIFICANCE. The per-seed tests stay in summary.csv as detail.

The reference is summary.csv's (evaluation/summary.reference_base_run: the config's reference_run, else the best
mean validation accuracy over complete seeds; the test split never enters the choice).

`optimizer_steps`: the record's own (`budget.optimizer_steps`; older records: top level or `timing`); else the
steps the run was set to take on one device, as the HF Trainer counts them: ceil(epochs x ceil(ceil(train texts /
batch_size) / gradient_accumulation_steps)); empty for runs that do not train, and for runs with early stopping
(they may stop sooner).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import METHODS
from core.config import optimizer_steps as steps
from core.files import write_csv_atomic
from core.record import RunRecord
from evaluation.statistics import SIGNIFICANCE, holm, pooled_difference, resampled_means, t_interval
from evaluation.summary import read_predictions, reference_base_run

MEANS_COLUMNS = [
    "label", "base_run", "method", "method_type", "seeds", "deterministic",
    "test_accuracy_mean", "test_accuracy_mean_low", "test_accuracy_mean_high", "validation_accuracy_mean",
    "compared_to", "accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "p_value", "p_holm",
    "within_noise_of_best", "trainable_parameters", "optimizer_steps", "train_seconds", "peak_rss_increase_mb",
]
# How `label` names a PEFT type (adapter.peft_type) or a method; anything else: its own name.
PEFT_NAMES = {"LORA": "LoRA", "ADALORA": "AdaLoRA", "VERA": "VeRA", "IA3": "IA3", "LN_TUNING": "LayerNorm tuning",
              "PROMPT_TUNING": "prompt tuning", "PREFIX_TUNING": "prefix tuning", "P_TUNING": "P-tuning",
              "LOHA": "LoHa", "LOKR": "LoKr", "BOFT": "BOFT", "OFT": "OFT", "FOURIERFT": "FourierFT"}
METHOD_NAMES = {"full": "full fine-tuning", "head": "linear probe (head only)", "bitfit": "BitFit",
                "tfidf_nb": "TF-IDF + Naive Bayes", "pretrained": "pretrained, untrained head", "lora": "LoRA"}
MODULE_NAMES = {"query": "q", "key": "k", "value": "v"}  # BERT-style names, shortened as in "LoRA q+v r 8"


@dataclass
class Pooled:
    """A base run's complete seeds on the test texts: which texts (index, label) and each seed's correctness."""
    texts: tuple[np.ndarray, np.ndarray]
    correct: np.ndarray  # [seeds, texts] of 0/1
    identical: bool  # two seeds or more, all predicting the same class for every text

    @property
    def averaged(self) -> np.ndarray:
        return self.correct.mean(axis=0)

    def same_texts(self, other: Pooled) -> bool:
        return all(np.array_equal(a, b) for a, b in zip(self.texts, other.texts))


def rebuild_means(output_dir: Path, summary: pd.DataFrame, records: list[RunRecord],
                  reference_run: str | None = None) -> pd.DataFrame:
    """means.csv from summary.csv's rows, the records and each run's predictions.csv; returns it."""
    means = base_run_means(output_dir, summary, records, reference_base_run(summary, reference_run))
    write_csv_atomic(Path(output_dir) / "means.csv", means)
    return means


def base_run_means(output_dir: Path, summary: pd.DataFrame, records: list[RunRecord],
                   reference: str | None) -> pd.DataFrame:
    complete = summary[summary["status"] == "complete"]
    by_base = {record.base_run: record for record in records if record.complete}  # one record per base run
    pooled = pooled_correctness(output_dir, summary)
    rows = []
    for base, group in complete.groupby("base_run", sort=False):
        record, runs = by_base.get(base), pooled.get(base)
        deterministic = runs is not None and runs.identical
        accuracy = pd.to_numeric(group["test_accuracy"]).dropna()
        _, low, high = t_interval(accuracy) if not deterministic else (None, np.nan, np.nan)
        trains = METHODS.get(group["method"].iloc[0], {}).get("uses_models", True)  # else a vocabulary's count
        rows.append({
            "label": run_label(record) if record else base, "base_run": base, "method": group["method"].iloc[0],
            "method_type": method_type(record) if record else group["method"].iloc[0],
            "seeds": f"{len(group)} (identical predictions)" if deterministic else str(len(group)),
            "deterministic": deterministic,
            "test_accuracy_mean": accuracy.mean() if len(accuracy) else np.nan,
            "test_accuracy_mean_low": low, "test_accuracy_mean_high": high,
            "validation_accuracy_mean": pd.to_numeric(group["validation_accuracy"]).mean(),
            "trainable_parameters": group["trainable_parameters"].iloc[0] if trains else np.nan,
            "optimizer_steps": optimizer_steps(record) if record else None,
            "train_seconds": pd.to_numeric(group["train_seconds"]).mean(),
            "peak_rss_increase_mb": pd.to_numeric(group["peak_rss_increase_mb"]).max(),
        })
    means = pd.DataFrame(rows, columns=MEANS_COLUMNS)
    repeated = means["label"].duplicated(keep=False)  # two base runs must never read alike
    means.loc[repeated, "label"] = means.loc[repeated, "label"] + " (" + means.loc[repeated, "base_run"] + ")"
    means = _add_pooled_tests(means, pooled, reference, family=set(summary["base_run"]) - {reference})
    return means.astype({"trainable_parameters": "Int64", "optimizer_steps": "Int64"})


def _add_pooled_tests(means: pd.DataFrame, pooled: dict[str, Pooled], reference: str | None,
                      family: set[str]) -> pd.DataFrame:
    """accuracy_diff, its interval and p against the reference for each base run scored on its texts; p_holm over
    the family (untestable members count as p = 1); within_noise_of_best."""
    means = means.astype({"compared_to": object, "within_noise_of_best": object})
    if reference not in pooled:
        return means
    compared = [base for base in means["base_run"] if base in pooled and pooled[base].same_texts(pooled[reference])]
    resampled = resampled_means(np.column_stack([pooled[base].averaged for base in compared]))
    column = {base: i for i, base in enumerate(compared)}
    for row in means.index:
        base = means.at[row, "base_run"]
        if base not in column:
            continue
        means.at[row, "compared_to"] = reference
        if base == reference:
            means.at[row, "within_noise_of_best"] = True
            continue
        observed = float(np.mean(pooled[base].averaged - pooled[reference].averaged))
        result = pooled_difference(observed, resampled[:, column[base]] - resampled[:, column[reference]])
        means.loc[row, ["accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "p_value"]] = result
    tested = dict(zip(means["base_run"], pd.to_numeric(means["p_value"])))
    members = sorted(family)
    adjusted = dict(zip(members, holm([1.0 if pd.isna(tested.get(b, np.nan)) else tested[b] for b in members])))
    for row in means.index:
        base = means.at[row, "base_run"]
        if base != reference and pd.notna(means.at[row, "p_value"]):
            means.at[row, "p_holm"] = adjusted[base]
            means.at[row, "within_noise_of_best"] = bool(adjusted[base] >= SIGNIFICANCE)
    return means


def pooled_correctness(output_dir: Path, summary: pd.DataFrame) -> dict[str, Pooled]:
    """Per base run whose complete seeds all have predictions.csv on the same texts: those seeds' correctness."""
    complete = summary[summary["status"] == "complete"]
    pooled = {}
    for base, group in complete.groupby("base_run", sort=False):
        frames = [read_predictions(output_dir, run_id) for run_id in group["run_id"]]
        if not frames or any(frame is None for frame in frames):
            continue
        texts = (frames[0]["index"].to_numpy(), frames[0]["label"].to_numpy())
        if not all(np.array_equal(f["index"], texts[0]) and np.array_equal(f["label"], texts[1]) for f in frames):
            continue
        predicted = np.stack([frame["predicted"].to_numpy() for frame in frames])
        pooled[base] = Pooled(texts, (predicted == texts[1]).astype(np.float64),
                              identical=len(frames) > 1 and bool((predicted == predicted[0]).all()))
    return pooled


def pairwise_p_values(output_dir: Path, summary: pd.DataFrame, bases: list[str]) -> np.ndarray:
    """[k, k]: the pooled paired test's two-sided p between each two of `bases` (not adjusted); NaN where either
    has no predictions or they were scored on other texts; 1 on the diagonal."""
    pooled = pooled_correctness(output_dir, summary)
    k = len(bases)
    p = np.full((k, k), np.nan)
    np.fill_diagonal(p, 1.0)
    present = [i for i, base in enumerate(bases) if base in pooled]
    if not present:
        return p
    first = pooled[bases[present[0]]]
    present = [i for i in present if pooled[bases[i]].same_texts(first)]
    averaged = np.column_stack([pooled[bases[i]].averaged for i in present])
    resampled = resampled_means(averaged)
    for a, i in enumerate(present):
        for b, j in enumerate(present[a + 1:], start=a + 1):
            observed = float(np.mean(averaged[:, a] - averaged[:, b]))
            p[i, j] = p[j, i] = pooled_difference(observed, resampled[:, a] - resampled[:, b])[3]
    return p


def run_label(record: RunRecord) -> str:
    """The record's `label` (the task's `label:`) when it has one; else the method and its settings, e.g.
    "LoRA q+v r 8", "rsLoRA q+v r 16", "VeRA q+v r 128", "prompt tuning 20 tokens", "full fine-tuning"."""
    given = getattr(record, "label", None)
    if isinstance(given, str) and given.strip():
        return given.strip()
    config = record.config or {}
    if record.method == "lora" and isinstance(config.get("lora"), dict):
        lora = config["lora"]
        name = "DoRA" if lora.get("use_dora") else "rsLoRA" if lora.get("use_rslora") else "LoRA"
        return _adapter_label(name, lora)
    adapter = config.get("adapter")
    if record.method == "peft" and isinstance(adapter, dict):
        kind = str(adapter.get("peft_type", "peft")).upper()
        name = PEFT_NAMES.get(kind, kind)
        if kind == "LORA":
            weights = str(adapter.get("init_lora_weights", ""))
            name = ("PiSSA" if weights.startswith("pissa") else "LoRA+" if adapter.get("loraplus_lr_ratio")
                    else "DoRA" if adapter.get("use_dora") else "rsLoRA" if adapter.get("use_rslora") else "LoRA")
        if kind == "ADALORA":
            ranks = f"{adapter.get('init_r', '?')}->{adapter.get('target_r', '?')}"  # AdaLoRA prunes init_r to target_r
            return _adapter_label(name, {**adapter, "r": ranks})
        if "num_virtual_tokens" in adapter:
            return f"{name} {adapter['num_virtual_tokens']} tokens"
        return _adapter_label(name, adapter if kind not in ("IA3", "LN_TUNING") else {})
    return METHOD_NAMES.get(record.method or "", record.method or record.base_run)


def method_type(record: RunRecord) -> str:
    """What the frontier plot colours by: the method, and for `peft` its PEFT type (LoRA variants are `lora`)."""
    adapter = (record.config or {}).get("adapter")
    if record.method == "peft" and isinstance(adapter, dict) and adapter.get("peft_type"):
        kind = str(adapter["peft_type"]).lower()
        return "lora" if kind in ("lora", "adalora") else kind
    return record.method or "other"


def optimizer_steps(record: RunRecord) -> int | None:
    """See the module docstring: recorded, else set by the config (one device, no early stopping), else None."""
    if record.budget is not None and record.budget.optimizer_steps is not None:
        return record.budget.optimizer_steps
    for holder in (record.model_extra or {}, (record.timing.model_extra or {}) if record.timing else {}):
        if isinstance(holder.get("optimizer_steps"), (int, float)):
            return int(holder["optimizer_steps"])
    training, train_texts = (record.config or {}).get("training"), record.data.sizes.get("train")
    if not METHODS.get(record.method or "", {}).get("trains") or not isinstance(training, dict) or not train_texts:
        return None
    if training.get("early_stopping_patience") or not training.get("batch_size") or not training.get("epochs"):
        return None
    return steps(train_texts, training["batch_size"], training.get("gradient_accumulation_steps", 1),
                 training["epochs"], training.get("max_steps"))


def _adapter_label(name: str, settings: dict) -> str:
    modules = settings.get("target_modules")
    if isinstance(modules, str):
        modules = [modules]
    parts = [name]
    if modules:
        parts.append("+".join(MODULE_NAMES.get(str(m), str(m)) for m in modules))
    if settings.get("r") is not None:
        parts.append(f"r {settings['r']}")
    return " ".join(parts)
