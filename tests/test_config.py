"""The config is validated once, with messages a user can act on."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from pydantic import BaseModel, ValidationError

from core.config import (MAX_CONFIG_VALUES, ConfigError, DatasetConfig, LoraConfig, PipelineConfig, SearchConfig,
                         TrainingConfig, _all_optional, _fields_at, _unwrap, apply_override, clip, is_local_path,
                         load_config, read_yaml, search_dimensions, searchable_blocks, shown, validate)
from pipeline.plan import build_plan

MINIMAL = {"models": ["bert-base-uncased"], "tasks": {"B": {"method": "full", "variants": ["v1"]}}}


def config_with(**changes) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    raw.update(changes)
    return raw


@pytest.mark.parametrize("path", sorted(ROOT.glob("config.yaml")) + sorted((ROOT / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads_and_plans(path):
    config = load_config(path)
    runs = build_plan(config)
    assert runs, f"{path.name} plans no run"
    assert len({r.run_id for r in runs}) == len(runs)


def test_default_config_plans_the_offline_study():
    runs = build_plan(load_config(ROOT / "config.yaml"))
    assert {r.seed for r in runs} == {42, 43, 44}  # verdicts across seeds
    runs = [r for r in runs if r.seed == 42]
    assert [r.base_run_id for r in runs] == ["A0", "A1", "B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"]
    assert Path(runs[1].model) == (ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2").resolve()
    lora = {r.base_run_id: r.lora for r in runs if r.lora}
    assert lora["C1_v1"].target_modules == ["query"] and not lora["C1_v1"].use_rslora
    assert lora["F1_v1"].target_modules == ["key"] and lora["F1_v1"].use_rslora


def test_study_config_reproduces_the_papers_grid():
    config = load_config(ROOT / "configs" / "study.yaml")
    runs = build_plan(config)
    assert config.models == ["bert-base-uncased", "distilbert-base-uncased", "roberta-base"]
    assert config.dataset.validation_size == 20000
    trained = [r for r in runs if r.training]
    assert len(trained) == 30 * 3  # 5 tasks x 3 models x 2 variants, three seeds each
    for run in trained:
        assert run.training.batch_size == 8 and run.training.weight_decay == 0.01
        assert run.training.learning_rate == {"v1": 5e-5, "v2": 1e-5}[run.variant]
        assert run.training.epochs == (5 if run.task == "B" else 10)
        if run.lora:
            assert (run.lora.r, run.lora.lora_alpha, run.lora.lora_dropout) == (8, 32, 0.01)


def test_scientific_notation_is_a_float_not_a_string(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models: [m]\ntraining: {learning_rate: 5e-5}\ntasks: {B: {method: full, variants: [v1]}}\n")
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "5e-5"  # the trap
    assert load_config(path).training.learning_rate == pytest.approx(5e-5)


def test_unknown_key_names_its_path_and_the_nearest_valid_key():
    raw = config_with(training={"lerning_rate": 1e-4})
    with pytest.raises(ConfigError, match=r"unknown key 'training\.lerning_rate' \(did you mean 'learning_rate'\?\)"):
        validate(raw)


def test_unknown_key_deep_inside_a_task():
    raw = config_with(tasks={"C": {"method": "lora", "variants": ["v1"], "lora": {"target_module": ["key"]}}})
    with pytest.raises(ConfigError, match=r"'tasks\.C\.lora\.target_module' \(did you mean 'target_modules'\?\)"):
        validate(raw)


def test_wrong_type_names_key_value_and_expectation():
    with pytest.raises(ConfigError, match=r"training\.batch_size: 'eight' is invalid: Input should be a valid integer"):
        validate(config_with(training={"batch_size": "eight"}))


def test_every_problem_is_reported_together():
    raw = config_with(training={"epochs": 0, "batch_size": -1}, dataset={"max_lenght": 3}, extra=1)
    with pytest.raises(ConfigError) as error:
        validate(raw)
    message = str(error.value)
    for fragment in ("training.epochs", "training.batch_size", "dataset.max_lenght", "'extra'"):
        assert fragment in message
    assert len(message.splitlines()) == 4


@pytest.mark.parametrize("task, message", [
    ({"method": "ful", "variants": ["v1"]}, r"tasks\.B\.method: unknown method 'ful' \(did you mean 'full'\?\)"),
    ({"method": "full", "variants": []}, r"tasks\.B\.variants: method 'full' trains, so list at least one variant"),
    ({"method": "full", "variants": ["v9"]}, r"tasks\.B\.variants: unknown variant 'v9'; defined: v1"),
    ({"method": "pretrained", "variants": ["v1"]}, r"method 'pretrained' does not train; remove variants"),
    ({"method": "full", "variants": ["v1"], "models": [3]}, r"tasks\.B\.models: there is no model 3"),
    ({"method": "full", "variants": ["v1"], "lora": {"r": 4}}, r"method 'full' takes no LoRA settings"),
    ({"method": "full", "variants": ["r4"]}, r"tasks\.B\.variants: variant 'r4' sets lora, which method 'full' does not take"),
])
def test_task_cross_checks(task, message):
    with pytest.raises(ConfigError, match=message):
        validate(config_with(tasks={"B": task}, variants={"v1": {}, "r4": {"lora": {"r": 4}}}))


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "models" / "m1").mkdir(parents=True)
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("output_dir: out\ndataset: {source: ../data}\nmodels: [../models/m1, roberta-base]\n"
                    "tasks: {A: {method: pretrained}}\n")
    config = load_config(path)
    assert config.output_dir == str(tmp_path / "sub" / "out")
    assert config.dataset.source == str(tmp_path / "data")
    assert config.models == [str(tmp_path / "models" / "m1"), "roberta-base"]  # hub ids stay ids


def test_variant_and_task_overrides_layer_over_defaults():
    raw = config_with(training={"epochs": 3, "learning_rate": 1e-4},
                      variants={"v1": {"learning_rate": 5e-5, "batch_size": 8}},
                      tasks={"B": {"method": "full", "variants": ["v1"], "training": {"epochs": 5}}})
    training = validate(raw).task_training("B", "v1")
    assert (training.epochs, training.learning_rate, training.batch_size) == (5, 5e-5, 8)


def test_a_lora_rank_sweep_is_a_set_of_variants():
    """Defaults < variant < task, for LoRA settings as for training; each variant is its own run."""
    raw = config_with(lora={"r": 8, "lora_alpha": 32},
                      variants={"r4": {"lora": {"r": 4, "lora_alpha": 16}}, "r16": {"lora": {"r": 16}, "epochs": 2}},
                      tasks={"C": {"method": "lora", "variants": ["r4", "r16"],
                                   "lora": {"target_modules": ["key"], "lora_alpha": 64}}})
    runs = {run.run_id: run for run in build_plan(validate(raw))}
    assert sorted(runs) == ["C1_r16", "C1_r4"]
    assert (runs["C1_r4"].lora.r, runs["C1_r4"].lora.lora_alpha, runs["C1_r4"].lora.target_modules) == (4, 64, ["key"])
    assert (runs["C1_r16"].lora.r, runs["C1_r16"].training.epochs) == (16, 2)
    assert runs["C1_r4"].training.epochs == 3  # the variant's lora block leaves training alone
    with pytest.raises(ConfigError, match=r"unknown key 'variants\.r4\.lora\.rank'; valid keys here: r, "):
        validate(config_with(variants={"r4": {"lora": {"rank": 4}}}))


def test_overrides_set_dotted_keys_with_yaml_types():
    raw = config_with()
    apply_override(raw, "dataset.max_train_samples=500")
    apply_override(raw, "training.learning_rate=2e-5")
    apply_override(raw, "output_dir=/tmp/x")
    config = validate(raw)
    assert config.dataset.max_train_samples == 500
    assert config.training.learning_rate == 2e-5
    assert config.output_dir == "/tmp/x"


def test_override_splits_at_the_first_equals_sign():
    raw = {}
    apply_override(raw, "a.b=c=d")
    assert raw == {"a": {"b": "c=d"}}
    apply_override(raw, "output_dir=/tmp/run=1")
    assert raw["output_dir"] == "/tmp/run=1"


def test_override_creates_nested_mappings_and_keeps_siblings():
    raw = {"tasks": {"B": {"method": "full", "variants": ["v1"]}}}
    apply_override(raw, "tasks.B.training.epochs=1")
    apply_override(raw, "x.y.z=2")
    assert raw == {"tasks": {"B": {"method": "full", "variants": ["v1"], "training": {"epochs": 1}}},
                   "x": {"y": {"z": 2}}}


def test_override_values_are_typed():
    raw = {}
    for override in ("flag=true", "off=false", "count=5", "rate=0.5", "name=abc", "quoted='5'", "empty=",
                     "items=[1, 2]"):
        apply_override(raw, override)
    assert raw == {"flag": True, "off": False, "count": 5, "rate": 0.5, "name": "abc", "quoted": "5", "empty": "",
                   "items": [1, 2]}
    assert type(raw["flag"]) is bool and type(raw["count"]) is int


def test_overrides_reach_the_validated_config_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    config = load_config(path, ["training.learning_rate=5e-5", "training.group_by_length=false",
                                "trust_remote_code=true", "dataset.max_train_samples=500",
                                "tasks.B.training.epochs=1", "output_dir=out=1"])
    assert type(config.training.learning_rate) is float and config.training.learning_rate == 5e-05
    assert config.training.group_by_length is False and config.trust_remote_code is True
    assert config.dataset.max_train_samples == 500 and config.task_training("B", "v1").epochs == 1
    assert config.output_dir == str(tmp_path / "out=1")


@pytest.mark.parametrize("override", ["novalue", "=3", "a..b=1", "training.epochs.x=1"])
def test_malformed_overrides_are_usage_errors(override):
    raw = config_with(training={"epochs": 3})
    with pytest.raises(ConfigError, match="override"):
        apply_override(raw, override)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models: [a\ntasks: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        load_config(path)


def test_only_rejects_run_ids_the_config_does_not_define():
    config = validate(config_with())
    with pytest.raises(ConfigError, match=r"--only: B1_v2 is not a run of this config \(did you mean 'B1_v1'\?\)"):
        build_plan(config, only=["B1_v2"])
    assert [r.run_id for r in build_plan(config, only=["B1_v1"])] == ["B1_v1"]


def selected(config, *only) -> list[str]:
    return [r.run_id for r in build_plan(config, only=list(only))]


def test_only_takes_a_task_a_task_and_model_or_a_base_run():
    config = validate(config_with(models=["m1", "m2"], seeds=[1, 2], variants={"v1": {}, "v2": {}}, tasks={
        "A0": {"method": "tfidf_nb"}, "B": {"method": "full", "variants": ["v1", "v2"]}, "BQ": {"method": "lora"}}))
    assert selected(config, "B") == ["B1_v1_s1", "B1_v2_s1", "B2_v1_s1", "B2_v2_s1",
                                     "B1_v1_s2", "B1_v2_s2", "B2_v1_s2", "B2_v2_s2"]  # not BQ's runs
    assert selected(config, "BQ") == ["BQ1_v1_s1", "BQ2_v1_s1", "BQ1_v1_s2", "BQ2_v1_s2"]
    assert selected(config, "B2") == ["B2_v1_s1", "B2_v2_s1", "B2_v1_s2", "B2_v2_s2"]  # task B, model 2
    assert selected(config, "B1_v2", "A0") == ["A0_s1", "B1_v2_s1", "A0_s2", "B1_v2_s2"]
    assert selected(config, "B1_v2_s2") == ["B1_v2_s2"]
    with pytest.raises(ConfigError) as error:
        build_plan(config, only=["BQ3"])
    assert str(error.value) == (
        "--only: BQ3 is not a run of this config (did you mean 'BQ'?); name a task (A0, B, BQ), a task and model"
        " number (B1) or a run (A0, B1_v1, B1_v2, B2_v1, B2_v2, BQ1_v1, BQ2_v1)")
    with pytest.raises(ConfigError, match=r"^--only: x{37}\.\.\. is not a run of this config; name a task"):
        build_plan(config, only=["x" * 5000])  # a pasted blob is cut, not repeated


def test_only_refuses_a_name_that_means_a_task_and_another_tasks_model():
    config = validate(config_with(models=["m1", "m2"], tasks={"B": {"method": "full"}, "B1": {"method": "head"}}))
    assert selected(config, "B1_v1") == ["B1_v1"] and selected(config, "B11_v1") == ["B11_v1"]
    with pytest.raises(ConfigError) as error:
        build_plan(config, only=["B1"])  # task B1, or model 1 of task B
    assert str(error.value) == "--only: B1 names runs of tasks B and B1; name a run instead: B1_v1, B11_v1, B12_v1"


def test_variants_default_to_v1_for_methods_that_train():
    config = validate(config_with(tasks={"A0": {"method": "tfidf_nb"}, "A": {"method": "pretrained"},
                                         "B": {"method": "full"}, "C": {"method": "lora", "variants": ["v1"]}}))
    assert [task.variants for task in config.tasks.values()] == [[], [], ["v1"], ["v1"]]
    assert [r.run_id for r in build_plan(config)] == ["A0", "A1", "B1_v1", "C1_v1"]


def test_schema_defaults_are_complete():
    """Every field has a default except the two a user must give (models, tasks)."""
    required = [name for name, field in PipelineConfig.model_fields.items() if field.is_required()]
    assert required == ["models", "tasks"]


# ----------------------------------------------------------------------------------------------
# Exact messages: every problem is one line naming the key, the bad value and the fix.


def problems(raw, **kwargs) -> list[str]:
    """The lines of the ConfigError that validating `raw` raises."""
    with pytest.raises(ConfigError) as error:
        validate(raw, **kwargs)
    return str(error.value).splitlines()


def test_dataset_cross_checks_have_exact_messages():
    assert problems(config_with(dataset={"source": "x", "files": {"train": "t.csv"}, "test_source": "y"})) == [
        "config: dataset.files: give dataset.source or dataset.files, not both; remove one",
        "config: dataset.test_source: dataset.files names the test file already; remove test_source"]
    assert problems(config_with(dataset={"class_names": ["b", "a", "b", "a", "c"]}), source="s.yaml") == [
        "s.yaml: dataset.class_names: a, b occurs twice; list each class once"]
    config = validate(config_with(dataset={"files": {"train": "t.csv"}, "class_names": ["a", "b"]}))
    assert config.dataset.class_names == ["a", "b"] and config.dataset.source == "fancyzhx/ag_news"
    assert validate(config_with(dataset={"test_source": "t.csv", "source": "d.csv"})).dataset.test_source


def test_seed_cross_checks_have_exact_messages():
    assert problems(config_with(seeds=[3, 1, 3, 1, 2], seed=7)) == [
        "config: seeds: 1, 3 occurs twice; list each seed once",
        "config: seed: 7 is not in seeds [3, 1, 3, 1, 2]; `seeds` replaces `seed`, so remove seed or add it to seeds"]
    assert validate(config_with(seeds=[1, 2])).seeds == [1, 2]  # the default seed (42) need not be listed
    assert validate(config_with(seeds=[1, 2], seed=2)).seed == 2


@pytest.mark.parametrize("task, variants, lines", [
    ({"method": "xyz"}, {}, ["tasks.B.method: unknown method 'xyz'; choose one of tfidf_nb, pretrained, full, head,"
                             " bitfit, lora, peft, embed_lr, zero_shot, setfit"]),  # and nothing else about a task of unknown method
    ({"method": "full", "variants": []}, {},
     ["tasks.B.variants: method 'full' trains, so list at least one variant (defined: none)"]),
    ({"method": "full", "variants": []}, {"v1": {}, "v2": {}},
     ["tasks.B.variants: method 'full' trains, so list at least one variant (defined: v1, v2)"]),
    ({"method": "full"}, {"r4": {}, "r16": {}},  # no variants listed: v1, which these variants do not define
     ["tasks.B.variants: unknown variant 'v1' (the default when a task lists none); defined: r4, r16"]),
    ({"method": "pretrained", "variants": ["v1"], "training": {"epochs": 1}}, {"v1": {}},
     ["tasks.B.variants: method 'pretrained' does not train; remove variants",
      "tasks.B.training: method 'pretrained' does not train; remove training"]),
    ({"method": "tfidf_nb", "models": [1]}, {},
     ["tasks.B.models: method 'tfidf_nb' uses no transformer model; remove models"]),
    ({"method": "full", "variants": ["v11", "zz"]}, {"v1": {}},
     ["tasks.B.variants: unknown variant 'v11' (did you mean 'v1'?); defined: v1",
      "tasks.B.variants: unknown variant 'zz'; defined: v1"]),
    ({"method": "full", "variants": ["v1"]}, {},
     ["tasks.B.variants: unknown variant 'v1' (the default when a task lists none); defined: none"]),
    ({"method": "lora", "variants": ["ad"]}, {"ad": {"adapter": {"r": 2}}},
     ["tasks.B.variants: variant 'ad' sets adapter, which method 'lora' does not take;"
      " give this task variants without adapter"]),
    ({"method": "full", "variants": ["v1"], "models": [1, 2, 3]}, {"v1": {}},
     ["tasks.B.models: there is no model 2; `models` lists 1", "tasks.B.models: there is no model 3; `models` lists 1"]),
    ({"method": "full", "variants": ["v1"], "lora": {"r": 4}}, {"v1": {}},
     ["tasks.B.lora: method 'full' takes no LoRA settings; remove lora"]),
    ({"method": "lora", "variants": ["v1"], "adapter": {"r": 4}}, {"v1": {}},
     ["tasks.B.adapter: method 'lora' takes no adapter block; use method peft"]),
    ({"method": "peft", "variants": ["v1", "v9"]}, {"v1": {}},
     ["tasks.B.variants: unknown variant 'v9'; defined: v1",
      "tasks.B.adapter: method 'peft' needs an adapter block with a peft_type,"
      " e.g. adapter: {peft_type: IA3, target_modules: [key, value]}"]),
    ({"method": "pretrained", "search": {"n_trials": 2, "space": {"training.epochs": [1, 2]}}}, {},
     ["tasks.B.search: method 'pretrained' does not train; remove search"]),
])
def test_task_cross_checks_have_exact_messages(task, variants, lines):
    assert problems(config_with(tasks={"B": task}, variants=variants)) == [f"config: {line}" for line in lines]


def test_task_names_are_letters_and_digits():
    assert problems(config_with(tasks={"B_2": {"method": "full", "variants": ["v1"]}})) == [
        "config: tasks.B_2: task names are letters and digits (they start run ids), got 'B_2'"]


def test_cross_checks_accept_what_they_should():
    ok = validate(config_with(
        models=["a", "b"], variants={"v1": {}, "ad": {"adapter": {"peft_type": "IA3"}}, "r4": {"lora": {"r": 4}}},
        tasks={"A": {"method": "pretrained", "models": [2]}, "N": {"method": "tfidf_nb"},
               "P": {"method": "peft", "variants": ["ad"]},  # the variant gives the adapter block
               "Q": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "IA3"}},
               "C": {"method": "lora", "variants": ["r4", "v1"], "lora": {"r": 2}}}))
    assert ok.task_adapter("P", "ad") == {"peft_type": "IA3"} and ok.task_lora("C", "r4").r == 2
    assert ok.task_lora("C", "v1").lora_alpha == 32 and ok.task_search("C", "v1") is None


def test_task_adapter_layers_the_task_over_its_variant():
    config = validate(config_with(variants={"v1": {"adapter": {"peft_type": "IA3", "r": 4}}},
                                  tasks={"P": {"method": "peft", "variants": ["v1"], "adapter": {"r": 16}}}))
    assert config.task_adapter("P", "v1") == {"peft_type": "IA3", "r": 16}


def test_task_search_prefers_the_task_block():
    task_search = {"n_trials": 3, "space": {"training.epochs": [1, 2]}}
    variant_search = {"n_trials": 5, "space": {"training.epochs": [3]}}
    config = validate(config_with(variants={"v1": {"search": variant_search}, "v2": {}},
                                  tasks={"B": {"method": "full", "variants": ["v1", "v2"]},
                                         "T": {"method": "full", "variants": ["v1"], "search": task_search}}))
    assert config.task_search("B", "v1").n_trials == 5 and config.task_search("B", "v2") is None
    assert config.task_search("T", "v1").n_trials == 3


def test_search_problems_name_the_block_that_holds_them_once():
    bad = {"n_trials": 2, "space": {"training.batch_size": [0]}}
    assert problems(config_with(variants={"v1": {}, "v2": {}},
                                tasks={"B": {"method": "full", "variants": ["v1", "v2"], "search": bad}})) == [
        "config: tasks.B.search.space.training.batch_size[0]: 0 is invalid for training.batch_size:"
        " Input should be greater than 0"]  # two variants, one problem
    assert problems(config_with(variants={"v1": {"search": bad}},
                                tasks={"B": {"method": "full", "variants": ["v1"]}})) == [
        "config: variants.v1.search.space.training.batch_size[0]: 0 is invalid for training.batch_size:"
        " Input should be greater than 0"]


def test_a_peft_task_searches_its_training_settings():
    """A bug found by mutation testing: searchable_blocks('peft') raised KeyError('adapter')."""
    search = {"n_trials": 2, "space": {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}
    config = validate(config_with(tasks={"P": {"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "IA3"},
                                               "search": search}}))
    assert search_dimensions(config.task_search("P", "v1"), "peft") == (
        {"training.learning_rate": {"kind": "float", "low": 1e-5, "high": 1e-3, "log": True}}, [])
    assert searchable_blocks("peft") == {"training": TrainingConfig}
    assert searchable_blocks("lora") == {"training": TrainingConfig, "lora": LoraConfig}
    assert searchable_blocks("full") == {"training": TrainingConfig}


def dims(space, method="full", where=None):
    search = SearchConfig(n_trials=1, space=space)
    return search_dimensions(search, method) if where is None else search_dimensions(search, method, where)


def test_search_dimensions_convert_ranges_and_choices_as_the_settings_are():
    assert dims({"training.learning_rate": {"low": "1e-5", "high": 1e-3, "log": True},
                 "training.batch_size": {"low": 8, "high": 64},
                 "training.epochs": [1, "2"], "training.group_by_length": [True, False],
                 "training.lr_scheduler": ["linear", "cosine"], "lora.r": [4, 8]}, "lora") == (
        {"training.learning_rate": {"kind": "float", "low": 1e-5, "high": 1e-3, "log": True},
         "training.batch_size": {"kind": "int", "low": 8, "high": 64, "log": False},
         "training.epochs": {"kind": "categorical", "choices": [1.0, 2.0]},
         "training.group_by_length": {"kind": "categorical", "choices": [True, False]},
         "training.lr_scheduler": {"kind": "categorical", "choices": ["linear", "cosine"]},
         "lora.r": {"kind": "categorical", "choices": [4, 8]}}, [])
    dimensions, _ = dims({"training.epochs": [1, "2"]})
    assert [type(c) for c in dimensions["training.epochs"]["choices"]] == [float, float]
    assert dims({"training.weight_decay": {"low": 0, "high": 0.1}}) == (
        {"training.weight_decay": {"kind": "float", "low": 0.0, "high": 0.1, "log": False}}, [])


@pytest.mark.parametrize("space, line", [
    ({"training.lerning_rate": [1]},
     "s.space.training.lerning_rate: not a setting of a 'full' run (did you mean 'training.learning_rate'?);"
     " searchable: training.*"),
    ({"lora.r": [1]}, "s.space.lora.r: not a setting of a 'full' run; searchable: training.*"),
    ({"nodot": [1]}, "s.space.nodot: not a setting of a 'full' run; searchable: training.*"),
    ({"training.class_weights": ["auto"]},
     "s.space.training.class_weights: training.class_weights is not a number, true/false or text, so it cannot be searched"),
    ({"training.epochs": []}, "s.space.training.epochs: [] lists no choice; list one or more values"),
    ({"training.epochs": [1, 0]}, "s.space.training.epochs[1]: 0 is invalid for training.epochs: Input should be greater than 0"),
    ({"training.epochs": [1, 1.0]}, "s.space.training.epochs: [1, 1.0] lists a choice twice; list each once"),
    ({"training.epochs": {"low": 1, "hgh": 2}},
     "s.space.training.epochs: a range is {low, high, log}, got {'low': 1, 'hgh': 2} (did you mean 'high'?)"),
    ({"training.epochs": {"low": 1}}, "s.space.training.epochs: a range is {low, high, log}, got {'low': 1}"),
    ({"training.epochs": {"high": 1}}, "s.space.training.epochs: a range is {low, high, log}, got {'high': 1}"),
    ({"training.group_by_length": {"low": 0, "high": 1}},
     "s.space.training.group_by_length: training.group_by_length is not numeric, so it takes a list of choices, not a range"),
    ({"training.lr_scheduler": {"low": 0, "high": 1}},
     "s.space.training.lr_scheduler: training.lr_scheduler is not numeric, so it takes a list of choices, not a range"),
    ({"training.epochs": {"low": 1, "high": 2, "log": "yes"}}, "s.space.training.epochs.log: 'yes' is invalid; use true or false"),
    ({"training.batch_size": {"low": 0, "high": 8}},
     "s.space.training.batch_size.low: 0 is invalid for training.batch_size: Input should be greater than 0"),
    ({"training.batch_size": {"low": 8, "high": -1}},
     "s.space.training.batch_size.high: -1 is invalid for training.batch_size: Input should be greater than 0"),
    ({"training.logging_steps": {"low": None, "high": 5}},
     "s.space.training.logging_steps: a range needs numbers for low and high, got {'low': None, 'high': 5}"),
    ({"training.logging_steps": {"low": 5, "high": None}},
     "s.space.training.logging_steps: a range needs numbers for low and high, got {'low': 5, 'high': None}"),
    ({"training.batch_size": {"low": 8, "high": 8}}, "s.space.training.batch_size: low 8 must be below high 8"),
    ({"training.batch_size": {"low": 9, "high": 8}}, "s.space.training.batch_size: low 9 must be below high 8"),
    ({"training.weight_decay": {"low": 0, "high": 0.1, "log": True}},
     "s.space.training.weight_decay: a log range needs low > 0, got 0.0"),
    ({"training.epochs": 5}, "s.space.training.epochs: 5 is neither a range {low, high, log} nor a list of choices"),
])
def test_search_space_problems_have_exact_messages(space, line):
    dimensions, found = dims(space, where="s")
    assert found == [line]
    assert dimensions == ({"training.epochs": {"kind": "categorical", "choices": [1.0, 1.0]}} if "twice" in line else {})


def test_search_space_reports_every_bad_choice_and_the_default_where():
    dimensions, found = dims({"training.batch_size": [0, 8, -1], "training.epochs": {"low": 1, "high": 2}})
    assert found == ["search.space.training.batch_size[0]: 0 is invalid for training.batch_size: Input should be greater than 0",
                     "search.space.training.batch_size[2]: -1 is invalid for training.batch_size: Input should be greater than 0"]
    assert list(dimensions) == ["training.epochs"]  # and no "lists a choice twice" for the two bad ones
    assert dimensions["training.epochs"] == {"kind": "float", "low": 1.0, "high": 2.0, "log": False}
    assert dims({"lora.r": {"low": 0, "high": 8}}, "lora")[1] == [
        "search.space.lora.r.low: 0 is invalid for lora.r: Input should be greater than 0"]
    assert dims({"lora.x": [1]}, "lora")[1] == ["search.space.lora.x: not a setting of a 'lora' run (did you mean 'lora.r'?);"
                                                 " searchable: training.*, lora.*"]


# ----------------------------------------------------------------------------------------------
# Loading and overrides


def test_load_config_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as error:
        load_config(missing)
    assert str(error.value) == f"{missing}: config file not found; pass --config PATH"
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)  # a folder is no config file
    assert str(error.value) == f"{tmp_path}: config file not found; pass --config PATH"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"models: [caf\xe9]\n")
    with pytest.raises(ConfigError) as error:
        load_config(latin)
    assert str(error.value) == f"{latin}: not UTF-8 text (invalid continuation byte at byte 12)"
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as error:
        load_config(listed)
    assert str(error.value) == f"{listed}: the top level must be a mapping of keys, got list"


def test_malformed_yaml_names_line_column_and_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\n b: 2\n")  # the colon of line 2, third character
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: line 2, column 3: malformed YAML: mapping values are not allowed here"
    path.write_text("models: [a\ntasks: {}\n")  # the parser's problem, not its context ("while parsing ...")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: line 2, column 6: malformed YAML: expected ',' or ']', but got ':'"
    path.write_text("a: \x07\n")  # the reader's errors have no line mark
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: malformed YAML: unacceptable character #x0007:"
                                f" special characters are not allowed")


def test_an_empty_file_lacks_the_required_keys(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).splitlines() == [f"{path}: models: required key is missing",
                                             f"{path}: tasks: required key is missing"]


def test_a_top_level_that_is_not_a_mapping_is_reported():
    assert problems([1]) == ["config: (top level): [1] is invalid:"
                             " Input should be a valid dictionary or instance of PipelineConfig"]


def test_unknown_keys_list_the_valid_keys_of_their_block():
    assert problems(config_with(lora={"rank": 4}, variants={"v1": {"lerning_rate": 1}},
                                tasks={"B": {"method": "full", "variants": ["v1"], "training": {"epoch": 1}}})) == [
        "config: unknown key 'variants.v1.lerning_rate' (did you mean 'learning_rate'?); valid keys here: "
        + ", ".join(TrainingConfig.model_fields) + ", lora, adapter, search",
        "config: unknown key 'lora.rank'; valid keys here: r, lora_alpha, lora_dropout, target_modules, use_rslora,"
        " use_dora",
        "config: unknown key 'tasks.B.training.epoch' (did you mean 'epochs'?); valid keys here: "
        + ", ".join(TrainingConfig.model_fields)]
    assert problems(config_with(ray={"gpus": 1}, dataset={"splits": {"tst": "x"}})) == [
        "config: unknown key 'dataset.splits.tst' (did you mean 'test'?); valid keys here: train, validation, test",
        "config: unknown key 'ray.gpus'; valid keys here: address, cpus_per_run,"
        " gpus_per_run"]


def test_overrides_keep_the_constraints_of_their_settings():
    assert problems(config_with(variants={"v1": {"epochs": 0, "lora": {"lora_dropout": 1}}})) == [
        "config: variants.v1.epochs: 0 is invalid: Input should be greater than 0",
        "config: variants.v1.lora.lora_dropout: 1 is invalid: Input should be less than 1"]


def test_override_errors_have_exact_messages():
    raw = {"a": {"b": 3}, "n": None}
    for override, message in [
            ("novalue", "override 'novalue': expected KEY=VALUE with a dotted key, e.g. dataset.max_train_samples=500"),
            ("=3", "override '=3': expected KEY=VALUE with a dotted key, e.g. dataset.max_train_samples=500"),
            ("a.=3", "override 'a.=3': expected KEY=VALUE with a dotted key, e.g. dataset.max_train_samples=500"),
            ("x=[1", "override 'x=[1': the value is not valid YAML"),
            ("a.b.c=1", "override 'a.b.c=1': a.b is not a mapping"),
            ("a.b.c.d=1", "override 'a.b.c.d=1': a.b is not a mapping")]:
        with pytest.raises(ConfigError) as error:
            apply_override(raw, override)
        assert str(error.value) == message
    apply_override(raw, "n.m=1")  # a key set to null becomes a mapping
    assert raw == {"a": {"b": 3}, "n": {"m": 1}}


def test_local_paths_resolve_and_hub_ids_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "mymodel").mkdir()
    config = validate(config_with(models=["mymodel", "~/m", "./rel", "/abs/m", "org/hub"], output_dir="out",
                                  dataset={"source": "org/data", "test_source": "t.csv", "cache_dir": "c"}),
                      base_dir=tmp_path)
    assert config.models == [str(tmp_path / "mymodel"), str(tmp_path / "home" / "m"), str(tmp_path / "rel"),
                             "/abs/m", "org/hub"]
    assert (config.output_dir, config.dataset.source) == (str(tmp_path / "out"), "org/data")
    assert (config.dataset.test_source, config.dataset.cache_dir) == (str(tmp_path / "t.csv"), str(tmp_path / "c"))
    files = validate(config_with(dataset={"files": {"train": "d/train.csv", "test": "/t.csv"}}), base_dir=tmp_path)
    assert files.dataset.files == {"train": str(tmp_path / "d" / "train.csv"), "test": "/t.csv"}
    assert files.dataset.test_source is None and files.dataset.source == "fancyzhx/ag_news"


def test_command_line_paths_resolve_against_the_current_folder_and_the_files_against_its_folder(tmp_path,
                                                                                                  monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "work" / "mymodel").mkdir(parents=True)
    path = tmp_path / "configs" / "c.yaml"
    path.write_text("output_dir: out\ndataset: {source: ../data, test_source: t.csv}\nmodels: [../m, org/hub]\n"
                    "tasks: {A: {method: pretrained}}\n")
    monkeypatch.chdir(tmp_path / "work")
    inside = load_config("../configs/c.yaml")
    assert (inside.output_dir, inside.dataset.source) == (str(tmp_path / "configs" / "out"), str(tmp_path / "data"))
    assert inside.dataset.test_source == str(tmp_path / "configs" / "t.csv")
    assert inside.models == [str(tmp_path / "m"), "org/hub"]
    assert inside.dataset.cache_dir == str(tmp_path / "configs" / ".cache" / "tokenized")  # a default: the file's
    work = tmp_path / "work"
    given = load_config("../configs/c.yaml", ["output_dir=out", "dataset.source=mine.csv", "dataset.test_source=t.csv",
                                              "models=[mymodel, org/hub, a/b/c, ~/m]", "dataset.cache_dir=cache"])
    assert (given.output_dir, given.dataset.source) == (str(work / "out"), str(work / "mine.csv"))
    assert (given.dataset.test_source, given.dataset.cache_dir) == (str(work / "t.csv"), str(work / "cache"))
    assert given.models == [str(work / "mymodel"), "org/hub", str(work / "a" / "b" / "c"), str(Path.home() / "m")]
    nested = load_config("../configs/c.yaml", ["dataset={files: {train: a.csv, test: /b.csv}}"])
    assert nested.dataset.files == {"train": str(work / "a.csv"), "test": "/b.csv"}


@pytest.mark.parametrize("name, local", [
    ("fancyzhx/ag_news", False), ("roberta-base", False), ("Qwen/Qwen2.5-0.5B", False),  # Hub ids
    ("reviews.csv", True), ("data/train.JSONL", True), ("data/ag/news", True), ("models/", True),
    ("./m", True), ("../m", True), ("/m", True), ("~/m", True), ("C:\\data\\x", True),
])
def test_a_name_written_as_a_path_is_local(tmp_path, name, local):
    assert is_local_path(name, tmp_path) is local


def test_validate_resolves_against_the_working_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validate(config_with())
    assert (config.output_dir, config.dataset.cache_dir) == (str(tmp_path / "results"),
                                                               str(tmp_path / ".cache" / "tokenized"))


def test_all_optional_makes_every_field_optional_and_keeps_its_constraints():
    overrides = _all_optional(LoraConfig, "SomeOverrides")
    assert overrides.__name__ == "SomeOverrides"
    assert overrides().model_dump() == dict.fromkeys(LoraConfig.model_fields)
    assert overrides(r=4, target_modules=["key"]).model_dump(exclude_none=True) == {"r": 4, "target_modules": ["key"]}
    for bad in ({"r": 0}, {"lora_dropout": 1}, {"target_modules": []}, {"rank": 4}):  # gt, lt, min_length, extra
        with pytest.raises(ValidationError):
            overrides(**bad)
    with pytest.raises(ValidationError):  # frozen, as every block
        overrides(r=4).r = 5


def test_fields_at_walks_mappings_lists_and_optional_blocks():
    class Item(BaseModel):
        a: int = 0
        b: int = 0

    class Holder(BaseModel):
        items: list[Item] = []
        named: dict[str, Item] | None = None

    assert _fields_at(Holder, ("items", 0)) == ["a", "b"]
    assert _fields_at(Holder, ("named", "x")) == ["a", "b"]
    assert _fields_at(PipelineConfig, ("tasks", "B", "lora")) == list(LoraConfig.model_fields)
    assert _fields_at(PipelineConfig, ("models",)) == []  # a list of text has no keys
    assert _fields_at(PipelineConfig, ("seed", "x")) == []


def test_unwrap_strips_optional_and_annotated():
    assert _unwrap(DatasetConfig.model_fields["class_names"].annotation) == list[str]
    assert _unwrap(TrainingConfig.model_fields["early_stopping_patience"].annotation) is int
    assert _unwrap(int | None) is int and _unwrap(str) is str
    assert dims({"training.early_stopping_patience": {"low": 1, "high": 5}}) == (
        {"training.early_stopping_patience": {"kind": "int", "low": 1, "high": 5, "log": False}}, [])


def test_task_training_ignores_the_variants_other_blocks():
    search = {"n_trials": 2, "space": {"training.epochs": [1, 2]}}
    config = validate(config_with(variants={"ad": {"epochs": 2, "adapter": {"peft_type": "IA3"}, "search": search},
                                            "lo": {"batch_size": 4, "lora": {"r": 4}}},
                                  tasks={"P": {"method": "peft", "variants": ["ad"]},
                                         "C": {"method": "lora", "variants": ["lo"]}}))
    assert config.task_training("P", "ad") == TrainingConfig(epochs=2)
    assert config.task_training("C", "lo") == TrainingConfig(batch_size=4)


def test_absolute_paths_are_normalised(tmp_path):
    config = validate(config_with(models=[f"{tmp_path}/a/../m"], dataset={"source": f"{tmp_path}/d/../data"}),
                      base_dir=tmp_path / "elsewhere")
    assert (config.models, config.dataset.source) == ([str(tmp_path / "m")], str(tmp_path / "data"))


def test_search_space_checks_every_key_after_a_bad_one():
    dimensions, found = dims({"training.nope": [1], "training.batch_size": {"low": 0, "high": 8},
                              "training.epochs": [0], "lora.r": [4]}, "lora")
    assert len(found) == 3 and list(dimensions) == ["lora.r"]
    assert dims({"training.epochs": {"low": 1, "hgh": 2}})[1] == [
        "search.space.training.epochs: a range is {low, high, log}, got {'low': 1, 'hgh': 2} (did you mean 'high'?)"]
    assert dims({"training.epochs": {"lw": 1, "high": 2}})[1] == [
        "search.space.training.epochs: a range is {low, high, log}, got {'lw': 1, 'high': 2} (did you mean 'low'?)"]
    assert dims({"training.epochs": {"low": 1, "high": 2, "lg": True}})[1] == [
        "search.space.training.epochs: a range is {low, high, log}, got {'low': 1, 'high': 2, 'lg': True}"
        " (did you mean 'log'?)"]


def test_search_problems_of_every_variant_are_reported():
    assert problems(config_with(variants={"v1": {"search": {"n_trials": 1, "space": {"training.epochs": [0]}}},
                                          "v2": {"search": {"n_trials": 1, "space": {"training.batch_size": [0]}}}},
                                tasks={"B": {"method": "full", "variants": ["v1", "v2"]}})) == [
        "config: variants.v1.search.space.training.epochs[0]: 0 is invalid for training.epochs: Input should be greater than 0",
        "config: variants.v2.search.space.training.batch_size[0]: 0 is invalid for training.batch_size:"
        " Input should be greater than 0"]


def test_a_config_file_is_utf8_whatever_the_locale(tmp_path):
    """Read with encoding=None, a config with non-ASCII text fails under an ASCII locale (LC_ALL=C)."""
    path = tmp_path / "c.yaml"
    path.write_text("models: [m]\ndataset: {class_names: [Café, Thé]}\ntasks: {B: {method: full, variants: [v1]}}\n",
                    encoding="utf-8")
    code = f"from core.config import load_config; print(load_config({str(path)!r}).dataset.class_names == ['Caf\\xe9', 'Th\\xe9'])"
    assert load_config(path).dataset.class_names == ["Café", "Thé"]  # (here, also: mutmut picks tests by calls)
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr


def test_a_grid_search_takes_lists_of_choices_within_its_number_of_combinations():
    from core.config import SearchConfig, search_dimensions

    def problems(**search):
        return search_dimensions(SearchConfig(**search), "full")[1]

    grid = {"training.learning_rate": [1e-3, 2e-3], "training.batch_size": [8, 16]}
    assert problems(n_trials=4, sampler="grid", space=grid) == []  # 2 x 2 combinations
    assert problems(n_trials=5, sampler="grid", space=grid) == [
        "search.n_trials: 5 is more than the grid's 4 combinations; set n_trials: 4"]
    assert problems(n_trials=5, space=grid) == []  # TPE may repeat choices: no limit
    ranged = {"training.batch_size": [8], "training.learning_rate": {"low": 1e-4, "high": 1e-3}}
    assert problems(n_trials=1, sampler="grid", space=ranged) == [
        "search.space.training.learning_rate: sampler grid takes lists of choices only; list the values to try,"
        " or use sampler: tpe"]
    assert problems(n_trials=9, space=ranged) == []  # a range is TPE's to sample
    # a key that is no setting is the only problem reported: the grid is not judged on what could not be read
    bad = problems(n_trials=9, sampler="grid", space={"training.lerning_rate": [1e-3, 2e-3]})
    assert len(bad) == 1 and "not a setting" in bad[0]


# ----------------------------------------------------------------------------------------------
# Reading YAML: duplicate keys, alias bombs, and messages that show a bounded part of any value


@pytest.mark.parametrize("text, message", [
    ("models: [m]\ntraining: {epochs: 1}\ntasks: {B: {method: full, variants: [v1]}}\ntraining: {batch_size: 8}\n",
     "training is given twice (lines 2 and 4); the second would replace the first, so merge them or remove one"),
    ("models: [m]\ntasks:\n  B: {method: full, variants: [v1]}\n  C: {method: head, variants: [v1]}\n"
     "  B: {method: lora, variants: [v1]}\n", "tasks.B is given twice (lines 3 and 5)"),
    ("models: [m]\ntasks: {B: {method: full, variants: [v1], enabled: true, enabled: false}}\n",
     "tasks.B.enabled is given twice (lines 2 and 2)"),
])
def test_a_key_given_twice_is_refused_with_both_lines(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {message}") and len(str(error.value).splitlines()) == 1


def test_yaml_otherwise_reads_as_safe_load_does(tmp_path):
    text = ("models: [m]\nbase: &base {method: full, variants: [v1]}\n"
            "tasks: {B: {<<: *base, enabled: false}, C: *base, D: {<<: *base, <<: {models: [1]}}}\n"
            "training: {learning_rate: 5e-5}\n")
    assert read_yaml(text, "c.yaml") == yaml.safe_load(text)  # merge keys (`<<`, even twice) are no repeated key
    raw = read_yaml(text, "c.yaml")
    del raw["base"]
    config = validate(raw)
    assert config.training.learning_rate == 5e-5 and config.tasks["B"].enabled is False and config.tasks["C"].enabled


def _bomb(depth: int, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\nmodels: [m]\ntasks: {B: {method: peft, variants: [v1], adapter: {peft_type: LORA," \
                              f" rank_pattern: {{a: *l{depth - 1}}}}}}}}}\n"


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_bomb(7))  # 9^7 = 4.8 million values in under 1 KB
    assert path.stat().st_size < 1024
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: l4 (line 5) holds more than {MAX_CONFIG_VALUES:,} values (MAX_CONFIG_VALUES"
                                f" in core/config.py) once its aliases (*name) are expanded; write the value out,"
                                f" smaller")
    assert read_yaml(_bomb(3), "c.yaml")["l2"][0][0] == ["x"] * 9  # 9^3: well inside the bound
    long = "a: &s " + "y" * 2000 + "\nb: [" + ", ".join(["*s"] * 600) + "]\n"  # 1.2 million characters
    with pytest.raises(ConfigError, match=r"^c\.yaml: b \(line 2\) holds more than 1,000,000 characters"):
        read_yaml(long, "c.yaml")
    with pytest.raises(ConfigError, match=r"^c\.yaml: line 1: an alias \(\*name\) refers to a value that contains"):
        read_yaml("a: &a [1, *a]\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"^override 'tasks=\[\[\[.*\]\]\]': values nested too deeply to read"):
        apply_override({}, "tasks=" + "[" * 3000 + "]" * 3000)
    with pytest.raises(ConfigError, match=r"holds more than 10,000 values"):
        apply_override({}, "lora.target_modules=" + _bomb(6).split("\nmodels")[0].replace("\n", ", ")
                       .replace("l0: ", "{l0: ", 1) + "}")


def test_messages_show_a_bounded_part_of_any_value():
    huge = "z" * 100_000
    fields = problems(config_with(training={"batch_size": huge, "lr_scheduler": [huge] * 1000},
                                  dataset={"class_names": [huge, huge]}))
    checks = problems(config_with(tasks={huge: {"method": huge}}, seeds=[1] * 5000, seed=3, variants={huge: {}}))
    lines = fields + checks
    assert len(lines) == 6 and all(len(line) < 400 for line in lines), [len(line) for line in lines]
    assert "config: training.batch_size: 'zzzzzzzz" in fields[1] and "zzz' is invalid" in fields[1]
    assert checks[1].startswith("config: seed: 3 is not in seeds [1, 1, 1, 1, 1, 1, ...]; `seeds` replaces")
    search = SearchConfig(n_trials=1, space={"training.epochs": {"low": huge, "high": [huge] * 10_000},
                                             huge: [1], "training.batch_size": [huge] * 10_000})
    found = search_dimensions(search, "full")[1]
    assert len(found) >= 3 and all(len(line) < 400 for line in found), [len(line) for line in found]
    assert shown({"b": 2, "a": [1, 2, 3, 4, 5, 6, 7, 8]}) == "{'b': 2, 'a': [1, 2, 3, 4, 5, 6, ...]}"  # in order
    assert shown(huge) == "'" + "z" * 27 + "..." + "z" * 28 + "'" and clip(huge) == "z" * 97 + "..."


@pytest.mark.parametrize("change, line", [
    ({"seed": -1}, "seed: -1 is invalid: Input should be greater than or equal to 0"),
    ({"seeds": [42, 2**32]}, "seeds.1: 4294967296 is invalid: Input should be less than or equal to 4294967295"),
    ({"dataset": {"split_seed": 2**32}}, "dataset.split_seed: 4294967296 is invalid: Input should be less than or"
                                          " equal to 4294967295"),
    ({"training": {"learning_rate": float("inf")}}, "training.learning_rate: inf is invalid: Input should be a"
                                                    " finite number"),
    ({"training": {"epochs": float("nan")}}, "training.epochs: nan is invalid: Input should be a finite number"),
    ({"training": {"batch_size": 2**31}}, "training.batch_size: 2147483648 is invalid: Input should be less than"
                                          " or equal to 2147483647"),
    ({"training": {"pad_to_multiple_of": 2048}}, "training.pad_to_multiple_of: 2048 is invalid: Input should be"
                                                 " less than or equal to 1024"),
    ({"training": {"lr_scheduler": "cosin"}}, "training.lr_scheduler: 'cosin' is invalid: not a scheduler; use one"
                                              " of linear, cosine, cosine_with_restarts, polynomial, constant,"
                                              " constant_with_warmup, inverse_sqrt"),
    ({"tasks": {"B": {"method": "full", "variants": ["v1"], "models": []}}},
     "tasks.B.models: [] is invalid: List should have at least 1 item after validation, not 0"),
    ({"ray": {"cpus_per_run": float("inf")}}, "ray.cpus_per_run: inf is invalid: Input should be a finite number"),
    ({"training": {"dataloader_workers": 2**64}}, "training.dataloader_workers: 18446744073709551616 is invalid: Input"
                                                  " should be less than or equal to 256"),
    ({"dataset": {"class_names": ["a", "b", "c"], "max_classes": 2}},
     "dataset.class_names: 3 classes, more than dataset.max_classes (2); raise dataset.max_classes if they are meant"),
])
def test_values_out_of_range_are_refused(change, line):
    assert problems(config_with(**change)) == [f"config: {line}"]


def test_range_values_that_are_in_range_pass():
    config = validate(config_with(seeds=[0, 2**32 - 1], dataset={"split_seed": 2**32 - 1, "max_classes": 3,
                                                                  "class_names": ["a", "b", "c"]},
                                  training={"pad_to_multiple_of": 1024, "batch_size": 2**31 - 1,
                                            "lr_scheduler": "cosine"}))
    assert config.seeds == [0, 2**32 - 1] and config.training.pad_to_multiple_of == 1024


@pytest.mark.parametrize("spec, line", [
    ({"low": 1e-5, "high": float("inf")}, "s.space.training.learning_rate.high: inf is invalid for"
                                          " training.learning_rate: Input should be a finite number"),
    ({"low": float("-inf"), "high": 1e-3}, "s.space.training.learning_rate.low: -inf is invalid for"
                                           " training.learning_rate: Input should be a finite number"),
    ([1e-4, float("nan")], "s.space.training.learning_rate[1]: nan is invalid for training.learning_rate: Input"
                           " should be a finite number"),
])
def test_search_bounds_must_be_finite(spec, line):
    assert dims({"training.learning_rate": spec}, where="s")[1] == [line]
