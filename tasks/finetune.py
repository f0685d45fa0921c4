"""Tasks B-F: one training path for every method. Only `apply_method` differs between full and LoRA."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from dataset import tokenize
from core.checkpoints import latest_checkpoint, remove_incomplete_checkpoints
from evaluation.epoch_logs import epoch_rows
from evaluation.inference import predict_probabilities
from evaluation.metrics import validation_metrics
from core.hardware import is_main_process, use_bf16
from core.models import count_parameters, load_classifier
from tasks.adapters import apply_method, merged
from tasks.base import RunContext, TaskResult


def run(run, context: RunContext) -> TaskResult:
    fitted = fit(run, context, context.run_dir / "checkpoints")  # best epoch restored at the end
    trainer, tokenizer, training = fitted.trainer, fitted.tokenizer, run.training

    model_dir = context.run_dir / "model"
    trainer.save_model(str(model_dir))  # full weights, or adapter + head for PEFT methods (rank 0 only)
    if is_main_process():
        tokenizer.save_pretrained(str(model_dir))

    config, splits = context.config, context.splits
    test_ids = tokenize(splits.test["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    # Adapters folded into the base weights predict the same, at the speed of the plain model.
    probabilities, test_seconds = predict_probabilities(merged(trainer.model), test_ids, tokenizer.pad_token_id,
                                                        training.eval_batch_size, context.device, fitted.bf16)
    return TaskResult(probabilities=probabilities, test_seconds=test_seconds,
                      precision="bf16" if fitted.bf16 else "fp32", trainable_parameters=fitted.trainable,
                      total_parameters=fitted.total, train_seconds=fitted.clock.elapsed,
                      epochs=epoch_rows(context.run_dir / "checkpoints"))


@dataclass
class Fitted:
    trainer: Trainer
    tokenizer: object
    trainable: int
    total: int
    bf16: bool
    clock: "ElapsedTime"


def fit(run, context: RunContext, checkpoints: Path, callbacks=(), **arguments) -> Fitted:
    """Train on `context.splits.train`, scoring `validation` each epoch; resume from `checkpoints` if any.
    Reads neither the test split nor anything but train and validation (the search relies on it).
    `arguments` override TrainingArguments (a search trial saves no checkpoints)."""
    config, splits, training = context.config, context.splits, run.training
    set_seed(run.seed)  # the new head's initial weights, LoRA's A matrices, dropout and data order
    model, tokenizer = load_classifier(run.model, len(splits.class_names), splits.class_names,
                                       config.trust_remote_code)
    model = apply_method(model, run.method, run.lora)
    trainable, total = count_parameters(model)
    bf16 = use_bf16(training.precision, context.device)

    def encode(frame):
        ids = tokenize(frame["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
        return ids, frame["label"].tolist()

    train_ids, train_labels = encode(splits.train)
    train_set = TokenizedTexts(train_ids, train_labels)
    eval_sets = {"validation": TokenizedTexts(*encode(splits.validation), longest_first=True)}
    if training.eval_on_train:
        eval_sets["train"] = TokenizedTexts(train_ids, train_labels, longest_first=True)

    clock = ElapsedTime()
    trainer = FiniteLossTrainer(
        model=model,
        args=training_arguments(training, checkpoints, bf16, context, run.seed, **arguments),
        train_dataset=train_set,
        eval_dataset=eval_sets,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=training.pad_to_multiple_of),
        compute_metrics=validation_metrics,
        callbacks=[clock, *callbacks],
    )
    if not context.show_progress:
        trainer.remove_callback(PrinterCallback)  # the per-epoch log dicts; epochs.csv has them
    remove_incomplete_checkpoints(checkpoints)  # a checkpoint cut off mid-write is never resumed from
    resume = latest_checkpoint(checkpoints)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return Fitted(trainer, tokenizer, trainable, total, bf16, clock)


def training_arguments(training, output_dir: Path, bf16: bool, context: RunContext, seed: int, **overrides):
    arguments = dict(
        output_dir=str(output_dir),
        num_train_epochs=training.epochs,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,  # transformers 5: a float below 1 is a share of all steps
        lr_scheduler_type=training.lr_scheduler,
        max_grad_norm=training.max_grad_norm,
        bf16=bf16,
        use_cpu=context.device.type == "cpu",
        train_sampling_strategy="group_by_length" if training.group_by_length else "random",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",  # one mean train loss per epoch, for epochs.csv
        save_total_limit=training.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="validation_accuracy",
        greater_is_better=True,
        seed=seed,
        report_to="none",
        disable_tqdm=not context.show_progress,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable parameter takes part in each step (several GPUs)
    )
    return TrainingArguments(**{**arguments, **overrides})


class TokenizedTexts(torch.utils.data.Dataset):
    """Token ids and labels held as Python lists, one {"input_ids", "labels"} dict per text: the Trainer pads
    each batch itself (DataCollatorWithPadding), so an Arrow table would only add a conversion."""

    def __init__(self, ids: list[list[int]], labels: list[int], longest_first: bool = False):
        if longest_first:  # evaluation order does not change accuracy; longest first keeps each batch's padding small
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            ids, labels = [ids[i] for i in order], [labels[i] for i in order]
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


class FiniteLossTrainer(Trainer):
    """Stops a run whose loss became NaN or infinite, instead of training on garbage for hours."""

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"the training loss became {loss.item()} at step {self.state.global_step + 1};"
                                     f" lower the learning rate or use fp32")
        return loss


class ElapsedTime(TrainerCallback):
    """Stamps wall-clock seconds since training began into the log, so each checkpoint carries them.

    On resume the clock continues from the last stamp in the restored log.
    """

    def __init__(self):
        self.elapsed = 0.0
        self._start = time.perf_counter()
        self._offset = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        stamps = [entry["elapsed_seconds"] for entry in state.log_history if "elapsed_seconds" in entry]
        self._offset = stamps[-1] if stamps else 0.0
        self._start = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        state.log_history.append({"epoch": state.epoch, "step": state.global_step,
                                  "elapsed_seconds": round(self._now(), 3)})

    def on_train_end(self, args, state, control, **kwargs):
        self.elapsed = self._now()

    def _now(self) -> float:
        return self._offset + time.perf_counter() - self._start
