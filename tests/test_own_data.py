"""Bring your own data (issue 12): every format and source, column and label mapping, split roles, each data
problem as one line with exit 2, and the training options (class weights, early stopping, TensorBoard,
validations within an epoch) end to end on the tiny model."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest

import main
from conftest import SHARED, make_texts, tiny_config, write_config
from core.config import DatasetConfig, validate
from dataset import DataError, load_splits

SENTIMENT = {0: "positive", 1: "negative", 2: "neutral"}  # first seen is not first sorted


def records(count: int, seed: int = 0) -> list[dict]:
    """Two text columns and string labels; label-dependent words, so a few steps learn something."""
    return [{"headline": text.split(" ", 1)[0], "body": text.split(" ", 1)[-1], "sentiment": SENTIMENT[label % 3]}
            for text, label in make_texts(count, seed)]


def write(path, rows: list[dict]) -> None:
    """Writes `rows` in the format of the path's extension, with the standard library or pandas."""
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path)


def folder_of(tmp_path, suffix: str, train: list[dict], test: list[dict], validation: list[dict] | None = None):
    folder = tmp_path / f"data{suffix.replace('.', '_')}"
    folder.mkdir()
    for name, rows in (("train", train), ("test", test), ("validation", validation)):
        if rows is not None:
            write(folder / f"train{suffix}".replace("train", name), rows)
    return folder


def two_columns(**changes) -> DatasetConfig:
    return DatasetConfig(**{"text_column": ["headline", "body"], "label_column": "sentiment", "validation_size": 12,
                            **changes})


# ----------------------------------------------------------------------------------------------
# Formats, sources, columns, labels, splits


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_format_reads_texts_and_string_labels(tmp_path, suffix):
    train, test = records(60, seed=1), records(15, seed=2)
    splits = load_splits(two_columns(source=str(folder_of(tmp_path, suffix, train, test))))
    assert splits.class_names == ("negative", "neutral", "positive")  # sorted distinct labels
    expected_test = [f"{r['headline']} {r['body']}".strip() for r in test]
    assert splits.test["text"].tolist() == expected_test  # the two columns joined with a space
    assert [splits.class_names[i] for i in splits.test["label"]] == [r["sentiment"] for r in test]
    assert splits.sizes() == {"train": 48, "validation": 12, "test": 15}
    shares = pd.Series([r["sentiment"] for r in train]).value_counts() * 12 / 60  # stratified: 6, 3, 3
    held_out = splits.validation["label"].map(dict(enumerate(splits.class_names))).value_counts()
    assert held_out.sort_index().tolist() == shares.sort_index().tolist()
    joined = pd.concat([splits.train, splits.validation]).sort_values("row")
    assert joined["label"].map(dict(enumerate(splits.class_names))).tolist() == [r["sentiment"] for r in train]


def test_the_sources_own_validation_split_is_used(tmp_path):
    train, validation, test = records(30, 1), records(9, 3), records(6, 2)
    splits = load_splits(two_columns(source=str(folder_of(tmp_path, ".jsonl", train, test, validation))))
    assert splits.sizes() == {"train": 30, "validation": 9, "test": 6}  # not validation_size out of train
    assert splits.validation["text"].tolist() == [f"{r['headline']} {r['body']}" for r in validation]


def test_a_single_file_with_test_source_and_a_files_mapping(tmp_path):
    write(tmp_path / "mine.csv", records(40, 1))
    write(tmp_path / "held_out.parquet", records(10, 2))
    write(tmp_path / "dev.json", records(8, 3))
    single = load_splits(two_columns(source=str(tmp_path / "mine.csv"), test_source=str(tmp_path / "held_out.parquet")))
    assert single.sizes() == {"train": 28, "validation": 12, "test": 10}
    mapped = load_splits(two_columns(files={"train": str(tmp_path / "mine.csv"), "dev": str(tmp_path / "dev.json"),
                                            "test": str(tmp_path / "held_out.parquet")},
                                     splits={"validation": "dev"}))
    assert mapped.sizes() == {"train": 40, "validation": 8, "test": 10}
    assert mapped.test["text"].tolist() == single.test["text"].tolist()


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    write(tmp_path / "mine.csv", records(40, 1))
    write(tmp_path / "held_out.csv", records(10, 2))
    config = validate({"models": ["m"], "tasks": {"A0": {"method": "tfidf_nb"}},
                       "dataset": {"source": "mine.csv", "test_source": "held_out.csv"}}, base_dir=tmp_path)
    assert config.dataset.test_source == str(tmp_path / "held_out.csv")
    assert config.dataset.source == str(tmp_path / "mine.csv")


def test_integer_labels_class_names_and_value_names(tmp_path):
    rows = [{"text": text, "stars": label + 1} for text, label in make_texts(48, 1)]  # 1..4 stars
    folder = folder_of(tmp_path, ".jsonl", rows, rows[:8])
    by_value = load_splits(DatasetConfig(source=str(folder), label_column="stars", validation_size=8))
    assert by_value.class_names == ("1", "2", "3", "4")  # the labels as written
    assert [int(by_value.class_names[i]) for i in by_value.test["label"]] == [r["stars"] for r in rows[:8]]
    with pytest.raises(DataError, match=r"^dataset\.class_names: class 'zero' has no row in .*train\.jsonl"):
        load_splits(DatasetConfig(source=str(folder), label_column="stars", validation_size=8,  # a phantom class
                                  class_names=["zero", "one", "two", "three", "four"]))
    from_zero = [{"text": r["text"], "stars": r["stars"] - 1} for r in rows]
    named = load_splits(DatasetConfig(source=str(folder_of(tmp_path, ".parquet", from_zero, from_zero[:8])),
                                      label_column="stars", validation_size=8, class_names=["one", "two", "three",
                                                                                             "four"]))
    assert named.test["label"].tolist() == [r["stars"] for r in from_zero[:8]]  # integers index class_names from 0
    strings = [{"text": r["text"], "label": SENTIMENT[i % 3]} for i, r in enumerate(rows)]
    ordered = load_splits(DatasetConfig(source=str(folder_of(tmp_path, ".csv", strings, strings[:6])),
                                        validation_size=6, class_names=["neutral", "negative", "positive"]))
    assert ordered.test["label"].tolist() == [2, 1, 0, 2, 1, 0]  # the order of class_names


def test_hub_dataset_with_class_label_subset_and_an_unlabelled_test_split(monkeypatch):
    """GLUE SST-2's shape (sentence, ClassLabel, test labels -1), served from memory: the Hub is not reachable."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "idx": datasets.Value("int32")})

    def split(count, seed, unlabelled=False):
        rows = make_texts(count, seed)
        return datasets.Dataset.from_dict({"sentence": [t for t, _ in rows],
                                           "label": [-1 if unlabelled else l % 2 for _, l in rows],
                                           "idx": list(range(count))}, features=features)

    glue = datasets.DatasetDict(train=split(40, 1), validation=split(10, 2), test=split(10, 3, unlabelled=True))
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: asked.append(args) or glue)
    config = dict(source="nyu-mll/glue", subset="sst2", text_column="sentence", validation_size=8)
    with pytest.raises(DataError, match=r"^dataset\.splits\.test: split 'test' of nyu-mll/glue \(sst2\) has no labels"
                                        r" .*dataset\.splits\.test: validation$"):
        load_splits(DatasetConfig(**config))
    splits = load_splits(DatasetConfig(**config, splits={"test": "validation"}))
    assert asked[-1] == ("nyu-mll/glue", "sst2")
    assert splits.class_names == ("negative", "positive")  # from the ClassLabel feature
    assert splits.test["text"].tolist() == glue["validation"]["sentence"]
    assert splits.sizes() == {"train": 32, "validation": 8, "test": 10}  # validation stratified out of train


def test_ag_news_jsonl_with_string_labels_and_two_columns_gives_the_csvs_tfidf_accuracy(tmp_path):
    """A JSONL copy of the shared AG News (title and description apart, labels as names) and the CSV it was made
    from give the same A0 accuracy. A subset, for time: the first 2,000 train rows without surrounding spaces
    (joining title and description trims them) and the first 2,000 test rows."""
    names = ["World", "Sports", "Business", "Sci/Tech"]
    source = SHARED / "data" / "ag_news"
    with open(source / "train.csv", encoding="utf-8") as file:
        train = [row for row in list(csv.reader(file))[1:] if row[0] == row[0].strip()][:2000]
    with open(source / "test.csv", encoding="utf-8") as file:
        test = list(csv.reader(file))[:2000]
    as_csv, as_jsonl = tmp_path / "csv", tmp_path / "jsonl"
    as_csv.mkdir(), as_jsonl.mkdir()
    with open(as_csv / "train.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["text", "label"], *train])
    with open(as_csv / "test.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file, quoting=csv.QUOTE_ALL).writerows(test)  # AG News's headerless layout, as shared
    jsonl = [{"title": text.partition(" ")[0], "description": text.partition(" ")[2], "topic": names[int(label)]}
             for text, label in train]
    write(as_jsonl / "train.jsonl", jsonl)
    write(as_jsonl / "test.jsonl", [{"title": t, "description": d, "topic": names[int(c) - 1]} for c, t, d in test])
    accuracies = []
    for folder, dataset in ((as_csv, {}), (as_jsonl, {"text_column": ["title", "description"], "label_column": "topic",
                                                      "class_names": names})):
        out = tmp_path / f"out-{folder.name}"
        raw = {"output_dir": str(out), "models": ["unused"], "tasks": {"A0": {"method": "tfidf_nb"}},
               "dataset": {"source": str(folder), "validation_size": 200, **dataset}}
        assert main.main(["--config", str(write_config(tmp_path / f"{folder.name}.yaml", raw)), "--quiet"]) == 0
        metrics = json.loads((out / "A0" / "metrics.json").read_text())
        assert metrics["data"]["sizes"] == {"train": 1800, "validation": 200, "test": 2000}
        predictions = pd.read_csv(out / "A0" / "predictions.csv")
        assert (predictions["label"] == predictions["predicted"]).mean() == metrics["metrics"]["accuracy"]
        accuracies.append(metrics["metrics"]["accuracy"])
    assert accuracies[0] == accuracies[1] and accuracies[0] > 0.8


# ----------------------------------------------------------------------------------------------
# Every data problem: one line, exit 2, nothing written


def refused(tmp_path, raw, fragment, capsys, only=("A0",)):
    code = main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--quiet", "--only", *only])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err
    assert not (tmp_path / "out").exists(), "something was written"
    return err


def own_data(tmp_path, suffix=".jsonl", train=None, test=None, **dataset) -> dict:
    folder = folder_of(tmp_path, suffix, train or records(60, 1), test or records(12, 2))
    return {"source": str(folder), "text_column": ["headline", "body"], "label_column": "sentiment",
            "validation_size": 12, "max_length": 48, **dataset}


def bad_line(index, line):
    def change(path):
        lines = path.read_text().splitlines()
        lines[index] = line
        path.write_text("\n".join(lines) + "\n")
    return change


DATA_PROBLEMS = {
    # case: (dataset settings from own_data's arguments, a change to train.<suffix>, expected fragment)
    "a CSV row with a column too many": (
        dict(suffix=".csv"), bad_line(3, "a,b,negative,extra"), "train.csv: row 4: has 4 columns, expected 3"),
    "a JSONL line that is not JSON": (
        dict(), bad_line(2, '{"headline": "x", '), "train.jsonl: line 3: not valid JSON"),
    "an unknown text column": (
        dict(text_column="content"), None,
        "train.jsonl: no column 'content' (dataset.text_column); its columns are headline, body, sentiment"),
    "an unknown label column": (
        dict(label_column="stars"), None, "no column 'stars' (dataset.label_column)"),
    "a label not in class_names": (
        dict(class_names=["negative", "positive"]), None,
        "line 3: label 'neutral' is not in dataset.class_names (negative, positive); fix column 'sentiment'"),
    "an empty text": (
        dict(), bad_line(4, '{"headline": " ", "body": "", "sentiment": "neutral"}'),
        "train.jsonl: line 5: the text is empty (column 'headline', 'body')"),
    "a missing label": (
        dict(), bad_line(1, '{"headline": "a", "body": "b"}'), "train.jsonl: line 2: no label (column 'sentiment'"),
    "a class too small to stratify": (
        dict(), lambda path: path.write_text(path.read_text() + '{"headline": "a", "body": "b", "sentiment": "rare"}\n'),
        "dataset.validation_size: class 'rare' has 1 row in"),
    "a test split without labels": (
        dict(), "unlabelled test", "dataset.splits.test: split 'test' of"),
    "a split that does not exist": (
        dict(splits={"test": "holdout"}), None, "dataset.splits.test: "),
}


@pytest.mark.parametrize("case", DATA_PROBLEMS)
def test_each_data_problem_is_one_line_exit_2(case, tmp_path, tiny_models, capsys):
    settings, change, fragment = DATA_PROBLEMS[case]
    settings = dict(settings)  # a copy: the parameters are shared by every run of the test in this process
    suffix = settings.pop("suffix", ".jsonl")
    test = [{**r, "sentiment": -1} for r in records(12, 2)] if change == "unlabelled test" else None
    dataset = own_data(tmp_path, suffix, test=test, **settings)
    if callable(change):
        change(next(p for p in (tmp_path / f"data{suffix.replace('.', '_')}").iterdir() if p.stem == "train"))
    raw = tiny_config(tmp_path / "unused", [tiny_models["bert"]], tmp_path / "out", dataset=dataset)
    if change == "unlabelled test":
        write(tmp_path / f"data{suffix.replace('.', '_')}" / f"validation{suffix}", records(12, 3))
        err = refused(tmp_path, raw, fragment, capsys)
        assert err.strip().endswith("use a labelled split as the test: dataset.splits.test: validation")
    else:
        refused(tmp_path, raw, fragment, capsys)


SETTING_PROBLEMS = {
    "max_length beyond the model's positions": (
        {"dataset": {"max_length": 4096}}, ["B1_v1"],
        "dataset.max_length: 4096 tokens is more than model"),
    "class weights of the wrong length": (
        {"training": {"class_weights": [1.0, 2.0]}}, ["B1_v1"],
        "training.class_weights: 2 weights for 3 classes (negative, neutral, positive)"),
    "source and files together": (
        {"dataset": {"files": {"train": "a.csv", "test": "b.csv"}}}, ["A0"],
        "dataset.files: give dataset.source or dataset.files, not both"),
}


@pytest.mark.parametrize("case", SETTING_PROBLEMS)
def test_settings_the_data_or_model_cannot_take_are_refused_before_any_run(case, tmp_path, tiny_models, capsys):
    change, only, fragment = SETTING_PROBLEMS[case]
    raw = tiny_config(tmp_path / "unused", [tiny_models["bert"]], tmp_path / "out", dataset=own_data(tmp_path))
    for section, values in change.items():
        raw[section].update(values)
    if "files" in change.get("dataset", {}):
        raw["dataset"].pop("text_column")  # still refused: the config check comes first
    refused(tmp_path, raw, fragment, capsys, only)


def test_max_length_limit_reads_the_tokenizer_and_the_config(tiny_models):
    from core.models import max_input_tokens

    assert max_input_tokens(str(tiny_models["bert"])) == 64  # max_position_embeddings (no tokenizer limit set)
    assert max_input_tokens(str(tiny_models["roberta"])) == 64  # 66 positions, the first two are padding's


# ----------------------------------------------------------------------------------------------
# Training options


def test_weighted_loss_is_the_class_weighted_cross_entropy():
    import torch

    from tasks.options import class_weights, weighted_loss

    labels = np.array([0, 0, 0, 1, 2, 2])
    weights = class_weights("auto", labels, ("a", "b", "c"))
    assert weights == pytest.approx([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)])  # n / (classes x n_class)
    logits = torch.tensor([[2.0, 0.1, -1.0], [0.3, 0.2, 0.1], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])
    target = torch.tensor([0, 2, 1, 1])
    per_text = [-(logits[i, target[i]] - torch.logsumexp(logits[i], 0)).item() for i in range(4)]
    w = [weights[t] for t in target.tolist()]
    loss = weighted_loss(weights)({"logits": logits}, target)
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(w, per_text)) / sum(w), rel=1e-5)  # validation
    summed = weighted_loss(weights)({"logits": logits}, target, num_items_in_batch=8)  # training, 8 texts accumulated
    assert summed.item() == pytest.approx(sum(a * b for a, b in zip(w, per_text)) / 8, rel=1e-5)


def test_class_weights_early_stopping_tensorboard_and_validations_within_epochs(tmp_path, tiny_models, one_thread):
    """One tiny run with every option: 48 training texts, batch 8 = 6 steps an epoch, validated every 3 steps;
    a learning rate too small to change any prediction, so validation accuracy never improves on the first
    validation and patience 1 (epoch) = 2 validations stops training at epoch 1.5."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = records(48, 1)[:40] + [r for r in records(30, 4) if r["sentiment"] == "negative"][:8]  # imbalanced
    folder = folder_of(tmp_path, ".jsonl", train, records(12, 2), validation=records(12, 3))
    dataset = {"source": str(folder), "text_column": ["headline", "body"], "label_column": "sentiment", "max_length": 48}
    training = {"epochs": 5, "batch_size": 8, "learning_rate": 1e-12, "precision": "fp32", "class_weights": "auto",
                "early_stopping_patience": 1, "evaluations_per_epoch": 2, "logging_steps": 1,
                "report_to": ["tensorboard"], "group_by_length": False}
    raw = tiny_config(tmp_path / "unused", [tiny_models["bert"]], tmp_path / "out", dataset=dataset, training=training)
    assert main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--quiet", "--only", "B1_v1"]) == 0
    run = tmp_path / "out" / "B1_v1"
    metrics = json.loads((run / "metrics.json").read_text())
    counts = pd.Series([r["sentiment"] for r in train]).value_counts()
    expected = [len(train) / (3 * counts[name]) for name in ("negative", "neutral", "positive")]
    assert metrics["class_weights"] == pytest.approx(expected)
    assert metrics["early_stopping"] == {"patience_epochs": 1, "patience_evaluations": 2, "stopped_at_epoch": 1.5}
    labels, predicted = pd.read_csv(run / "predictions.csv")[["label", "predicted"]].to_numpy().T
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    assert metrics["metrics"]["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    epochs = pd.read_csv(run / "epochs.csv")
    assert epochs["epoch"].tolist() == [0.5, 1.0, 1.5] and epochs["step"].tolist() == [3, 6, 9]
    steps = pd.read_csv(run / "steps.csv")
    assert steps["step"].tolist() == list(range(1, 10)) and steps["train_loss"].notna().all()
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files under the run folder"
    scalars = {}
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    assert len(scalars["train/loss"]) == 9 and len(scalars["eval/validation_accuracy"]) == 3
    assert scalars["test/accuracy"] == [pytest.approx(metrics["metrics"]["accuracy"])]
    assert scalars["test/balanced_accuracy"] == [pytest.approx(metrics["metrics"]["balanced_accuracy"])]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.loc[0, "balanced_accuracy"] == pytest.approx(metrics["metrics"]["balanced_accuracy"])
    assert (tmp_path / "out" / "plots" / "B1_v1-curves.png").is_file()


def test_evaluation_schedule_counts_optimizer_steps():
    from core.config import TrainingConfig
    from tasks.options import schedule

    assert schedule(TrainingConfig(), 100) == dict(eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch")
    steps = schedule(TrainingConfig(batch_size=8, gradient_accumulation_steps=2, evaluations_per_epoch=3), 100)
    every = math.ceil(math.ceil(math.ceil(100 / 8) / 2) / 3)  # 13 batches, 7 optimizer steps, 3 validations: every 3
    assert steps["eval_steps"] == steps["save_steps"] == steps["logging_steps"] == every == 3
    assert schedule(TrainingConfig(logging_steps=5), 100)["logging_steps"] == 5


def test_mlflow_logs_the_run_and_its_test_metrics_to_a_file_store(tmp_path, tiny_models, one_thread, monkeypatch):
    """Skipped where MLflow is not installed (it is optional); checked by hand with mlflow-skinny 3.17.2."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = folder_of(tmp_path, ".csv", records(36, 1), records(9, 2))
    dataset = {"source": str(folder), "text_column": "body", "label_column": "sentiment", "max_length": 48,
               "validation_size": 9}
    training = {"epochs": 1, "batch_size": 9, "precision": "fp32", "report_to": ["mlflow"]}
    raw = tiny_config(tmp_path / "unused", [tiny_models["bert"]], tmp_path / "out", dataset=dataset, training=training)
    try:  # the run points MLflow at <output_dir>/mlruns through the environment, unless it says otherwise
        assert main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--quiet", "--only", "B1_v1"]) == 0
    finally:
        import os

        os.environ.pop("MLFLOW_TRACKING_URI", None)
    accuracy = json.loads((tmp_path / "out" / "B1_v1" / "metrics.json").read_text())["metrics"]["accuracy"]
    mlflow.set_tracking_uri((tmp_path / "out" / "mlruns").as_uri())
    runs = mlflow.search_runs(search_all_experiments=True)
    assert runs["tags.mlflow.runName"].tolist() == ["B1_v1"]  # one run: the test metrics joined the training's
    assert runs.loc[0, "metrics.test_accuracy"] == pytest.approx(accuracy)
    assert runs.loc[0, "metrics.eval_validation_accuracy"] >= 0
