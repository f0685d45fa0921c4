"""`precision: auto` decided by a timed probe (faked here both ways, and real under load), once per model,
cached unless the machine was busy, recorded, and part of the fingerprint."""
from __future__ import annotations

import json
import math

import pytest
import torch

import core.precision as precision
import main
from conftest import tiny_config, write_config
from core.config import validate
from core.precision import PROBE_TOKENS, Choice, Shapes, choose
from pipeline.plan import build_plan
from pipeline.precision import resolve_all
from pipeline.run_state import blocked_message, decide, fingerprint, identity

pytestmark = pytest.mark.usefixtures("one_thread", "quiet_machine")  # tiny models: threads only contend

CPU = torch.device("cpu")
SHAPES = Shapes(tokens=512, hidden=384, intermediate=1536)


class FakeProbe:
    """Rates in GFLOP/s and their ratio as a timing function would return them; counts its calls."""

    def __init__(self, fp32: float, bf16: float):
        self.rates, self.calls = {"fp32": fp32, "bf16": bf16, "bf16_speedup": bf16 / fp32}, []

    def __call__(self, device, shapes):
        self.calls.append(shapes)
        return dict(self.rates)


@pytest.fixture(autouse=True)
def new_process():
    """Each test starts as a new process would: no decision made yet (core/precision.py keeps them per process)."""
    precision._DECIDED.clear()
    yield
    precision._DECIDED.clear()


@pytest.fixture
def quiet_machine(monkeypatch):
    """A load average below the core count, whatever the machine is doing: the probe's result is cached."""
    monkeypatch.setattr(precision, "_load_average", lambda: 0.0)


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
    precision._DECIDED.clear()  # a later invocation
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
    precision._DECIDED.clear()  # another process, with another thread count
    try:
        other_threads = FakeProbe(200.0, 100.0)
        assert choose("auto", CPU, SHAPES, cache, other_threads).source == "measured"
        assert len(other_threads.calls) == 1
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads(cache.read_text())) == 3
    precision._DECIDED.clear()
    assert choose("auto", CPU, SHAPES, cache, never).precision == "bf16"  # the first entry is still there


def test_a_damaged_cache_is_measured_again_and_rewritten(tmp_path):
    cache = tmp_path / "precision.json"
    cache.write_text("{not json")
    probe = FakeProbe(200.0, 100.0)
    assert choose("auto", CPU, SHAPES, cache, probe).source == "measured" and len(probe.calls) == 1
    precision._DECIDED.clear()
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
        "bf16_speedup": 10.0 if setting == "fp32" else 0.1, "torch": torch.__version__,
        "measured_at": "x"}}))  # the cache says the opposite
    choice = choose(setting, CPU, SHAPES, cache, never)
    assert choice.precision == setting and choice.source == "explicit" and choice.gflops == {}


def test_the_real_probe_times_both_precisions_on_tiny_shapes():
    shapes = Shapes(tokens=16, hidden=8, intermediate=16)
    rates = precision.probe_rates(CPU, shapes, rounds=3, seconds_per_turn=0.002)
    assert set(rates) == {"fp32", "bf16", "bf16_speedup"}  # fp16 only on CUDA
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


def test_the_probe_decides_by_the_median_of_per_round_ratios(monkeypatch):
    """Faked clock and a recording F.linear: the precisions take turns AB, BA, AB, ... and the decision is the
    median of each round's fp32/bf16 time ratio, so one round under a burst of load (round 2: fp32 slowed 10x)
    moves neither it nor the per-precision rates (medians too)."""
    f, b = torch.float32, torch.bfloat16
    seconds = {f: 0.004, b: 0.002}  # per F.linear call: bf16 2x faster
    calls, groups, clock = [], [], {"now": 0.0, "last": 0}
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, weight, bias: calls.append(x.dtype))

    def perf_counter():  # a timed group lasts its calls x seconds of its dtype; the 6th fp32 group 10x longer
        new = len(calls) - clock["last"]
        if new:
            groups.append(calls[-1])
            slow = 10.0 if groups.count(f) == 6 and calls[-1] == f else 1.0
            clock["now"] += new * seconds[calls[-1]] * slow
        clock["last"] = len(calls)
        return clock["now"]

    monkeypatch.setattr(precision.time, "perf_counter", perf_counter)
    shapes = Shapes(tokens=16, hidden=4, intermediate=8)  # three linears a pass: fp32 12 ms, bf16 6 ms
    rates = precision.probe_rates(CPU, shapes, rounds=5, seconds_per_turn=0.02)
    assert groups[:6] == [f, f, f, b, b, b]  # warm-ups
    assert groups[6:] == [f, b, b, f, f, b, b, f, f, b]  # round 2 (the 6th fp32 group) is the slow one
    assert rates["bf16_speedup"] == pytest.approx(2.0)  # ratios 2, 2, 20, 2, 2: their mean would be 5.6
    flops = 2 * 16 * (4 * 4 + 4 * 8 + 8 * 4)
    assert rates["fp32"] == pytest.approx(flops / 0.012 / 1e9) and rates["bf16"] == pytest.approx(flops / 0.006 / 1e9)


# ----------------------------------------------------------------------------------------------
# One decision per model and device for the whole plan


def _config(tiny_data, tiny_models, tmp_path, **training):
    return validate(tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out",
                                training={"epochs": 1, "batch_size": 16, "eval_batch_size": 32,
                                          "precision": "auto", **training},
                                tasks={"A0": {"method": "tfidf_nb"}, "A": {"method": "pretrained"},
                                       "B": {"method": "full", "variants": ["v1"]},
                                       "C": {"method": "lora", "variants": ["v1"], "training": {"batch_size": 4}}}))


def test_every_run_of_a_model_shares_one_probe_whatever_its_batch(tiny_data, tiny_models, tmp_path):
    config = _config(tiny_data, tiny_models, tmp_path)
    probe = FakeProbe(200.0, 440.0)
    choices = resolve_all(config, build_plan(config), CPU, probe)
    assert choices["A0"] is None  # TF-IDF: no model, no precision
    # the tiny BERT: hidden 32, intermediate 64; A1 evaluates in batches of 32, B1_v1 trains in 16, C1_v1 in 4
    assert probe.calls == [Shapes(1024, 32, 64)]
    assert {choices[run].precision for run in ("A1", "B1_v1", "C1_v1")} == {"bf16"}
    assert {choices[run].source for run in ("A1", "B1_v1", "C1_v1")} == {"measured"}
    stored = json.loads((tmp_path / "out" / "precision.json").read_text())  # next to dataset.cache_dir
    assert len(stored) == 1 and "1024 tokens" in next(iter(stored))
    precision._DECIDED.clear()  # a later invocation with other batch sizes: the same entry answers
    other = _config(tiny_data, tiny_models, tmp_path, batch_size=64, eval_batch_size=8)
    assert {c.source for c in resolve_all(other, build_plan(other), CPU, never).values() if c} == {"cached"}


def test_a_decision_holds_for_the_whole_process(tiny_data, tiny_models, tmp_path):
    """Another process replacing the cached entry (--reprobe) or a changed thread count does not change the
    precision of the rest of this process's plan."""
    config = _config(tiny_data, tiny_models, tmp_path)
    runs = build_plan(config)
    first = resolve_all(config, runs, CPU, FakeProbe(200.0, 440.0))
    cache = tmp_path / "out" / "precision.json"
    cache.write_text(json.dumps({key: {**entry, "bf16_speedup": 0.5} for key, entry in
                                 json.loads(cache.read_text()).items()}))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        again = resolve_all(config, runs, CPU, never)
    finally:
        torch.set_num_threads(threads)
    assert again["B1_v1"].precision == first["B1_v1"].precision == "bf16"


def test_a_busy_machine_says_so_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "_load_average", lambda: 5.5)
    monkeypatch.setattr(precision.os, "cpu_count", lambda: 2)
    said = []
    cache = tmp_path / "precision.json"
    choice = choose("auto", CPU, SHAPES, cache, FakeProbe(200.0, 440.0), warn=said.append)
    assert choice.precision == "bf16" and choice.load_average == 5.5 and choice.cores == 2
    assert said == ["precision: the 1-minute load average was 5.5 on 2 cores while bf16 measured 2.20x fp32"
                    " (hidden 384): used by this process, not cached"]
    assert not cache.exists()
    assert choose("auto", CPU, SHAPES, cache, never).precision == "bf16"  # this process keeps it
    precision._DECIDED.clear()  # the next invocation measures again, on a quiet machine: cached
    monkeypatch.setattr(precision, "_load_average", lambda: 1.5)
    assert choose("auto", CPU, SHAPES, cache, FakeProbe(200.0, 440.0), warn=said.append).source == "measured"
    assert len(said) == 1 and len(json.loads(cache.read_text())) == 1


def test_the_fingerprint_follows_precision_and_device_not_the_invocation(tiny_data, tiny_models, tmp_path):
    config = _config(tiny_data, tiny_models, tmp_path)
    runs = build_plan(config)
    first = resolve_all(config, runs, CPU, FakeProbe(200.0, 440.0))
    precision._DECIDED.clear()
    second = resolve_all(config, runs, CPU, never)  # a second invocation: the cache answers
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
    """A1 (inference only: seconds) through main.py: the dry run measures but writes nothing; the run measures,
    caches and records it; the next invocation is skipped (cache hit, same fingerprint); when the cached decision
    changes, the run is no longer 'the same': its complete results are kept and reported (exit 2) until --force
    replaces them. summary.csv and report.md show each run's precision."""
    import pandas as pd

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}})
    raw["training"]["precision"] = "auto"
    path = write_config(tmp_path / "config.yaml", raw)
    probe = FakeProbe(200.0, 440.0)
    monkeypatch.setattr(precision, "probe_rates", probe)

    assert main.main(["--config", str(path), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("A1 ") and "precision=bf16 (auto, measured: bf16 2.20x fp32, 440 vs 200 GFLOP/s" in line
    assert line.endswith("[run]") and len(probe.calls) == 1
    assert not (tmp_path / "out").exists()  # a dry run writes nothing, the precision cache included

    precision._DECIDED.clear()  # each main.main below stands for a new invocation
    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert len(probe.calls) == 2
    record = _metrics(tmp_path / "out" / "A1")
    assert record["precision"] == "bf16"
    assert record["precision_choice"]["source"] == "measured" and record["precision_choice"]["setting"] == "auto"
    assert record["precision_choice"]["gflops"] == {"fp32": 200.0, "bf16": 440.0}
    assert record["precision_choice"]["device_type"] == "cpu"
    environment = record["environment"]
    assert environment["threads"] == torch.get_num_threads() == 1  # one_thread: never raised
    assert environment["interop_threads"] == torch.get_num_interop_threads()
    assert environment["device_model"] == environment["cpu_model"] and environment["cpu_model"]
    assert pd.read_csv(tmp_path / "out" / "summary.csv").set_index("run_id").at["A1", "precision"] == "bf16"
    assert "| A1 | A | pretrained | bert | - | bf16 |" in (tmp_path / "out" / "report.md").read_text()
    capsys.readouterr()

    precision._DECIDED.clear()
    monkeypatch.setattr(precision, "probe_rates", never)
    assert main.main(["--config", str(path)]) == 0  # same machine, same settings: skipped
    assert "A1  skipped" in capsys.readouterr().out

    cache = tmp_path / "out" / "precision.json"
    stored = json.loads(cache.read_text())
    for entry in stored.values():
        entry["gflops"]["bf16"], entry["bf16_speedup"] = 100.0, 0.5  # the same machine, measured slower this time
    cache.write_text(json.dumps(stored))
    precision._DECIDED.clear()
    assert main.main(["--config", str(path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("error: A1: hardware.precision changed (bf16 -> fp32); pass --force to"
                                               " replace, or use another output_dir")
    assert _metrics(tmp_path / "out" / "A1")["precision"] == "bf16"  # kept
    assert main.main(["--config", str(path), "--quiet", "--force"]) == 0
    assert "A1  running" in capsys.readouterr().out
    record = _metrics(tmp_path / "out" / "A1")
    assert record["precision"] == "fp32" and record["precision_choice"]["bf16_speedup"] == 0.5
    assert record["precision_choice"]["source"] == "cached"
    assert pd.read_csv(tmp_path / "out" / "summary.csv").set_index("run_id").at["A1", "precision"] == "fp32"


def test_reprobe_measures_again_and_replaces_the_cached_entry(tiny_data, tiny_models, tmp_path, monkeypatch,
                                                               capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}})
    raw["training"]["precision"] = "auto"
    path = str(write_config(tmp_path / "config.yaml", raw))
    cache = tmp_path / "out" / "precision.json"
    monkeypatch.setattr(precision, "probe_rates", FakeProbe(200.0, 100.0))
    assert main.main(["--config", path, "--quiet"]) == 0
    assert _metrics(tmp_path / "out" / "A1")["precision"] == "fp32"
    before = cache.read_text()
    capsys.readouterr()

    precision._DECIDED.clear()
    faster = FakeProbe(200.0, 440.0)
    monkeypatch.setattr(precision, "probe_rates", faster)
    assert main.main(["--config", path, "--dry-run", "--reprobe"]) == 2  # measured, shown, not cached; the
    out, err = capsys.readouterr()  # complete fp32 run would be replaced, so the dry run says it is blocked
    assert "precision=bf16 (auto, measured: bf16 2.20x fp32" in out and "[blocked: settings changed" in out
    assert err.strip().splitlines()[-1] == "error: A1: hardware.precision changed (fp32 -> bf16); pass --force to" \
                                           " replace, or use another output_dir"
    assert len(faster.calls) == 1 and cache.read_text() == before

    precision._DECIDED.clear()
    assert main.main(["--config", path, "--quiet", "--reprobe", "--force"]) == 0
    assert "A1  running" in capsys.readouterr().out and len(faster.calls) == 2
    record = _metrics(tmp_path / "out" / "A1")
    assert record["precision"] == "bf16" and record["precision_choice"]["source"] == "measured"
    stored = json.loads(cache.read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["bf16_speedup"] == 2.2  # replaced, not added


def test_dry_run_shows_an_explicit_precision(tiny_data, tiny_models, tmp_path, monkeypatch, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}})
    monkeypatch.setattr(precision, "probe_rates", never)
    assert main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--dry-run"]) == 0
    assert "precision=fp32 (explicit)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()  # nothing probed, nothing written


def test_the_probe_command_writes_one_probe_per_model(tiny_data, tiny_models, tmp_path, monkeypatch):
    """bench/precision_probe.py: one entry per model, naming its runs; the project's cache untouched."""
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
    # eval batch 32 (A1), training batch 16 (B1_v1), training batch 4 (C1_v1): one model, one probe
    assert [entry["runs"] for entry in data["probes"].values()] == [["A1", "B1_v1", "C1_v1"]]
    assert probe.calls == [Shapes(PROBE_TOKENS, 32, 64)]
    assert all(entry["precision"] == "bf16" and entry["bf16_speedup"] == 1.5 for entry in data["probes"].values())
    assert data["threads"] == torch.get_num_threads() and data["torch"] == torch.__version__
    assert not (tmp_path / "out").exists()  # measured afresh in a scratch cache


def test_shapes_read_each_architectures_own_names(tiny_models):
    """BERT/RoBERTa name them hidden_size / intermediate_size, DistilBERT dim / hidden_dim."""
    from transformers import AutoConfig

    for kind in ("bert", "distilbert", "roberta"):
        assert Shapes.of(AutoConfig.from_pretrained(tiny_models[kind]), 10) == Shapes(10, 32, 64), kind


def test_four_busy_loops_beside_the_probe_do_not_change_its_decision():
    """The real probe at MiniLM's shapes on this machine's CPU (the 2-core AMD EPYC, where bf16 runs ~2.1x fp32;
    written for a CPU whose ratio is well away from the 1.2x threshold), decided as the machine is, then with four
    busy-loop processes beside it, then with four that start halfway through the probe. Not vacuous: five
    processes wanting a core each on fewer cores must share them, and the loops' CPU time during the probe (at
    least the probe's own) shows they ran while it measured."""
    import subprocess
    import sys
    import threading
    import time

    import psutil

    if psutil.cpu_count() >= 5:
        pytest.skip("four busy loops and the probe only contend on fewer than five cores")
    torch.set_num_threads(psutil.cpu_count())  # as a run has them (one_thread restores the test's)
    shapes = Shapes(PROBE_TOKENS, 384, 1536)
    started = time.perf_counter()
    quiet = choose("auto", CPU, shapes, None)
    quiet_seconds = time.perf_counter() - started
    decisions = {}
    for arriving in (False, True):  # loops running from the start, or from halfway through
        busy = []

        def spin():
            busy.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4))

        starter = threading.Timer(quiet_seconds / 2 if arriving else 0.0, spin)
        starter.start()
        try:
            if not arriving:
                starter.join()
            own = psutil.Process().cpu_times().user
            precision._DECIDED.clear()
            decisions[arriving] = choose("auto", CPU, shapes, None)
            own = psutil.Process().cpu_times().user - own
            starter.join()
            assert len(busy) == 4 and all(process.poll() is None for process in busy)
            spun = sum(psutil.Process(process.pid).cpu_times().user for process in busy)
        finally:
            starter.cancel()
            starter.join()
            for process in busy:
                process.kill()
                process.wait()
        assert spun >= (own / 2 if arriving else own), \
            f"the busy loops ran {spun:.1f} CPU seconds while the probe ran {own:.1f}"
    for loaded in decisions.values():
        assert loaded.precision == quiet.precision, (loaded.bf16_speedup, quiet.bf16_speedup)
        assert abs(math.log(loaded.bf16_speedup / quiet.bf16_speedup)) < math.log(1.25), \
            (loaded.bf16_speedup, quiet.bf16_speedup)
