"""Runs main.py in this process and SIGKILLs it at a named point, as a crash or `kill -9` would.

    PYTHONPATH=. python tests/kill_harness.py POINT main.py-arguments...   (in the project root; the tests set it)

Points: train_step (mid-epoch 2), validation (during epoch 2's evaluation), checkpoint_write (after the
model and optimizer of the 2nd checkpoint are written, before trainer_state.json), model_save (halfway
through saving the final model), test_evaluation (during test-set inference), metrics_write (the temp
file of metrics.json written, not yet renamed).
"""
import os
import signal
import sys
from pathlib import Path


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    import transformers

    import core.files
    import tasks.finetune

    if point == "train_step":
        original = tasks.finetune.ElapsedTime.on_step_end

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > state.max_steps // 2 + 1:
                die()
            return original(self, args, state, control, **kwargs)
        tasks.finetune.ElapsedTime.on_step_end = on_step_end
    elif point == "validation":
        calls = []
        original = transformers.Trainer.evaluate

        def evaluate(self, *args, **kwargs):
            if kwargs.get("metric_key_prefix") == "eval_validation":  # not the outer call over the dict
                calls.append(1)
                if len(calls) == 2:
                    die()
            return original(self, *args, **kwargs)
        transformers.Trainer.evaluate = evaluate
    elif point == "checkpoint_write":
        calls = []
        original = transformers.Trainer._save_rng_state

        def save_rng_state(self, output_dir):
            calls.append(1)
            if len(calls) == 2:
                die()
            return original(self, output_dir)
        transformers.Trainer._save_rng_state = save_rng_state
    elif point == "model_save":
        original = transformers.Trainer.save_model

        def save_model(self, output_dir=None, _internal_call=False):
            if output_dir and Path(output_dir).name == "model":
                Path(output_dir).mkdir(parents=True, exist_ok=True)
                (Path(output_dir) / "model.safetensors").write_bytes(b"half a file")
                die()
            return original(self, output_dir, _internal_call)
        transformers.Trainer.save_model = save_model
    elif point == "test_evaluation":
        original = tasks.finetune.predict_probabilities

        def predict(model, token_ids, *args, **kwargs):
            original(model, token_ids[: len(token_ids) // 2], *args, **kwargs)
            die()
        tasks.finetune.predict_probabilities = predict
    elif point == "metrics_write":
        original = core.files.os.replace

        def replace(source, target):
            if Path(target).name == "metrics.json" and Path(target).parent.name != "A0":
                die()
            return original(source, target)
        core.files.os.replace = replace
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    import main

    sys.exit(main.main(sys.argv[2:]))
