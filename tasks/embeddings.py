"""Classifiers over pooled text embeddings (methods embed_lr, zero_shot, setfit): an encoder, a pooling and a
linear head, whose softmax gives the class probabilities.

Pooling: the model's own where its folder states one (a sentence-transformers folder: `1_Pooling/config.json`
names mean, CLS or max pooling, and a `Normalize` module in `modules.json` scales to unit length), else the
mean over the non-padding tokens. all-MiniLM-L6-v2 and most sentence encoders were trained with mean pooling
(its model card); the CLS vector of an encoder never trained for sentence similarity (BERT's pooler learned
next-sentence prediction) is a poorer sentence embedding, and for a random test model any pooling will do.

A run saves `results/<RUN_ID>/model/`: `head.json` (the method, pooling, whether embeddings are normalised,
the encoder: the run's base model, or `.` for setfit's tuned encoder saved beside it with its tokenizer, and
the head's settings) and `head.safetensors` (weight [classes, hidden], bias [classes]). No pickle.
pipeline/trained.py loads it for `predict`; `export` refuses, as no AutoModelForSequenceClassification folder
computes a pooled embedding followed by this head.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from core.files import write_json_atomic
from core.hardware import is_main_process
from core.models import hub_options, load_encoder
from dataset import tokenize
from evaluation.inference import predict_probabilities

HEAD_FILE = "head.json"  # in the run's model/ folder: what pipeline/trained.py looks for
WEIGHTS_FILE = "head.safetensors"
C_GRID = [0.01, 0.1, 1.0, 10.0, 100.0]  # logistic regression's inverse regularisation, chosen on validation
POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


class Embedder(torch.nn.Module):
    """input_ids, attention_mask -> one embedding per text [batch, hidden]."""

    def __init__(self, encoder, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:  # the mean over the text's own tokens: padding left out
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        pooled = pooled.float()
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


class EmbeddingClassifier(torch.nn.Module):
    """An Embedder and a linear head: logits = embedding @ weight.T + bias, the head in fp32 (also under bf16)."""

    def __init__(self, embedder: Embedder, weight: np.ndarray, bias: np.ndarray):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight), dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(np.asarray(bias), dtype=torch.float32))

    def forward(self, input_ids, attention_mask):
        from transformers.modeling_outputs import SequenceClassifierOutput

        embeddings = self.embedder(input_ids, attention_mask)
        with torch.autocast(embeddings.device.type, enabled=False):
            return SequenceClassifierOutput(logits=embeddings.float() @ self.weight.T + self.bias)


def model_pooling(name: str) -> tuple[str, bool]:
    """(pooling, normalize): the model's own (a sentence-transformers folder's), else mean pooling, unnormalised."""
    config, modules = _model_file(name, "1_Pooling/config.json"), _model_file(name, "modules.json")
    pooling = "mean"
    if config is not None:
        settings = json.loads(config.read_text(encoding="utf-8"))
        modes = [mode for key, mode in POOLINGS.items() if settings.get(key)]
        if not modes:
            raise ValueError(f"model {name}: 1_Pooling/config.json names no mean, CLS or max pooling; use a model"
                             f" with one of those")
        pooling = modes[0]
    normalize = modules is not None and "Normalize" in modules.read_text(encoding="utf-8")
    return pooling, normalize


def _model_file(name: str, filename: str) -> Path | None:
    if Path(name).is_absolute():
        path = Path(name) / filename
        return path if path.is_file() else None
    if not hub_options(name):  # not in the Hugging Face cache: a dry run or check never downloads
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, filename)
    return Path(found) if isinstance(found, str) else None


def load_embedder(name: str, trust_remote_code: bool = False, pooling: tuple[str, bool] | None = None):
    """(Embedder, tokenizer) for the model `name`; `pooling`: (pooling, normalize), default the model's own."""
    encoder, tokenizer = load_encoder(name, trust_remote_code)
    return Embedder(encoder, *(pooling or model_pooling(name))), tokenizer


def embedding_function(embedder: Embedder, tokenizer, context):
    """texts -> embeddings [texts, hidden] as a numpy array: tokenised as every run's texts (cached), in the
    run's eval batch size and precision."""
    dataset = context.config.dataset

    def embed(texts: list[str]) -> np.ndarray:
        ids = tokenize(list(texts), tokenizer, dataset.max_length, dataset.cache_dir)
        embeddings, _ = predict_probabilities(embedder, ids, tokenizer.pad_token_id,
                                              context.config.training.eval_batch_size, context.device, context.bf16,
                                              read=lambda output: output)
        return embeddings

    return embed


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_logistic_regression(train_x: np.ndarray, train_y: np.ndarray, validation_x: np.ndarray,
                            validation_y: np.ndarray, num_classes: int, grid=C_GRID) -> dict:
    """scikit-learn's LogisticRegression (lbfgs: deterministic) fitted on train once per C in `grid`; the C with the
    best validation accuracy is kept (a tie: the smaller C, the stronger regularisation). Returns the linear head
    {weight [classes, hidden], bias [classes]} that gives its predict_proba as softmax(x @ weight.T + bias), and
    {grid, C, validation_accuracy per C} for metrics.json."""
    best, scores = None, {}
    for c in sorted(grid):
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(train_x, train_y)
        scores[c] = float((model.predict(validation_x) == validation_y).mean())
        if best is None or scores[c] > scores[best[0]]:
            best = (c, model)
    c, model = best
    weight = np.zeros((num_classes, train_x.shape[1]))
    bias = np.zeros(num_classes)
    if len(model.classes_) == 2:  # binary: predict_proba is sigmoid(z) = softmax([0, z])
        weight[model.classes_[1]], bias[model.classes_[1]] = model.coef_[0], model.intercept_[0]
    else:  # multinomial: softmax over the classes seen in train; an unseen class never wins
        weight[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
        missing = np.setdiff1d(np.arange(num_classes), model.classes_)
        bias[missing] = -1e4
    return {"weight": weight, "bias": bias,
            "record": {"C_grid": sorted(grid), "C": c, "validation_accuracy": {str(k): v for k, v in scores.items()}}}


def fit_and_score(context, embed) -> tuple[dict, dict]:
    """Logistic regression on `embed`'s train embeddings (C chosen on validation), then the test probabilities.
    `embed`: texts -> embeddings (embedding_function, or a test's made-up vectors).
    Returns (the head, TaskResult fields)."""
    splits = context.splits
    start = time.perf_counter()
    head = fit_logistic_regression(embed(splits.train["text"].tolist()), splits.train["label"].to_numpy(),
                                   embed(splits.validation["text"].tolist()), splits.validation["label"].to_numpy(),
                                   len(splits.class_names))
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = softmax(embed(splits.test["text"].tolist()) @ head["weight"].T + head["bias"])
    fields = {"probabilities": probabilities, "test_seconds": time.perf_counter() - start,
              "train_seconds": train_seconds, "extra": {"logistic_regression": head["record"]}}
    return head, fields


def save(model_dir: Path, method: str, encoder: str, embedder: Embedder, head: dict, settings: dict) -> None:
    """head.json and head.safetensors (see the module's docstring). `encoder`: the base model, or "." (saved here)."""
    from safetensors.torch import save_file

    if not is_main_process():  # under torchrun every rank has the same head; rank 0 writes it
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.as_tensor(head["weight"], dtype=torch.float32).contiguous(),
               "bias": torch.as_tensor(head["bias"], dtype=torch.float32).contiguous()}, str(model_dir / WEIGHTS_FILE))
    write_json_atomic(model_dir / HEAD_FILE, {"method": method, "encoder": encoder, "pooling": embedder.pooling,
                                              "normalize": embedder.normalize, **settings})


def load(model_dir: Path, trust_remote_code: bool = False):
    """(EmbeddingClassifier, tokenizer) from a run's model/ folder."""
    from safetensors.torch import load_file

    settings = json.loads((model_dir / HEAD_FILE).read_text(encoding="utf-8"))
    encoder = str(model_dir) if settings["encoder"] == "." else settings["encoder"]
    embedder, tokenizer = load_embedder(encoder, trust_remote_code, (settings["pooling"], settings["normalize"]))
    weights = load_file(str(model_dir / WEIGHTS_FILE))
    return EmbeddingClassifier(embedder, weights["weight"].numpy(), weights["bias"].numpy()), tokenizer


def saved_method(model_dir: Path) -> str | None:
    """The method of an embedding classifier saved in `model_dir`, else None."""
    path = Path(model_dir) / HEAD_FILE
    return json.loads(path.read_text(encoding="utf-8"))["method"] if path.is_file() else None


def count(embedder: Embedder, num_classes: int) -> tuple[int, int]:
    """(head parameters, encoder + head parameters)."""
    head = num_classes * (embedder.encoder.config.hidden_size + 1)
    return head, sum(p.numel() for p in embedder.parameters()) + head
