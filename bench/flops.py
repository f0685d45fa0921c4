"""The benchmark's FLOP counts are the pipeline's own (evaluation/flops.py); the peak matmul rate is timed by the
same code as `precision: auto`'s probe (core/precision.py)."""
from core.precision import measure_peak, model_shapes, synchronize  # noqa: F401 (bench's names)
from evaluation.flops import (HEAD_PREFIXES, ParameterCounts, forward_flops, parameter_groups,  # noqa: F401
                              training_flops)
