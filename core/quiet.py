"""Library chatter off: transformers' logger to errors, no progress bars, no deprecation notices from the
libraries. One place for it, used by the CLI's --quiet, predict/export and the benches."""
from __future__ import annotations

import warnings
from contextlib import contextmanager


def quiet_libraries() -> None:
    """For the rest of the process: no progress bars (weight loading, datasets), only errors from transformers'
    logger, no FutureWarnings from transformers or peft and no UserWarnings from peft (advice on layer types,
    extensions). The Trainer's own per-epoch log lines are dropped in tasks/finetune.py."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\.")


@contextmanager
def quiet_transformers():
    """Within the block only: transformers' logger at errors, no weight-loading or shard-writing bars, no
    FutureWarnings; everything as it was afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # library deprecation notices
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
