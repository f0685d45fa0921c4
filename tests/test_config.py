"""The config is validated once, with messages a user can act on."""
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from core.config import ConfigError, PipelineConfig, apply_override, load_config, validate
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
    assert [r.run_id for r in runs] == ["A0", "A1", "B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"]
    assert Path(runs[1].model) == (ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2").resolve()
    lora = {r.run_id: r.lora for r in runs if r.lora}
    assert lora["C1_v1"].target_modules == ["query"] and not lora["C1_v1"].use_rslora
    assert lora["F1_v1"].target_modules == ["key"] and lora["F1_v1"].use_rslora


def test_study_config_reproduces_the_papers_grid():
    config = load_config(ROOT / "configs" / "study.yaml")
    runs = build_plan(config)
    assert config.models == ["bert-base-uncased", "distilbert-base-uncased", "roberta-base"]
    assert config.dataset.validation_size == 20000
    trained = [r for r in runs if r.training]
    assert len(trained) == 30  # 5 tasks x 3 models x 2 variants
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
    ({"method": "full"}, r"tasks\.B\.variants: method 'full' trains, so list at least one variant"),
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


def test_overrides_reach_the_validated_config_typed(tmp_path):
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


def test_schema_defaults_are_complete():
    """Every field has a default except the two a user must give (models, tasks)."""
    required = [name for name, field in PipelineConfig.model_fields.items() if field.is_required()]
    assert required == ["models", "tasks"]
