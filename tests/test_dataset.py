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


# ----------------------------------------------------------------------------------------------
# Reading JSON and JSONL, the hub, stratification limits, the token cache's key (issue 14: mutation)


def _jsonl(folder, name, lines):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _pairs(count, start=0):
    return [(text, label) for text, label in make_texts(count, start)]


def test_first_line_of_an_error():
    from dataset import _first_line

    assert _first_line(ValueError("  first\nsecond  ")) == "first"
    assert _first_line(KeyError()) == "KeyError"  # no message: the type names it


def test_jsonl_skips_blank_lines_keeps_line_numbers_and_cells_as_written(tmp_path):
    import json

    folder = tmp_path / "data"
    rows = [json.dumps({"title": i, "body": t, "label": l}) for i, (t, l) in enumerate(_pairs(24))]  # numbered
    rows[5] = json.dumps({"title": 7, "body": "seven words", "label": 1})
    rows[6] = json.dumps({"body": "no title here", "label": 2})  # title missing: the column mixes int and null
    _jsonl(folder, "train.jsonl", rows[:3] + [""] + rows[3:])  # a blank line 4, then more lines
    _jsonl(folder, "test.jsonl", rows[:4])
    splits = load_splits(DatasetConfig(source=str(folder), text_column=["title", "body"], validation_size=4))
    texts = pd.concat([splits.train, splits.validation]).sort_values("row")["text"].tolist()
    assert len(texts) == 24  # the lines after the blank one are read
    assert texts[5] == "7 seven words" and texts[6] == "no title here"  # 7, not 7.0
    rows[10] = json.dumps({"title": "x", "body": "y"})
    _jsonl(folder, "train.jsonl", rows[:3] + [""] + rows[3:])
    with pytest.raises(DataError, match=r"train\.jsonl: line 12: no label \(column 'label' is empty\)"):
        load_splits(DatasetConfig(source=str(folder), text_column=["title", "body"], validation_size=4))


@pytest.mark.parametrize("lines, message", [
    (['{"text": "a", "label": 1}', "[1, 2]"], "line 2: expected a JSON object per line, got list"),
    (['{"text": "a", "label": 1}', '{"text": '], "line 2: not valid JSON (Expecting value: line 1 column 10 (char 9))"),
    (["", "  "], "the file is empty"),
])
def test_bad_jsonl_files(tmp_path, lines, message):
    _jsonl(tmp_path / "data", "train.jsonl", lines)
    _jsonl(tmp_path / "data", "test.jsonl", ['{"text": "a", "label": 1}'])
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(tmp_path / "data")))
    assert str(raised.value) == f"{tmp_path / 'data' / 'train.jsonl'}: {message}"


@pytest.mark.parametrize("content, message", [
    ('[{"text": "a",\n "label": }]', "line 2, column 11: not valid JSON (Expecting value)"),
    ('{"text": "a", "label": 1}', 'expected a list of records ([{"text": ..., "label": ...}, ...]); for one record a'
                                  " line use .jsonl"),
    ("[1, 2]", 'expected a list of records ([{"text": ..., "label": ...}, ...]); for one record a line use .jsonl'),
    ("[]", "the file has no records"),
])
def test_bad_json_files(tmp_path, content, message):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.json").write_text(content, encoding="utf-8")
    (folder / "test.json").write_text('[{"text": "a", "label": 1}]', encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder)))
    assert str(raised.value) == f"{folder / 'train.json'}: {message}"


@pytest.mark.parametrize("bad", [0, 23])
def test_json_rows_are_named_by_record_from_1(tmp_path, bad):
    import json

    folder = tmp_path / "data"
    folder.mkdir()
    records = [{"title": i * 7, "body": t, "label": l} for i, (t, l) in enumerate(_pairs(24))]  # numbered titles
    records[2] = {"body": "no title", "label": 1}
    (folder / "test.json").write_text(json.dumps(records[:4]), encoding="utf-8")
    (folder / "train.json").write_text(json.dumps(records), encoding="utf-8")
    config = DatasetConfig(source=str(folder), text_column=["title", "body"], validation_size=4)
    assert load_splits(config).test["text"].tolist()[1:3] == [f"7 {records[1]['body']}", "no title"]
    records[bad]["label"] = ""
    (folder / "train.json").write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_splits(config)
    assert str(raised.value) == (f"{folder / 'train.json'}: record {bad + 1}: no label (column 'label' is empty);"
                                 f" label the row or remove it")


def test_an_unlabelled_test_file_with_no_other_split(tmp_path):
    write_hf_csv(tmp_path / "train.csv", _pairs(20))
    write_hf_csv(tmp_path / "test.csv", [(t, -1) for t, _ in _pairs(4)])
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(tmp_path), validation_size=4))
    assert str(raised.value) == (f"dataset.splits.test: split 'test' of {tmp_path} has no labels (-1 or empty in"
                                 f" every row); name a labelled split in dataset.splits.test, or a labelled test file")


def test_stratification_limits_at_their_edges(tmp_path):
    rows = _pairs(20)
    rows = rows[:-2] + [(rows[-2][0], 4), (rows[-1][0], 4)]  # class 4 has exactly 2 rows
    write_hf_csv(tmp_path / "train.csv", rows)
    write_hf_csv(tmp_path / "test.csv", rows[:5])
    config = dict(source=str(tmp_path), class_names=["a", "b", "c", "d", "e"])
    splits = load_splits(DatasetConfig(**config, validation_size=5))  # 2 rows suffice; 5 rows for 5 classes
    assert sorted(splits.validation["label"]) == [0, 1, 2, 3, 4]
    assert list(splits.train.columns) == ["row", "text", "label"] == list(splits.validation.columns)
    assert splits.train.index.tolist() == list(range(15)) and splits.validation.index.tolist() == list(range(5))
    splits = load_splits(DatasetConfig(**config, validation_size=15))  # 5 training rows for 5 classes
    assert sorted(splits.train["label"]) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(**config, validation_size=17))
    assert str(raised.value) == "dataset.validation_size: 17 cannot be stratified over 5 classes with 20 training rows"


def _hub(monkeypatch, features=None, fail=None):
    import datasets

    def split(count, seed, stars=False):
        rows = make_texts(count, seed)
        return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [l + 1 if stars else l for _, l in rows]},
                                          features=features)

    data = datasets.DatasetDict(train=split(20, 1, True), test=split(8, 2, True))

    def load(*args):
        if fail:
            raise fail
        return data
    monkeypatch.setattr(datasets, "load_dataset", load)
    return data


def test_a_hub_dataset_without_class_label_or_subset(monkeypatch):
    _hub(monkeypatch)
    splits = load_splits(DatasetConfig(source="someone/stars", validation_size=4))
    assert splits.class_names == ("1", "2", "3", "4")  # the values, not a ClassLabel's names
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source="someone/stars", validation_size=4, splits={"validation": "dev"}))
    assert str(raised.value) == "dataset.splits.validation: someone/stars has no split 'dev'; splits: train, test"


@pytest.mark.parametrize("row", [0, 19])
def test_hub_rows_are_named_from_1(monkeypatch, row):
    data = _hub(monkeypatch)
    import datasets

    broken = data["train"].to_dict()
    broken["label"][row] = 9
    data["train"] = datasets.Dataset.from_dict(broken)
    with pytest.raises(DataError, match=rf"^someone/stars\[train\]: row {row + 1}: label 9 is outside"):
        load_splits(DatasetConfig(source="someone/stars", validation_size=4, class_names=["a", "b", "c", "d", "e"]))


def test_a_hub_dataset_that_cannot_be_loaded(monkeypatch):
    _hub(monkeypatch, fail=ConnectionError("no route to host\nretry later"))
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source="someone/stars"))
    assert str(raised.value) == ("dataset.source: 'someone/stars' is not a local folder or file and the Hub dataset"
                                 " could not be loaded (no route to host); point dataset.source at local data")


class _Backend:
    def __init__(self, state):
        self.state = state

    def to_str(self):
        import json
        return json.dumps(self.state)


class _Fake:
    def __init__(self, backend=None, vocab=None):
        if backend is not None:
            self.backend_tokenizer = backend
        self.vocab = vocab

    def get_vocab(self):
        return dict(self.vocab)


def test_the_token_cache_key_follows_the_tokenizer_and_the_texts():
    from dataset import _cache_key

    state = {"model": {"vocab": {"a": 0, "b": 1}}, "truncation": None, "padding": None}
    key = _cache_key(["ab", "c"], _Fake(_Backend(state)), 16)
    assert len(key) == 32 and int(key, 16) >= 0
    used = {**state, "truncation": {"max_length": 16}, "padding": {"strategy": "BatchLongest"}}
    assert _cache_key(["ab", "c"], _Fake(_Backend(used)), 16) == key  # use changes no identity
    other = {**state, "model": {"vocab": {"a": 0, "b": 2}}}
    assert _cache_key(["ab", "c"], _Fake(_Backend(other)), 16) != key
    assert _cache_key(["a", "bc"], _Fake(_Backend(state)), 16) != key  # texts are kept apart

    class Other(_Fake):
        pass
    assert _cache_key(["ab", "c"], Other(_Backend(state)), 16) != key
    slow = _cache_key(["ab"], _Fake(vocab={"a": 0, "b": 1}), 16)  # no backend: its vocabulary
    assert slow != _cache_key(["ab"], _Fake(vocab={"a": 0, "b": 2}), 16)
    assert slow == _cache_key(["ab"], _Fake(vocab={"b": 1, "a": 0}), 16)
    reordered = {"padding": None, "truncation": None, "model": {"vocab": {"b": 1, "a": 0}}}
    assert _cache_key(["ab", "c"], _Fake(_Backend(reordered)), 16) == key  # the state, not its key order


def test_tokenize_truncates_to_max_length(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ids = tokenize(["game team " * 40, "a"], tokenizer, 12, tmp_path)
    assert len(ids[0]) == 12 and len(ids[1]) < 12
    assert tokenize(["game team " * 40, "a"], tokenizer, 12, tmp_path) == ids  # from the cache


def test_a_test_file_without_the_label_column(tmp_path):
    write_hf_csv(tmp_path / "train.csv", _pairs(20))
    write_hf_csv(tmp_path / "validation.csv", _pairs(8, 3))
    (tmp_path / "test.csv").write_text("text\nfirst\nsecond\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(tmp_path)))
    assert str(raised.value) == (f"dataset.splits.test: split 'test' of {tmp_path} has no column 'label';"
                                 f" use a labelled split as the test: dataset.splits.test: validation")


def test_float_and_boolean_labels(tmp_path):
    import json

    folder = tmp_path / "data"
    floats = [json.dumps({"text": t, "label": float(l + 1)}) for t, l in _pairs(16)]
    _jsonl(folder, "train.jsonl", floats)
    _jsonl(folder, "test.jsonl", floats[:4])
    splits = load_splits(DatasetConfig(source=str(folder), validation_size=4))
    assert splits.class_names == ("1", "2", "3", "4")  # 1.0 is the integer 1
    assert splits.test["label"].tolist() == [0, 1, 2, 3]
    halves = [json.dumps({"text": t, "label": l + 0.5}) for t, l in _pairs(16)]
    _jsonl(folder, "train.jsonl", halves)
    _jsonl(folder, "test.jsonl", halves[:4])
    assert load_splits(DatasetConfig(source=str(folder), validation_size=4)).class_names == ("0.5", "1.5", "2.5", "3.5")
    booleans = [json.dumps({"text": t, "label": l % 2 == 1}) for t, l in _pairs(16)]
    _jsonl(folder, "train.jsonl", booleans)
    _jsonl(folder, "test.jsonl", booleans[:4])
    splits = load_splits(DatasetConfig(source=str(folder), validation_size=4))
    assert splits.class_names == ("False", "True") and splits.test["label"].tolist() == [0, 1, 0, 1]


def _frame(counts):
    labels = [label for label, count in enumerate(counts) for _ in range(count)]
    order = sorted(range(len(labels)), key=lambda i: (i * 7) % len(labels))
    return pd.DataFrame({"row": range(len(labels)), "text": [f"t{i}" for i in order],
                         "label": [labels[i] for i in order]})


def test_stratified_sample_edges():
    from dataset import stratified_sample

    frame = _frame([10, 5, 3, 2])
    assert stratified_sample(frame, 20, 1) is frame and stratified_sample(frame, None, 1) is frame
    for seed in range(5):
        sample = stratified_sample(frame, 10, seed)  # the smallest class has 2 rows: still stratified
        assert sample["label"].value_counts().sort_index().tolist() in ([5, 2, 2, 1], [5, 3, 1, 1])
        assert list(sample.columns) == ["row", "text", "label"] and sample.index.tolist() == list(range(10))
        even = _frame([3, 3, 3, 3])
        assert sorted(stratified_sample(even, 4, seed)["label"]) == [0, 1, 2, 3]  # as many rows as classes
    lonely = _frame([10, 5, 3, 1])  # a class of one row: a plain random sample
    assert len(stratified_sample(lonely, 6, 0)) == 6


# ----------------------------------------------------------------------------------------------
# Integer labels' names, and each reading problem's message (mutation testing: dataset.py)


def _folder(tmp_path, name, train: str, test: str | None = None, suffix=".csv"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"train{suffix}").write_text(train, encoding="utf-8")
    (folder / f"test{suffix}").write_text(test if test is not None else train, encoding="utf-8")
    return folder


def _headerless(labels, rows=30):
    return "".join(f'"{labels[i % len(labels)]}","title {i}","words {labels[i % len(labels)]}"\n' for i in range(rows))


def _header(columns, labels, rows=30):
    return ",".join(columns) + "\n" + "".join(f"text {i},{labels[i % len(labels)]}\n" for i in range(rows))


@pytest.mark.parametrize("case, labels, written, settings, names", [
    ("headerless 1-5 stars", [1, 2, 3, 4, 5], "headerless", {}, ("1", "2", "3", "4", "5")),
    ("headerless, gaps", [2, 4, 6], "headerless", {}, ("2", "4", "6")),
    ("headerless 1-4: AG News", [1, 2, 3, 4], "headerless", {}, ("World", "Sports", "Business", "Sci/Tech")),
    ("text,label 0-3: AG News", [0, 1, 2, 3], ["text", "label"], {}, ("World", "Sports", "Business", "Sci/Tech")),
    ("own label column", [0, 1, 2, 3], ["text", "stars"], {"label_column": "stars"}, ("0", "1", "2", "3")),
    ("label column named", [0, 1, 2, 3], ["text", "label"], {"label_column": "label"}, ("0", "1", "2", "3")),
    ("text column named", [0, 1, 2, 3], ["title", "label"], {"text_column": "title"}, ("0", "1", "2", "3")),
])
def test_integer_labels_are_named_as_written_and_ag_news_only_in_its_layouts(tmp_path, case, labels, written,
                                                                            settings, names):
    content = _headerless(labels) if written == "headerless" else _header(written, labels)
    splits = load_splits(DatasetConfig(source=str(_folder(tmp_path, "data", content)), validation_size=10, **settings))
    assert splits.class_names == names
    expected = [labels[i % len(labels)] for i in range(30)]  # the test file is the training file
    if names[0] != "World":  # every text's class is the label written beside it
        assert [splits.class_names[i] for i in splits.test["label"]] == [str(v) for v in expected]
    else:
        assert splits.test["label"].tolist() == [v - labels[0] for v in expected]


@pytest.mark.parametrize("content, message", [
    ("text,label\na,0\nb,1\nc,-1\n", "train.csv: row 4: no label (column 'label' is -1); label the row or remove it"),
    ("text,label\na,0\nb,1\nc,\n", "train.csv: row 4: no label (column 'label' is empty); label the row or remove it"),
    ('"-1","t","d"\n"2","t","d"\n', "train.csv: row 1: no label (column 'class index' is -1)"),
    ("text,text,label\na,b,0\n", "train.csv: the header names column 'text' twice; rename one"),
    ("text,label,text,label\na,0,b,1\n", "train.csv: the header names column 'label' twice; rename one"),
])
def test_a_files_labels_and_header_problems_name_the_row_and_column(tmp_path, content, message):
    folder = _folder(tmp_path, "data", content, "text,label\na,0\nb,1\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=1))
    assert str(raised.value).startswith(str(folder / "train.csv")) and message in str(raised.value)


def test_one_class_only_names_it(tmp_path):
    folder = _folder(tmp_path, "data", "text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=1))
    assert str(raised.value) == f"{folder}: every row has label 'x'; a classifier needs at least two classes"


def test_parquet_rows_are_named_from_1_and_a_damaged_file_in_one_line(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"text": f"t {i}", "label": ["a", "b"][i % 2]} for i in range(6)]
    pd.DataFrame(rows).to_parquet(folder / "test.parquet")
    rows[4]["label"] = None
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=2))
    assert str(raised.value).startswith(f"{folder / 'train.parquet'}: row 5: no label (column 'label' is empty)")
    rows[4]["label"] = "a"
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    assert load_splits(DatasetConfig(source=str(folder), validation_size=2)).test["label"].tolist() == [0, 1] * 3
    (folder / "train.parquet").write_bytes(b"PAR1 not really\nsecond line")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=2))
    message = str(raised.value)
    with pytest.raises(Exception) as library:  # what pyarrow itself says of the file: its first line is quoted
        pd.read_parquet(folder / "train.parquet")
    reason = str(library.value).strip().splitlines()[0]
    assert message.startswith(f"{folder / 'train.parquet'}: cannot be read as Parquet (") and "\n" not in message
    assert reason and reason in message


def test_where_the_files_are_wrong(tmp_path):
    folder = _folder(tmp_path, "data", "text,label\na,0\nb,1\nc,0\nd,1\n")
    (folder / "notes.xlsx").write_text("x")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(files={"train": str(folder / "notes.xlsx"), "test": str(folder / "test.csv")}))
    assert str(raised.value) == (f"{folder / 'notes.xlsx'}: unknown format '.xlsx'; use one of"
                                 " .csv, .tsv, .json, .jsonl, .parquet")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(files={"train": str(folder / "nothing.csv"), "test": str(folder / "test.csv")}))
    assert str(raised.value) == (f"{folder / 'nothing.csv'}: file not found; a data folder holds one file per split,"
                                 " e.g. train.csv and test.csv (.csv, .tsv, .json, .jsonl, .parquet)")
    (folder / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder)))
    assert str(raised.value) == (f"dataset.source: folder {folder} has two files for split 'train'"
                                 " (train.csv, train.jsonl); keep one")
    (folder / "train.jsonl").unlink()
    (folder / "test.json").mkdir()  # a folder named like a split's file is not one
    assert load_splits(DatasetConfig(source=str(folder), validation_size=2)).sizes()["test"] == 4
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), test_source=str(folder / "test.csv")))
    assert str(raised.value) == (f"dataset.test_source: source {folder} is a folder, whose test file is test.*;"
                                 " remove test_source, or point source at the training file")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder / "train.csv")))
    assert str(raised.value) == (f"dataset.test_source: source {folder / 'train.csv'} is a single file (the training"
                                 " data); set dataset.test_source to the test file, or name every split in"
                                 " dataset.files")
    for missing, kind in (("gone.csv", "file"), ("gone.CSV", "file"), ("gone", "folder")):
        with pytest.raises(DataError) as raised:
            load_splits(DatasetConfig(source=str(tmp_path / missing)))
        assert str(raised.value).startswith(f"dataset.source: {kind} {tmp_path / missing} does not exist;")


def test_split_roles_name_the_source_they_read(tmp_path):
    folder = _folder(tmp_path, "data", "text,label\na,0\nb,1\nc,0\nd,1\n")
    files = {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")}
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(files={"train": files["train"]}))
    assert str(raised.value) == "dataset.splits.test: dataset.files has no split 'test'; splits: train"
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), splits={"test": "holdout"}))
    assert str(raised.value) == f"dataset.splits.test: {folder} has no split 'holdout'; splits: test, train"
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), splits={"test": "train"}))
    assert "uses one split for two roles; give each role its own split" in str(raised.value)
    assert load_splits(DatasetConfig(files=files, validation_size=2)).source == (
        f"train: {files['train']}, test: {files['test']}")
    assert load_splits(DatasetConfig(source=str(folder), validation_size=2)).source == str(folder)
    (folder / "train.csv").write_text("text,label\na,0\nb,1\nc,0\nd,1\ne,2\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=2))
    assert f"class '2' has 1 row in {folder / 'train.csv'}" in str(raised.value)


def test_one_text_column_is_kept_as_written(tmp_path):
    folder = _folder(tmp_path, "data", 'text,label\n"  padded  ",0\nb,1\nc,0\nd,1\n')
    assert load_splits(DatasetConfig(source=str(folder), validation_size=2)).test["text"].tolist()[0] == "  padded  "


def test_a_header_cell_that_only_ends_in_digits_is_a_header(tmp_path):
    """R's default column names (X1, X2): a header, not AG News's headerless layout (which starts with a number)."""
    folder = _folder(tmp_path, "data", "X1,X2\nsome text,a\nmore text,b\nthird,a\nfourth,b\n")
    splits = load_splits(DatasetConfig(source=str(folder), text_column="X1", label_column="X2", validation_size=2))
    assert splits.class_names == ("a", "b") and splits.test["text"].tolist()[0] == "some text"


def test_a_csv_field_too_large_is_one_line_naming_the_row(tmp_path):
    huge = "x" * 200_000
    folder = _folder(tmp_path, "data", f'text,label\na,0\n"{huge}",1\n', "text,label\na,0\nb,1\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=1))
    message = str(raised.value)
    assert message.startswith(f"{folder / 'train.csv'}: row ") and "field larger than field limit" in message
    assert message.endswith("; fix the quoting") and huge[:100] not in message


def test_a_label_outside_the_hubs_class_label_says_where_the_names_came_from(monkeypatch):
    import datasets

    rows = make_texts(12, 1)
    named = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [l % 2 for _, l in rows]}, features=named)
    test = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 2]})  # no ClassLabel: a 2 slips in
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: datasets.DatasetDict(train=train, test=test))
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source="someone/reviews", validation_size=4))
    assert str(raised.value) == ("someone/reviews[test]: row 3: label 2 is outside 0-1 (2 classes in the dataset's"
                                 " ClassLabel); fix column 'label' or dataset.class_names")


# ----------------------------------------------------------------------------------------------
# Inputs that used to slip through: TSV quotes, labels that do not line up, list cells, sizes


def test_tsv_has_no_quoting_a_quote_is_text(tmp_path):
    from dataset import read_table

    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\n"A quote opens here\t0\nthe next row" closes it\t1\nplain\t2\n', encoding="utf-8")
    table = read_table(path)
    assert table.frame["text"].tolist() == ['"A quote opens here', 'the next row" closes it', "plain"]
    assert table.frame["label"].tolist() == ["0", "1", "2"] and table.positions == [2, 3, 4]


def test_numeric_labels_written_differently_are_one_class(tmp_path):
    folder = _folder(tmp_path, "data", _header(["text", "stars"], ["0.0", "1.0", "2.0", "3.0"]),
                     _header(["text", "stars"], ["0", "1", "+2", "3e0"], rows=8))
    splits = load_splits(DatasetConfig(source=str(folder), validation_size=8, label_column="stars"))
    assert splits.class_names == ("0", "1", "2", "3")
    assert splits.test["label"].tolist() == [0, 1, 2, 3] * 2
    halves = _folder(tmp_path, "halves", _header(["text", "label"], ["0.5", "1", "1.0"]))  # names, and 1.0 is 1
    assert load_splits(DatasetConfig(source=str(halves), validation_size=3)).class_names == ("0.5", "1")


@pytest.mark.parametrize("train, test, settings, message", [
    (["a", "b"], ["a", "b"], {"class_names": ["a", "b", "c"]},
     "dataset.class_names: class 'c' has no row in {folder}/train.csv; remove it from dataset.class_names, or add"
     " training rows"),
    ([0, 1, 2], [0, 1, 2, 3], {"class_names": ["w", "x", "y", "z"]},  # the test's label 3 is z
     "{folder}/test.csv: row 5: label 'z' has no row in {folder}/train.csv; a class needs training rows: add some,"
     " or remove this class's rows"),
    (["a", "b"], ["a", "b", "c"], {}, "{folder}/test.csv: row 4: label 'c' has no row in {folder}/train.csv; a class"
                                      " needs training rows: add some, or remove this class's rows"),
])
def test_every_class_needs_a_training_row(tmp_path, train, test, settings, message):
    folder = _folder(tmp_path, "data", _header(["text", "label"], train, rows=24), _header(["text", "label"], test, 8))
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=8, **settings))
    assert str(raised.value) == message.format(folder=folder)


def test_a_cap_that_leaves_a_class_out_is_refused(tiny_data):
    with pytest.raises(DataError, match=r"^dataset\.max_train_samples: 3 rows leave class '(World|Sports|Business|"
                                        r"Sci/Tech)' without a training row; raise it to at least 4$"):
        load_splits(DatasetConfig(source=str(tiny_data), validation_size=20, max_train_samples=3))
    assert load_splits(DatasetConfig(source=str(tiny_data), validation_size=20, max_train_samples=4)).sizes() == {
        "train": 4, "validation": 20, "test": 40}


def test_a_label_past_int64_is_one_line_not_an_overflow(tmp_path):
    huge = "99999999999999999999"
    folder = _folder(tmp_path, "data", f"text,label\na,0\nb,1\nc,{huge}\nd,0\ne,1\nf,{huge}\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=3, class_names=["x", "y"]))
    assert str(raised.value) == (f"{folder}/train.csv: row 4: label {huge} is outside 0-1 (2 classes in"
                                 f" dataset.class_names); fix column 'label' or dataset.class_names")
    splits = load_splits(DatasetConfig(source=str(folder), validation_size=3))  # found in the data: a class
    assert splits.class_names == ("0", "1", huge) and splits.test["label"].tolist() == [0, 1, 2, 0, 1, 2]


def test_list_and_object_cells_are_refused_naming_column_and_type(tmp_path):
    import json

    folder = tmp_path / "parquet"
    folder.mkdir()
    listed = pd.DataFrame({"text": [["a", "b"], ["c"], ["d"], ["e"]], "label": [0, 1, 0, 1]})
    listed.to_parquet(folder / "train.parquet")
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_parquet(folder / "test.parquet")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=2))
    assert str(raised.value) == (f"{folder}/train.parquet: row 1: column 'text' (dataset.text_column) holds a list"
                                 f" (ndarray), not text or a number; give one value per cell, e.g. join the list"
                                 f" into one text, or name another column in dataset.text_column")
    lines = [json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(6)]
    _jsonl(tmp_path / "json", "train.jsonl", lines[:3] + [json.dumps({"text": {"title": "x"}, "label": 1})])
    _jsonl(tmp_path / "json", "test.jsonl", lines)
    with pytest.raises(DataError, match=r"train\.jsonl: line 4: column 'text' \(dataset\.text_column\) holds an"
                                        r" object \(dict\), not text"):
        load_splits(DatasetConfig(source=str(tmp_path / "json"), validation_size=2))
    _jsonl(tmp_path / "json", "train.jsonl", lines + [json.dumps({"text": "x", "label": [1]})])
    with pytest.raises(DataError, match=r"train\.jsonl: line 7: column 'label' \(dataset\.label_column\) holds a list"
                                        r" \(list\)"):
        load_splits(DatasetConfig(source=str(tmp_path / "json"), validation_size=2))


def test_class_count_and_text_length_are_bounded(tmp_path):
    folder = _folder(tmp_path, "data", _header(["text", "label"], ["a", "b", "c"], rows=9))
    assert len(load_splits(DatasetConfig(source=str(folder), validation_size=3, max_classes=3)).class_names) == 3
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=3, max_classes=2))
    assert str(raised.value) == (f"{folder}: 3 classes, more than dataset.max_classes (2); check"
                                 f" dataset.label_column ('label'), or raise dataset.max_classes")
    longest = "x" * 50
    folder = _folder(tmp_path, "long", f"text,label\n{longest},0\nb,1\nc,0\nd,1\n" + "y" * 51 + ",0\n")
    with pytest.raises(DataError) as raised:
        load_splits(DatasetConfig(source=str(folder), validation_size=2, max_text_chars=50))
    assert str(raised.value) == (f"{folder}/train.csv: row 6: the text has 51 characters, more than"
                                 f" dataset.max_text_chars (50); shorten it, or raise dataset.max_text_chars")
    assert load_splits(DatasetConfig(source=str(folder), validation_size=2, max_text_chars=51)).sizes()["test"] == 5
