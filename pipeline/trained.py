"""A finished run's saved model, used again: classify new texts, or export a standalone Hugging Face folder.

Runs that train save `results/<RUN_ID>/model/`: the whole model (full, head, bitfit) or a PEFT adapter plus
the new head (every PEFT method; PiSSA/OLoRA converted to a plain LoRA adapter over the original weights),
which is applied here to the base model named in the run's metrics.json. embed_lr, zero_shot and setfit save
a linear head over pooled embeddings (tasks/embeddings.py): predict uses it, export refuses it. Texts are
tokenised as the run's test texts were (its tokenizer and `max_length`) and classified by the same batched
inference (evaluation/inference.py) with the run's eval batch size and precision, so a run's own test
texts get back the probabilities in its predictions.csv.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import METHODS, ConfigError, PipelineConfig, did_you_mean
from core.files import unwritable, write_csv_atomic
from core.quiet import quiet_transformers
from core.record import RunRecord
from evaluation.inference import probability_columns
from tasks.adapters import can_merge, merged
from tasks.embeddings import HEAD_FILE, WEIGHTS_FILE, saved_method


class RunUnusable(ConfigError):
    """The run named on the command line cannot be used: unknown, not complete, or without a saved model."""


@dataclass
class TrainedRun:
    run_id: str
    model: Any  # a transformers model, or a peft.PeftModel over one
    tokenizer: Any
    class_names: list[str]
    max_length: int  # tokens, as the run's texts were truncated
    batch_size: int
    bf16: bool  # the run's inference precision

    @property
    def is_adapter(self) -> bool:
        from peft import PeftModel

        return isinstance(self.model, PeftModel)


def load(config: PipelineConfig, run_id: str) -> TrainedRun:
    """The run's saved model and tokenizer from config.output_dir, ready for inference."""
    from core.models import ModelError

    output_dir = Path(config.output_dir)
    record = _complete_record(output_dir, run_id)
    model_dir = output_dir / run_id / "model"
    if record.method in METHODS and not (METHODS[record.method]["trains"] or METHODS[record.method].get("saves_model")):
        raise RunUnusable(f"run {run_id}: method {record.method!r} saved no model (runs that train, embed_lr and"
                          f" zero_shot do); predict and export need such a run")
    missing = _missing_file(model_dir, record.model) if not (model_dir / HEAD_FILE).is_file() else \
        (model_dir / WEIGHTS_FILE if not (model_dir / WEIGHTS_FILE).is_file() else None)
    if missing:
        raise RunUnusable(f"run {run_id}: its model needs {missing}, which is missing; restore it, or rerun the run"
                          f" with python main.py --only {run_id} --force")
    class_names = list(record.data.class_names)
    training = record.config.get("training") or {}
    try:
        model, tokenizer = _load_model(model_dir, record, class_names, config.trust_remote_code)
    except (ModelError, OSError, ValueError) as error:
        raise RunUnusable(f"run {run_id}: its model cannot be loaded ({str(error).splitlines()[0]})") from None
    return TrainedRun(
        run_id=run_id, model=model, tokenizer=tokenizer, class_names=class_names,
        # Runs written before metrics.json recorded max_length were tokenised with the config's.
        max_length=record.data.max_length or config.dataset.max_length,
        batch_size=training.get("eval_batch_size") or config.training.eval_batch_size,
        bf16=record.precision == "bf16",
    )


def predict(trained: TrainedRun, texts: list[str]) -> np.ndarray:
    """Class probabilities [texts, classes], row i for texts[i]."""
    from evaluation.inference import predict_probabilities
    from core.hardware import pick_device

    ids = trained.tokenizer(list(texts), truncation=True, max_length=trained.max_length)["input_ids"]
    probabilities, _ = predict_probabilities(trained.model, ids, trained.tokenizer.pad_token_id,
                                             trained.batch_size, pick_device(), trained.bf16)
    return probabilities


def prediction_frame(trained: TrainedRun, texts: list[str], probabilities: np.ndarray) -> pd.DataFrame:
    """predictions.csv's columns for new texts: index, text, predicted, predicted_label, prob_<class>."""
    predicted = probabilities.argmax(axis=1)
    return pd.DataFrame({"index": np.arange(len(texts)), "text": list(texts), "predicted": predicted,
                         "predicted_label": [trained.class_names[i] for i in predicted],
                         **probability_columns(probabilities, trained.class_names)})


ADAPTER_FOLDER = "adapter"  # export of a prompt-learning run: DIR is the base model, DIR/adapter the adapter


def export(trained: TrainedRun, folder: Path) -> Path:
    """A standalone Hugging Face model folder: adapters merged into the base weights, tokenizer included.

    Its tokenizer truncates at the run's max_length by default, so AutoTokenizer + AutoModelFor-
    SequenceClassification from this folder reproduce the run's predictions. Prompt-learning adapters
    (prompt, prefix, P-tuning) cannot merge: the folder holds the base model and, in `adapter/`, the
    adapter with the trained head, loaded with PeftModel.from_pretrained(base, DIR/adapter).
    """
    folder = Path(folder)
    check_export_folder(folder)
    with quiet_transformers():
        if trained.is_adapter and not can_merge(trained.model):
            trained.model.save_pretrained(str(folder / ADAPTER_FOLDER))
            model = trained.model.get_base_model()
            from peft.utils.other import ModulesToSaveWrapper

            saved = {name: module for name, module in model.named_modules() if isinstance(module, ModulesToSaveWrapper)}
            for name, module in saved.items():  # the base as loaded: original head, no PEFT wrappers
                _set_module(model, name, module.original_module)
            try:
                model.save_pretrained(str(folder))
            finally:
                for name, module in saved.items():
                    _set_module(model, name, module)
        else:
            merged(trained.model).save_pretrained(str(folder))
    trained.tokenizer.model_max_length = trained.max_length
    trained.tokenizer.save_pretrained(str(folder))
    return folder


def check_export_folder(folder: Path) -> None:
    """Before any work: DIR must be new (or an empty folder) and writable."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"export: {folder} already exists and is not an empty folder; name a new folder")
    problem = unwritable(folder)
    if problem:
        raise ConfigError(f"export: {folder} cannot be written: {problem}; name a new folder in a writable place")


def _set_module(model, name: str, module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def file_texts(path: Path, config: PipelineConfig) -> list[str]:
    """--file's texts, read by the dataset reader (dataset.read_texts): a data file in any of its formats, with the
    config's dataset.text_column; any other file as plain text, one text a line."""
    from dataset import FORMATS, DataError, read_texts

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--file: {path.resolve()} does not exist; name a data file ({', '.join(FORMATS)})"
                          f" or a text file, one text a line")
    try:
        return read_texts(path, config.dataset)
    except DataError as error:
        raise ConfigError(f"--file: {error}") from None
    except OSError as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: OSError) -> ConfigError:
    return ConfigError(f"--file: {path} cannot be read ({error.strerror}); make it readable or name another file")


def default_output_path(input_path: Path, run_id: str) -> Path:
    """news.csv -> news.B1_v1.predictions.csv, beside the input."""
    input_path = Path(input_path)
    return input_path.with_name(f"{input_path.stem}.{run_id}.predictions.csv")


def format_prediction(trained: TrainedRun, text: str, probabilities: np.ndarray) -> str:
    """`Sports    World 0.0120  Sports 0.9510  ...  | text`, one line per text."""
    width = max(len(name) for name in trained.class_names)
    label = trained.class_names[int(probabilities.argmax())]
    shares = "  ".join(f"{name} {p:.4f}" for name, p in zip(trained.class_names, probabilities))
    return f"{label:<{width}}  {shares}  | {text}"


def predict_command(config: PipelineConfig, run_id: str, texts: list[str], file: str | None,
                    out: str | None) -> int:
    """`python main.py predict`: texts on the command line to stdout, a --file to a CSV file."""
    if not texts and file is None:
        raise ConfigError("predict: give texts to classify, or --file PATH")
    if out is not None and file is None:
        raise ConfigError("predict: --out names where --file's predictions go; give --file too")
    from_file = file_texts(Path(file), config) if file is not None else []
    if file is not None:  # checked before the model is loaded
        target = Path(out) if out is not None else default_output_path(Path(file), run_id)
        if target.resolve() == Path(file).resolve():
            raise ConfigError(f"predict: --out {target} would overwrite the input; name another file")
        problem = unwritable(target, folder=False)
        if problem:
            where = f"--out {target}" if out is not None else f"{target} (the default beside --file)"
            raise ConfigError(f"predict: {where} cannot be written: {problem}; pass --out with a file in a writable"
                              f" folder")
    trained = load(config, run_id)
    if texts:
        for text, row in zip(texts, predict(trained, texts)):
            print(format_prediction(trained, text, row))
    if file is not None:
        write_csv_atomic(target, prediction_frame(trained, from_file, predict(trained, from_file)))
        print(f"{len(from_file)} predictions by {run_id} written to {target}")
    return 0


def export_command(config: PipelineConfig, run_id: str, folder: str) -> int:
    """`python main.py export`."""
    method = saved_method(Path(config.output_dir) / run_id / "model")
    if method:
        raise RunUnusable(f"export: run {run_id} (method {method}) classifies pooled embeddings with its own head,"
                          f" which no AutoModelForSequenceClassification folder computes; use python main.py predict"
                          f" {run_id}, or its model/ folder ({HEAD_FILE}, head.safetensors)")
    check_export_folder(Path(folder))
    trained = load(config, run_id)
    export(trained, Path(folder))
    if trained.is_adapter and not can_merge(trained.model):
        print(f"{run_id} exported to {folder}: the base model, and in {ADAPTER_FOLDER}/ its adapter (prompt learning"
              f" cannot merge); load it with PeftModel.from_pretrained(AutoModelForSequenceClassification"
              f".from_pretrained(DIR), DIR/{ADAPTER_FOLDER}) and AutoTokenizer.from_pretrained(DIR)")
        return 0
    merged = " (adapter merged into the base weights)" if trained.is_adapter else ""
    print(f"{run_id} exported to {folder}{merged}; load it with AutoModelForSequenceClassification and"
          " AutoTokenizer.from_pretrained")
    return 0


# ----------------------------------------------------------------------------------------------


def _complete_record(output_dir: Path, run_id: str) -> RunRecord:
    path = output_dir / run_id / "metrics.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in output_dir.glob("*/metrics.json"))
        raise RunUnusable(f"run {run_id!r} has no results in {output_dir}{did_you_mean(run_id, known)};"
                          f" runs there: {', '.join(known) or 'none'} (pass --config, and --set output_dir=DIR if the run had it)")
    record = RunRecord.read(path)
    if record is None:
        raise RunUnusable(f"run {run_id}: {path} cannot be read; rerun the run")
    if not record.complete:
        reason = f": {record.error}" if record.error else ""
        raise RunUnusable(f"run {run_id} is not complete (status {record.status.value!r}{reason});"
                          f" rerun it with python main.py --only {run_id}")
    return record


def _missing_file(model_dir: Path, base_model: str | None) -> Path | None:
    """The first file a run's saved model needs that is not there (the folder itself, its config, weights or
    tokenizer; for an adapter, the local base model's folder), or None."""
    import json

    if not model_dir.is_dir():
        return model_dir
    if (model_dir / "adapter_config.json").is_file():  # a PEFT adapter and the head, over the base model
        if base_model and Path(base_model).is_absolute() and not (Path(base_model) / "config.json").is_file():
            return Path(base_model) if not Path(base_model).is_dir() else Path(base_model) / "config.json"
        needed = ["adapter_model.safetensors"]
    elif not (model_dir / "config.json").is_file():
        return model_dir / "config.json"
    elif (model_dir / "model.safetensors.index.json").is_file():  # sharded weights
        try:
            index = json.loads((model_dir / "model.safetensors.index.json").read_text(encoding="utf-8"))
            needed = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return None  # a damaged index: loading says what is wrong
    else:
        needed = ["model.safetensors"]
    for name in [*needed, "tokenizer_config.json"]:
        if not (model_dir / name).is_file():
            return model_dir / name
    return None


def _load_model(model_dir: Path, record: RunRecord, class_names: list[str], trust_remote_code: bool):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.models import load_classifier

    if saved_method(model_dir):  # embed_lr, zero_shot, setfit: an encoder and a head over its pooled embeddings
        from tasks import embeddings

        return embeddings.load(model_dir, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with quiet_transformers():
        if not (model_dir / "adapter_config.json").is_file():
            model = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), use_safetensors=True, trust_remote_code=trust_remote_code)
            return model, tokenizer
        from peft import PeftModel

        base, _ = load_classifier(record.model, len(class_names), class_names, trust_remote_code)
        return PeftModel.from_pretrained(base, str(model_dir)), tokenizer
