"""Methods for few labels (issue 21, part 2): embed_lr, zero_shot and setfit.

Made-up embeddings (an injected embedding function) give hand-computed predictions; setfit's pair sampler and
contrastive loop run on a tiny random model; all three go end to end through main.py with predict, and the dry run.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.linear_model import LogisticRegression

from conftest import CLASSES, tiny_config
from core.config import ConfigError, validate
from dataset import Splits
from main import main
from tasks import embeddings, zero_shot
from tasks.setfit_method import PAIRS_PER_TEXT, sample_pairs, tune

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


# ----------------------------------------------------------------------------------------------
# Made-up embeddings


def _frame(texts, labels=None):
    return pd.DataFrame({"row": np.arange(len(texts)), "text": texts,
                         "label": labels if labels is not None else [0] * len(texts)})


def _context(train, validation, test, class_names):
    splits = Splits(train=_frame(*train), validation=_frame(*validation), test=_frame(*test), source="made up",
                    class_names=tuple(class_names))
    return SimpleNamespace(splits=splits)


def _lookup(vectors: dict[str, list[float]]):
    """The injected embedding function: each text's vector as the test says."""
    def embed(texts):
        return np.array([vectors[text] for text in texts], dtype=float)

    return embed


def test_zero_shot_on_made_up_embeddings_gives_the_hand_computed_softmax_of_cosines():
    vectors = {"about war": [1, 0], "about sport": [0, 2],  # the class descriptions; lengths do not matter
               "t1": [3, 4], "t2": [1, -1], "t3": [-2, 5]}
    fitted, probabilities = zero_shot.score(["about war", "about sport"], ["t1", "t2", "t3"], _lookup(vectors))
    # cosines by hand: t1 (0.6, 0.8); t2 (1/sqrt2, -1/sqrt2); t3 (-2/sqrt29, 5/sqrt29); temperature 0.05 = x20
    cosines = np.array([[0.6, 0.8], [1 / math.sqrt(2), -1 / math.sqrt(2)], [-2 / math.sqrt(29), 5 / math.sqrt(29)]])
    assert zero_shot.TEMPERATURE == 0.05
    expected = np.exp(cosines * 20) / np.exp(cosines * 20).sum(axis=1, keepdims=True)
    assert probabilities.argmax(axis=1).tolist() == [1, 0, 1]
    assert np.allclose(probabilities, expected, atol=1e-12)
    assert probabilities[0, 0] == pytest.approx(1 / (1 + math.exp(4)))  # softmax([12, 16])
    assert np.allclose(fitted["weight"], [[20, 0], [0, 20]]) and not fitted["bias"].any()  # the saved head


def test_zero_shot_matches_descriptions_in_class_order(tmp_path):
    config = validate({"models": ["m"], "tasks": {"Z": {"method": "zero_shot"}},
                       "dataset": {"class_descriptions": {"Sports": "games and teams", "World": "politics"}}},
                      base_dir=tmp_path)
    assert config.dataset.descriptions(["World", "Sports"]) == ["politics", "games and teams"]
    listed = validate({"models": ["m"], "tasks": {"Z": {"method": "zero_shot"}},
                       "dataset": {"class_descriptions": ["politics", "games"]}}, base_dir=tmp_path)
    assert listed.dataset.descriptions(["World", "Sports"]) == ["politics", "games"]
    assert config.model_copy(update={"dataset": config.dataset.model_copy(
        update={"class_descriptions": None})}).dataset.descriptions(["World", "Sports"]) == ["World", "Sports"]


def test_embed_lr_on_made_up_embeddings_predicts_the_nearest_cluster_and_records_its_choice_of_c():
    rng = np.random.default_rng(0)
    centres = {0: [4, 0, 0], 1: [0, 4, 0], 2: [0, 0, 4]}
    vectors, split = {}, {}
    for name, count in (("train", 30), ("validation", 9)):
        texts, labels = [], []
        for i in range(count):
            label = i % 3
            texts.append(f"{name}{i}")
            labels.append(label)
            vectors[f"{name}{i}"] = (np.array(centres[label]) + rng.normal(0, 0.5, 3)).tolist()
        split[name] = (texts, labels)
    # test texts placed by hand: nearest centre 2, 0, 1, 0
    vectors.update({"a": [0, 0.5, 3], "b": [5, 1, 0], "c": [0.2, 3, 0.4], "d": [2, -1, -1]})
    context = _context(split["train"], split["validation"], (["a", "b", "c", "d"],), ["x", "y", "z"])
    head, fields = embeddings.fit_and_score(context, _lookup(vectors))
    assert fields["probabilities"].argmax(axis=1).tolist() == [2, 0, 1, 0]
    record = fields["extra"]["logistic_regression"]
    assert record["C_grid"] == [0.01, 0.1, 1.0, 10.0, 100.0]
    # the choice recomputed with scikit-learn: best validation accuracy, ties to the smaller C
    train_x = np.array([vectors[t] for t in split["train"][0]])
    validation_x = np.array([vectors[t] for t in split["validation"][0]])
    scores = {c: (LogisticRegression(C=c, max_iter=2000).fit(train_x, split["train"][1]).predict(validation_x)
                  == split["validation"][1]).mean() for c in record["C_grid"]}
    assert record["C"] == min(c for c in scores if scores[c] == max(scores.values()))
    chosen = LogisticRegression(C=record["C"], max_iter=2000).fit(train_x, split["train"][1])
    test_x = np.array([vectors[t] for t in "abcd"])
    assert np.allclose(fields["probabilities"], chosen.predict_proba(test_x), atol=1e-9)
    assert np.allclose(embeddings.softmax(test_x @ head["weight"].T + head["bias"]), chosen.predict_proba(test_x))


def test_embed_lr_binary_head_gives_scikit_learns_probabilities():
    vectors = {"p0": [1, 0], "p1": [0.8, 0.3], "p2": [1.2, -0.1], "n0": [-1, 0], "n1": [-0.7, 0.2], "n2": [-1.1, 0.1],
               "v0": [0.9, 0], "v1": [-0.9, 0], "t": [0.1, 0.5]}
    context = _context((["p0", "n0", "p1", "n1", "p2", "n2"], [1, 0, 1, 0, 1, 0]), (["v0", "v1"], [1, 0]),
                       (["t", "n2"],), ["neg", "pos"])
    head, fields = embeddings.fit_and_score(context, _lookup(vectors))
    train_x = np.array([vectors[t] for t in ["p0", "n0", "p1", "n1", "p2", "n2"]])
    chosen = LogisticRegression(C=fields["extra"]["logistic_regression"]["C"], max_iter=2000)
    chosen.fit(train_x, [1, 0, 1, 0, 1, 0])
    assert np.allclose(fields["probabilities"], chosen.predict_proba(np.array([vectors["t"], vectors["n2"]])))
    assert head["weight"].shape == (2, 2) and fields["probabilities"].argmax(axis=1).tolist() == [1, 0]


# ----------------------------------------------------------------------------------------------
# Pooling and setfit's pieces on the tiny model


def test_mean_pooling_leaves_padding_out(tiny_models):
    embedder, tokenizer = embeddings.load_embedder(str(tiny_models["bert"]))
    embedder.eval()
    short, long = tokenizer(["game team"])["input_ids"][0], tokenizer(["stocks market oil prices bank"])["input_ids"][0]
    with torch.inference_mode():
        alone = embedder(torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long))
        padded = torch.full((1, len(long)), tokenizer.pad_token_id)
        padded[0, :len(short)] = torch.tensor(short)
        mask = torch.zeros(1, len(long), dtype=torch.long)
        mask[0, :len(short)] = 1
        in_batch = embedder(padded, mask)
        hidden = embedder.encoder(input_ids=torch.tensor([short])).last_hidden_state[0]
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert torch.allclose(alone[0], hidden.mean(dim=0), atol=1e-5)  # the mean of the text's own token vectors


def test_a_sentence_transformers_folder_says_its_own_pooling(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    assert embeddings.model_pooling(str(tmp_path)) == ("cls", True)
    assert embeddings.model_pooling(str(tmp_path / "plain")) == ("mean", False)


def test_setfit_pairs_are_seeded_positive_within_and_negative_across_classes():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    pairs = sample_pairs(labels, seed=1)
    assert len(pairs) == 2 * PAIRS_PER_TEXT * len(labels)
    assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).tolist() == (pairs[:, 2] == 1).tolist()
    assert (pairs[pairs[:, 2] == 1, 0] != pairs[pairs[:, 2] == 1, 1]).all()  # no text is its own positive here
    assert (pairs == sample_pairs(labels, seed=1)).all()
    assert not (pairs == sample_pairs(labels, seed=2)).all()


def test_setfit_tuning_lowers_the_contrastive_loss_on_a_tiny_random_model(tiny_models, tiny_data):
    from conftest import make_texts

    embedder, tokenizer = embeddings.load_embedder(str(tiny_models["bert"]))
    rows = make_texts(40, seed=5)
    ids = tokenizer([text for text, _ in rows], truncation=True, max_length=48)["input_ids"]
    before = {name: p.detach().clone() for name, p in embedder.named_parameters()}
    training = SimpleNamespace(epochs=0.5, batch_size=16, learning_rate=1e-3, weight_decay=0.0, warmup_ratio=0.0,
                               lr_scheduler="constant", max_grad_norm=1.0)
    steps, pairs = tune(embedder, ids, np.array([label for _, label in rows]), tokenizer.pad_token_id, training,
                        seed=0, device=torch.device("cpu"), bf16=False)
    assert pairs == 2 * PAIRS_PER_TEXT * 40 and len(steps) == math.ceil(0.5 * pairs / 16)
    losses = [row["train_loss"] for row in steps]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    changed = [name for name, p in embedder.named_parameters() if not torch.equal(p, before[name])]
    assert changed == [name for name in before if ".pooler." not in name]  # the encoder; BERT's pooler is unused


# ----------------------------------------------------------------------------------------------
# End to end through main.py


@pytest.fixture(scope="module")
def few_labels(tiny_data, tiny_models, tmp_path_factory):
    """E (embed_lr) and Z (zero_shot) on the tiny BERT, DistilBERT and RoBERTa; S (setfit) on the BERT."""
    root = tmp_path_factory.mktemp("few_labels")
    raw = tiny_config(tiny_data, [tiny_models[kind] for kind in ("bert", "distilbert", "roberta")], root / "results",
                      tasks={"E": {"method": "embed_lr"},
                             "Z": {"method": "zero_shot"},
                             "S": {"method": "setfit", "models": [1], "variants": ["v1"],
                                   "training": {"epochs": 0.25, "learning_rate": 1e-3}}})
    raw["dataset"]["class_descriptions"] = {"World": "president government war", "Sports": "game team season",
                                            "Business": "stocks market oil", "Sci/Tech": "software computer internet"}
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--config", str(config), "--quiet"])
    assert code == 0, stderr.getvalue()
    return {"config": config, "results": root / "results", "raw": raw, "models": tiny_models,
            "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


@pytest.mark.parametrize("run_id", ["E1", "E2", "E3", "Z1", "Z3", "S1_v1"])
def test_predict_gives_back_each_runs_own_predictions(few_labels, run_id, tmp_path, capsys):
    predictions = few_labels["results"] / run_id / "predictions.csv"
    out = tmp_path / "again.csv"
    assert main(["predict", run_id, "--file", str(predictions), "--out", str(out),
                 "--config", str(few_labels["config"])]) == 0
    assert f"40 predictions by {run_id} written to {out}" in capsys.readouterr().out
    expected, again = pd.read_csv(predictions), pd.read_csv(out)
    assert again["predicted"].tolist() == expected["predicted"].tolist()
    assert np.abs(_probabilities(again) - _probabilities(expected)).max() <= 2e-6  # both rounded to 6 digits
    record = json.loads((few_labels["results"] / run_id / "metrics.json").read_text())
    labels = expected["label"].to_numpy()
    assert record["metrics"]["accuracy"] == pytest.approx((expected["predicted"].to_numpy() == labels).mean())


def test_metrics_record_the_grid_the_chosen_c_the_temperature_and_the_parameters(few_labels):
    from transformers import AutoModel

    def record(run_id):
        return json.loads((few_labels["results"] / run_id / "metrics.json").read_text())

    encoder = sum(p.numel() for p in AutoModel.from_pretrained(str(few_labels["models"]["bert"])).parameters())
    head = 4 * (32 + 1)
    embed_lr, zero, setfit = record("E1"), record("Z1"), record("S1_v1")
    grid = embed_lr["logistic_regression"]
    assert grid["C_grid"] == [0.01, 0.1, 1.0, 10.0, 100.0] and grid["C"] in grid["C_grid"]
    assert set(grid["validation_accuracy"]) == {"0.01", "0.1", "1.0", "10.0", "100.0"}
    assert embed_lr["parameters"]["trainable"] == head and embed_lr["parameters"]["total"] == encoder + head
    assert zero["zero_shot"] == {"temperature": 0.05, "class_texts": ["president government war", "game team season",
                                                                       "stocks market oil", "software computer internet"]}
    assert zero["parameters"]["trainable"] == 0
    assert setfit["parameters"]["trainable"] == encoder + head
    assert setfit["setfit"]["pairs"] == 2 * PAIRS_PER_TEXT * 100  # 120 training rows less 20 for validation
    steps = pd.read_csv(few_labels["results"] / "S1_v1" / "steps.csv")
    assert len(steps) == setfit["setfit"]["steps"] == math.ceil(0.25 * 2 * PAIRS_PER_TEXT * 100 / 16)
    summary = pd.read_csv(few_labels["results"] / "summary.csv")
    assert {"E1", "Z1", "S1_v1"} <= set(summary["run_id"])


def test_saved_models_hold_no_pickle_and_setfit_keeps_its_tuned_encoder(few_labels):
    for run_id in ("E1", "Z1", "S1_v1"):
        names = {p.name for p in (few_labels["results"] / run_id / "model").iterdir()}
        assert {"head.json", "head.safetensors"} <= names
        assert not any(name.endswith((".pkl", ".bin", ".pt", ".joblib")) for name in names)
    assert (few_labels["results"] / "S1_v1" / "model" / "model.safetensors").is_file()
    assert not (few_labels["results"] / "E1" / "model" / "model.safetensors").exists()  # frozen: the base is used


@pytest.mark.parametrize("run_id", ["E1", "Z1", "S1_v1"])
def test_export_refuses_in_one_line_with_the_reason(few_labels, run_id, tmp_path, capsys):
    assert main(["export", run_id, str(tmp_path / "out"), "--config", str(few_labels["config"])]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(rf"export: run {run_id} \(method \w+\) classifies pooled embeddings with its own head, which no"
                     r" AutoModelForSequenceClassification folder computes; use python main.py predict", err), err
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_each_method_with_parameters_and_a_time(few_labels, capsys):
    assert main(["--dry-run", "--config", str(few_labels["config"])]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "trainable=132 of" in lines["E1"] and "trainable=0 of" in lines["Z1"]
    assert re.search(r"trainable=([\d,]+) of \1 \(100%\)", lines["S1_v1"])
    for run_id in ("E1", "E2", "Z1", "S1_v1"):
        assert "time≈" in lines[run_id] and lines[run_id].endswith("[skip: complete]"), lines[run_id]


# ----------------------------------------------------------------------------------------------
# Refused before any work


def test_class_descriptions_that_do_not_fit_the_classes_stop_the_run_in_one_line(tiny_data, tiny_models, tmp_path,
                                                                                 capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results", tasks={"Z": {"method": "zero_shot"}})
    raw["dataset"]["class_descriptions"] = ["politics", "sport", "money"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: dataset.class_descriptions: 3 descriptions for 4 classes"
                           f" ({', '.join(CLASSES)}); give one per class, in that order")
    assert not list((tmp_path / "results").glob("Z*"))


@pytest.mark.parametrize("dataset, message", [
    ({"class_names": ["a", "b"], "class_descriptions": ["x"]},
     r"dataset.class_descriptions: 1 descriptions for 2 classes \(a, b\); give one per class, in that order"),
    ({"class_names": ["a", "b", "c"], "class_descriptions": ["x", "y"]},
     r"dataset.class_descriptions: 2 descriptions for 3 classes \(a, b, c\); give one per class, in that order"),
    ({"class_names": ["World", "Sports"], "class_descriptions": {"World": "w", "Sport": "s"}},
     r"dataset.class_descriptions: 'Sport' is not a class \(did you mean 'Sports'\?\); the classes are World, Sports"),
    ({"class_names": ["World", "Sports"], "class_descriptions": {"World": "w"}},
     r"dataset.class_descriptions: no description for class 'Sports'; give one per class \(World, Sports\)"),
])
def test_class_descriptions_are_checked_against_class_names(tmp_path, dataset, message):
    with pytest.raises(ConfigError, match=message):
        validate({"models": ["m"], "tasks": {"Z": {"method": "zero_shot"}}, "dataset": dataset}, base_dir=tmp_path)


def test_setfit_takes_no_search(tmp_path):
    search = {"n_trials": 2, "space": {"training.learning_rate": [1e-4, 1e-3]}}
    with pytest.raises(ConfigError, match=r"tasks.S.search: method 'setfit' trains outside the Trainer, which search"
                                          r" drives; remove search"):
        validate({"models": ["m"], "tasks": {"S": {"method": "setfit", "variants": ["v1"], "search": search}}},
                 base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"tasks.S.search: method 'setfit' trains outside the Trainer"):
        validate({"models": ["m"], "variants": {"v1": {"search": search}},
                  "tasks": {"S": {"method": "setfit", "variants": ["v1"]}}}, base_dir=tmp_path)


def test_class_descriptions_change_fingerprints_only_when_set(tmp_path):
    from pipeline.plan import build_plan
    from pipeline.run_state import fingerprint

    raw = {"models": ["m"], "tasks": {"Z": {"method": "zero_shot"}}}
    plain = validate(raw, base_dir=tmp_path)
    described = validate({**raw, "dataset": {"class_descriptions": ["war", "sport", "money", "science"]}},
                         base_dir=tmp_path)
    run = build_plan(plain)[0]
    assert fingerprint(run, plain, None) != fingerprint(run, described, None)
