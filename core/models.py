"""Loading transformer classifiers by local folder or hub id, offline first."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse


class ModelError(Exception):
    """A model that cannot be found or loaded. The message names the model and the fix."""


def check_available(name: str, key: str = "models") -> None:
    """Fail fast, in one line, before any run starts, when a model cannot be had. `key`: where the config names it
    (models[0]).

    A local folder (the config loader made it absolute) must hold config.json; it is never tried on the Hub. A hub
    id must be in the Hugging Face cache, or the Hub must answer within a few seconds; with no network the answer
    is immediate instead of minutes of retries.
    """
    if Path(name).is_absolute():
        if not (Path(name) / "config.json").is_file():
            what = "does not exist" if not Path(name).exists() else "has no config.json"
            raise ModelError(f"{key}: local folder {name} {what}; name a folder holding a Hugging Face model,"
                             f" or a hub id")
        _check_safetensors(Path(name))
        return
    if in_hub_cache(name):
        return
    reason = hub_problem()
    if reason:
        raise ModelError(f"{key}: model {name!r} is not a local folder and not in the Hugging Face cache, and the Hub"
                         f" cannot be used ({reason}); download it where the Hub is reachable or name a local folder")


def _check_safetensors(folder: Path) -> None:
    """Weights load from safetensors only (a pickle can run code): a folder holding only pickled weights
    (pytorch_model.bin, *.pt, ...) is refused before any run, not when its first run loads it."""
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    found = f"only pickled weights ({', '.join(pickles[:3])}{', ...' if len(pickles) > 3 else ''})" if pickles \
        else "no weights"
    raise ModelError(f"model {folder}: the folder holds {found}, and models load from safetensors only (a pickle"
                     f" can run code); convert it with save_pretrained(..., safe_serialization=True), or name another")


def max_input_tokens(name: str, trust_remote_code: bool = False) -> int | None:
    """The longest input the model takes, in tokens: its tokenizer's model_max_length when set, and its config's
    position embeddings (RoBERTa's start after the padding index). None when neither says."""
    from transformers import AutoConfig, AutoTokenizer

    options = dict(trust_remote_code=trust_remote_code, **hub_options(name))
    try:
        config = AutoConfig.from_pretrained(name, **options)
        tokenizer_limit = AutoTokenizer.from_pretrained(name, **options).model_max_length
    except (OSError, ValueError) as error:
        raise ModelError(f"model {name}: cannot be loaded ({str(error).strip().splitlines()[0]})") from None
    limits = [tokenizer_limit] if tokenizer_limit and tokenizer_limit < 1_000_000 else []  # unset: a huge sentinel
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if "roberta" in getattr(config, "model_type", "") and config.pad_token_id is not None:
            positions -= config.pad_token_id + 1
        limits.append(positions)
    return min(limits) if limits else None


def check_max_length(name: str, max_length: int, trust_remote_code: bool = False) -> None:
    """dataset.max_length above what the model takes fails at the first long text: refuse it before any run."""
    limit = max_input_tokens(name, trust_remote_code)
    if limit is not None and max_length > limit:
        raise ModelError(f"dataset.max_length: {max_length} tokens is more than model {name} takes ({limit});"
                         f" set dataset.max_length to {limit} or less")


def load_classifier(name: str, num_labels: int, class_names, trust_remote_code: bool = False):
    """(model, tokenizer). A new classification head is initialised from the current torch seed."""
    from transformers import AutoModelForSequenceClassification

    return _load(name, AutoModelForSequenceClassification, trust_remote_code, num_labels=num_labels,
                 id2label=dict(enumerate(class_names)), label2id={c: i for i, c in enumerate(class_names)})


def load_encoder(name: str, trust_remote_code: bool = False):
    """(model, tokenizer): the bare encoder (AutoModel: hidden states, no head), for pooled embeddings."""
    from transformers import AutoModel

    return _load(name, AutoModel, trust_remote_code)


def _load(name: str, auto_class, trust_remote_code: bool, **model_options):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    options = dict(trust_remote_code=trust_remote_code, **hub_options(name))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **options)
        model = auto_class.from_pretrained(name, use_safetensors=True, **model_options, **options)
    except OSError as error:
        raise ModelError(f"model {name}: cannot be loaded ({str(error).strip().splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.pad_token_id is None:
        raise ModelError(f"model {name}: its tokenizer has no padding token; batching needs one")
    return model, tokenizer


def hub_options(name: str) -> dict:
    """A hub id already in the cache loads from it alone: no network round trip, no retries offline."""
    return {"local_files_only": True} if not Path(name).is_absolute() and in_hub_cache(name) else {}


def meta_skeleton(name: str, num_labels: int = 2, trust_remote_code: bool = False):
    """The model's architecture on PyTorch's meta device: shapes and module names, no weights read."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(name, num_labels=num_labels, trust_remote_code=trust_remote_code,
                                            **hub_options(name))
    except OSError as error:
        raise ModelError(f"model {name}: config cannot be read ({str(error).splitlines()[0]})") from None
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total). For PEFT models total counts the frozen base once plus the adapters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the cache cannot even parse is not in it
        return False


def hub_problem() -> str | None:
    """Why the Hugging Face Hub cannot be used now (HF_HUB_OFFLINE is set, or it does not answer within a few
    seconds; with no network the answer is immediate), or None when it can."""
    return "HF_HUB_OFFLINE is set" if _hub_offline() else _hub_unreachable_reason()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as error:
        return f"{host} unreachable: {error.strerror or error}"
