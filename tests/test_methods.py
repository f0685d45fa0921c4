"""Every method end to end through main.py: runs, saved models, predict and export agreeing with each run's
predictions.csv; the CLI's --set overrides and intermixed options; bad adapter blocks refused before any run."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_config, write_config
from main import main

METHOD_TASKS = {  # task: its entry; every run trains one epoch on the tiny BERT (model 1) unless it says models
    "H": {"method": "head", "variants": ["v1"]},
    "BF": {"method": "bitfit", "variants": ["v1"]},
    "IA": {"method": "peft", "variants": ["v1"], "adapter": {
        "peft_type": "IA3", "target_modules": ["key", "value", "intermediate"], "feedforward_modules": ["intermediate"]}},
    "VE": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "VERA", "r": 8,
                                                              "target_modules": ["query", "value"]}},
    "LN": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LN_TUNING", "target_modules": ["layer_norm"]}},
    "PT": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}},
    "PI": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                              "target_modules": ["query", "value"],
                                                              "init_lora_weights": "pissa"}},
    "AD": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "ADALORA", "init_r": 4, "target_r": 2,
                                                              "tinit": 1, "tfinal": 1, "deltaT": 1,
                                                              "target_modules": ["query", "value"]}},
    "LP": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORA", "r": 4, "loraplus_lr_ratio": 16,
                                                              "target_modules": ["query"]}},
    "RI": {"method": "peft", "variants": ["v1"], "models": [2], "adapter": {  # RoBERTa: its head is not a Linear
        "peft_type": "IA3", "target_modules": ["value", "output"], "feedforward_modules": ["output"]}},
}
RUNS = [f"{task}{(entry.get('models') or [1])[0]}_v1" for task, entry in METHOD_TASKS.items()]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def methods(tiny_data, tiny_models, tmp_path_factory):
    """All the methods above run by main.py into an output_dir given as an override (not the config's)."""
    root = tmp_path_factory.mktemp("methods")
    raw = tiny_config(tiny_data, [tiny_models["bert"], tiny_models["roberta"]], root / "unused",
                      training={"epochs": 1, "batch_size": 16, "eval_batch_size": 16, "learning_rate": 1e-2,
                                "precision": "fp32"},
                      tasks=METHOD_TASKS)
    config = write_config(root / "config.yaml", raw)
    output = root / "results"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["--config", str(config), "--quiet", "--set", f"output_dir={output}"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stdout.getvalue()[-3000:] + stderr.getvalue()[-3000:]
    assert not list((root / "unused").glob("*/metrics.json"))  # the override, not the config, was used
    return {"config": config, "results": output, "models": tiny_models}


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def test_every_method_completes_and_records_its_adapter(methods):
    for run_id in RUNS:
        record = json.loads((methods["results"] / run_id / "metrics.json").read_text())
        assert record["status"] == "complete", (run_id, record.get("error"))
        task = run_id.split("1_")[0].split("2_")[0]
        adapter = METHOD_TASKS[task].get("adapter")
        assert record["config"].get("adapter", {}).get("peft_type") == (adapter or {}).get("peft_type")
        assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"]
    pissa = methods["results"] / "PI1_v1"
    assert not (pissa / "initial_adapter").exists()  # used for the conversion, then removed


def test_pissa_is_saved_as_a_plain_lora_adapter_over_the_original_weights(methods):
    config = json.loads((methods["results"] / "PI1_v1" / "model" / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True and config["r"] == 8  # converted: rank 2r over the original base


def test_adalora_reallocated_its_ranks_every_step(methods):
    """update_and_allocate ran: after tinit, ranks were pruned to the target budget and recorded."""
    config = json.loads((methods["results"] / "AD1_v1" / "model" / "adapter_config.json").read_text())
    pattern = config["rank_pattern"]
    assert pattern, "rank_pattern is empty: update_and_allocate never ran"
    kept = sum(sum(mask) for mask in pattern.values())
    assert kept <= 2 * len(pattern) < 4 * len(pattern)  # target_r 2 of init_r 4, over the adapted matrices


@pytest.mark.parametrize("run_id", RUNS)
def test_predict_and_export_reproduce_predictions(methods, run_id, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evaluation.inference import predict_probabilities

    expected = pd.read_csv(methods["results"] / run_id / "predictions.csv")
    again = tmp_path / "again.csv"
    # options after the run id, the output folder as an override that cannot be read as a text
    assert main(["predict", run_id, "--file", str(methods["results"] / run_id / "predictions.csv"),
                 "--config", str(methods["config"]), "--out", str(again),
                 "--set", f"output_dir={methods['results']}"]) == 0
    predicted = pd.read_csv(again)
    assert predicted["predicted"].tolist() == expected["predicted"].tolist()
    assert np.abs(_probabilities(predicted) - _probabilities(expected)).max() <= 2e-6

    folder = tmp_path / "exported"
    assert main(["export", run_id, str(folder), "--config", str(methods["config"]),
                 "--set", f"output_dir={methods['results']}"]) == 0
    out = capsys.readouterr().out
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    if run_id.startswith("PT"):  # prompt tuning cannot merge: base model + adapter
        assert "cannot merge" in out and (folder / "adapter" / "adapter_config.json").is_file()
        model = PeftModel.from_pretrained(model, folder / "adapter")
    else:
        assert not (folder / "adapter_config.json").exists() and not (folder / "adapter").exists()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(expected["text"].tolist(), truncation=True)["input_ids"]
    probabilities, _ = predict_probabilities(model, ids, tokenizer.pad_token_id, 16, torch.device("cpu"), False)
    assert probabilities.argmax(axis=1).tolist() == expected["predicted"].tolist()
    assert np.abs(probabilities - _probabilities(expected)).max() < 1e-5


def test_dry_run_counts_what_each_run_trained_and_skips_them(methods, capsys):
    import re

    assert main(["--config", str(methods["config"]), "--dry-run", "--set", f"output_dir={methods['results']}"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for run_id in RUNS:
        record = json.loads((methods["results"] / run_id / "metrics.json").read_text())
        counted = re.search(r"trainable=([\d,]+) of ([\d,]+)", lines[run_id])
        assert counted, lines[run_id]
        assert int(counted.group(1).replace(",", "")) == record["parameters"]["trainable"], run_id
        assert lines[run_id].endswith("[skip: complete]"), lines[run_id]


def test_predict_takes_options_between_and_after_the_texts(methods, capsys):
    texts = pd.read_csv(methods["results"] / "H1_v1" / "predictions.csv")["text"][:2].tolist()
    assert main(["predict", "H1_v1", "--config", str(methods["config"]), texts[0],
                 "--set", f"output_dir={methods['results']}", texts[1]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith(f"| {texts[0]}") and lines[1].endswith(f"| {texts[1]}")


def test_an_override_written_as_a_text_is_refused_with_the_fix(methods, capsys):
    code = main(["predict", "H1_v1", f"output_dir={methods['results']}", "some text", "--config", str(methods["config"])])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"looks like a config override, not a text to classify; write --set output_dir={methods['results']}" in err


# ----------------------------------------------------------------------------------------------
# Refused before any run: one line, exit 2, nothing written


@pytest.mark.parametrize("task, fragment", [
    ({"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "IA3", "rank": 4}},
     "tasks.G.adapter.rank: unknown key 'rank' for IA3; valid fields of IA3Config: peft_type, target_modules,"),
    ({"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORAA"}},
     "tasks.G.adapter.peft_type: unknown PEFT type 'LORAA' (did you mean 'LORA'?); PEFT's types:"),
    ({"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "IA3", "target_modules": ["key", "ffn"],
                                                        "feedforward_modules": ["ffn"]}},
     "tasks.G.adapter.target_modules: 'ffn' is not a module of model type 'bert'; use generic names query,"),
    ({"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORA", "target_modules": ["query"],
                                                        "layers_to_transform": [7]}},
     "tasks.G.adapter.layers_to_transform: layer 7 does not exist; model type 'bert' here has layers 0-1"),
    ({"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4}},
     "tasks.G.adapter: PEFT cannot apply it to"),
    ({"method": "peft", "variants": ["v1"]}, "tasks.G.adapter: method 'peft' needs an adapter block with a peft_type"),
    ({"method": "full", "variants": ["v1"], "adapter": {"peft_type": "IA3"}},
     "tasks.G.adapter: method 'full' takes no adapter block; use method peft"),
])
def test_bad_adapter_blocks_are_refused_before_any_run(tiny_data, tiny_models, tmp_path, capsys, task, fragment):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"G": task})
    config = write_config(tmp_path / "config.yaml", raw)
    code = main(["--config", str(config), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert fragment in err, err
    assert not (tmp_path / "out").exists(), "something was written"


# ----------------------------------------------------------------------------------------------
# The committed configs


def test_the_study_configs_keep_their_run_ids_and_records():
    """`lora` stays the short form: config.yaml's runs and what they record (hence their fingerprints) are as before."""
    from conftest import ROOT
    from core.config import load_config
    from pipeline.plan import build_plan

    runs = build_plan(load_config(ROOT / "config.yaml"))
    base = ["A0", "A1", "B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"]
    assert [r.run_id for r in runs] == [f"{b}_s{seed}" for seed in (42, 43, 44) for b in base]
    assert [r.base_run_id for r in runs] == base * 3
    for run in runs:
        assert set(run.resolved()) == {"run_id", "base_run_id", "task", "method", "model_number", "model", "variant",
                                       "seed", "training", "lora"}
    study = build_plan(load_config(ROOT / "configs" / "study.yaml"))
    assert len(study) == (1 + 3 + 3 * 2 * 5) * 3  # A0; A per model; B-F per model and variant; three seeds each


def test_methods_config_plans_every_method_and_passes_the_checks():
    from conftest import ROOT, SHARED
    from core.config import load_config
    from pipeline.plan import build_plan
    from tasks.adapters import check_runs

    if not (SHARED / "models" / "all-MiniLM-L6-v2" / "config.json").is_file():
        pytest.skip("the offline default model is not in ../shared")
    runs = build_plan(load_config(ROOT / "configs" / "methods.yaml"))
    methods = {r.method for r in runs}
    types = {r.adapter["peft_type"] for r in runs if r.adapter}
    assert methods == {"tfidf_nb", "full", "head", "bitfit", "lora", "peft"}
    assert types == {"LORA", "ADALORA", "IA3", "VERA", "LN_TUNING", "PROMPT_TUNING"}
    assert len({r.base_run_id for r in runs}) == 21 and len(runs) == 63  # three seeds
    check_runs([r for r in runs if r.seed == 42], train_rows=2000)  # every block fits MiniLM (meta device)


def test_methods_config_names_each_method_once_and_its_runs_carry_the_name():
    """Each task's `label:` is the method's name in reports: one per task, on every run of it, outside its identity."""
    from conftest import ROOT
    from core.config import load_config
    from pipeline.plan import build_plan

    config = load_config(ROOT / "configs" / "methods.yaml")
    labels = {name: task.label for name, task in config.tasks.items()}
    assert all(labels.values()) and len(set(labels.values())) == len(labels), labels
    runs = build_plan(config)
    assert {r.label for r in runs if r.task == "LQV"} == {"LoRA q+v r 8"}
    assert all(r.label == labels[r.task] and "label" not in r.resolved() for r in runs)
