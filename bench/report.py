"""The printed table and the JSON form of a benchmark result."""
from __future__ import annotations

import math

import numpy as np


def format_table(results: dict, models: list[str]) -> str:
    header = ["model", "measure", "project", "usual way", "speedup", "util.", "util. usual",
              "validation accuracy (project / usual)"]
    rows = []
    for name in models:
        r = results[name]
        peak = r["peak_gflops"]
        rows.append([name, f"peak matmul GFLOP/s ({peak['precision']})", f"{peak['value']:.0f}", "", "", "", "",
                     ", ".join(f"{k}: {v:.0f}" for k, v in peak["other_precision"].items() if k != "by_shape")])
        e = r["eval"]
        agree = e["agreement"]
        rows.append([name, f"eval texts/s ({e['project']['texts']} / {e['per_text']['texts']} texts)",
                     f"{e['project']['texts_per_s']:.1f}", f"{e['per_text']['texts_per_s']:.1f}",
                     f"{e['speedup_vs_per_text']:.1f}x", _pct(e["utilization"]), _pct(e["per_text"]["utilization"]),
                     f"agree {agree['agreement']:.4f} ({agree['texts']} texts)"])
        if "trainer_predict" in e:  # results written before the second reference have none
            predict = e["trainer_predict"]
            rows.append([name, f"eval vs Trainer.predict ({predict['texts']} texts; with tokenisation)",
                         f"{e['project_on_per_text_texts']['texts_per_s']:.1f}", f"{predict['texts_per_s']:.1f}",
                         f"{e['speedup_vs_trainer_predict']:.1f}x"
                         f" ({e['speedup_vs_trainer_predict_with_tokenization']:.1f}x)",
                         _pct(e["project_on_per_text_texts"]["utilization"]), _pct(predict["utilization"]),
                         f"agree {e['agreement_with_trainer_predict']:.4f}"])
        for method in ("full", "lora"):
            t = r["train"][method]
            rows.append([name, f"train {method} samples/s ({r['train']['samples']} samples)",
                         f"{t['project']['samples_per_s']:.2f}", f"{t['reference']['samples_per_s']:.2f}",
                         f"{t['speedup_vs_reference']:.1f}x", _pct(t["utilization"]), _pct(t["reference_utilization"]),
                         f"{format_accuracy(t['accuracy'])} / {format_accuracy(t['reference_accuracy'])}"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def jsonable(value):
    """Plain JSON types; floats rounded to 6 significant digits; NaN becomes null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _pct(value) -> str:
    return "" if value is None else f"{value:.0%}"


def format_accuracy(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
