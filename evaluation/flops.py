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
    linear probe (head)      forward + 2 H S: no gradient flows below the head
    other partial methods    like LoRA, with every trainable per-token parameter in place of A (BitFit's biases,
    (BitFit, IA3, VeRA, ...) IA3's vectors, ...): an estimate, as the backward pass still runs through every layer

Each run's metrics.json records `budget.train_flops`, this estimate over the samples it saw (real tokens taken
as samples x the mean tokenised length of the training texts).

with T real tokens, S texts, A the adapter parameters (per token) and H the trainable head parameters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

HEAD_PREFIXES = ("classifier", "pre_classifier")  # top-level modules that see one row per text


@dataclass(frozen=True)
class ParameterCounts:
    embedding: int  # looked up, never multiplied
    per_token: int  # every transformer layer: one matrix-vector product per token
    per_sequence: int  # pooler and classifier: one row per text
    adapter: int = 0  # LoRA matrices (per token), zero for full fine-tuning
    trainable_head: int = 0  # head parameters that receive weight gradients under LoRA
    trainable_per_token: int = 0  # per-token and adapter parameters that receive weight gradients

    @property
    def total(self) -> int:
        return self.embedding + self.per_token + self.per_sequence + self.adapter

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def parameter_groups(model) -> ParameterCounts:
    """Split a (possibly PEFT-wrapped) sequence classifier's parameters by how often they are multiplied."""
    embedding = per_token = per_sequence = adapter = trainable_head = trainable_per_token = 0
    for name, parameter in model.named_parameters():
        count = parameter.numel()
        name = name.removeprefix("base_model.model.")
        parts = name.split(".")
        if "original_module" in parts:  # PEFT keeps the untrained head beside its trained copy
            continue
        if "lora_A" in parts or "lora_B" in parts or "lora_magnitude_vector" in parts:
            adapter += count
            trainable_per_token += count if parameter.requires_grad else 0
        elif "embeddings" in parts:
            embedding += count
        elif parts[0] in HEAD_PREFIXES or "pooler" in parts:
            per_sequence += count
            trainable_head += count if parameter.requires_grad else 0
        else:
            per_token += count
            trainable_per_token += count if parameter.requires_grad else 0
    return ParameterCounts(embedding, per_token, per_sequence, adapter, trainable_head, trainable_per_token)


def forward_flops(counts: ParameterCounts, tokens: int, texts: int) -> float:
    return 2.0 * ((counts.per_token + counts.adapter) * tokens + counts.per_sequence * texts)


def training_flops(counts: ParameterCounts, method: str, tokens: int, texts: int) -> float:
    """FLOPs of one pass over `texts` texts holding `tokens` real tokens, per the module docstring."""
    forward = forward_flops(counts, tokens, texts)
    if method == "full":
        return 3.0 * forward
    if method == "lora":
        return 2.0 * forward + 2.0 * (counts.adapter * tokens + counts.trainable_head * texts)
    if method == "head":
        return forward + 2.0 * counts.trainable_head * texts
    if method in ("bitfit", "peft"):
        return 2.0 * forward + 2.0 * (counts.trainable_per_token * tokens + counts.trainable_head * texts)
    raise ValueError(f"unknown method {method!r}; expected full, head, bitfit, lora or peft")

