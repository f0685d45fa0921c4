"""The bottom layer: config schema, files, device and precision, model loading, locks, memory, checkpoints.

Nothing here imports the project's other packages. Above it: `dataset`, `evaluation` and `tasks`
(data, evaluation, methods); above those: `pipeline` (plan, runner, resume, dry run, saved runs);
on top: `main.py`. tests/test_layers.py keeps it that way.
"""
