"""AG News (or any CSV text classification data in the same layouts): read, split, cap, tokenise.

Layouts, detected per file:
  * original AG News: no header; "class index 1-K","title","description"; text = title + " " + description
  * Hugging Face: header `text,label`; label 0..K-1
A local folder is always read first, with no network call; anything else is a Hub dataset id.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core import distributed
from core.config import DatasetConfig
from core.files import atomic_file
from core.hardware import is_main_process


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


def read_split_csv(path: Path, num_classes: int) -> pd.DataFrame:
    """One CSV file in either layout -> columns row, text, label (0-based)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; the data folder needs train.csv and test.csv")
    data = path.read_bytes()
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 (byte {error.start}); re-save the file as UTF-8") from None
    rows = list(csv.reader(io.StringIO(content)))
    rows = [r for r in rows if r]  # blank lines carry nothing
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    if header == ["text", "label"]:
        body, first_line, labels_from = rows[1:], 2, 0
        texts = [r[0] if len(r) == 2 else None for r in body]
    elif not header or not header[0].lstrip("+-").isdigit():  # neither `text,label` nor a data row
        raise DataError(f"{path}: header {rows[0]} is not a known layout; use `text,label` (labels 0-{num_classes - 1})"
                        f" or no header with `class index,title,description` (classes 1-{num_classes})")
    else:
        body, first_line, labels_from = rows, 1, 1
        texts = [(r[1] + " " + r[2]).strip() if len(r) == 3 else None for r in body]
    if not body:
        raise DataError(f"{path}: the file has a header but no rows")
    label_column = 1 if labels_from == 0 else 0
    labels = []
    for i, (row, text) in enumerate(zip(body, texts)):
        where = f"{path}: row {first_line + i}"
        if text is None:
            expected = "2 columns (text,label)" if labels_from == 0 else "3 columns (class index,title,description)"
            raise DataError(f"{where}: has {len(row)} columns, expected {expected}")
        try:
            label = int(row[label_column]) - labels_from
        except ValueError:
            raise DataError(f"{where}: label {row[label_column]!r} is not an integer") from None
        if not 0 <= label < num_classes:
            low, high = labels_from, num_classes - 1 + labels_from
            raise DataError(f"{where}: label {row[label_column]} is outside {low}-{high} ({num_classes} classes)")
        if not text.strip():
            raise DataError(f"{where}: the text is empty; remove the row or fill it in")
        labels.append(label)
    return pd.DataFrame({"row": np.arange(len(body)), "text": texts, "label": np.array(labels, dtype=np.int64)})


def load_splits(config: DatasetConfig) -> Splits:
    """Train (less a stratified validation split), validation and test, each capped if asked."""
    classes = tuple(config.class_names)
    source = Path(config.source)
    if source.is_absolute():
        if not source.is_dir():
            raise DataError(f"dataset.source: folder {source} does not exist; point it at a folder with train.csv and test.csv")
        train = read_split_csv(source / "train.csv", len(classes))
        test = read_split_csv(source / "test.csv", len(classes))
    else:
        train, test = _load_hub(config.source, len(classes))
    if config.validation_size >= len(train):
        raise DataError(f"dataset.validation_size: {config.validation_size} leaves no training rows"
                        f" (train has {len(train)}); choose a smaller validation_size")
    if min(config.validation_size, len(train) - config.validation_size) < len(classes):
        raise DataError(f"dataset.validation_size: {config.validation_size} cannot be stratified over"
                        f" {len(classes)} classes with {len(train)} training rows")
    train, validation = _stratified_split(train, config.validation_size, config.split_seed)
    return Splits(
        train=stratified_sample(train, config.max_train_samples, config.split_seed),
        validation=stratified_sample(validation, config.max_eval_samples, config.split_seed),
        test=stratified_sample(test, config.max_test_samples, config.split_seed),
        source=config.source,
        class_names=classes,
    )


def _load_hub(dataset_id: str, num_classes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        import datasets

        loaded = datasets.load_dataset(dataset_id)
    except Exception as error:  # the Hub client raises many types; the user needs one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"dataset.source: {dataset_id!r} is not a local folder and the Hub dataset could not be"
                        f" loaded ({first}); point dataset.source at a folder with train.csv and test.csv") from None
    frames = []
    for split in ("train", "test"):
        part = loaded[split].to_pandas()
        frames.append(pd.DataFrame({"row": np.arange(len(part)), "text": part["text"].astype(str),
                                    "label": part["label"].astype(np.int64)}))
    return frames[0], frames[1]


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
