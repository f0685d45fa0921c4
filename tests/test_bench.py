"""The benchmark's measurements on a tiny model: the JSON has every key the README quotes, the FLOP count is
2 x parameters x real tokens recomputed by hand from the architecture, and the two evaluators agree."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bench import measure
from bench.__main__ import main as bench_main
from bench.flops import parameter_groups, forward_flops, measure_peak, model_shapes, training_flops
from bench.report import format_table, jsonable
from bench.run import Sizes, run_benchmark
from conftest import make_texts, tiny_config, write_config
from core.config import LoraConfig, validate
from tasks.adapters import apply_method


def _tiny_bert(tiny_models):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=4)
    return model, AutoTokenizer.from_pretrained(tiny_models["bert"])


def test_flop_count_matches_parameters_recomputed_from_the_architecture(tiny_models):
    model, _ = _tiny_bert(tiny_models)
    c = model.config
    h, i, layers, vocab = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # q k v o, two feed-forward, two LayerNorms
    embedding = (vocab + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
    head = (h * h + h) + (h * 4 + 4)  # pooler, classifier
    counts = parameter_groups(model)
    assert (counts.embedding, counts.per_token, counts.per_sequence) == (embedding, layers * layer, head)
    assert counts.total == sum(p.numel() for p in model.parameters())

    tokens, texts = 1000, 30
    forward = 2 * (layers * layer * tokens + head * texts)
    assert forward_flops(counts, tokens, texts) == forward
    assert training_flops(counts, "full", tokens, texts) == 3 * forward

    lora = apply_method(model, "lora", LoraConfig(r=4, target_modules=["query"]))
    lora_counts = parameter_groups(lora)
    adapter = layers * 4 * (h + h)  # A: r x h, B: h x r, in every layer's query
    classifier = h * 4 + 4  # the only head part that trains (the pooler stays frozen)
    assert (lora_counts.per_token, lora_counts.per_sequence) == (layers * layer, head)
    assert (lora_counts.adapter, lora_counts.trainable_head) == (adapter, classifier)
    lora_forward = 2 * ((layers * layer + adapter) * tokens + head * texts)
    assert training_flops(lora_counts, "lora", tokens, texts) == 2 * lora_forward + 2 * (adapter * tokens + classifier * texts)


def test_evaluators_agree_and_training_counts_real_tokens(tiny_models, tmp_path):
    model, tokenizer = _tiny_bert(tiny_models)
    rows = make_texts(24, seed=7)
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    ids = tokenizer(texts, truncation=True, max_length=48)["input_ids"]
    cpu = torch.device("cpu")
    project = measure.evaluate_project(model, ids, tokenizer.pad_token_id, 8, cpu, False)
    loop = measure.evaluate_per_text(model, tokenizer, texts, 48, cpu)
    agree = measure.agreement(project["probabilities"], loop["predictions"], 1e-3)
    assert agree["agreement"] == 1.0 and agree["texts"] == 24
    assert project["tokens"] == sum(map(len, ids)) <= project["positions"]
    assert measure.padded_positions([3, 9, 5], 2) == 2 * 9 + 3 and measure.padded_positions([3], 1, multiple=8) == 8

    reference = measure.train_reference(model, tokenizer, "full", texts, labels, cpu, seed=0)
    assert reference["samples"] == 24 and reference["positions"] == 24 * 64  # tiny model: 64 positions
    assert reference["tokens"] == sum(map(len, tokenizer(texts, truncation=True, max_length=128)["input_ids"]))
    counts = parameter_groups(model)
    assert reference["flops"] == training_flops(counts, "full", reference["tokens"], 24)


def test_peak_is_the_best_shape(monkeypatch):
    """Each shape's matmul is made to run at a known rate (a fake clock advanced by FLOPs / rate): the peak must be
    the fastest shape's rate, and every shape's rate must be reported as injected."""
    import types

    import core.precision

    rates = {(16, 16): 40.0, (16, 64): 120.0, (64, 16): 80.0}  # GFLOP/s per (in, out); the middle one is fastest
    now = [0.0]

    def linear(x, weight, bias=None):
        fan_out, fan_in = weight.shape
        now[0] += 2.0 * x.shape[0] * fan_in * fan_out / (rates[(fan_in, fan_out)] * 1e9)
        return x

    monkeypatch.setattr(torch.nn.functional, "linear", linear)
    monkeypatch.setattr(core.precision, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    peak = measure_peak(list(rates), 64, torch.float32, torch.device("cpu"), seconds_per_shape=0.001)
    assert peak["by_shape"] == {"64x16 @ 16x16": 40.0, "64x16 @ 16x64": 120.0, "64x64 @ 64x16": 80.0}
    assert peak["gflops"] == pytest.approx(120.0, rel=1e-9)
    assert (peak["rows"], peak["dtype"]) == (64, "float32")


def test_benchmark_writes_every_reported_key(tiny_data, tiny_models, tmp_path):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["tasks"] = {"B": raw["tasks"]["B"], "C": raw["tasks"]["C"]}
    config = validate(raw, base_dir=tmp_path)
    sizes = {"minilm": Sizes(test_texts=None, per_text_texts=12, train_samples=32, accuracy=True, peak_seconds=0.05)}
    results = run_benchmark(config, ["minilm"], True, torch.device("cpu"), "fp32", log=lambda line: None,
                            run_dir=tmp_path, sizes=sizes)
    data = json.loads(json.dumps(jsonable(results)))
    r = data["minilm"]
    for key in ("speedup_vs_per_text", "utilization"):
        assert r["eval"][key] > 0
    assert r["eval"]["project"]["texts"] == 40 and r["eval"]["agreement"]["disagree_not_near_ties"] == 0
    assert r["eval"]["project"]["cold_first_pass_seconds"] is None  # no warm-up asked for
    # Trainer.predict, the second reference: the same 12 texts, each padded to the full length, same answers
    predict = r["eval"]["trainer_predict"]
    assert predict["texts"] == 12 and predict["batch_size"] == 8
    from transformers import AutoConfig
    padded = min(128, AutoConfig.from_pretrained(tiny_models["bert"]).max_position_embeddings)  # run_classification's
    assert predict["positions"] == 12 * padded > predict["tokens"]
    assert predict["tokens"] == r["eval"]["project_on_per_text_texts"]["tokens"]
    assert r["eval"]["agreement_with_trainer_predict"] == 1.0
    assert r["eval"]["speedup_vs_trainer_predict_with_tokenization"] > 0
    assert "Trainer.predict" in format_table(results, ["minilm"])
    for method in ("full", "lora"):
        t = r["train"][method]
        for key in ("speedup_vs_reference", "utilization", "accuracy", "reference_accuracy"):
            assert t[key] > 0, (method, key)
        assert t["project"]["samples"] == t["reference"]["samples"] == 32
        assert t["project"]["tokens"] == t["reference"]["tokens"]  # same texts, same real tokens
        assert t["reference"]["padding_share"] > t["project"]["padding_share"]
    assert r["peak_gflops"]["precision"] == "fp32" and r["peak_gflops"]["value"] > 0
    assert "train lora" in format_table(results, ["minilm"])


def test_command_line_writes_json(tiny_data, tiny_models, tmp_path, monkeypatch):
    import bench.run

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["tasks"] = {"B": raw["tasks"]["B"], "C": raw["tasks"]["C"]}
    config_path = write_config(tmp_path / "config.yaml", raw)
    # With a warm-up (as on GPUs): an untimed run per side first, then the timed one on the samples asked for.
    monkeypatch.setitem(bench.run.SIZES, "quick", {"minilm": Sizes(16, 8, 16, False, peak_seconds=0.05,
                                                                   warmup_samples=8)})
    out = tmp_path / "bench.json"
    assert bench_main(["--quick", "--models", "minilm", "--config", str(config_path), "--out", str(out),
                       "--device", "cpu"]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "quick" and data["minilm"]["train"]["full"]["accuracy"] is None
    assert data["minilm"]["train"]["lora"]["speedup_vs_reference"] > 0
    assert data["minilm"]["eval"]["project"]["cold_first_pass_seconds"] > 0
    for method in ("full", "lora"):
        project, reference = (data["minilm"]["train"][method][side] for side in ("project", "reference"))
        assert project["samples"] == reference["samples"] == 16 and project["tokens"] == reference["tokens"]


def test_amx_detection_falls_back_to_the_cpu_flags(monkeypatch):
    """torch 2.13 has no _is_amx_tile_supported: the AMX flag (information in bench machine records; `precision:
    auto` is decided by measurement, tests/test_precision.py) still comes from the CPU's flags."""
    import core.hardware as hardware

    monkeypatch.delattr(torch._C._cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    assert hardware.cpu_has_amx()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # this machine: no AMX
    assert not hardware.cpu_has_amx()
