"""Model FLOPs (what the model must compute) and the machine's peak matmul rate at the model's own shapes.

Counting convention (the usual 2N per token, made exact about which parameters see which rows):

* embedding parameters (word, position and type tables and their LayerNorm) are looked up, not multiplied:
  they cost nothing;
* per-token parameters (every transformer layer) cost 2 FLOPs each per real token, i.e. per token that is
  not padding; padding is work the model did not need, so it lowers utilisation instead of raising it;
* per-sequence parameters (the head: BERT's pooler and the classifier, DistilBERT's pre_classifier) see
  one row per text: 2 FLOPs each per text;
* the attention score products (QK^T and AV, 4 x length x hidden per token and layer, about 2% of the
  total at AG News lengths) are left out, as in the 2N convention; achieved figures are slightly low.

    forward                  2 (P_tok T + P_seq S)
    full fine-tuning         3 x forward: forward + gradients of activations + gradients of weights
    LoRA fine-tuning         forward (adapters included) + gradients of activations through the whole network
                             (the first adapter sits in layer 0, so the backward pass runs through every layer)
                             + weight gradients of the adapters and of the trained classifier only:
                             2 (P_tok + A) T + 2 P_seq S  [forward]
                           + 2 (P_tok + A) T + 2 P_seq S  [activation gradients]
                           + 2 A T + 2 H S                [adapter and head weight gradients]
                             which is about 2 x forward (A is 0.3% of P_tok for r=8 on query)

with T real tokens, S texts, A the adapter parameters (per token) and H the trainable head parameters.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

HEAD_PREFIXES = ("classifier", "pre_classifier")  # top-level modules that see one row per text


@dataclass(frozen=True)
class ParameterCounts:
    embedding: int  # looked up, never multiplied
    per_token: int  # every transformer layer: one matrix-vector product per token
    per_sequence: int  # pooler and classifier: one row per text
    adapter: int = 0  # LoRA matrices (per token), zero for full fine-tuning
    trainable_head: int = 0  # head parameters that receive weight gradients under LoRA

    @property
    def total(self) -> int:
        return self.embedding + self.per_token + self.per_sequence + self.adapter

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def count_parameters(model) -> ParameterCounts:
    """Split a (possibly PEFT-wrapped) sequence classifier's parameters by how often they are multiplied."""
    embedding = per_token = per_sequence = adapter = trainable_head = 0
    for name, parameter in model.named_parameters():
        count = parameter.numel()
        name = name.removeprefix("base_model.model.")
        parts = name.split(".")
        if "original_module" in parts:  # PEFT keeps the untrained head beside its trained copy
            continue
        if "lora_A" in parts or "lora_B" in parts or "lora_magnitude_vector" in parts:
            adapter += count
        elif "embeddings" in parts:
            embedding += count
        elif parts[0] in HEAD_PREFIXES or "pooler" in parts:
            per_sequence += count
            trainable_head += count if parameter.requires_grad else 0
        else:
            per_token += count
    return ParameterCounts(embedding, per_token, per_sequence, adapter, trainable_head)


def forward_flops(counts: ParameterCounts, tokens: int, texts: int) -> float:
    return 2.0 * ((counts.per_token + counts.adapter) * tokens + counts.per_sequence * texts)


def training_flops(counts: ParameterCounts, method: str, tokens: int, texts: int) -> float:
    """FLOPs of one pass over `texts` texts holding `tokens` real tokens, per the module docstring."""
    forward = forward_flops(counts, tokens, texts)
    if method == "full":
        return 3.0 * forward
    if method == "lora":
        return 2.0 * forward + 2.0 * (counts.adapter * tokens + counts.trainable_head * texts)
    raise ValueError(f"unknown method {method!r}; expected full or lora")


# ----------------------------------------------------------------------------------------------
# Peak: the best rate of the model's own Linear shapes, in the precision the model runs in


def model_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of the encoder's Linear layers: attention projections and the two feed-forward ones."""
    hidden = getattr(config, "hidden_size", None) or config.dim
    inner = getattr(config, "intermediate_size", None) or config.hidden_dim
    return [(hidden, hidden), (hidden, inner), (inner, hidden)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(shapes: list[tuple[int, int]], rows: int, dtype: torch.dtype, device: torch.device,
                 seconds_per_shape: float = 0.6) -> dict:
    """GFLOP/s of `F.linear([rows x in], [out x in], bias)` per shape; the best one is the peak.

    `rows` is tokens per batch (batch x typical padded length), so the kernels are the ones the model runs.
    """
    generator = torch.Generator().manual_seed(0)
    results = {}
    for fan_in, fan_out in shapes:
        x = torch.randn(rows, fan_in, generator=generator).to(device, dtype)
        weight = torch.randn(fan_out, fan_in, generator=generator).to(device, dtype)
        bias = torch.randn(fan_out, generator=generator).to(device, dtype)
        flops = 2.0 * rows * fan_in * fan_out
        with torch.inference_mode():
            for _ in range(3):  # warm-up: kernel selection, caches
                torch.nn.functional.linear(x, weight, bias)
            synchronize(device)
            best, spent, repeats = float("inf"), 0.0, 1
            while spent < seconds_per_shape:
                start = time.perf_counter()
                for _ in range(repeats):
                    torch.nn.functional.linear(x, weight, bias)
                synchronize(device)
                elapsed = time.perf_counter() - start
                best = min(best, elapsed / repeats)
                spent += elapsed
                repeats = max(1, min(1000, int(0.05 / max(best, 1e-9))))  # ~50 ms per timed group
        results[f"{rows}x{fan_in} @ {fan_in}x{fan_out}"] = flops / best / 1e9
    return {"gflops": max(results.values()), "by_shape": {k: round(v, 1) for k, v in results.items()},
            "rows": rows, "dtype": str(dtype).removeprefix("torch.")}
