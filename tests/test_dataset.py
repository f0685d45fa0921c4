"""Both CSV layouts load; splits are stratified; bad files give one line naming file, row and fix."""
import pandas as pd
import pytest

from conftest import make_texts, write_hf_csv, write_original_csv
from dataset import DataError, load_splits, read_split_csv, tokenize
from core.config import DatasetConfig


def test_both_layouts_give_the_same_frame(tmp_path):
    rows = make_texts(12)
    write_hf_csv(tmp_path / "hf.csv", rows)
    write_original_csv(tmp_path / "original.csv", rows)
    hf = read_split_csv(tmp_path / "hf.csv", 4)
    original = read_split_csv(tmp_path / "original.csv", 4)
    assert list(hf.columns) == ["row", "text", "label"]
    assert hf["label"].tolist() == [label for _, label in rows]  # 0-3 as written
    assert original["label"].tolist() == hf["label"].tolist()  # 1-4 on disk, 0-3 loaded
    assert original["text"].tolist() == hf["text"].tolist()  # title + " " + description


def test_shared_ag_news_files_load(tmp_path):
    from conftest import SHARED

    splits = load_splits(DatasetConfig(source=str(SHARED / "data" / "ag_news"), validation_size=500))
    assert splits.sizes() == {"train": 4500, "validation": 500, "test": 7600}
    assert splits.test["label"].value_counts().tolist() == [1900] * 4
    assert splits.test["text"].iloc[0].startswith("Fears for T N pension after talks Unions representing")


def test_validation_split_is_stratified_and_disjoint(tiny_data):
    splits = load_splits(DatasetConfig(source=str(tiny_data), validation_size=20))
    assert len(splits.validation) == 20 and len(splits.train) == 100
    assert splits.validation["label"].value_counts().tolist() == [5] * 4
    assert not set(splits.train["row"]) & set(splits.validation["row"])
    again = load_splits(DatasetConfig(source=str(tiny_data), validation_size=20))
    assert splits.validation["row"].tolist() == again.validation["row"].tolist()  # seeded


def test_caps_are_stratified_and_keep_file_order(tiny_data):
    splits = load_splits(DatasetConfig(source=str(tiny_data), validation_size=20, max_train_samples=40,
                                       max_test_samples=8, max_eval_samples=12))
    assert splits.sizes() == {"train": 40, "validation": 12, "test": 8}
    assert splits.train["label"].value_counts().tolist() == [10] * 4
    assert splits.test["row"].is_monotonic_increasing


@pytest.mark.parametrize("content, message", [
    ("text,label\n", r"has a header but no rows"),
    ("", r"the file is empty"),
    ("text,label\nhello,7\n", r"row 2: label 7 is outside 0-3"),
    ('"5","t","d"\n', r"row 1: label 5 is outside 1-4"),
    ("text,label\n,1\n", r"row 2: the text is empty"),
    ("text,label\nhello,1,extra\n", r"row 2: has 3 columns, expected 2 columns \(text,label\)"),
    ('"1","only title"\n', r"row 1: has 2 columns, expected 3 columns"),
    ("text,label\nhello,one\n", r"row 2: label 'one' is not in dataset.class_names \(0, 1, 2, 3\)"),
    ("title,body\nhello,1\n", r"no column 'text' \(dataset.text_column\); its columns are title, body"),
])
def test_bad_files_name_the_row_and_the_problem(tmp_path, content, message):
    path = tmp_path / "train.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_split_csv(path, 4)


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes(b"text,label\nok,1\ncaf\xe9,2\n")
    with pytest.raises(DataError, match=r"test\.csv: line 3 is not UTF-8"):
        read_split_csv(path, 4)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError, match=r"folder .* does not exist"):
        load_splits(DatasetConfig(source=str(tmp_path / "nowhere")))
    write_hf_csv(tmp_path / "train.csv", make_texts(40))
    with pytest.raises(DataError, match=r"test\.csv: file not found"):
        load_splits(DatasetConfig(source=str(tmp_path), validation_size=8))


def test_validation_as_large_as_train_is_refused(tiny_data):
    with pytest.raises(DataError, match=r"validation_size: 120 leaves no training rows \(train has 120\)"):
        load_splits(DatasetConfig(source=str(tiny_data), validation_size=120))


def test_tokenisation_is_cached(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    texts = [t for t, _ in make_texts(30)]
    first = tokenize(texts, tokenizer, 16, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    class Refuses:  # same identity, but tokenising again would fail
        backend_tokenizer = tokenizer.backend_tokenizer

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenised again despite the cache")

    Refuses.__name__ = type(tokenizer).__name__
    assert tokenize(texts, Refuses(), 16, tmp_path) == first
    assert max(len(ids) for ids in first) <= 16
    assert tokenize(texts, tokenizer, 8, tmp_path) != first  # another length, another entry
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz", ".npz"]  # no temporary file left behind


def test_writing_the_token_cache_leaves_numpys_random_state_alone(tmp_path, tiny_models):
    """A cache miss right after set_seed must not shift what the run draws next."""
    import numpy as np
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    tokenize([t for t, _ in make_texts(10)], tokenizer, 16, tmp_path)  # a miss: computes and writes
    assert np.random.rand() == expected


def test_json_files_take_numpy_scalars_and_arrays(tmp_path):
    import json

    import numpy as np

    from core.files import write_json_atomic

    write_json_atomic(tmp_path / "a.json", {"n": np.int64(3), "x": np.float32(0.5), "v": np.array([[1, 2], [3, 4]])})
    assert json.loads((tmp_path / "a.json").read_text()) == {"n": 3, "x": 0.5, "v": [[1, 2], [3, 4]]}


# ----------------------------------------------------------------------------------------------
# dataset.split_seed: the validation split and every cap follow it, stratified


SHARES = {0: 10, 1: 5, 2: 3, 3: 2}  # unbalanced on purpose: 50%, 25%, 15%, 10%


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    """train.csv: 200 rows (100/50/30/20 by class); test.csv: 80 rows (40/20/12/8)."""
    folder = tmp_path_factory.mktemp("unbalanced")
    for name, per_share in (("train.csv", 10), ("test.csv", 4)):
        labels = [label for label, share in SHARES.items() for _ in range(share * per_share)]
        texts = [text for text, _ in make_texts(len(labels), seed=len(labels))]
        order = sorted(range(len(labels)), key=lambda i: (i * 7919) % len(labels))  # classes interleaved
        write_hf_csv(folder / name, [(f"{texts[i]} {i}", labels[i]) for i in order])
    return folder


def _assert_proportional(frame, population: dict[int, int]):
    """Each class within one row of its share of the frame (a stratified sample)."""
    total = sum(population.values())
    counts = frame["label"].value_counts().to_dict()
    for label, size in population.items():
        assert abs(counts.get(label, 0) - len(frame) * size / total) <= 1, (label, counts, population)


def _load(folder, seed, **caps):
    return load_splits(DatasetConfig(source=str(folder), validation_size=40, split_seed=seed, **caps))


def test_split_seed_chooses_the_validation_rows(unbalanced):
    one, two, again = _load(unbalanced, 1), _load(unbalanced, 2), _load(unbalanced, 1)
    assert one.validation["row"].tolist() != two.validation["row"].tolist()
    assert one.validation["row"].tolist() == again.validation["row"].tolist()
    assert one.train["row"].tolist() == again.train["row"].tolist()
    default = load_splits(DatasetConfig(source=str(unbalanced), validation_size=40))  # split_seed 42
    assert default.validation["row"].tolist() != one.validation["row"].tolist()
    for splits in (one, two):
        _assert_proportional(splits.validation, {0: 100, 1: 50, 2: 30, 3: 20})  # 20/10/6/4 rows
        assert len(splits.train) == 160 and not set(splits.train["row"]) & set(splits.validation["row"])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_caps_follow_split_seed_and_are_stratified(unbalanced, seed):
    caps = dict(max_train_samples=30, max_eval_samples=10, max_test_samples=25)
    splits, again, other = _load(unbalanced, seed, **caps), _load(unbalanced, seed, **caps), _load(unbalanced, seed + 10, **caps)
    assert splits.sizes() == {"train": 30, "validation": 10, "test": 25}
    for split in ("train", "validation", "test"):
        rows = getattr(splits, split)["row"].tolist()
        assert rows == getattr(again, split)["row"].tolist()  # the same seed, the same rows
        assert rows != getattr(other, split)["row"].tolist(), split  # another seed, other rows
        assert rows == sorted(rows)  # file order
    _assert_proportional(splits.train, {0: 80, 1: 40, 2: 24, 3: 16})  # the 160 rows left after validation
    _assert_proportional(splits.validation, {0: 20, 1: 10, 2: 6, 3: 4})
    _assert_proportional(splits.test, {0: 40, 1: 20, 2: 12, 3: 8})
    uncapped = _load(unbalanced, seed)
    assert set(splits.train["row"]) <= set(uncapped.train["row"])  # caps sample the split, after it
