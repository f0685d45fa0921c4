"""Methods wrap models as intended: the right modules train, with parameter counts recomputed from the shapes."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from core.config import LoraConfig
from core.models import count_parameters
from tasks import hooks
from tasks.adapters import AdapterError, apply_method, check_adapter, merged

KINDS = ["bert", "distilbert", "roberta"]
HEAD = {"bert": ["classifier"], "distilbert": ["pre_classifier", "classifier"], "roberta": ["classifier"]}
# Each architecture's own full-name endings for the generic names (written out here, not read from the code).
NATIVE = {
    "bert": {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attention_output": "attention.output.dense", "intermediate": "intermediate.dense",
             "output": "{layer}.output.dense"},
    "distilbert": {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                   "attention_output": "attention.out_lin", "intermediate": "ffn.lin1", "output": "ffn.lin2"},
}
NATIVE["roberta"] = NATIVE["bert"]
ENCODER = {"bert": "bert.encoder.layer", "distilbert": "distilbert.transformer.layer", "roberta": "roberta.encoder.layer"}

pytestmark = pytest.mark.usefixtures("one_thread")


def load(path):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=4)


def dims(model):
    config = model.config
    hidden = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    return hidden, layers


def head_parameters(model, kind):
    return sum(p.numel() for name in HEAD[kind] for p in getattr(model, name).parameters())


def trainable_names(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


def peft(model, **adapter):
    return apply_method(model, "peft", check_adapter(adapter), total_steps=20)


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
    native_key = NATIVE[kind]["key"]
    for name in trainable_names(wrapped):
        assert ("lora_" in name and f".{native_key}." in name) or "modules_to_save" in name, name
    for module in HEAD[kind]:
        assert any(f"{module}.modules_to_save" in name for name in trainable_names(wrapped)), f"{module} is not trained"


@pytest.mark.parametrize("kind", KINDS)
def test_generic_names_map_to_each_architectures_modules(tiny_models, kind):
    """attention output and the feed-forward output are both `dense` in BERT: each generic name gets only its own."""
    for generic, ending in NATIVE[kind].items():
        wrapped = apply_method(load(tiny_models[kind]), "lora", LoraConfig(r=2, target_modules=[generic]))
        adapted = {name.split(".lora_A")[0].removeprefix("base_model.model.")
                   for name in trainable_names(wrapped) if ".lora_A." in name}
        layers = dims(wrapped)[1]
        expected = {f"{ENCODER[kind]}.{i}.{ending.format(layer='')}".replace("..", ".") for i in range(layers)}
        assert adapted == expected, generic


def test_all_linear_adapts_every_encoder_linear_but_not_the_head(tiny_models):
    model = load(tiny_models["bert"])
    linears = {name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.startswith("bert.encoder.")}
    wrapped = peft(model, peft_type="LORA", r=2, target_modules="all-linear")
    adapted = {name.split(".lora_A")[0].removeprefix("base_model.model.")
               for name in trainable_names(wrapped) if ".lora_A." in name}
    assert adapted >= linears and not any(name.startswith("classifier") for name in adapted)


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


@pytest.mark.parametrize("kind", KINDS)
def test_head_trains_only_the_classifier(tiny_models, kind):
    model = load(tiny_models[kind])
    wrapped = apply_method(model, "head")
    assert all(name.split(".")[0] in HEAD[kind] for name in trainable_names(wrapped))
    assert count_parameters(wrapped)[0] == head_parameters(model, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_bitfit_trains_every_bias_and_the_head(tiny_models, kind):
    model = load(tiny_models[kind])
    wrapped = apply_method(model, "bitfit")
    encoder_biases = [p for name, p in model.named_parameters()
                      if name.endswith("bias") and name.split(".")[0] not in HEAD[kind]]
    assert len(encoder_biases) > 4 * dims(model)[1]  # attention, feed-forward and LayerNorm biases per layer
    for name in trainable_names(wrapped):
        assert name.endswith("bias") or name.split(".")[0] in HEAD[kind], name
    assert count_parameters(wrapped)[0] == head_parameters(model, kind) + sum(p.numel() for p in encoder_biases)


def _layer_norms(model):
    return sum(p.numel() for module in model.modules() if isinstance(module, torch.nn.LayerNorm)
               for p in module.parameters())


# (adapter block, trainable parameters besides the head: a function of hidden size, layers and the model)
PEFT_TYPES = {
    "IA3": ({"target_modules": ["key", "value", "intermediate"], "feedforward_modules": ["intermediate"]},
            lambda hidden, layers, model: layers * 3 * hidden),  # one scale per output (key, value) or input (ff)
    "VERA": ({"target_modules": ["query", "value"], "r": 4},
             lambda hidden, layers, model: layers * 2 * (hidden + 4)),  # lambda_b (out) and lambda_d (r)
    "LN_TUNING": ({"target_modules": ["layer_norm"]}, lambda hidden, layers, model: _layer_norms(model)),
    "PROMPT_TUNING": ({"num_virtual_tokens": 5}, lambda hidden, layers, model: 5 * hidden),
    "LORA": ({"target_modules": ["query", "value"], "r": 2, "init_lora_weights": "pissa"},
             lambda hidden, layers, model: layers * 2 * 2 * 2 * hidden),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peft_type", PEFT_TYPES)
def test_peft_types_build_on_every_architecture(tiny_models, kind, peft_type):
    block, expected = PEFT_TYPES[peft_type]
    model = load(tiny_models[kind])
    hidden, layers = dims(model)
    head = head_parameters(model, kind)
    count = expected(hidden, layers, model)
    wrapped = peft(model, peft_type=peft_type, **block)
    assert count_parameters(wrapped)[0] == count + head
    for module in HEAD[kind]:
        assert any(name.startswith(f"base_model.model.{module}.modules_to_save") or f".{module}.modules_to_save" in name
                   for name in trainable_names(wrapped)), module
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    assert wrapped(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 4)


def test_pissa_moves_the_principal_part_out_of_the_base_weights(tiny_models):
    original = load(tiny_models["bert"]).bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    wrapped = peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["query"], init_lora_weights="pissa")
    layer = wrapped.base_model.model.bert.encoder.layer[0].attention.self.query
    residual = layer.base_layer.weight.detach()
    assert (residual - original).abs().max() > 1e-3  # PiSSA changed the base weights
    update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
    assert torch.allclose(residual + update, original, atol=1e-5)  # residual + adapter = the original


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_merged_keeps_the_trained_head_for_every_type(tiny_models, kind):
    """RoBERTa's head is a module, not a Linear: PEFT 0.21 unloads it only for LoRA."""
    wrapped = peft(load(tiny_models[kind]), peft_type="IA3", target_modules=["key"], feedforward_modules=[])
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "modules_to_save" in name or "ia3_l" in name:
                parameter.add_(0.3)  # as if trained
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 21, 3, 0]])
    mask = (ids != 0).long()
    wrapped.eval()
    before = wrapped(input_ids=ids, attention_mask=mask).logits
    after = merged(wrapped)(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before, after, atol=1e-5)


def test_adalora_total_step_comes_from_the_plan(tiny_models):
    wrapped = peft(load(tiny_models["bert"]), peft_type="ADALORA", target_modules=["query"], init_r=4, target_r=2)
    assert wrapped.peft_config["default"].total_step == 20
    kept = peft(load(tiny_models["bert"]), peft_type="ADALORA", target_modules=["query"], total_step=7)
    assert kept.peft_config["default"].total_step == 7
    assert hooks.total_steps(100, _training(batch_size=16, gradient_accumulation_steps=1, epochs=2)) == 14
    assert hooks.total_steps(100, _training(batch_size=16, gradient_accumulation_steps=3, epochs=1.5)) == 5


def _training(**fields):
    from core.config import TrainingConfig

    return TrainingConfig(**fields)


def test_loraplus_gives_b_matrices_the_ratio_of_the_learning_rate(tiny_models):
    adapter = check_adapter({"peft_type": "LORA", "r": 2, "target_modules": ["query"], "loraplus_lr_ratio": 16})
    wrapped = apply_method(load(tiny_models["bert"]), "peft", adapter)
    active = hooks.active(adapter)
    assert [type(hook).__name__ for hook in active] == ["LoraPlus"]
    optimizer = active[0].optimizer(wrapped, adapter, _training(learning_rate=1e-3))
    rates = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rates[id(parameter)] = group["lr"]
    for name, parameter in wrapped.named_parameters():
        if "lora_A" in name:
            assert rates[id(parameter)] == pytest.approx(1e-3), name
        elif "lora_B" in name:
            assert rates[id(parameter)] == pytest.approx(16e-3), name
    assert not hooks.active({"peft_type": "LORA", "r": 2})  # no ratio: the Trainer's own optimizer


def test_generic_names_in_every_module_field(tiny_models):
    """feedforward_modules and modules_to_save take generic names too; a user's modules_to_save keeps the head."""
    wrapped = peft(load(tiny_models["distilbert"]), peft_type="IA3", target_modules=["value", "output"],
                   feedforward_modules=["output"], modules_to_save=["attention_output"])
    config = wrapped.peft_config["default"]
    assert all(name.endswith("ffn.lin2") for name in config.feedforward_modules)
    assert set(config.modules_to_save) >= {"pre_classifier", "classifier"}
    assert any("out_lin.modules_to_save" in name for name in trainable_names(wrapped))


# ----------------------------------------------------------------------------------------------
# Bad blocks: AdapterError names the key and what would work


@pytest.mark.parametrize("block, key, pattern", [
    ({"peft_type": "IA4"}, "peft_type", r"unknown PEFT type 'IA4' \(did you mean 'IA3'\?\); PEFT's types: .*LORA"),
    ({}, "peft_type", r"required; one of .*IA3"),
    ({"peft_type": "IA3", "rank": 4}, "rank", r"unknown key 'rank' for IA3; valid fields of IA3Config: peft_type, "
                                              r"target_modules, .*feedforward_modules"),
    ({"peft_type": "LORA", "lora_alhpa": 4}, "lora_alhpa", r"did you mean 'lora_alpha'\?"),
    ({"peft_type": "LORA", "task_type": "SEQ_CLS"}, "task_type", r"set by the pipeline"),
    ({"peft_type": "LORA", "r": "x"}, "r", r"'x' is invalid"),
    ({"peft_type": "IA3", "target_modules": ["key"], "feedforward_modules": ["value"]}, None, r"PEFT rejects it: .*"),
])
def test_bad_blocks_name_the_key(block, key, pattern):
    with pytest.raises(AdapterError, match=pattern) as error:
        check_adapter(block)
    assert error.value.key == key


def test_yaml_strings_become_numbers_and_types_upper_case():
    adapter = check_adapter({"peft_type": "lora", "lora_dropout": "5e-2", "r": 4})
    assert adapter == {"peft_type": "LORA", "lora_dropout": 0.05, "r": 4}
    json.dumps(adapter)  # recorded in metrics.json and hashed into the fingerprint


def test_unknown_target_lists_the_architectures_modules(tiny_models):
    with pytest.raises(AdapterError, match=r"'q_proj' is not a module of model type 'distilbert'; use generic names"
                                           r" query, key, value, .*all-linear, or its own modules: .*q_lin") as error:
        apply_method(load(tiny_models["distilbert"]), "lora", LoraConfig(target_modules=["q_proj"]))
    assert error.value.key == "target_modules"


@pytest.mark.parametrize("block, key", [
    ({"feedforward_modules": ["nope"], "target_modules": ["key", "nope"]}, "target_modules"),
    ({"target_modules": ["key"], "modules_to_save": ["nope"]}, "modules_to_save"),
    ({"target_modules": ["key"], "layers_to_transform": [5]}, "layers_to_transform"),
    ({"target_modules": r".*\.nothing"}, "target_modules"),
])
def test_every_module_field_is_checked(tiny_models, block, key):
    with pytest.raises(AdapterError) as error:
        peft(load(tiny_models["bert"]), peft_type="IA3" if "feedforward_modules" in block else "LORA", **block)
    assert error.value.key == key


def test_native_names_pass_through(tiny_models):
    wrapped = apply_method(load(tiny_models["distilbert"]), "lora", LoraConfig(r=4, target_modules=["out_lin"]))
    assert any("out_lin.lora_A" in name for name, _ in wrapped.named_parameters())


def test_architecture_without_mapping_lists_its_modules(tiny_models):
    model = load(tiny_models["bert"])
    model.config.model_type = "mystery"
    with pytest.raises(AdapterError, match=r"'attention_output' is not a module of model type 'mystery'; use \(no"
                                           r" generic names for it: add it to ARCHITECTURES.*its own modules: .*query"):
        apply_method(model, "lora", LoraConfig(target_modules=["attention_output"]))
    wrapped = apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=2, target_modules=["query"]))
    assert count_parameters(wrapped)[0] > 0  # own names work without a mapping


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


# ----------------------------------------------------------------------------------------------
# check_runs: every run's block on a meta-device skeleton before anything runs


def _run(model, method="lora", task="C", lora=None, adapter=None, **training):
    from core.config import TrainingConfig
    from pipeline.plan import Run

    return Run(run_id=f"{task}1_v1", task=task, method=method, model_number=1, model=str(model), variant="v1",
               training=TrainingConfig(**training) if method in ("lora", "peft", "full") else None,
               lora=lora, adapter=adapter)


def test_check_runs_names_the_task_block_and_key(tiny_models):
    from core.models import ModelError
    from tasks.adapters import check_runs

    good = _run(tiny_models["bert"], lora=LoraConfig(r=2, target_modules=["query"]))
    check_runs([good, _run(tiny_models["bert"], method="full", task="B")], train_rows=100)  # fits: nothing raised
    with pytest.raises(ModelError, match=r"^tasks\.C\.lora\.target_modules: 'q_proj' is not a module of model type"
                                         r" 'bert'; use generic names"):
        check_runs([_run(tiny_models["bert"], lora=LoraConfig(r=2, target_modules=["q_proj"]))])
    adapter = check_adapter({"peft_type": "LORA", "target_modules": ["query"], "layers_to_transform": [2]})
    with pytest.raises(ModelError, match=r"^tasks\.G\.adapter\.layers_to_transform: layer 2 does not exist; model type"
                                         r" 'distilbert' here has layers 0-1$"):
        check_runs([_run(tiny_models["distilbert"], method="peft", task="G", adapter=adapter)], train_rows=100)
    on_norms = check_adapter({"peft_type": "LORA", "target_modules": r".*LayerNorm"})  # LoRA cannot wrap a LayerNorm
    with pytest.raises(ModelError, match=rf"^tasks\.H\.adapter: PEFT cannot apply it to {tiny_models['bert']}"
                                         r" \(Target module .*LayerNorm.* is not supported\..*\)$"):
        check_runs([_run(tiny_models["bert"], method="peft", task="H", adapter=on_norms)])


def test_check_runs_applies_each_distinct_block_once_with_the_runs_steps(tiny_models, monkeypatch):
    from tasks import adapters

    calls = []
    original = adapters.apply_method

    def spy(model, method, settings=None, total_steps=None):
        calls.append((method, total_steps, model.device.type))
        return original(model, method, settings, total_steps)

    monkeypatch.setattr(adapters, "apply_method", spy)
    lora = LoraConfig(r=2, target_modules=["query"])
    same = [_run(tiny_models["bert"], lora=lora, batch_size=16, epochs=1),
            _run(tiny_models["bert"], task="E", lora=lora, batch_size=16, epochs=1),  # same model, block and steps
            _run(tiny_models["bert"], method="full", task="B")]  # no block: nothing to check
    adapters.check_runs(same, train_rows=100)
    assert calls == [("lora", 7, "meta")]  # ceil(100 / 16) steps, on the meta device
    calls.clear()
    adapters.check_runs([*same, _run(tiny_models["bert"], lora=lora, batch_size=50, epochs=1),  # other steps
                         _run(tiny_models["distilbert"], lora=lora, batch_size=16, epochs=1)], train_rows=100)
    assert calls == [("lora", 7, "meta"), ("lora", 2, "meta"), ("lora", 7, "meta")]
    calls.clear()
    adapters.check_runs(same)  # rows unknown: no step count
    assert calls == [("lora", None, "meta")]
    calls.clear()
    block = {"peft_type": "LORA", "r": 2, "target_modules": ["query"]}
    reordered = dict(reversed(block.items()))  # the same block, its keys in another order
    adapters.check_runs([_run(tiny_models["bert"], method="peft", adapter=block),
                         _run(tiny_models["bert"], method="peft", task="E", adapter=reordered),
                         _run(tiny_models["bert"], task="F", lora=LoraConfig(r=2, target_modules=["key"])),
                         _run(tiny_models["bert"], task="G", lora=LoraConfig(r=2, target_modules=["value"]))])
    assert calls == [("peft", None, "meta"), ("lora", None, "meta"), ("lora", None, "meta")]  # other blocks: checked


def test_check_runs_leaves_what_the_meta_device_cannot_run_to_the_run(tiny_models, monkeypatch):
    from tasks import adapters

    def meta_fails(model, method, settings=None, total_steps=None):
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    monkeypatch.setattr(adapters, "apply_method", meta_fails)
    adapters.check_runs([_run(tiny_models["bert"], lora=LoraConfig(r=2, target_modules=["query"]))])  # no error


def test_adapter_error_names_the_block_and_key():
    assert AdapterError("'x' is invalid", "r").where("tasks.G.adapter") == "tasks.G.adapter.r: 'x' is invalid"
    assert AdapterError("PEFT rejects it: no").where("adapter") == "adapter: PEFT rejects it: no"


def test_layers_to_transform_must_exist(tiny_models):
    for layers in (1, [0, 1]):  # one layer or a list; the tiny models have layers 0 and 1
        wrapped = peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["query"],
                       layers_to_transform=layers)
        adapted = {name.split(".lora_A")[0] for name in trainable_names(wrapped) if ".lora_A." in name}
        assert adapted == {f"base_model.model.bert.encoder.layer.{i}.attention.self.query"
                           for i in ([1] if layers == 1 else [0, 1])}
    own = peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["dense"], layers_to_transform=[1])
    assert {name.split(".lora_A")[0] for name in trainable_names(own) if ".lora_A." in name} == {
        f"base_model.model.bert.encoder.layer.1.{dense}.dense" for dense in ("attention.output", "intermediate", "output")}
    wrapped = peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["query"], layers_to_transform=[0],
                   layers_pattern="layer")  # BERT's layers are encoder.layer.N
    assert {name.split(".attention")[0] for name in trainable_names(wrapped) if ".lora_A." in name} == {
        "base_model.model.bert.encoder.layer.0"}
    with pytest.raises(ValueError, match="No modules were targeted"):  # as PEFT itself: a pattern no layer has
        peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["query"], layers_to_transform=[0],
             layers_pattern="nothing")
    for bad, shown in ((2, 2), ([0, -1], -1), ([3, 1], 3)):
        with pytest.raises(AdapterError, match=rf"^layer {shown} does not exist; model type 'bert' here has layers 0-1$"):
            peft(load(tiny_models["bert"]), peft_type="LORA", r=2, target_modules=["query"], layers_to_transform=bad)


def test_module_lists_resolve_once_each_and_all_linear_in_any_form(tiny_models):
    from tasks.adapters import resolve_modules

    model = load(tiny_models["bert"])
    assert resolve_modules(model, ["all-linear"]) == "all-linear" == resolve_modules(model, "all-linear")
    ffn = ["bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"]
    assert resolve_modules(model, ["intermediate", "feed_forward", "intermediate"]) == ffn  # one name, once
    assert resolve_modules(model, ["query", "query"]) == ["bert.encoder.layer.0.attention.self.query",
                                                          "bert.encoder.layer.1.attention.self.query"]
    assert resolve_modules(model, ["dense", "query", "dense"]) == ["dense", "bert.encoder.layer.0.attention.self.query",
                                                                    "bert.encoder.layer.1.attention.self.query"]
    assert resolve_modules(model, r".*\.query") == r".*\.query"  # a regex passes through as PEFT reads it
    with pytest.raises(AdapterError, match=r"^the pattern 'query' matches no module of model type 'bert'$") as error:
        resolve_modules(model, "query", "exclude_modules")  # a regex matches whole names
    assert error.value.key == "exclude_modules"


def test_prompt_learning_cannot_merge_and_is_returned_as_it_is(tiny_models):
    from tasks.adapters import can_merge

    prompt = peft(load(tiny_models["bert"]), peft_type="PROMPT_TUNING", num_virtual_tokens=3)
    assert not can_merge(prompt) and merged(prompt) is prompt
    plain = load(tiny_models["bert"])
    assert not can_merge(plain) and merged(plain) is plain
    lora = apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=2, target_modules=["query"]))
    assert can_merge(lora)
    assert type(merged(lora)).__name__ == "BertForSequenceClassification"


def test_adapter_settings_by_method():
    from tasks.adapters import adapter_settings

    assert adapter_settings("full", None) is None and adapter_settings("head", None) is None
    block = {"peft_type": "IA3", "target_modules": ["key"]}
    assert adapter_settings("peft", block) == block and adapter_settings("peft", block) is not block
    lora = adapter_settings("lora", LoraConfig(r=2, target_modules=["query"]))
    assert lora["peft_type"] == "LORA" and lora["r"] == 2 and lora["target_modules"] == ["query"]


def test_error_lists_are_comma_separated(tiny_models):
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    types = ", ".join(sorted(kind.value for kind in PEFT_TYPE_TO_CONFIG_MAPPING))
    with pytest.raises(AdapterError) as error:
        check_adapter({})
    assert str(error.value) == f"required; one of {types}"
    with pytest.raises(AdapterError) as error:
        check_adapter({"peft_type": "nope"})
    assert str(error.value).endswith(f"; PEFT's types: {types}")
    with pytest.raises(AdapterError, match=r"^'q_proj', 'k_proj' is not a module of model type 'bert'; .* its own"
                                           r" modules: LayerNorm, classifier, dense, key, query, value$"):
        apply_method(load(tiny_models["bert"]), "lora", LoraConfig(target_modules=["q_proj", "k_proj"]))
    from tasks.adapters import resolve_modules
    with pytest.raises(AdapterError) as error:
        resolve_modules(load(tiny_models["bert"]), "nothing")
    assert error.value.key == "target_modules"  # the field named when none is given


def test_peft_rejection_is_its_first_line_or_the_error_type(monkeypatch):
    from tasks import adapters

    for raised, shown in ((ValueError("r must be positive\nsee the docs"), "r must be positive"),
                          (ValueError(""), "ValueError")):
        def reject(*args, error=raised, **kwargs):
            raise error
        monkeypatch.setattr(adapters, "_build", reject)
        with pytest.raises(AdapterError, match=rf"^PEFT rejects it: {shown}$"):
            check_adapter({"peft_type": "LORA"})


def test_checks_a_schedule_that_needs_many_steps_and_keeps_peft_literals():
    # AdaLoRA's schedule must fit total_step; the plan's steps are not known yet, so the check assumes plenty
    assert check_adapter({"peft_type": "ADALORA", "target_modules": ["query"], "tinit": 100, "tfinal": 100})["tinit"] == 100
    assert check_adapter({"peft_type": "LORA", "init_lora_weights": "pissa_niter_4"})["init_lora_weights"] == "pissa_niter_4"


def test_explicit_prompt_sizes_are_kept(tiny_models):
    wrapped = peft(load(tiny_models["bert"]), peft_type="PROMPT_TUNING", num_virtual_tokens=3, num_layers=5)
    config = wrapped.peft_config["default"]
    assert config.num_layers == 5 and config.token_dim == 32  # given: kept; not given: the model's hidden size


def test_only_peft_known_deprecation_warning_is_silenced(tiny_models, monkeypatch):
    import warnings

    import peft as peft_library

    def noisy(model, config):
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
        warnings.warn("something else", FutureWarning)
        warnings.warn("is_gradient_checkpointing, but not a deprecation", UserWarning)
        return model

    monkeypatch.setattr(peft_library, "get_peft_model", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_method(load(tiny_models["bert"]), "lora", LoraConfig(r=2, target_modules=["query"]))
    shown = [(w.category, str(w.message)) for w in caught if w.category in (FutureWarning, UserWarning)
             and ("something else" in str(w.message) or "is_gradient_checkpointing" in str(w.message))]
    assert shown == [(FutureWarning, "something else"), (UserWarning, "is_gradient_checkpointing, but not a deprecation")]


def test_merged_puts_nested_saved_modules_back_in_place(tiny_models):
    plain_keys = set(load(tiny_models["bert"]).state_dict())
    wrapped = peft(load(tiny_models["bert"]), peft_type="IA3", target_modules=["key"], feedforward_modules=[],
                   modules_to_save=["attention_output"])
    unloaded = merged(wrapped)
    assert set(unloaded.state_dict()) == plain_keys
    assert [name for name, _ in unloaded.named_children()] == ["bert", "dropout", "classifier"]


def test_check_runs_reports_what_peft_cannot_run_on_the_architecture(tiny_models):
    from core.models import ModelError
    from tasks.adapters import check_runs

    prefix = check_adapter({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 3})  # BERT takes no past_key_values
    with pytest.raises(ModelError, match=r"^tasks\.P\.adapter: PEFT cannot apply it to .*bert \(.+\)$"):
        check_runs([_run(tiny_models["bert"], method="peft", task="P", adapter=prefix)])
