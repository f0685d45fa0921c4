"""Methods wrap models as intended: the right modules train, with the expected parameter counts."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from core.config import LoraConfig
from core.models import count_parameters
from tasks.adapters import AdapterError, ARCHITECTURES, apply_method

KINDS = ["bert", "distilbert", "roberta"]


def load(path):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=4)


def dims(model):
    config = model.config
    hidden = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    return hidden, layers


def head_parameters(model, kind):
    return sum(p.numel() for name in ARCHITECTURES[kind].head for p in getattr(model, name).parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("targets", [["query"], ["key"], ["query", "key", "value"]])
def test_lora_trainable_parameters_match_the_formula(tiny_models, kind, targets):
    model = load(tiny_models[kind])
    hidden, layers = dims(model)
    head = head_parameters(model, kind)
    total_before = sum(p.numel() for p in model.parameters())
    wrapped = apply_method(model, "lora", LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    trainable, total = count_parameters(wrapped)
    lora = layers * len(targets) * 2 * 4 * hidden  # A (r x hidden) and B (hidden x r) per targeted matrix
    assert trainable == lora + head
    assert total == total_before + lora + head  # the head is copied into modules_to_save


@pytest.mark.parametrize("kind", KINDS)
def test_lora_trains_only_adapters_and_the_head(tiny_models, kind):
    wrapped = apply_method(load(tiny_models[kind]), "lora", LoraConfig(r=4, target_modules=["key"]))
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    native_key = ARCHITECTURES[kind].attention["key"]
    for name in trainable:
        assert ("lora_" in name and f".{native_key}." in name) or "modules_to_save" in name, name
    for module in ARCHITECTURES[kind].head:
        assert any(f"{module}.modules_to_save" in name for name in trainable), f"{module} is not trained"


def test_rslora_changes_the_scale_not_the_parameter_count(tiny_models):
    plain = apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=4, lora_alpha=8))
    stable = apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=4, lora_alpha=8, use_rslora=True))
    assert count_parameters(plain) == count_parameters(stable)
    layer = lambda m: m.base_model.model.bert.encoder.layer[0].attention.self.query  # noqa: E731
    assert layer(plain).scaling["default"] == pytest.approx(8 / 4)
    assert layer(stable).scaling["default"] == pytest.approx(8 / 4 ** 0.5)


def test_dora_adds_one_magnitude_per_output_feature(tiny_models):
    model = load(tiny_models["bert"])
    hidden, layers = dims(model)
    plain, _ = count_parameters(apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=4)))
    dora, _ = count_parameters(apply_method(model, "lora", LoraConfig(r=4, use_dora=True)))
    assert dora - plain == layers * hidden


def test_full_fine_tuning_trains_everything(tiny_models):
    model = apply_method(load(tiny_models["distilbert"]), "full")
    trainable, total = count_parameters(model)
    assert trainable == total


def test_unknown_target_lists_the_architectures_linear_modules(tiny_models):
    with pytest.raises(AdapterError, match=r"LoRA target 'q_proj' is unknown for model type 'distilbert'; "
                                           r"use query, key, value or one of its Linear modules: .*q_lin"):
        apply_method(load(tiny_models["distilbert"]), "lora", LoraConfig(target_modules=["q_proj"]))


def test_native_linear_names_pass_through(tiny_models):
    wrapped = apply_method(load(tiny_models["distilbert"]), "lora", LoraConfig(r=4, target_modules=["out_lin"]))
    assert any("out_lin.lora_A" in name for name, _ in wrapped.named_parameters())


def test_architecture_without_mapping_lists_its_linear_modules(tiny_models):
    model = load(tiny_models["bert"])
    model.config.model_type = "mystery"
    with pytest.raises(AdapterError, match=r"model type 'mystery' has no LoRA target mapping; .*Linear modules: .*query"):
        apply_method(model, "lora", LoraConfig())


# The study's LoRA tasks (r 8, alpha 32) and, written out per architecture, the Linear modules each must adapt.
STUDY_TASKS = {  # task: (generic targets, use_rslora, expected scale)
    "C": (["query"], False, 32 / 8),
    "D": (["key"], False, 32 / 8),
    "E": (["query"], True, 32 / 8 ** 0.5),
    "F": (["key"], True, 32 / 8 ** 0.5),
}
ATTENTION_NAMES = {  # the architectures' own names for query, key, value
    "bert": {"query": "query", "key": "key", "value": "value"},
    "distilbert": {"query": "q_lin", "key": "k_lin", "value": "v_lin"},
    "roberta": {"query": "query", "key": "key", "value": "value"},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", sorted(STUDY_TASKS))
def test_study_tasks_put_lora_on_exactly_the_named_matrices(tiny_models, kind, task):
    targets, rslora, scale = STUDY_TASKS[task]
    model = load(tiny_models[kind])
    _, layers = dims(model)
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    wrapped = apply_method(model, "lora", LoraConfig(r=8, lora_alpha=32, target_modules=targets, use_rslora=rslora))
    names = ATTENTION_NAMES[kind]
    wanted = {names[t] for t in targets}
    prefix = "base_model.model."
    with_a = {n.removeprefix(prefix).split(".lora_A.")[0] for n, _ in wrapped.named_parameters() if ".lora_A." in n}
    with_b = {n.removeprefix(prefix).split(".lora_B.")[0] for n, _ in wrapped.named_parameters() if ".lora_B." in n}
    expected = {name for name in linear if name.rsplit(".", 1)[-1] in wanted}
    assert len(expected) == layers  # one such matrix per layer
    assert with_a == expected and with_b == expected
    for other in set(names.values()) - wanted:  # the other attention matrices carry no adapter at all
        assert not any(name.rsplit(".", 1)[-1] == other for name in with_a | with_b), other
        assert not any(f".{other}.lora_" in n for n, _ in wrapped.named_parameters()), other
    for name in expected:
        layer = wrapped.base_model.model.get_submodule(name)
        assert layer.scaling["default"] == pytest.approx(scale)  # alpha / r, or alpha / sqrt(r) with rsLoRA


def test_the_study_config_defines_the_tasks_tested_above():
    from conftest import ROOT
    from core.config import load_config
    from pipeline.plan import build_plan

    lora_runs = [run for run in build_plan(load_config(ROOT / "configs" / "study.yaml")) if run.lora]
    assert {run.task for run in lora_runs} == set(STUDY_TASKS)
    for run in lora_runs:
        targets, rslora, _ = STUDY_TASKS[run.task]
        assert (run.lora.target_modules, run.lora.use_rslora, run.lora.r, run.lora.lora_alpha) == (targets, rslora, 8, 32)
