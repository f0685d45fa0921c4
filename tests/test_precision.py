"""`precision: auto` decided by a timed probe (faked here both ways), cached, recorded, and part of the fingerprint."""
from __future__ import annotations

import json
import math

import pytest
import torch

import core.precision as precision
import main
from conftest import tiny_config, write_config
from core.config import validate
from core.precision import Choice, Shapes, choose
from pipeline.plan import build_plan
from pipeline.precision import resolve_all
from pipeline.run_state import blocked_message, decide, fingerprint, identity

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend

CPU = torch.device("cpu")
SHAPES = Shapes(tokens=512, hidden=384, intermediate=1536)


class FakeProbe:
    """Rates in GFLOP/s as a timing function would return them; counts its calls."""

    def __init__(self, fp32: float, bf16: float):
        self.rates, self.calls = {"fp32": fp32, "bf16": bf16}, []

    def __call__(self, device, shapes):
        self.calls.append(shapes)
        return dict(self.rates)


def never(device, shapes):
    raise AssertionError("the probe ran although it should not have")


@pytest.mark.parametrize("fp32, bf16, expected", [
    (200.0, 440.0, "bf16"),  # 2.2x: the AMD EPYC of issue 13
    (200.0, 240.0, "bf16"),  # exactly 1.2x: kept
    (200.0, 230.0, "fp32"),  # 1.15x: not worth bf16
    (320.0, 170.0, "fp32"),  # 0.53x: the Xeon without AMX
])
def test_auto_keeps_bf16_only_where_it_is_at_least_1_2x_faster(tmp_path, fp32, bf16, expected):
    probe = FakeProbe(fp32, bf16)
    choice = choose("auto", CPU, SHAPES, tmp_path / "precision.json", probe)
    assert choice.precision == expected and choice.bf16 == (expected == "bf16")
    assert probe.calls == [SHAPES] and choice.source == "measured" and choice.setting == "auto"
    assert choice.gflops == {"fp32": fp32, "bf16": bf16}
    assert choice.bf16_speedup == pytest.approx(bf16 / fp32, abs=1e-3)


def test_the_cache_answers_later_runs_without_a_probe(tmp_path):
    cache = tmp_path / "precision.json"
    first = choose("auto", CPU, SHAPES, cache, FakeProbe(200.0, 440.0))
    stored = json.loads(cache.read_text())
    assert len(stored) == 1
    (key, entry), = stored.items()
    assert "384" in key and "1536" in key and torch.__version__ in key and f"{torch.get_num_threads()} threads" in key
    assert entry["gflops"] == {"fp32": 200.0, "bf16": 440.0} and entry["torch"] == torch.__version__
    again = choose("auto", CPU, SHAPES, cache, never)
    assert again.source == "cached" and again.precision == first.precision == "bf16"
    assert again.gflops == first.gflops and again.measured_at == first.measured_at


def test_the_cache_is_per_shape_and_thread_count(tmp_path):
    cache = tmp_path / "precision.json"
    choose("auto", CPU, SHAPES, cache, FakeProbe(200.0, 440.0))
    other_shape = FakeProbe(200.0, 100.0)
    assert choose("auto", CPU, Shapes(64, 384, 1536), cache, other_shape).precision == "fp32"
    assert len(other_shape.calls) == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        other_threads = FakeProbe(200.0, 100.0)
        assert choose("auto", CPU, SHAPES, cache, other_threads).source == "measured"
        assert len(other_threads.calls) == 1
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads(cache.read_text())) == 3
    assert choose("auto", CPU, SHAPES, cache, never).precision == "bf16"  # the first entry is still there


def test_a_damaged_cache_is_measured_again_and_rewritten(tmp_path):
    cache = tmp_path / "precision.json"
    cache.write_text("{not json")
    probe = FakeProbe(200.0, 100.0)
    assert choose("auto", CPU, SHAPES, cache, probe).source == "measured" and len(probe.calls) == 1
    assert choose("auto", CPU, SHAPES, cache, never).source == "cached"


def test_an_unwritable_cache_only_costs_a_probe(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    choice = choose("auto", CPU, SHAPES, blocker / "precision.json", FakeProbe(200.0, 100.0))  # parent is a file
    assert choice.precision == "fp32" and choice.source == "measured"


@pytest.mark.parametrize("setting", ["bf16", "fp32"])
def test_an_explicit_precision_wins_and_is_never_probed(tmp_path, setting):
    cache = tmp_path / "precision.json"
    cache.write_text(json.dumps({precision.cache_key(CPU, SHAPES): {
        "gflops": {"fp32": 100.0, "bf16": 1000.0 if setting == "fp32" else 10.0}, "shapes": {}, "threads": 1,
        "torch": torch.__version__, "measured_at": "x"}}))  # the cache says the opposite
    choice = choose(setting, CPU, SHAPES, cache, never)
    assert choice.precision == setting and choice.source == "explicit" and choice.gflops == {}


def test_the_real_probe_times_both_precisions_on_tiny_shapes():
    shapes = Shapes(tokens=16, hidden=8, intermediate=16)
    rates = precision.probe_rates(CPU, shapes, seconds_per_shape=0.005)
    assert set(rates) == {"fp32", "bf16"}  # fp16 only on CUDA
    assert all(rate > 0 for rate in rates.values())


def test_measure_peak_overall_rate_is_total_flops_over_total_time(monkeypatch):
    """Two shapes on a faked clock (1 ms, then 3 ms): the per-shape rates and the pooled rate, recomputed here."""
    ticks = iter([0.0, 1e-3, 1e-3, 4e-3])
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(ticks))
    result = precision.measure_peak([(64, 128), (128, 256)], 1024, torch.float32, CPU, seconds_per_shape=0.0005)
    small, large = 2 * 1024 * 64 * 128, 2 * 1024 * 128 * 256  # 16.8 and 67.1 MFLOP
    assert result["by_shape"] == {"1024x64 @ 64x128": round(small / 1e-3 / 1e9, 1),
                                  "1024x128 @ 128x256": round(large / 3e-3 / 1e9, 1)}
    assert result["gflops"] == pytest.approx(large / 3e-3 / 1e9)
    assert result["overall_gflops"] == pytest.approx((small + large) / 4e-3 / 1e9)


def test_the_precisions_take_turns_so_a_changing_load_slows_both_alike(monkeypatch):
    """Faked clock (10 ms a group) and a recording F.linear: per shape, fp32 and bf16 groups alternate."""
    ticks = iter(i * 0.01 for i in range(10_000))
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(ticks))
    calls = []
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, weight, bias: calls.append(x.dtype))
    best = precision.time_linears([(4, 8)], 16, {"fp32": torch.float32, "bf16": torch.bfloat16}, CPU, 0.025)
    turns = [dtype for i, dtype in enumerate(calls) if i == 0 or calls[i - 1] != dtype]
    assert turns == [torch.float32, torch.bfloat16] * 4  # warm-ups, then three timed groups each, in turns
    assert set(best) == {"fp32", "bf16"} and all(len(shapes) == 1 for shapes in best.values())


# ----------------------------------------------------------------------------------------------
# Resolved per run, at the run's own shapes


def _config(tiny_data, tiny_models, tmp_path, **training):
    return validate(tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out",
                                training={"epochs": 1, "batch_size": 16, "eval_batch_size": 32,
                                          "precision": "auto", **training},
                                tasks={"A0": {"method": "tfidf_nb"}, "A": {"method": "pretrained"},
                                       "B": {"method": "full", "variants": ["v1"]}}))


def test_each_run_is_probed_at_its_batch_times_the_typical_length(tiny_data, tiny_models, tmp_path):
    from transformers import AutoTokenizer

    from dataset import load_splits

    config = _config(tiny_data, tiny_models, tmp_path)
    splits = load_splits(config.dataset)
    probe = FakeProbe(200.0, 100.0)
    choices = resolve_all(config, build_plan(config), CPU, splits, probe)
    assert choices["A0"] is None  # TF-IDF: no model, no precision
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["bert"]))
    lengths = [len(tokenizer(text, truncation=True, max_length=48)["input_ids"]) for text in splits.train["text"]]
    length = math.ceil(sum(lengths) / len(lengths) / 8) * 8  # all 100 training texts (< 256), pad_to_multiple_of 8
    # the tiny BERT: hidden 32, intermediate 64; A1 is evaluated in batches of 32, B1_v1 trains in batches of 16
    assert sorted(probe.calls, key=lambda s: s.tokens) == [Shapes(16 * length, 32, 64), Shapes(32 * length, 32, 64)]
    assert choices["A1"].shapes == {"tokens": 32 * length, "hidden": 32, "intermediate": 64}
    assert (tmp_path / "out" / "precision.json").is_file()  # next to dataset.cache_dir (out/.cache)


def test_the_fingerprint_follows_precision_and_device_not_the_invocation(tiny_data, tiny_models, tmp_path):
    from dataset import load_splits

    config = _config(tiny_data, tiny_models, tmp_path)
    splits = load_splits(config.dataset)
    runs = build_plan(config)
    first = resolve_all(config, runs, CPU, splits, FakeProbe(200.0, 440.0))
    second = resolve_all(config, runs, CPU, splits, never)  # a second invocation: the cache answers
    run = runs[2]
    assert run.run_id == "B1_v1" and first[run.run_id].bf16 and second[run.run_id].source == "cached"
    assert fingerprint(run, config, first[run.run_id]) == fingerprint(run, config, second[run.run_id])
    as_fp32 = Choice("fp32", "auto", "measured", "cpu", "some CPU")
    as_bf16 = Choice("bf16", "auto", "measured", "cpu", "some CPU")
    on_gpu = Choice("bf16", "auto", "measured", "cuda", "some GPU")
    prints = {fingerprint(run, config, c) for c in (as_fp32, as_bf16, on_gpu)}
    assert len(prints) == 3
    assert fingerprint(run, config, as_bf16) == fingerprint(run, config, second[run.run_id])
    assert fingerprint(runs[0], config, None) == fingerprint(runs[0], config, None)  # TF-IDF: no hardware
    folder = tmp_path / "out" / run.run_id  # a complete run, finished under the first invocation's choice
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"run_id": run.run_id, "status": "complete",
                                                     "fingerprint": fingerprint(run, config, first[run.run_id]),
                                                     "identity": identity(run, config, first[run.run_id])}))
    assert decide(run, config, second[run.run_id]) == "skip"
    assert decide(run, config, as_fp32) == decide(run, config, on_gpu) == "blocked"  # kept, not silently redone
    assert blocked_message(run, config, as_fp32) == ("B1_v1: hardware.precision changed (bf16 -> fp32); pass --force"
                                                     " to replace, or use another output_dir")


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_metrics_record_the_choice_and_a_changed_choice_blocks_until_forced(tiny_data, tiny_models, tmp_path,
                                                                            monkeypatch, capsys):
    """A1 (inference only: seconds) through main.py: probed once, recorded, skipped on the second invocation
    (cache hit, same fingerprint); when the cached decision changes, the run is no longer 'the same': its complete
    results are kept and reported (exit 2) until --force replaces them."""
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}})
    raw["training"]["precision"] = "auto"
    path = write_config(tmp_path / "config.yaml", raw)
    probe = FakeProbe(200.0, 440.0)
    monkeypatch.setattr(precision, "probe_rates", probe)

    assert main.main(["--config", str(path), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("A1 ") and "precision=bf16 (auto, measured: bf16 2.20x fp32, 440 vs 200 GFLOP/s" in line
    assert line.endswith("[run]") and len(probe.calls) == 1

    monkeypatch.setattr(precision, "probe_rates", never)
    assert main.main(["--config", str(path), "--quiet"]) == 0
    record = _metrics(tmp_path / "out" / "A1")
    assert record["precision"] == "bf16"
    assert record["precision_choice"]["source"] == "cached" and record["precision_choice"]["setting"] == "auto"
    assert record["precision_choice"]["gflops"] == {"fp32": 200.0, "bf16": 440.0}
    assert record["precision_choice"]["device_type"] == "cpu"
    environment = record["environment"]
    assert environment["threads"] == torch.get_num_threads() == 1  # one_thread
    assert environment["interop_threads"] == torch.get_num_interop_threads()
    assert environment["device_model"] == environment["cpu_model"] and environment["cpu_model"]
    capsys.readouterr()

    assert main.main(["--config", str(path)]) == 0  # same machine, same settings: skipped
    assert "A1  skipped" in capsys.readouterr().out

    cache = tmp_path / "out" / "precision.json"
    stored = json.loads(cache.read_text())
    for entry in stored.values():
        entry["gflops"]["bf16"] = 100.0  # the same machine, measured slower this time
    cache.write_text(json.dumps(stored))
    assert main.main(["--config", str(path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("error: A1: hardware.precision changed (bf16 -> fp32); pass --force to"
                                               " replace, or use another output_dir")
    assert _metrics(tmp_path / "out" / "A1")["precision"] == "bf16"  # kept
    assert main.main(["--config", str(path), "--quiet", "--force"]) == 0
    assert "A1  running" in capsys.readouterr().out
    record = _metrics(tmp_path / "out" / "A1")
    assert record["precision"] == "fp32" and record["precision_choice"]["bf16_speedup"] == 0.5


def test_dry_run_shows_an_explicit_precision(tiny_data, tiny_models, tmp_path, monkeypatch, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}})
    monkeypatch.setattr(precision, "probe_rates", never)
    assert main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--dry-run"]) == 0
    assert "precision=fp32 (explicit)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()  # nothing probed, nothing written


def test_the_probe_command_writes_every_distinct_shape(tiny_data, tiny_models, tmp_path, monkeypatch):
    """bench/precision_probe.py: one entry per distinct probe shape, naming its runs; the project's cache untouched."""
    from bench.precision_probe import main as probe_main

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out",
                      tasks={"A": {"method": "pretrained"}, "B": {"method": "full", "variants": ["v1"]},
                             "C": {"method": "lora", "variants": ["v1"], "training": {"batch_size": 4}}})
    raw["training"]["precision"] = "auto"
    probe = FakeProbe(100.0, 150.0)
    monkeypatch.setattr(precision, "probe_rates", probe)
    out = tmp_path / "probe.json"
    assert probe_main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    # eval batch 32 (A1), training batch 16 (B1_v1), training batch 4 (C1_v1): three shapes, three probes
    assert sorted(entry["runs"] for entry in data["probes"].values()) == [["A1"], ["B1_v1"], ["C1_v1"]]
    assert len(probe.calls) == 3 and len({shapes.tokens for shapes in probe.calls}) == 3
    assert all(entry["precision"] == "bf16" and entry["bf16_speedup"] == 1.5 for entry in data["probes"].values())
    assert data["threads"] == torch.get_num_threads() and data["torch"] == torch.__version__
    assert not (tmp_path / "out").exists()  # measured afresh in a scratch cache


def test_shapes_read_each_architectures_own_names(tiny_models):
    """BERT/RoBERTa name them hidden_size / intermediate_size, DistilBERT dim / hidden_dim."""
    from transformers import AutoConfig

    for kind in ("bert", "distilbert", "roberta"):
        assert Shapes.of(AutoConfig.from_pretrained(tiny_models[kind]), 10) == Shapes(10, 32, 64), kind
