"""Text classification data from local files or the Hugging Face Hub: read, map columns and labels, split, cap,
tokenise.

Sources (`dataset.source`):
  * a local folder, one file per split named after it: train.csv, validation.jsonl, test.parquet, ...;
  * a single local file (the training data) with `dataset.test_source`, or `dataset.files: {split: path}`;
  * anything else: a Hub dataset id (`dataset.subset`: its config name).
Local paths are read first, with no network call. Formats by extension: .csv, .tsv, .json (a list of
records), .jsonl (one record a line), .parquet.

AG News's two CSV layouts need no settings:
  * original: no header; "class index 1-K","title","description"; text = title + " " + description
  * Hugging Face: header `text,label`; label 0..K-1
Rows are named in messages as the user finds them: CSV/TSV by line (`row 2` is the first row under the
header), JSONL by line, JSON by record, Parquet and Hub splits by row, all counted from 1.

TSV has no quoting convention: a tab separates cells and a quote is text. Each cell used is text or a number
(a list or an object in a cell is refused). Labels 1, "1" and 1.0 are the same class; every class needs a
training row; `dataset.max_classes` and `dataset.max_text_chars` bound what is read.
"""
from __future__ import annotations

import csv
import decimal
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core import distributed
from core.config import AG_NEWS_CLASSES, DATA_FORMATS as FORMATS, DatasetConfig, clip, shown
from core.files import atomic_file
from core.hardware import is_main_process

ORIGINAL_COLUMNS = ["class index", "title", "description"]  # AG News's headerless layout


class DataError(Exception):
    """Bad or missing data. The message names the file, row and fix."""


@dataclass(frozen=True)
class Splits:
    """Each frame has columns `row` (0-based position in its source file), `text`, `label`."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    class_names: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


@dataclass
class Table:
    """One split as read, before columns are chosen: its cells and where each row came from."""

    name: str  # the file, or hub-id[split]
    frame: pd.DataFrame
    positions: list[int]  # per row, the number the user finds it under (see the module's docstring)
    unit: str = "row"
    original_layout: bool = False  # AG News's headerless CSV: labels count from 1
    class_label: list[str] | None = None  # the Hub's ClassLabel names of the label column

    def where(self, index: int) -> str:
        return f"{self.name}: {self.unit} {self.positions[index]}"


# ----------------------------------------------------------------------------------------------
# Reading one file


def read_table(path: Path) -> Table:
    """Any supported file -> its cells, by extension."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; a data folder holds one file per split, e.g. train.csv and"
                        f" test.csv ({', '.join(FORMATS)})")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types; the user needs one line
            raise DataError(f"{path}: cannot be read as Parquet ({_first_line(error)})") from None
        return Table(str(path), frame, list(range(1, len(frame) + 1)))
    raise DataError(f"{path}: unknown format {shown(path.suffix)}; use one of {', '.join(FORMATS)}")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 (byte {error.start}); re-save the file as UTF-8") from None


def _read_delimited(path: Path, delimiter: str) -> Table:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV: a quote is text, as in pandas' TSVs
    reader = csv.reader(io.StringIO(_read_text(path)), delimiter=delimiter, quoting=quoting)
    rows, line = [], 1
    try:
        for cells in reader:
            if cells:  # blank lines carry nothing
                rows.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as error:
        raise DataError(f"{path}: row {reader.line_num}: {error}; fix the quoting") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")
    first = rows[0][1]
    original = first[0].strip().lstrip("+-").isdigit()  # no header: AG News's `class index,title,description`
    header = ORIGINAL_COLUMNS if original else [cell.strip() for cell in first]
    body = rows if original else rows[1:]
    if not body:
        raise DataError(f"{path}: the file has a header but no rows")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{path}: the header names column {shown(repeated[0])} twice; rename one")
    for number, cells in body:
        if len(cells) != len(header):
            raise DataError(f"{path}: row {number}: has {len(cells)} columns, expected {len(header)} columns"
                            f" ({','.join(header)})")
    frame = pd.DataFrame([cells for _, cells in body], columns=header, dtype=object)
    return Table(str(path), frame, [number for number, _ in body], "row", original_layout=original)


def _read_jsonl(path: Path) -> Table:
    records, positions = [], []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise DataError(f"{path}: line {number}: not valid JSON ({_first_line(error)})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object per line, got {type(record).__name__}")
        records.append(record)
        positions.append(number)
    if not records:
        raise DataError(f"{path}: the file is empty")
    return Table(str(path), pd.DataFrame(records, dtype=object), positions, "line")


def _read_json(path: Path) -> Table:
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a list of records ([{{\"text\": ..., \"label\": ...}}, ...]);"
                        f" for one record a line use .jsonl")
    if not records:
        raise DataError(f"{path}: the file has no records")
    return Table(str(path), pd.DataFrame(records, dtype=object), list(range(1, len(records) + 1)), "record")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------------
# Sources and splits


def is_hub_source(config: DatasetConfig) -> bool:
    """Local paths were made absolute by the config loader; anything else names a Hub dataset."""
    return config.files is None and not Path(config.source).is_absolute()


def _local_files(config: DatasetConfig) -> dict[str, Path]:
    """The source's splits: split name -> file."""
    if config.files is not None:
        return {name: Path(path) for name, path in config.files.items()}
    source = Path(config.source)
    if source.is_dir():
        if config.test_source is not None:
            raise DataError(f"dataset.test_source: source {source} is a folder, whose test file is test.*;"
                            f" remove test_source, or point source at the training file")
        files: dict[str, Path] = {}
        for path in sorted(source.iterdir()):
            if path.is_file() and path.suffix.lower() in FORMATS:
                if path.stem in files:
                    raise DataError(f"dataset.source: folder {source} has two files for split {shown(path.stem)}"
                                    f" ({files[path.stem].name}, {path.name}); keep one")
                files[path.stem] = path
        for role in ("train", "test"):  # the default roles: the first missing one is named as AG News's layout did
            if config.splits.model_dump()[role] == role and role not in files:
                files[role] = source / f"{role}.csv"  # read_table reports it missing, naming the formats
        return files
    if source.is_file():
        if config.test_source is None:
            raise DataError(f"dataset.test_source: source {source} is a single file (the training data); set"
                            f" dataset.test_source to the test file, or name every split in dataset.files")
        return {"train": source, "test": Path(config.test_source)}
    kind = "file" if source.suffix.lower() in FORMATS else "folder"
    raise DataError(f"dataset.source: {kind} {source} does not exist; point it at a folder with train and test files,"
                    f" or at a training file with dataset.test_source")


def _roles(config: DatasetConfig, available: list[str], where: str) -> dict[str, str | None]:
    """Role -> the source's split that plays it; validation None: stratified out of train."""
    wanted = config.splits
    roles = {"train": wanted.train, "test": wanted.test, "validation": wanted.validation}
    if roles["validation"] is None and "validation" in available and "validation" not in (wanted.train, wanted.test):
        roles["validation"] = "validation"
    for role, split in roles.items():
        if split is not None and split not in available:
            raise DataError(f"dataset.splits.{role}: {where} has no split {shown(split)};"
                            f" splits: {clip(', '.join(available))}")
    if len({s for s in roles.values() if s is not None}) < sum(s is not None for s in roles.values()):
        raise DataError(f"dataset.splits: {shown(roles)} uses one split for two roles; give each role its own split")
    return roles


def _read_source(config: DatasetConfig) -> tuple[dict[str, Table], dict[str, str | None], str, list[str]]:
    """(tables by role, roles, the source's description, its split names)."""
    if is_hub_source(config):
        return _read_hub(config)
    files = _local_files(config)
    where = "dataset.files" if config.files is not None else str(config.source)
    roles = _roles(config, list(files), where)
    tables = {role: read_table(files[split]) for role, split in roles.items() if split is not None}
    described = config.source if config.files is None else ", ".join(f"{k}: {v}" for k, v in config.files.items())
    return tables, roles, described, list(files)


def check_hub_source(config: DatasetConfig) -> None:
    """A Hub dataset can be had: it is in the Hugging Face caches, or the Hub can be used. Downloads nothing (the
    dry run's check; the real run's first, so that an unreachable Hub is one line at once)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    from core.models import hub_problem

    cached = Path(HF_HUB_CACHE) / f"datasets--{config.source.replace('/', '--')}"
    try:
        from datasets.config import HF_DATASETS_CACHE

        prepared = Path(HF_DATASETS_CACHE) / config.source.replace("/", "___")
    except ImportError:  # the datasets library is not installed: the real run says so
        prepared = cached
    reason = None if cached.is_dir() or prepared.is_dir() else hub_problem()
    if reason:
        raise DataError(f"dataset.source: {config.source!r} is not a local folder or file and not in the Hugging Face"
                        f" cache, and the Hub cannot be used ({reason}); point dataset.source at local data")


def _read_hub(config: DatasetConfig):
    name = config.source + (f" ({config.subset})" if config.subset else "")
    try:
        import datasets

        loaded = datasets.load_dataset(config.source, config.subset)
    except Exception as error:  # the Hub client raises many types; the user needs one line
        raise DataError(f"dataset.source: {shown(name)} is not a local folder or file and the Hub dataset could not be"
                        f" loaded ({_first_line(error)}); point dataset.source at local data") from None
    roles = _roles(config, list(loaded), name)
    label = config.label_column or "label"
    tables = {}
    for role, split in roles.items():
        if split is None:
            continue
        part = loaded[split]
        feature = part.features.get(label)
        names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        frame = part.to_pandas()
        tables[role] = Table(f"{config.source}[{split}]", frame, list(range(1, len(frame) + 1)), class_label=names)
    return tables, roles, name, list(loaded)


# ----------------------------------------------------------------------------------------------
# Columns and labels


def _columns(config: DatasetConfig, table: Table) -> tuple[list[str], str]:
    if config.text_column is None:
        texts = ["title", "description"] if table.original_layout else ["text"]
    else:
        texts = [config.text_column] if isinstance(config.text_column, str) else list(config.text_column)
    label = config.label_column or ("class index" if table.original_layout else "label")
    return texts, label


def _check_column(table: Table, column: str, key: str) -> None:
    if column not in table.frame.columns:
        existing = clip(", ".join(map(str, table.frame.columns)))
        raise DataError(f"{table.name}: no column {shown(column)} ({key}); its columns are {existing}; set {key}")


def _cells(table: Table, column: str, key: str) -> list:
    """The column's cells, each text, a number or missing: a list or an object would become its repr."""
    _check_column(table, column, key)
    cells = table.frame[column].tolist()
    for i, value in enumerate(cells):
        if isinstance(value, (list, tuple, set, dict, np.ndarray, bytes)):
            kind = "an object" if isinstance(value, dict) else "bytes" if isinstance(value, bytes) else "a list"
            raise DataError(f"{table.where(i)}: column {shown(column)} ({key}) holds {kind}"
                            f" ({type(value).__name__}), not text or a number; give one value per cell, e.g. join"
                            f" the list into one text, or name another column in {key}")
    return cells


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _texts(table: Table, columns: list[str], max_chars: int) -> list[str]:
    parts = [[("" if _is_missing(v) else str(v)) for v in _cells(table, c, "dataset.text_column")] for c in columns]
    texts = parts[0] if len(parts) == 1 else [" ".join(cells).strip() for cells in zip(*parts)]
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"{table.where(i)}: the text is empty (column {clip(', '.join(map(repr, columns)))});"
                            f" remove the row or fill it in")
        if len(text) > max_chars:
            raise DataError(f"{table.where(i)}: the text has {len(text):,} characters, more than"
                            f" dataset.max_text_chars ({max_chars:,}); shorten it, or raise dataset.max_text_chars")
    return texts


INTEGER = re.compile(r"[+-]?\d+")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _label_value(value):
    """An int for integer labels (1, "1", 1.0, "1.0", "1e2"), a stripped string for names, None when missing."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else str(value)
    text = str(value).strip()
    if INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # past Python's 4,300 digits: a name
            return text
    if NUMBER.fullmatch(text) and len(text) <= 40:
        number = decimal.Decimal(text)
        if number == number.to_integral_value() and number.adjusted() < 40:  # "3.0" is 3; "1e999999" stays text
            return int(number)
    return text


def _unlabelled(value) -> bool:
    return value is None or value == -1 or value == ""


def _encode_labels(config: DatasetConfig, tables: dict[str, Table], roles: dict, splits: list[str],
                   described: str) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Label ids per role, and the class names, by the order in dataset.class_names' comment (core/config.py)."""
    raw, label_columns = {}, {}
    for role, table in tables.items():
        column = label_columns[role] = _columns(config, table)[1]
        if role == "test" and column not in table.frame.columns:
            raise DataError(_unlabelled_test(roles, splits, described, f"has no column {shown(column)}"))
        values = [_label_value(v) for v in _cells(table, column, "dataset.label_column")]
        if role == "test" and all(_unlabelled(v) for v in values):
            raise DataError(_unlabelled_test(roles, splits, described, "has no labels (-1 or empty in every row)"))
        for i, value in enumerate(values):
            if _unlabelled(value):
                raise DataError(f"{table.where(i)}: no label (column {shown(column)} is"
                                f" {'-1' if value == -1 else 'empty'});"
                                f" label the row or remove it")
        raw[role] = values
    integers = all(isinstance(v, int) for values in raw.values() for v in values)
    if not integers:  # one kind for the whole dataset: "1" and "positive" are both names then
        raw = {role: [str(v) for v in values] for role, values in raw.items()}
    base = {role: 1 if table.original_layout else 0 for role, table in tables.items()}
    hub_names = next((t.class_label for t in tables.values() if t.class_label), None)
    names = config.class_names or (hub_names if integers else None)
    if names is None and integers:
        found = {v - base[role] for role, values in raw.items() for v in values}
        ag_layout = config.text_column is None and config.label_column is None and all(
            t.original_layout or list(t.frame.columns) == ["text", "label"] for t in tables.values())
        if ag_layout and found == set(range(len(AG_NEWS_CLASSES))):
            names = list(AG_NEWS_CLASSES)
        else:
            values = sorted(found)
            if values != list(range(len(values))):  # 2, 4, 6: ids in value order
                index = {v: i for i, v in enumerate(values)}
                raw = {role: [index[v - base[role]] + base[role] for v in vals] for role, vals in raw.items()}
            names = [str(v + base["train"]) for v in values]  # as written (a headerless CSV's count from 1)
    elif names is None:
        names = sorted({v for values in raw.values() for v in values})
    if len(names) < 2:
        raise DataError(f"{described}: every row has label {shown(names[0])}; a classifier needs at least two"
                        f" classes")
    if len(names) > config.max_classes:
        raise DataError(f"{described}: {len(names):,} classes, more than dataset.max_classes ({config.max_classes:,});"
                        f" check dataset.label_column ({shown(label_columns['train'])}), or raise dataset.max_classes")
    # Only given names can miss a label (names found in the data hold every label): the config's, or the Hub's.
    where_names = "dataset.class_names" if config.class_names else "the dataset's ClassLabel"
    labels = {}
    for role, values in raw.items():
        table = tables[role]
        if integers:
            bad = [i for i, value in enumerate(values) if not 0 <= value - base[role] < len(names)]
            if bad:  # checked as Python ints: a label of 10^20 fits no int64
                i = bad[0]
                low = base[role]
                raise DataError(f"{table.where(i)}: label {shown(values[i])} is outside {low}-{len(names) - 1 + low}"
                                f" ({len(names)} classes in {where_names}); fix column {shown(label_columns[role])}"
                                f" or dataset.class_names")
            ids = np.asarray(values, dtype=np.int64) - base[role]
        else:
            index = {name: i for i, name in enumerate(names)}
            for i, value in enumerate(values):
                if value not in index:
                    raise DataError(f"{table.where(i)}: label {shown(value)} is not in {where_names}"
                                    f" ({clip(', '.join(names))}); fix column {shown(label_columns[role])} or"
                                    f" dataset.class_names")
            ids = np.asarray([index[v] for v in values], dtype=np.int64)
        labels[role] = ids
    return labels, tuple(names)


def _unlabelled_test(roles: dict, splits: list[str], described: str, what: str) -> str:
    others = [s for s in splits if s not in (roles["train"], roles["test"])]
    fix = (f"use a labelled split as the test: dataset.splits.test: {others[0]}" if others else
           "name a labelled split in dataset.splits.test, or a labelled test file")
    return f"dataset.splits.test: split {shown(roles['test'])} of {described} {what}; {fix}"


# ----------------------------------------------------------------------------------------------
# Splits


def read_split_csv(path: Path, num_classes: int) -> pd.DataFrame:
    """One CSV file in either AG News layout -> columns row, text, label (0-based; `num_classes` classes)."""
    table = read_table(Path(path))
    config = DatasetConfig(class_names=[str(i) for i in range(num_classes)])
    texts = _texts(table, _columns(config, table)[0], config.max_text_chars)
    labels, _ = _encode_labels(config, {"train": table}, {"train": "train", "test": None}, ["train"], str(path))
    return pd.DataFrame({"row": np.arange(len(texts)), "text": texts, "label": labels["train"]})


def read_texts(path: Path, config: DatasetConfig) -> list[str]:
    """Texts to classify, from one file: a data file (FORMATS) read as a split is, its texts from
    dataset.text_column (or its default); any other file as UTF-8 text, one text a line. No labels needed."""
    path = Path(path)
    if path.suffix.lower() in FORMATS:
        table = read_table(path)
        return _texts(table, _columns(config, table)[0], config.max_text_chars)
    texts = [line for line in _read_text(path).splitlines() if line.strip()]
    if not texts:
        raise DataError(f"{path}: the file holds no texts")
    return texts


def load_splits(config: DatasetConfig) -> Splits:
    """Train, validation (the source's own, else stratified out of train) and test, each capped if asked."""
    tables, roles, described, splits = _read_source(config)
    texts = {role: _texts(table, _columns(config, table)[0], config.max_text_chars) for role, table in tables.items()}
    labels, classes = _encode_labels(config, tables, roles, splits, described)
    try:
        config.descriptions(classes)  # dataset.class_descriptions fit the classes found
    except ValueError as error:
        raise DataError(str(error)) from None
    frames = {role: pd.DataFrame({"row": np.arange(len(texts[role])), "text": texts[role], "label": labels[role]})
              for role in tables}
    train = frames["train"]
    _check_trained_classes(config, frames, tables, classes, train)
    if "validation" in frames:
        validation = frames["validation"]
    else:
        _check_stratifiable(config, train, classes, tables["train"].name)
        train, validation = _stratified_split(train, config.validation_size, config.split_seed)
    train = stratified_sample(train, config.max_train_samples, config.split_seed)
    _check_trained_classes(config, frames, tables, classes, train)
    return Splits(
        train=train,
        validation=stratified_sample(validation, config.max_eval_samples, config.split_seed),
        test=stratified_sample(frames["test"], config.max_test_samples, config.split_seed),
        source=described,
        class_names=classes,
    )


def _check_trained_classes(config: DatasetConfig, frames: dict[str, pd.DataFrame], tables: dict[str, Table],
                           classes: tuple[str, ...], train: pd.DataFrame) -> None:
    """Every class has a training row in `train` (the file's, or what max_train_samples kept of it): a class
    without one would be a phantom in the head and in macro averages, or score only on rows it never learned."""
    counts = np.bincount(train["label"].to_numpy(), minlength=len(classes))
    if counts.min() > 0:
        return
    missing = int(np.argmin(counts))
    name, file = shown(classes[missing]), tables["train"].name
    if train is not frames["train"]:
        raise DataError(f"dataset.max_train_samples: {config.max_train_samples} rows leave class {name} without a"
                        f" training row; raise it to at least {len(classes)}")
    for role in ("validation", "test"):
        rows = np.flatnonzero(frames[role]["label"].to_numpy() == missing) if role in frames else []
        if len(rows):
            raise DataError(f"{tables[role].where(int(rows[0]))}: label {name} has no row in {file}; a class needs"
                            f" training rows: add some, or remove this class's rows")
    given = "dataset.class_names" if config.class_names else "the dataset's class names"
    raise DataError(f"{given}: class {name} has no row in {file}; remove it from {given}, or add training rows")


def _check_stratifiable(config: DatasetConfig, train: pd.DataFrame, classes: tuple[str, ...], name: str) -> None:
    size = config.validation_size
    if size >= len(train):
        raise DataError(f"dataset.validation_size: {size} leaves no training rows"
                        f" (train has {len(train)}); choose a smaller validation_size")
    counts = train["label"].value_counts()
    if counts.min() < 2:
        rare = classes[int(counts.idxmin())]
        raise DataError(f"dataset.validation_size: class {shown(rare)} has {counts.min()} row in {name}; a stratified"
                        f" validation split needs at least 2 rows per class; add rows or give a validation split")
    if min(size, len(train) - size) < len(counts):
        raise DataError(f"dataset.validation_size: {size} cannot be stratified over"
                        f" {len(counts)} classes with {len(train)} training rows")


def _stratified_split(frame: pd.DataFrame, size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    keep, held_out = train_test_split(frame, test_size=size, stratify=frame["label"], random_state=seed)
    return keep.sort_values("row").reset_index(drop=True), held_out.sort_values("row").reset_index(drop=True)


def stratified_sample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A stratified sample of `limit` rows, in file order; the frame itself when it is small enough."""
    if limit is None or limit >= len(frame):
        return frame
    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 and limit >= len(counts) else None
    kept, _ = train_test_split(frame, train_size=limit, stratify=stratify, random_state=seed)
    return kept.sort_values("row").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Tokenisation, cached on disk


def tokenize(texts: list[str], tokenizer, max_length: int, cache_dir: str | Path) -> list[list[int]]:
    """Token ids per text (no padding). A second call with the same inputs reads the cache.

    Under torchrun rank 0 tokenises and writes the cache first, once for the whole job; the other ranks then
    read it (or, on a node that does not share the folder, tokenise without writing)."""
    with distributed.main_first():
        return _tokenize(texts, tokenizer, max_length, cache_dir)


def _tokenize(texts: list[str], tokenizer, max_length: int, cache_dir: str | Path) -> list[list[int]]:
    key = _cache_key(texts, tokenizer, max_length)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as stored:
                flat, offsets = stored["ids"], stored["offsets"]
            return [flat[offsets[i]: offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    if not is_main_process():
        return ids
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    with atomic_file(path, "wb") as file:  # a killed writer never leaves half a cache file
        np.savez(file, ids=flat, offsets=offsets)
    return ids


def _cache_key(texts: list[str], tokenizer, max_length: int) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # truncation and padding state change as the tokenizer is used: not identity
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        identity = json.dumps(state, sort_keys=True)
    else:
        identity = repr(sorted(tokenizer.get_vocab().items()))
    digest.update(f"{type(tokenizer).__name__}|{max_length}|".encode())
    digest.update(identity.encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]
