"""Batched inference: sorted by length so batches pad little, under inference_mode, in input order out.
Under torchrun each rank scores its share of the texts and every rank gets all of them back."""
from __future__ import annotations

import time

import numpy as np
import torch

from core import distributed


def softmax_of_logits(output) -> torch.Tensor:
    return torch.softmax(output.logits.float(), dim=-1)


def predict_probabilities(model, token_ids: list[list[int]], pad_token_id: int, batch_size: int,
                          device: torch.device, bf16: bool, read=softmax_of_logits) -> tuple[np.ndarray, float]:
    """Class probabilities, row i for text i, and the seconds it took. `read`: what a row is, from the model's
    output (the softmax of its logits; tasks/embeddings.py reads pooled embeddings).

    Texts are processed longest first (the first batch shows at once whether memory suffices),
    each batch padded only to its own longest text. Under torchrun / accelerate launch each rank scores every
    world_size-th text and the rows are gathered to every rank (rank 0 writes them); the seconds include that.
    """
    if distributed.active():
        start = time.perf_counter()
        mine = list(distributed.shard(len(token_ids)))
        local, _ = predict_probabilities_locally(model, [token_ids[i] for i in mine], pad_token_id, batch_size,
                                                 device, bf16, read)
        parts = [(indices, part) for indices, part in distributed.all_gather((mine, local)) if indices]
        rows = np.zeros((len(token_ids), parts[0][1].shape[1]), parts[0][1].dtype) if parts else np.zeros((0, 0))
        for indices, part in parts:
            rows[indices] = part
        return rows, time.perf_counter() - start
    return predict_probabilities_locally(model, token_ids, pad_token_id, batch_size, device, bf16, read)


def predict_probabilities_locally(model, token_ids: list[list[int]], pad_token_id: int, batch_size: int,
                                  device: torch.device, bf16: bool, read=softmax_of_logits) -> tuple[np.ndarray, float]:
    """predict_probabilities on this process alone."""
    model.eval()
    model.to(device)
    order = np.argsort([-len(ids) for ids in token_ids], kind="stable")
    rows: list[np.ndarray] = [None] * len(token_ids)  # type: ignore[list-item]
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for begin in range(0, len(order), batch_size):
            batch = order[begin: begin + batch_size]
            input_ids, attention_mask = pad_batch([token_ids[i] for i in batch], pad_token_id,
                                                  width=len(token_ids[batch[0]]))
            output = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
            probabilities = read(output).float().cpu().numpy()
            for row, index in enumerate(batch):
                rows[index] = probabilities[row]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return np.stack(rows) if rows else np.zeros((0, 0)), seconds


def pad_batch(rows: list[list[int]], pad_token_id: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask [len(rows), width]: each row's ids, then padding the mask leaves out."""
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.as_tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def probability_columns(probabilities: np.ndarray, class_names) -> dict[str, np.ndarray]:
    """predictions.csv's `prob_<class>` columns (6 decimals), for the test split and for new texts alike."""
    return {f"prob_{name}": np.round(probabilities[:, i], 6) for i, name in enumerate(class_names)}
