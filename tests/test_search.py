"""`search:` blocks: settings searched on validation (Optuna), never on test; resume, pruning, validation,
the dry run and the report."""
from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
import optuna
import pandas as pd
import pytest

import main
from conftest import tiny_config, write_config
from core.config import ConfigError, search_dimensions, validate
from dataset import read_split_csv

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend

SPACE = {"training.learning_rate": {"low": "1e-2", "high": "5e-2", "log": True}, "training.batch_size": [8, 16]}
COLUMNS = ["trial", "training.learning_rate", "training.batch_size", "validation_accuracy", "state"]


def _searched_config(data, model, output, n_trials=2, epochs=1, seeds=None, baseline=False, **search):
    tasks = {"A0": {"method": "tfidf_nb"}} if baseline else {}
    tasks["B"] = {"method": "full", "variants": ["v1"], "search": {"n_trials": n_trials, "space": SPACE, **search}}
    raw = tiny_config(data, [model], output, tasks=tasks)
    raw["training"]["epochs"] = epochs
    if seeds:
        raw["seeds"] = seeds
    return raw


def _main(tmp_path, raw, *extra, name="config.yaml") -> int:
    return main.main(["--config", str(write_config(tmp_path / name, raw)), "--quiet", *extra])


def _study(output, base="B1_v1"):
    return _study_at(output / "search" / base / "study.journal")


def _study_at(path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="search", storage=JournalStorage(JournalFileBackend(str(path))))


def test_shuffled_test_labels_change_nothing_the_search_sees(tiny_data, tiny_models, tmp_path):
    """The search reads no test label: with the test labels shuffled, the same trials and the same choice."""
    shuffled = tmp_path / "shuffled"
    shutil.copytree(tiny_data, shuffled)
    test = pd.read_csv(tiny_data / "test.csv", header=None)
    test[0] = np.random.default_rng(0).permutation(test[0].to_numpy())
    test.to_csv(shuffled / "test.csv", header=False, index=False)
    original_labels = read_split_csv(tiny_data / "test.csv", 4)["label"]
    assert (read_split_csv(shuffled / "test.csv", 4)["label"] != original_labels).sum() > 10

    outputs = {}
    for name, data in (("original", tiny_data), ("shuffled", shuffled)):
        outputs[name] = tmp_path / f"out-{name}"
        raw = _searched_config(data, tiny_models["bert"], outputs[name], n_trials=3, epochs=3)  # the tiny model learns
        assert _main(tmp_path, raw, name=f"{name}.yaml") == 0

    csvs = [(out / "search" / "B1_v1" / "search.csv").read_text() for out in outputs.values()]
    assert csvs[0] == csvs[1]
    trials = pd.read_csv(outputs["original"] / "search" / "B1_v1" / "search.csv")
    assert list(trials.columns) == COLUMNS and trials["trial"].tolist() == [0, 1, 2]
    assert trials["state"].isin(["COMPLETE", "PRUNED"]).all() and trials["validation_accuracy"].between(0, 1).all()
    assert trials["validation_accuracy"].nunique() > 1  # the trials differ: a search that read test would show it
    assert trials["training.learning_rate"].between(1e-2, 5e-2).all() and trials["training.batch_size"].isin([8, 16]).all()

    records = [json.loads((out / "B1_v1" / "metrics.json").read_text()) for out in outputs.values()]
    assert records[0]["search"]["params"] == records[1]["search"]["params"]
    assert records[0]["config"]["training"] == records[1]["config"]["training"]
    # The chosen settings are the best row of search.csv, and they are what the run trained with.
    complete = trials[trials["state"] == "COMPLETE"]
    best = complete.loc[complete["validation_accuracy"].idxmax()]
    record = records[0]
    assert record["search"]["best_trial"] == best["trial"]
    assert record["config"]["training"]["learning_rate"] == best["training.learning_rate"]
    assert record["config"]["training"]["batch_size"] == best["training.batch_size"]
    assert record["config"]["search"] == record["search"]  # in the fingerprinted settings
    # The run retrains the best trial's settings with the same seed: its validation accuracy is the trial's.
    epochs = pd.read_csv(outputs["original"] / "B1_v1" / "epochs.csv")
    assert epochs["validation_accuracy"].max() == pytest.approx(best["validation_accuracy"])
    assert (outputs["original"] / "B1_v1" / "search.csv").read_text() == csvs[0]
    # Both runs predicted alike; only the test labels they are scored against differ.
    predictions = [pd.read_csv(out / "B1_v1" / "predictions.csv") for out in outputs.values()]
    assert predictions[0]["predicted"].tolist() == predictions[1]["predicted"].tolist()
    assert predictions[0]["label"].tolist() != predictions[1]["label"].tolist()
    report = (outputs["original"] / "report.md").read_text()
    assert "## Searches" in report and f"trial {int(best['trial'])}, validation accuracy" in report


def test_an_interrupted_search_resumes_and_runs_only_the_missing_trials(tiny_data, tiny_models, tmp_path, capsys):
    output = tmp_path / "out"
    raw = _searched_config(tiny_data, tiny_models["bert"], output, seeds=[42, 43])
    assert _main(tmp_path, raw) == 0
    first = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert first["trial"].tolist() == [0, 1]
    assert capsys.readouterr().out.count("searching 2 of 2 trials") == 1  # once for both seeds
    params = [json.loads((output / f"B1_v1_s{seed}" / "metrics.json").read_text())["search"]["params"]
              for seed in (42, 43)]
    assert params[0] == params[1]

    # A process killed mid-trial leaves it running in the journal: it is not counted, and is redone.
    _study(output).ask()
    raw["tasks"]["B"]["search"]["n_trials"] = 3
    assert _main(tmp_path, raw) == 0
    out = capsys.readouterr().out
    assert out.count("searching 1 of 3 trials") == 1 and out.count(" B1_v1 trial ") == 1
    states = {t.number: t.state.name for t in _study(output).trials}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "FAIL", 3: "COMPLETE"}
    second = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert second["trial"].tolist() == [0, 1, 3]
    pd.testing.assert_frame_equal(second.iloc[:2], first)  # the finished trials were kept, not rerun

    # The dry run shows the finished search and that nothing is left to do.
    capsys.readouterr()
    assert main.main(["--config", str(tmp_path / "config.yaml"), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("B1_v1")]
    best = second.loc[second["validation_accuracy"].idxmax()]
    assert len(lines) == 2 and all(f"search=done: best trial {int(best['trial'])} of 3" in line
                                   and line.endswith("[skip: complete]") for line in lines)


def test_a_grid_search_tries_every_combination_once_and_keeps_tpe_identities(tiny_data, tiny_models, tmp_path):
    from pipeline.search import _identity
    from pipeline.plan import build_plan

    output = tmp_path / "out"
    grid = {"training.learning_rate": ["1e-2", "3e-2"], "training.batch_size": [8, 16]}
    raw = _searched_config(tiny_data, tiny_models["bert"], output, n_trials=4, sampler="grid")
    raw["tasks"]["B"]["search"]["space"] = grid
    assert _main(tmp_path, raw) == 0
    trials = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    tried = sorted(zip(trials["training.learning_rate"], trials["training.batch_size"]))
    assert tried == [(0.01, 8), (0.01, 16), (0.03, 8), (0.03, 16)] and (trials["state"] == "COMPLETE").all()
    record = json.loads((output / "B1_v1" / "metrics.json").read_text())
    best = trials.loc[trials["validation_accuracy"].idxmax()]
    assert record["search"]["sampler"] == "grid" and record["search"]["best_trial"] == best["trial"]
    # A TPE search's identity is what it was before samplers were configurable: its study is not started over.
    tpe = validate(_searched_config(tiny_data, tiny_models["bert"], output), base_dir=tmp_path)
    chosen = validate({**raw, "tasks": {"B": {**raw["tasks"]["B"], "search": {**raw["tasks"]["B"]["search"],
                                                                             "sampler": "tpe", "n_trials": 2}}}},
                      base_dir=tmp_path)
    run_tpe, run_grid = build_plan(tpe)[0], build_plan(chosen)[0]
    assert "sampler" not in json.dumps(_identity(run_tpe, tpe)) and _identity(run_grid, chosen) != _identity(
        build_plan(validate(raw, base_dir=tmp_path))[0], validate(raw, base_dir=tmp_path))


def test_a_widened_grid_keeps_its_finished_trials_and_runs_only_its_new_points(
        tiny_data, tiny_models, tmp_path, capsys):
    output = tmp_path / "out"
    raw = _searched_config(tiny_data, tiny_models["bert"], output, n_trials=2, sampler="grid")
    raw["tasks"]["B"]["search"]["space"] = {"training.learning_rate": ["1e-2", "3e-2"]}
    assert _main(tmp_path, raw) == 0
    first = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert sorted(first["training.learning_rate"]) == [0.01, 0.03]
    capsys.readouterr()

    # One more rate: the dry run counts one trial left; only it trains; the two finished ones are kept as they were.
    raw["tasks"]["B"]["search"].update(n_trials=3, space={"training.learning_rate": ["3e-3", "1e-2", "3e-2"]})
    assert _main(tmp_path, raw, "--dry-run") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("B1_v1"))
    assert "search=1 of 3 trials over training.learning_rate first" in line and line.endswith("[run]")
    assert _main(tmp_path, raw) == 0
    out = capsys.readouterr().out
    assert out.count("searching 1 of 3 trials") == 1 and out.count(" B1_v1 trial ") == 1
    widened = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert sorted(widened["training.learning_rate"]) == [0.003, 0.01, 0.03] and len(_study(output).trials) == 3
    pd.testing.assert_frame_equal(widened.iloc[:2], first)
    best = widened.loc[widened["validation_accuracy"].idxmax()]
    record = json.loads((output / "B1_v1" / "metrics.json").read_text())
    assert record["search"]["best_trial"] == best["trial"] and record["search"]["n_trials"] == 3

    # Narrowed to two of them: nothing trains, and the dropped rate is neither counted nor chosen.
    raw["tasks"]["B"]["search"].update(n_trials=2, space={"training.learning_rate": ["3e-3", "3e-2"]})
    assert _main(tmp_path, raw) == 0
    assert " B1_v1 trial " not in capsys.readouterr().out and len(_study(output).trials) == 3
    narrowed = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert sorted(narrowed["training.learning_rate"]) == [0.003, 0.03]
    record = json.loads((output / "B1_v1" / "metrics.json").read_text())
    assert record["search"]["params"]["training.learning_rate"] in (0.003, 0.03)

    # Anything else changed (here the pruner) still starts the search over.
    raw["tasks"]["B"]["search"]["pruner"] = "none"
    assert _main(tmp_path, raw) == 0
    assert capsys.readouterr().out.count("searching 2 of 2 trials") == 1 and len(_study(output).trials) == 2


def test_grid_points_follow_one_seeded_order_and_skip_what_was_tried():
    from types import SimpleNamespace

    from pipeline.search import grid_points

    dimensions = {"training.learning_rate": {"kind": "categorical", "choices": [0.1, 0.2, 0.3]},
                  "training.batch_size": {"kind": "categorical", "choices": [8, 16]}}
    every = grid_points(dimensions, seed=42)
    assert sorted((p["training.learning_rate"], p["training.batch_size"]) for p in every) == [
        (lr, b) for lr in (0.1, 0.2, 0.3) for b in (8, 16)]
    assert grid_points(dimensions, seed=42) == every and grid_points(dimensions, seed=7) != every
    tried = [SimpleNamespace(params=every[0], user_attrs={}),
             SimpleNamespace(params={}, user_attrs={"point": {"training.learning_rate": 0.9, "training.batch_size": 8}}),
             SimpleNamespace(params={}, user_attrs={"point": every[1]})]  # a grid's trial: its point
    assert grid_points(dimensions, seed=42, tried=tried) == every[2:]


def test_dry_run_shows_a_pending_search_and_writes_nothing(tiny_data, tiny_models, tmp_path, capsys):
    raw = _searched_config(tiny_data, tiny_models["bert"], tmp_path / "out", n_trials=5)
    assert main.main(["--config", str(write_config(tmp_path / "c.yaml", raw)), "--dry-run"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("B1_v1"))
    assert "search=5 trials over training.learning_rate,training.batch_size first" in line and line.endswith("[run]")
    assert not (tmp_path / "out").exists()


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_pruned_trials_stop_training_and_a_search_with_no_complete_trial_fails_the_run(
        tiny_data, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.search.make_pruner", lambda search: AlwaysPrune())
    output = tmp_path / "out"
    assert _main(tmp_path, _searched_config(tiny_data, tiny_models["bert"], output, epochs=2, baseline=True)) == 1
    trials = _study(output).trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(list(t.intermediate_values) == [1] for t in trials)  # stopped after epoch 1 of 2
    rows = pd.read_csv(output / "search" / "B1_v1" / "search.csv")
    assert rows["state"].tolist() == ["PRUNED", "PRUNED"]
    assert rows["validation_accuracy"].tolist() == [t.intermediate_values[1] for t in trials]
    record = json.loads((output / "B1_v1" / "metrics.json").read_text())
    assert record["status"] == "failed" and "no trial of B1_v1 completed (2 pruned, 0 failed)" in record["error"]
    assert json.loads((output / "A0" / "metrics.json").read_text())["status"] == "complete"  # the rest went on


def test_a_changed_search_that_fails_keeps_the_complete_run_it_would_have_replaced(tiny_data, tiny_models, tmp_path,
                                                                                   monkeypatch, capsys):
    output = tmp_path / "out"
    raw = _searched_config(tiny_data, tiny_models["bert"], output, epochs=2)
    assert _main(tmp_path, raw) == 0
    kept = {p.relative_to(output / "B1_v1"): p.read_bytes() for p in (output / "B1_v1").rglob("*") if p.is_file()}
    assert json.loads(kept[Path("metrics.json")])["status"] == "complete"
    monkeypatch.setattr("pipeline.search.make_pruner", lambda search: AlwaysPrune())
    raw["tasks"]["B"]["search"]["pruner"] = "none"  # a new search (not blocked: the search's own block changed)
    capsys.readouterr()
    assert _main(tmp_path, raw) == 1  # ... which fails: the run fails, and its complete folder stays as it was
    assert "B1_v1 failed in 0m00s: SearchError: search: no trial of B1_v1 completed" in capsys.readouterr().out
    assert {p.relative_to(output / "B1_v1"): p.read_bytes()
            for p in (output / "B1_v1").rglob("*") if p.is_file()} == kept


@pytest.mark.parametrize("task, message", [
    ({"space": {"training.lerning_rate": {"low": 1e-4, "high": 1e-2}}},
     r"tasks\.B\.search\.space\.training\.lerning_rate: not a setting of a 'full' run \(did you mean"
     r" 'training\.learning_rate'\?\); searchable: training\.\*$"),
    ({"space": {"lora.r": [4, 8]}}, r"tasks\.B\.search\.space\.lora\.r: not a setting of a 'full' run"),
    ({"space": {"training.learning_rate": {"low": "1e-2", "high": "1e-4"}}},
     r"training\.learning_rate: low 0\.01 must be below high 0\.0001$"),
    ({"space": {"training.weight_decay": {"low": 0, "high": 0.1, "log": True}}},
     r"training\.weight_decay: a log range needs low > 0, got 0\.0$"),
    ({"space": {"training.learning_rate": {"low": 0, "high": 0.1}}},
     r"training\.learning_rate\.low: 0 is invalid for training\.learning_rate: Input should be greater than 0$"),
    ({"space": {"training.batch_size": {"low": 8, "high": 32.5}}},
     r"training\.batch_size\.high: 32\.5 is invalid for training\.batch_size: .*integer"),
    ({"space": {"training.batch_size": [8, 0]}}, r"training\.batch_size\[1\]: 0 is invalid"),
    ({"space": {"training.batch_size": [8, 8]}}, r"training\.batch_size: \[8, 8\] lists a choice twice"),
    ({"space": {"training.batch_size": []}}, r"training\.batch_size: \[\] lists no choice; list one or more values$"),
    ({"space": {"training.pad_to_multiple_of": {"low": None, "high": 8}}}, r"a range needs numbers for low and high"),
    ({"space": {"training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": "yes"}}},
     r"training\.learning_rate\.log: 'yes' is invalid; use true or false$"),
    ({"space": {"training.lr_scheduler": {"low": 1, "high": 2}}},
     r"training\.lr_scheduler: training\.lr_scheduler is not numeric, so it takes a list of choices"),
    ({"space": {"training.learning_rate": {"low": 1e-4, "hihg": 1e-2}}},
     r"a range is \{low, high, log\}, got .*\(did you mean 'high'\?\)$"),
    ({"space": {"training.learning_rate": 1e-3}}, r"is neither a range \{low, high, log\} nor a list of choices$"),
    ({"space": {}}, r"tasks\.B\.search\.space: \{\} is invalid"),
    ({"n_trials": 0}, r"tasks\.B\.search\.n_trials: 0 is invalid"),
    ({"sampler": "grid"}, r"tasks\.B\.search\.space\.training\.learning_rate: sampler grid takes lists of choices only"),
    ({"sampler": "grid", "space": {"training.batch_size": [8, 16]}},
     r"tasks\.B\.search\.n_trials: 3 is more than the grid's 2 combinations; set n_trials: 2$"),
    ({"sampler": "random"}, r"tasks\.B\.search\.sampler: 'random' is invalid"),
])
def test_bad_search_blocks_are_explained_in_one_line(tmp_path, task, message):
    search = {"n_trials": 3, "space": SPACE, **task}
    raw = tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "out",
                      tasks={"B": {"method": "full", "variants": ["v1"], "search": search}})
    with pytest.raises(ConfigError) as error:
        validate(raw)
    lines = [line for line in str(error.value).splitlines() if "search" in line]
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), str(error.value)


def test_search_block_placement_is_checked(tmp_path):
    def check(**sections):
        return validate(tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "out", **sections))

    search = {"n_trials": 2, "space": {"lora.r": [4, 8], "lora.target_modules": [["query"]]}}
    with pytest.raises(ConfigError, match=r"variants\.v1\.search\.space\.lora\.target_modules: lora\.target_modules is not"
                                          r" a number, true/false or text, so it cannot be searched"):
        check(variants={"v1": {"search": search}}, tasks={"C": {"method": "lora", "variants": ["v1"]}})
    with pytest.raises(ConfigError, match=r"tasks\.A0\.search: method 'tfidf_nb' does not train; remove search"):
        check(tasks={"A0": {"method": "tfidf_nb", "search": {"n_trials": 2, "space": SPACE}}})
    # A variant's block applies to its runs; a task's own block replaces it; values take the setting's type.
    config = check(variants={"v1": {"search": {"n_trials": 4, "space": {"lora.r": [4, 8]}}}},
                   tasks={"C": {"method": "lora", "variants": ["v1"]},
                          "D": {"method": "lora", "variants": ["v1"], "search": {"n_trials": 2, "space": SPACE}}})
    assert config.task_search("C", "v1").n_trials == 4 and config.task_search("D", "v1").n_trials == 2
    dimensions, problems = search_dimensions(config.task_search("D", "v1"), "lora")
    assert problems == [] and dimensions == {
        "training.learning_rate": {"kind": "float", "low": 1e-2, "high": 5e-2, "log": True},
        "training.batch_size": {"kind": "categorical", "choices": [8, 16]}}
    assert config.task_training("C", "v1") == config.training  # a variant's search is no training setting


def test_a_bad_search_block_exits_2_and_writes_nothing(tmp_path, capsys):
    raw = tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "out",
                      tasks={"B": {"method": "full", "variants": ["v1"],
                                   "search": {"n_trials": 2, "space": {"lora.r": [4, 8]}}}})
    assert main.main(["--config", str(write_config(tmp_path / "c.yaml", raw))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tasks.B.search.space.lora.r: not a setting of a 'full' run" in err[0]
    assert not (tmp_path / "out").exists()


def test_two_writers_share_one_study_file(tmp_path):
    """Two storages on one journal (as two processes would have; here threads, to stay fast) coordinate only
    through its file lock: every trial of both is kept, each number once."""
    import threading

    from core.config import SearchConfig
    from pipeline.search import open_study

    search = SearchConfig(n_trials=6, space={"training.learning_rate": [1e-3]})
    studies = [open_study(tmp_path, search, seed, {}) for seed in (1, 2)]  # different seeds: distinct start-up trials
    threads = [threading.Thread(target=study.optimize, args=(lambda trial: trial.suggest_float("x", 0, 1),),
                                kwargs={"n_trials": 20}) for study in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trials = _study_at(tmp_path / "study.journal").trials
    assert sorted(t.number for t in trials) == list(range(40)) and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.params["x"] for t in trials}) == 40


def test_under_torchrun_an_unfinished_search_is_refused(tiny_data, tiny_models, tmp_path, monkeypatch):
    from dataclasses import replace

    from dataset import load_splits
    from pipeline.plan import build_plan
    from pipeline.search import Searches, SearchError

    config = validate(_searched_config(tiny_data, tiny_models["bert"], tmp_path / "out"))
    (run,) = build_plan(config)
    splits = load_splits(config.dataset)
    with pytest.raises(ValueError, match="without test"):
        Searches(config, splits)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SearchError, match=r"B1_v1's search has not run with these settings; run it in one process first"
                                          r" \(python main\.py --only B1_v1\), then under torchrun"):
        Searches(config, replace(splits, test=None)).best(run)
    assert not (tmp_path / "out").exists()


def test_the_search_config_searches_config_yamls_tasks_and_config_yaml_holds_what_it_chose():
    from conftest import ROOT
    from core.config import load_config
    from core.record import RunRecord
    from pipeline.plan import build_plan

    default, config = load_config(ROOT / "config.yaml"), load_config(ROOT / "configs" / "search.yaml")
    assert config.models == default.models and config.dataset.source == default.dataset.source
    assert config.dataset.validation_size == default.dataset.validation_size >= 1000  # standard error ~1 point
    runs = {run.run_id: run for run in build_plan(config)}
    assert set(runs) == {"B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"}
    spaces = {run_id: search_dimensions(run.search, run.method) for run_id, run in runs.items()}
    assert all(problems == [] for _, problems in spaces.values())
    assert set(spaces["B1_v1"][0]) == {"training.learning_rate", "training.batch_size"}
    assert set(spaces["C1_v1"][0]) == {"training.learning_rate", "lora.r", "training.batch_size"}
    assert spaces["B1_v1"][0]["training.batch_size"]["choices"] == [8, 16, 32]
    # config.yaml's runs are the searched ones with the committed search results applied (rates to 3 digits)
    chosen = {run.base_run_id: run for run in build_plan(default) if run.seed == 42}
    for run_id, searched in runs.items():
        run = chosen[run_id]
        if searched.lora:
            assert (searched.lora.target_modules, searched.lora.use_rslora) == (run.lora.target_modules,
                                                                                run.lora.use_rslora)
        result = RunRecord.read(ROOT / "docs" / "results" / "search" / run_id / "metrics.json").search
        for key, value in result.params.items():
            block, _, field = key.partition(".")
            assert getattr(getattr(run, block), field) == pytest.approx(value, rel=5e-3), (run_id, key)


def test_force_does_not_start_over_a_search_another_process_redid_meanwhile(tiny_data, tiny_models, tmp_path, capsys,
                                                                             monkeypatch):
    import pipeline.runner as runner

    output = tmp_path / "out"
    raw = _searched_config(tiny_data, tiny_models["bert"], output)
    assert _main(tmp_path, raw) == 0
    trials = [(t.number, t.datetime_start) for t in _study(output).trials]
    original = runner.prepare

    def another_process_redoes_the_search(config, runs):  # after this process took its snapshot, before its search
        path = output / "search" / "B1_v1" / "search.json"
        path.write_text(path.read_text() + "\n")  # rewritten, as a process that started it over rewrites it
        return original(config, runs)
    monkeypatch.setattr(runner, "prepare", another_process_redoes_the_search)
    capsys.readouterr()
    assert _main(tmp_path, raw, "--force") == 0
    assert "searching" not in capsys.readouterr().out  # the other process's study is used, not started over
    assert [(t.number, t.datetime_start) for t in _study(output).trials] == trials

    monkeypatch.setattr(runner, "prepare", original)  # no other process: --force starts the search over
    assert _main(tmp_path, raw, "--force") == 0
    assert "searching 2 of 2 trials" in capsys.readouterr().out
    assert [(t.number, t.datetime_start) for t in _study(output).trials] != trials


def test_a_trial_is_scored_by_its_best_epoch_not_its_last(tiny_data, tiny_models, tmp_path, monkeypatch):
    """Two grid trials: one peaks early and falls (0.80, 0.95, 0.60), the other only rises (0.70, 0.85, 0.90).
    The search chooses by each trial's best epoch (the run keeps its best epoch too), so the first wins; scored
    by the last epoch, the second would. Training is replaced by these curves: only the search's choice is tested."""
    from dataclasses import replace
    from types import SimpleNamespace

    import tasks.finetune
    from dataset import load_splits
    from pipeline.plan import build_plan
    from pipeline.search import METRIC, Searches

    curves = {1e-3: [0.80, 0.95, 0.60], 2e-3: [0.70, 0.85, 0.90]}

    def fit(run, context, checkpoints, callbacks=(), **arguments):
        report, values = callbacks[0], curves[run.training.learning_rate]
        for step, value in enumerate(values, start=1):
            control = SimpleNamespace(should_training_stop=False)
            report.on_evaluate(None, SimpleNamespace(global_step=step, max_steps=len(values)), control,
                               metrics={METRIC: value})
        return SimpleNamespace(trainer=None)

    monkeypatch.setattr(tasks.finetune, "fit", fit)
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"C": {
        "method": "lora", "search": {"n_trials": 2, "sampler": "grid", "pruner": "none",
                                     "space": {"training.learning_rate": [1e-3, 2e-3]}}}})
    config = validate(raw)
    (run,) = build_plan(config)
    splits = load_splits(config.dataset)
    chosen = Searches(config, replace(splits, test=None), show_progress=False, log=lambda line: None).best(run)
    assert chosen.training.learning_rate == 1e-3
    assert chosen.search_result["validation_accuracy"] == 0.95
    trials = pd.read_csv(tmp_path / "out" / "search" / "C1_v1" / "search.csv").set_index("training.learning_rate")
    assert trials["validation_accuracy"].to_dict() == {1e-3: 0.95, 2e-3: 0.90}
