"""The pipeline's core: typed config, run plan, runner, model loading, file output."""
