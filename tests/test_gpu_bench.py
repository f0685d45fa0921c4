"""The GPU bench's logic on a CPU (tiny model, a few samples) and the speed levers' code paths in the product:
each TrainingConfig lever reaches TrainingArguments, bf16 weights train with fp32 adapters, and the study grid's
hours are recomputed here from configs/study.yaml's own numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench import gpu
from bench.grid import study_grid
from bench.report import jsonable
from conftest import ROOT, tiny_config, write_config
from core.config import ConfigError, load_config, validate
from tasks.base import RunContext
from tasks.finetune import training_arguments, weights_in_bf16


def _tiny_setup(tiny_data, tiny_models, tmp_path):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["tasks"] = {"B": raw["tasks"]["B"], "C": raw["tasks"]["C"]}
    return write_config(tmp_path / "config.yaml", raw)


def test_each_lever_reaches_training_arguments(tiny_data, tiny_models, tmp_path, one_thread):
    config = load_config(_tiny_setup(tiny_data, tiny_models, tmp_path), [
        "training.optim=adamw_torch", "training.pin_memory=false", "training.non_blocking=true",
        "training.dataloader_workers=2", "training.torch_compile=true"])
    # A CUDA device named (none is needed to build the arguments): on a CPU the Trainer turns pinning off itself.
    context = RunContext(config, None, tmp_path, torch.device("cuda"), show_progress=False)
    args = training_arguments(config.task_training("B", "v1"), tmp_path / "ckpt", False, context, 0)
    assert args.optim == "adamw_torch" and args.dataloader_pin_memory is False
    assert args.accelerator_config.non_blocking is True
    assert args.dataloader_num_workers == 2 and args.dataloader_persistent_workers is True
    assert args.torch_compile is True
    default = training_arguments(load_config(tmp_path / "config.yaml").task_training("B", "v1"), tmp_path / "c2",
                                 False, context, 0)  # defaults: fused AdamW, pinned, blocking copies, no compile
    assert (default.optim, default.dataloader_pin_memory, default.accelerator_config.non_blocking,
            default.dataloader_num_workers, default.torch_compile) == ("adamw_torch_fused", True, False, 0, False)


def test_a_bad_lever_value_is_a_config_error(tiny_data, tiny_models, tmp_path):
    path = _tiny_setup(tiny_data, tiny_models, tmp_path)
    with pytest.raises(ConfigError, match="training.optim"):
        load_config(path, ["training.optim=sgd"])
    with pytest.raises(ConfigError, match="dataloader_workers"):
        load_config(path, ["training.dataloader_workers=-1"])


def test_bf16_weights_train_with_fp32_adapters(tiny_data, tiny_models, tmp_path, one_thread):
    """bf16 weights apply only where the run is in bf16; PEFT then keeps its adapters in fp32, and a run trains."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench import measure
    from tasks.adapters import apply_method

    config = load_config(_tiny_setup(tiny_data, tiny_models, tmp_path),
                         ["training.bf16_weights=true", "training.precision=bf16"])
    training, lora = config.task_training("C", "v1"), config.task_lora("C", "v1")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=4)
    assert weights_in_bf16(model, training, bf16=False).dtype == torch.float32  # an fp32 run keeps fp32 weights
    wrapped = apply_method(weights_in_bf16(model, training, bf16=True), "lora", lora)
    dtypes = {name: p.dtype for name, p in wrapped.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n and "embeddings" in n} == {torch.bfloat16}
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ids = tokenizer(["a game of the season"] * 16 + ["stocks market oil"] * 16)["input_ids"]
    context = RunContext(config, None, tmp_path, torch.device("cpu"), show_progress=False)
    before = wrapped.base_model.model.bert.encoder.layer[0].attention.self.query.lora_B["default"].weight.clone()
    run = measure.train_project(wrapped, tokenizer, "lora", training, ids, [1] * 16 + [2] * 16, 32, context, True, 0)
    after = run["model"].base_model.model.bert.encoder.layer[0].attention.self.query.lora_B["default"].weight
    assert run["samples"] == 32 and torch.isfinite(torch.tensor(run["train_loss"]))
    assert after.dtype == torch.float32 and not torch.equal(before, after)  # the fp32 adapter trained


def test_the_chosen_arm_is_the_best_on_validation_whatever_the_test_says():
    runs = {"baseline": {"validation_accuracy": 0.95, "test_accuracy": 0.99},
            "chosen1": {"validation_accuracy": 0.90, "test_accuracy": 0.80},
            "chosen2": {"validation_accuracy": 0.85, "test_accuracy": 0.95},
            "chosen3": {"validation_accuracy": 0.90, "test_accuracy": 0.97}}
    assert gpu.choose(runs, ["chosen1", "chosen2", "chosen3"]) == "chosen1"  # a tie goes to the first listed
    assert gpu.choose(runs, ["chosen2"]) == "chosen2"  # only candidates, never the baseline
    assert gpu.choose(runs, []) == "baseline"


def test_study_grid_is_read_from_the_study_config(tmp_path):
    """Hours recomputed from study.yaml's own epochs, variants, models and validation size (not from the code)."""
    raw = yaml.safe_load((ROOT / "configs" / "study.yaml").read_text())
    models, validation = len(raw["models"]), raw["dataset"]["validation_size"]
    train_rows = 120_000 - validation  # the Hub's AG News train split, less validation
    full = sum(models * len(t["variants"]) * t["training"]["epochs"] for t in raw["tasks"].values() if t["method"] == "full")
    lora = sum(models * len(t["variants"]) * t["training"]["epochs"] for t in raw["tasks"].values() if t["method"] == "lora")
    runs = sum(models * len(t.get("variants", [])) for t in raw["tasks"].values() if t["method"] in ("full", "lora"))
    seeds = len(raw["seeds"])  # every run once per seed
    full, lora, runs = full * seeds, lora * seeds, runs * seeds
    rates = {"chosen": {"full": 1000.0, "lora": 2000.0, "eval": 10000.0}}
    grid = study_grid(ROOT / "configs" / "study.yaml", rates)
    assert grid["runs"] == runs == 90
    assert grid["full_samples"] == full * train_rows and grid["lora_samples"] == lora * train_rows
    eval_texts = (full + lora) * validation + runs * 7_600
    assert grid["eval_texts"] == eval_texts
    expected = (full * train_rows / 1000 + lora * train_rows / 2000 + eval_texts / 10000) / 3600
    assert grid["chosen"]["total_hours"] == pytest.approx(expected)
    # The grid follows the file: one more epoch for task B changes the full samples.
    raw["tasks"]["B"]["training"]["epochs"] = 6
    changed = tmp_path / "study.yaml"
    changed.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert study_grid(changed, rates)["full_samples"] == (full + models * 2 * seeds) * train_rows
    raw["seeds"] = [42]
    changed.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert study_grid(changed, rates)["runs"] == 30


def test_quick_dry_run_picks_on_validation_and_writes_every_reported_key(tiny_data, tiny_models, tmp_path, one_thread,
                                                                          monkeypatch):
    path = _tiny_setup(tiny_data, tiny_models, tmp_path)
    train_arm = gpu.train_arm

    def compile_fails(name, bench, config, method, task, *args):  # a lever that breaks is reported, not fatal
        if config.task_training(task, "v1").torch_compile:
            raise RuntimeError("no compiler here")
        return train_arm(name, bench, config, method, task, *args)

    monkeypatch.setattr(gpu, "train_arm", compile_fails)
    saved = []
    common = ["training.precision=fp32"]
    baseline = ["tasks.B.training.batch_size=16", "tasks.C.training.batch_size=8"]
    chosen = [["training.batch_size=32", "training.eval_batch_size=64", "tasks.B.training.batch_size=32",
               "tasks.C.training.batch_size=32", "tasks.B.training.learning_rate=1e-6",
               "tasks.C.training.learning_rate=1e-6"],  # too small to learn anything
              ["training.batch_size=32", "training.eval_batch_size=64", "tasks.B.training.batch_size=32",
               "tasks.C.training.batch_size=32", "tasks.B.training.learning_rate=3e-3",
               "tasks.C.training.learning_rate=1e-2", "training.non_blocking=true"]]
    results = gpu.run_gpu_bench(path, common, baseline, chosen, ["non_blocking", "torch_compile"], True,
                                torch.device("cpu"), log=lambda line: None, epochs=2,
                                save=lambda partial: saved.append(sorted(partial)))
    assert "accuracy" in saved[0] and "speed" not in saved[0]  # a call cut off keeps what was measured
    assert "eval" in saved[-1]
    data = json.loads(json.dumps(jsonable(results)))
    for method in ("full", "lora"):
        runs = data["accuracy"][method]["runs"]
        assert set(runs) == {"usual_way", "baseline", "chosen1", "chosen2"}
        best = max(("chosen1", "chosen2"), key=lambda arm: runs[arm]["validation_accuracy"])
        assert data["chosen"][method] == best  # chosen on validation, never on test
        assert runs["baseline"]["validation_vs_baseline"]["points"] == 0
        assert runs[best]["validation_vs_baseline"]["points"] == pytest.approx(
            100 * (runs[best]["validation_accuracy"] - runs["baseline"]["validation_accuracy"]))
        rows = data["accuracy"][method]["train_rows"]  # the same epochs over the same rows, every arm
        assert {run["samples"] for run in runs.values()} == {2 * rows}
        assert runs["chosen1"]["batch_size"] == 32 and runs["baseline"]["batch_size"] == (16 if method == "full" else 8)
        speed = data["speed"][method]
        assert {"usual_way", "baseline", data["chosen"][method]} == set(speed["runs"])
        for lever in ("non_blocking",):
            value = speed["levers"][lever]
            assert value["gain"] == pytest.approx(value["on_samples_per_s"] / value["off_samples_per_s"], rel=1e-4)
            assert value["toggled_run"][lever] != value["chosen_value"]  # the toggled run really ran the other value
        assert speed["levers"]["non_blocking"]["chosen_value"] == (data["chosen"][method] == "chosen2")
    assert data["speed"]["full"]["levers"]["torch_compile"] == {"failed": "RuntimeError: no compiler here"}
    assert "torch_compile" not in data["speed"]["lora"]["levers"]  # compiled for full fine-tuning only
    evaluation = data["eval"]["minilm"]
    assert evaluation["trainer_predict"]["batch_size"] == 8 and evaluation["trainer_predict"]["precision"] == "fp32"
    assert evaluation["trainer_predict"]["tokenize_seconds"] > 0 and evaluation["project_tokenize_seconds"] > 0
    assert evaluation["project"]["baseline"]["batch_size"] == 32 and evaluation["chosen_eval_batch_size"] == 64
    grid = data["study_grid"]
    for way, (full_arm, eval_rate) in {
            "chosen": (data["chosen"]["full"], evaluation["project"][data["chosen"]["full"]]["texts_per_s"]),
            "usual_way": ("usual_way", evaluation["trainer_predict"]["texts_per_s"])}.items():
        full_rate = data["speed"]["full"]["runs"][full_arm]["samples_per_s"]
        lora_arm = data["chosen"]["lora"] if way == "chosen" else "usual_way"
        lora_rate = data["speed"]["lora"]["runs"][lora_arm]["samples_per_s"]
        hours = (grid["full_samples"] / full_rate + grid["lora_samples"] / lora_rate + grid["eval_texts"] / eval_rate) / 3600
        assert grid[way]["total_hours"] == pytest.approx(hours, rel=1e-4)
    assert data["targets"]["grid_hours_met"] == (grid["chosen"]["total_hours"] <= 1.0)
    assert "study grid" in gpu.summary(results)


def test_gpu_sh_dry_mode_writes_the_json(tiny_data, tiny_models, tmp_path):
    """`bash bench/gpu.sh OUT --quick ...`: the script's own pins, then the caller's, on a CPU."""
    path = _tiny_setup(tiny_data, tiny_models, tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), str(out), "--quick", "--config", str(path),
                           "--epochs", "1", "--levers", "--", f"dataset.source={tiny_data}",
                           f"models=[{tiny_models['bert']}]", "dataset.validation_size=20", "dataset.max_train_samples=48",
                           "dataset.max_test_samples=16", "training.precision=fp32"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                               "OMP_NUM_THREADS": "1"})  # python3 is this interpreter
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "results-gpu.json").read_text())
    arms = data["arms"]
    assert data["mode"] == "quick" and set(arms) == {"baseline", "chosen1", "chosen2", "chosen3"}
    # pinned per task by gpu.sh, whatever the config says (the tiny config trains every task at batch 16)
    assert (arms["baseline"]["full"]["batch_size"], arms["baseline"]["lora"]["batch_size"]) == (32, 8)
    assert (arms["baseline"]["full"]["learning_rate"], arms["baseline"]["lora"]["learning_rate"]) == (1e-4, 4e-3)
    assert {arm["full"]["batch_size"] for name, arm in arms.items() if name != "baseline"} == {128}
    assert arms["chosen3"]["full"]["bf16_weights"] and not arms["chosen1"]["full"]["bf16_weights"]
    assert data["accuracy"]["full"]["validation_rows"] == 20  # the caller's KEY=VALUE come last
    assert (out / "gpu-output.txt").read_text().count("study grid") == 1
    assert not (out / "results-gpu.partial.json").exists()  # written after each part, removed at the end
