"""Tasks B-F: one training path for every method that trains. Methods differ only in how the model is
wrapped (tasks/adapters.py) and, for a few PEFT methods, a hook (tasks/hooks.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from dataset import tokenize
from core import distributed
from core.config import steps_per_epoch
from core.checkpoints import prepare_resume
from evaluation.epoch_logs import epoch_rows, step_rows
from evaluation.flops import parameter_groups, training_flops
from evaluation.inference import predict_probabilities
from core.hardware import is_main_process
from core.models import count_parameters, load_classifier
from evaluation.metrics import classification_metrics, validation_metrics
from tasks import hooks, options
from tasks.adapters import adapter_settings, apply_method, merged, run_settings
from tasks.base import RunContext, TaskResult


def run(run, context: RunContext) -> TaskResult:
    fitted = fit(run, context, context.run_dir / "checkpoints")  # best validation restored at the end
    config, splits, training = context.config, context.splits, run.training
    trainer, tokenizer, bf16, checkpoints = fitted.trainer, fitted.tokenizer, fitted.bf16, context.run_dir / "checkpoints"

    model_dir = context.run_dir / "model"
    trainer.save_model(str(model_dir))  # full weights, or adapter + head for PEFT methods (rank 0 only)
    if is_main_process():
        for hook in fitted.hooks:
            hook.after_save(trainer.model, model_dir, context.run_dir)
        tokenizer.save_pretrained(str(model_dir))

    test_ids = tokenize(splits.test["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    # Adapters folded into the base weights predict the same, at the speed of the plain model.
    probabilities, test_seconds = predict_probabilities(merged(trainer.model), test_ids, tokenizer.pad_token_id,
                                                        training.eval_batch_size, context.device, bf16)
    test = classification_metrics(splits.test["label"], probabilities.argmax(axis=1), splits.class_names)
    options.log_test_metrics(trainer, {k: test[k] for k in ("accuracy", "f1_macro", "balanced_accuracy")})
    extra = {"class_weights": fitted.class_weights} if fitted.class_weights else {}
    extra["budget"] = spent(run.method, trainer, training, fitted.train_rows, fitted.mean_train_length)
    if training.early_stopping_patience is not None:
        extra["early_stopping"] = {"patience_epochs": training.early_stopping_patience,
                                   "patience_evaluations": training.early_stopping_patience * training.evaluations_per_epoch,
                                   "stopped_at_epoch": options.stopped_early(trainer)}
    return TaskResult(probabilities=probabilities, test_seconds=test_seconds, precision="bf16" if bf16 else "fp32",
                      trainable_parameters=fitted.trainable, total_parameters=fitted.total,
                      train_seconds=fitted.clock.elapsed, epochs=epoch_rows(checkpoints), extra=extra,
                      resumed_from=fitted.resumed_from,
                      steps=step_rows(checkpoints) if training.logging_steps else [])


@dataclass
class Fitted:
    trainer: Trainer
    tokenizer: object
    trainable: int
    total: int
    bf16: bool
    clock: "ElapsedTime"
    hooks: list  # the method's training hooks (tasks/hooks.py), for after_save
    class_weights: list[float] | None
    resumed_from: dict | None  # {"checkpoint", "step", "steps_trained"} for a run that resumed
    train_rows: int = 0
    mean_train_length: float = 0.0  # tokens per training text (real tokens, no padding)


def fit(run, context: RunContext, checkpoints: Path, callbacks=(), **arguments) -> Fitted:
    """Train on `context.splits.train`, scoring `validation` as scheduled; resume from `checkpoints` if any.
    Reads neither the test split nor anything but train and validation (the search relies on it).
    `arguments` override TrainingArguments (a search trial saves no checkpoints)."""
    config, splits, training = context.config, context.splits, run.training
    set_seed(run.seed)  # the new head's initial weights, LoRA's A matrices, dropout and data order
    model, tokenizer = load_classifier(run.model, len(splits.class_names), splits.class_names,
                                       config.trust_remote_code)
    bf16 = context.bf16  # resolved by the runner: explicit, or auto by measurement
    steps = hooks.total_steps(len(splits.train), training)
    model = apply_method(weights_in_bf16(model, training, bf16), run.method, run_settings(run), steps)
    adapter = adapter_settings(run.method, run_settings(run))
    active = hooks.active(adapter)
    trainable, total = count_parameters(model)

    def encode(frame):
        ids = tokenize(frame["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
        return ids, frame["label"].tolist()

    train_ids, train_labels = encode(splits.train)
    train_set = TokenizedTexts(train_ids, train_labels)
    eval_sets = {"validation": TokenizedTexts(*encode(splits.validation), longest_first=True)}
    if training.eval_on_train:
        eval_sets["train"] = TokenizedTexts(train_ids, train_labels, longest_first=True)

    clock = ElapsedTime()
    weights = options.class_weights(training.class_weights, train_labels, splits.class_names)
    schedule = {"run_name": run.run_id, **options.schedule(training, len(train_set)), **arguments}
    trainer = FiniteLossTrainer(
        model=model,
        args=training_arguments(training, checkpoints, bf16, context, run.seed, **schedule),
        train_dataset=train_set,
        eval_dataset=eval_sets,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=training.pad_to_multiple_of),
        compute_metrics=validation_metrics,
        compute_loss_func=options.weighted_loss(weights) if weights else None,
        callbacks=[clock, *([TimeBudget(clock, training.max_train_seconds)] if training.max_train_seconds else []),
                   *options.callbacks(training, context.run_dir), *filter(None, (h.callback() for h in active)),
                   *callbacks],
        optimizers=(next(filter(None, (hook.optimizer(model, adapter, training) for hook in active)), None), None),
    )
    if not context.show_progress:
        trainer.remove_callback(PrinterCallback)  # the per-epoch log dicts; epochs.csv has them
    # A checkpoint cut off mid-write, or one with damaged or missing files, is never resumed from
    resume = prepare_resume(checkpoints, note=lambda line: print(line, flush=True) if is_main_process() else None)
    for hook in active if is_main_process() else []:
        hook.before_training(model, context.run_dir)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    resumed_from = ({"checkpoint": resume.name, "step": int(resume.name.split("-")[-1]), "steps_trained": clock.steps}
                    if resume else None)
    return Fitted(trainer, tokenizer, trainable, total, bf16, clock, active, weights, resumed_from,
                  len(train_ids), sum(map(len, train_ids)) / max(1, len(train_ids)))


def spent(method: str, trainer, training, train_rows: int, mean_length: float) -> dict:
    """What the run's training consumed: optimizer steps, samples seen and the FLOPs they cost (an estimate:
    evaluation/flops.py), whatever unit its budget was given in."""
    steps = trainer.state.global_step
    per_step = training.batch_size * training.gradient_accumulation_steps * distributed.world_size()
    per_epoch = steps_per_epoch(train_rows, training.batch_size, training.gradient_accumulation_steps,
                                distributed.world_size())
    epochs, rest = divmod(steps, per_epoch)
    samples = epochs * train_rows + min(rest * per_step, train_rows)
    counts = parameter_groups(trainer.model)
    flops = training_flops(counts, method, round(samples * mean_length), samples)
    return {"optimizer_steps": steps, "samples_seen": samples, "train_flops": float(f"{flops:.4g}")}


def training_arguments(training, output_dir: Path, bf16: bool, context: RunContext, seed: int, **overrides):
    """`overrides`: the schedule's eval/save/logging steps (tasks/options.py) and a search trial's settings; by
    default a run validates, saves and logs once per epoch."""
    arguments = dict(
        output_dir=str(output_dir),
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,  # -1: the Trainer's "from the epochs"
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
        logging_strategy="epoch",  # default: one mean train loss per epoch, for epochs.csv
        save_total_limit=training.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="validation_accuracy",
        greater_is_better=True,
        seed=seed,
        report_to=options.trainer_report_to(training, context.config.output_dir),
        restore_callback_states_from_checkpoint=True,  # early stopping's patience survives a resume
        disable_tqdm=not context.show_progress,
        ddp_timeout=training.ddp_timeout,  # seconds; under torchrun the process group is already made with it
        ddp_find_unused_parameters=False,  # every trainable parameter takes part in each step (several GPUs)
        # Classification heads average their loss per device; transformers 5 would also multiply it by the number
        # of processes (meant for token-summed LM losses), doubling losses and gradients on two ranks.
        average_tokens_across_devices=False,
        # GPU speed levers (core/config.py TrainingConfig; bench/gpu.py measures them)
        optim=training.optim,
        dataloader_pin_memory=training.pin_memory,
        dataloader_num_workers=training.dataloader_workers,
        dataloader_persistent_workers=training.dataloader_workers > 0,  # not restarted every epoch
        accelerator_config={"non_blocking": training.non_blocking},
        torch_compile=training.torch_compile,
    )
    return TrainingArguments(**{**arguments, **overrides})


def weights_in_bf16(model, training, bf16: bool):
    """`training.bf16_weights` where the run uses bf16: the weights themselves in bf16, so autocast casts no fp32
    weight at every step. Call before apply_method: PEFT then creates its adapters in fp32."""
    return model.to(torch.bfloat16) if bf16 and training.bf16_weights else model


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

    On resume the clock continues from the last stamp in the restored log. It also counts the optimizer
    steps this invocation ran (after a resume: only the remaining ones).
    """

    def __init__(self):
        self.elapsed = 0.0
        self.steps = 0
        self._start = time.perf_counter()
        self._offset = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        stamps = [entry["elapsed_seconds"] for entry in state.log_history if "elapsed_seconds" in entry]
        self._offset = stamps[-1] if stamps else 0.0
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_evaluate(self, args, state, control, **kwargs):
        state.log_history.append({"epoch": state.epoch, "step": state.global_step,
                                  "elapsed_seconds": round(self.now(), 3)})

    def on_train_end(self, args, state, control, **kwargs):
        self.elapsed = self.now()

    def now(self) -> float:
        return self._offset + time.perf_counter() - self._start


class TimeBudget(TrainerCallback):
    """`training.max_train_seconds` (budget.train_seconds): training stops after the optimizer step that spends the
    budget, read from the run's ElapsedTime clock (so a resumed run counts the seconds before the interruption);
    the Trainer then validates and saves at that step, as at the end of an epoch."""

    def __init__(self, clock: ElapsedTime, seconds: float):
        self.clock, self.seconds = clock, seconds

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock.now() >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = control.should_save = True
        return control
