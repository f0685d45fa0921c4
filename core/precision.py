"""`precision: auto`, decided by measurement: bf16 only where it is measurably faster than fp32.

A short probe times `F.linear` at the model's own shapes (hidden x hidden, hidden x intermediate,
intermediate x hidden) for `PROBE_TOKENS` rows, the same for every run of the model whatever its batch
size, in fp32 and bf16 (and fp16 on CUDA, recorded only: the training path has bf16 autocast or fp32).
The precisions take turns in rounds (fp32 then bf16, then bf16 then fp32, ...), and the decision is the
median over rounds of fp32's time over bf16's in the same round: other work on the machine slows both
sides of a round alike, so load moves the rates but hardly their ratio. On a CPU the probe runs on one
thread (`PROBE_THREADS`), whatever the run's thread count. bf16 is kept where that median
is at least `BF16_MIN_SPEEDUP`. The CPU's name says little: on a Xeon with AVX512-BF16 and no AMX bf16
ran at 0.5x fp32; on an AMD EPYC with the same flags, at 2.2x.

The result is cached in a JSON file per device (CPU model or GPU name), thread count, torch version
and model shapes, so a later run pays nothing and decides the same way (its run fingerprint stays the
same). A probe taken while the 1-minute load average exceeds the machine's cores is used but not cached
(one line on stderr says so); a caller may also ask for no caching (the dry run) or for a new
measurement (`reprobe`, `--reprobe`). Within one process a model's decision on a device is made once
and kept, so every run of a plan uses the same precision. An explicit `bf16` or `fp32` always wins and
is never probed.
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from core.files import read_json, write_json_atomic
from core.hardware import device_model

BF16_MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor to be chosen: below it, fp32's accuracy wins
# The probe's rows for every model: 16 texts of 64 tokens, between full fine-tuning's batch (32 texts of ~56
# tokens on AG News) and the adapters' (8 of ~56); one figure, so the batch size never changes the decision.
PROBE_TOKENS = 1024
PROBE_ROUNDS = 15  # rounds of fp32 and bf16 in turns; the decision is the median of the per-round ratios
PROBE_SECONDS_PER_TURN = 0.03  # one precision's timed turn in a round: ~1-2 s for the whole probe
# The probe runs on one CPU thread: the kernels' own speed. With two threads on a busy 2-core EPYC every
# parallel region waits for a descheduled thread, a wait that costs both precisions alike and so pulls their
# ratio towards 1 (1.33x measured there, against 2.3x on one thread with or without four busy loops beside it).
PROBE_THREADS = 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Shapes:
    """The probe's matrices: [tokens x in] @ [in x out] for each of the encoder's Linear shapes."""

    tokens: int  # one batch: batch size x typical (padded) length
    hidden: int
    intermediate: int

    @classmethod
    def of(cls, model_config, tokens: int = PROBE_TOKENS) -> "Shapes":
        hidden, intermediate = model_shapes(model_config)[1]
        return cls(int(tokens), hidden, intermediate)

    def linears(self) -> list[tuple[int, int]]:
        return [(self.hidden, self.hidden), (self.hidden, self.intermediate), (self.intermediate, self.hidden)]


@dataclass(frozen=True)
class Choice:
    """The precision a run uses, and why."""

    precision: str  # bf16 | fp32: what the run uses
    setting: str  # auto | bf16 | fp32: what the config asked for
    source: str  # explicit (the config named it) | measured (probed now) | cached (probed earlier)
    device_type: str  # cpu | cuda | mps
    device: str  # CPU model or GPU name
    gflops: dict[str, float] = field(default_factory=dict)  # the probe's rates, GFLOP/s per dtype
    bf16_speedup: float | None = None  # the median over the probe's rounds of fp32's time / bf16's
    min_speedup: float | None = None  # the rule's threshold
    shapes: dict | None = None
    threads: int | None = None  # torch intra-op threads the probe ran with
    torch: str | None = None
    measured_at: str | None = None  # when the probe ran (UTC)
    load_average: float | None = None  # the machine's 1-minute load average then (a busy machine skews rates)
    cores: int | None = None  # the machine's CPU count then: a probe with load_average above it is not cached

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: `bf16 (auto, measured: bf16 2.21x fp32, 423 vs 194 GFLOP/s)`."""
        if self.source == "explicit":
            return f"{self.precision} (explicit)"
        rates = f"{self.gflops.get('bf16', 0):.0f} vs {self.gflops.get('fp32', 0):.0f} GFLOP/s"
        return (f"{self.precision} (auto, {self.source}: bf16 {self.bf16_speedup:.2f}x fp32, {rates};"
                f" bf16 needs >= {self.min_speedup:g}x)")


Timer = Callable[[torch.device, Shapes], dict[str, float]]  # GFLOP/s per dtype and bf16_speedup (probe_rates)
_DECIDED: dict[tuple, tuple[dict, str, bool]] = {}  # this process's decisions: key -> (entry, source, stored)


def choose(setting: str, device: torch.device, shapes: Shapes | None, cache_file: Path | None,
           measure: Timer | None = None, reprobe: bool = False, store: bool = True, warn=None) -> Choice:
    """The precision for `setting` on `device`. `auto`: the decision this process already made for the device and
    shapes, else the cached one for its thread count and torch version, else a probe (`measure`, by default
    `probe_rates`). `reprobe`: measure again even where the cache has a decision (once per process). A measured
    decision is cached when `store` and the machine was not busy (else `warn`, by default stderr, says so)."""
    device = torch.device(device)
    name = device_model(device)
    if setting != "auto":
        return Choice(setting, setting, "explicit", device.type, name)
    key = cache_key(device, shapes)
    decided = (str(cache_file), cache_key(device, shapes, threads=False))  # kept when the thread count changes
    if decided in _DECIDED and not (reprobe and _DECIDED[decided][1] != "measured"):
        entry, source, stored = _DECIDED[decided]
    else:
        entry = None if reprobe else (read_json(cache_file).get(key) if cache_file else None)
        source, stored = "cached", True
        if not _valid(entry):
            entry, source, stored = _measure(device, shapes, measure), "measured", False
            if _busy(entry):
                (warn or _stderr)(f"precision: the 1-minute load average was {entry['load_average']:.1f} on"
                                  f" {entry['cores']} cores while bf16 measured {entry['bf16_speedup']:.2f}x fp32"
                                  f" (hidden {shapes.hidden}): used by this process, not cached")
    if not stored and store and cache_file and not _busy(entry):
        _store(cache_file, key, entry)
        stored = True
    _DECIDED[decided] = entry, source, stored
    speedup = entry["bf16_speedup"]
    precision = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    return Choice(precision, setting, source, device.type, name, dict(entry["gflops"]), round(speedup, 3),
                  BF16_MIN_SPEEDUP, entry["shapes"], entry["threads"], entry["torch"], entry["measured_at"],
                  entry.get("load_average"), entry.get("cores"))


def cache_key(device: torch.device, shapes: Shapes, threads: bool = True) -> str:
    """What the rates depend on: the device, its thread count (CPU), torch's kernels, the model's matrix shapes
    (and the probe's rows and rounds: entries of an earlier probe are not taken for this one's)."""
    count = _threads(device) if threads else None
    return " | ".join([device_model(device), f"{count} threads" if count else device.type,
                       f"torch {torch.__version__}",
                       f"{shapes.tokens} tokens, hidden {shapes.hidden}, intermediate {shapes.intermediate}",
                       "median of rounds"])


def _measure(device: torch.device, shapes: Shapes, measure: Timer | None) -> dict:
    """A cache entry from a probe now, with the load the machine had during it (the higher of before and after)."""
    loads = [_load_average()]
    rates = {k: round(float(v), 3) for k, v in (measure or probe_rates)(device, shapes).items()}
    loads.append(_load_average())
    speedup = rates.pop("bf16_speedup")
    known = [load for load in loads if load is not None]
    return {"gflops": rates, "bf16_speedup": speedup, "shapes": asdict(shapes), "threads": _threads(device),
            "torch": torch.__version__, "device": device_model(device),
            "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_average": max(known) if known else None, "cores": os.cpu_count()}


def _busy(entry: dict) -> bool:
    """Whether the 1-minute load average exceeded the machine's cores while `entry` was measured."""
    load, cores = entry.get("load_average"), entry.get("cores")
    return load is not None and bool(cores) and load > cores


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def probe_rates(device: torch.device, shapes: Shapes, rounds: int = PROBE_ROUNDS,
                seconds_per_turn: float = PROBE_SECONDS_PER_TURN) -> dict[str, float]:
    """GFLOP/s per dtype (all Linear shapes' FLOPs over the median time of one pass through them) and
    `bf16_speedup`: the median over rounds of fp32's time over bf16's in the same round. A dtype the device cannot
    run rates 0."""
    names = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    threads = torch.get_num_threads()
    torch.set_num_threads(PROBE_THREADS)  # the kernels' own speed, not the scheduler's
    try:
        passes = time_rounds(shapes.linears(), shapes.tokens, {name: DTYPES[name] for name in names}, device, rounds,
                             seconds_per_turn)
    finally:
        torch.set_num_threads(threads)
    flops = sum(2.0 * shapes.tokens * fan_in * fan_out for fan_in, fan_out in shapes.linears())
    rates = {name: flops / statistics.median(passes[name]) / 1e9 if passes.get(name) else 0.0 for name in names}
    ratios = [fp32 / bf16 for fp32, bf16 in zip(passes.get("fp32", []), passes.get("bf16", []))]
    return {**rates, "bf16_speedup": statistics.median(ratios) if ratios else 0.0}


def time_rounds(shapes: list[tuple[int, int]], rows: int, dtypes: dict[str, torch.dtype], device: torch.device,
                rounds: int, seconds_per_turn: float) -> dict[str, list[float]]:
    """Seconds of one pass through every `F.linear([rows x in], [out x in], bias)` of `shapes`, per dtype and
    round. In each round every dtype has one turn of about `seconds_per_turn`, the order reversed every other
    round (AB, BA, AB, ...), so load on the machine meets both alike. A dtype the device cannot run is left out."""
    generator = torch.Generator().manual_seed(0)
    host = [[torch.randn(size, generator=generator) for size in ((rows, fan_in), (fan_out, fan_in), (fan_out,))]
            for fan_in, fan_out in shapes]
    operands, repeats = {}, {}
    with torch.inference_mode():
        for name, dtype in dtypes.items():
            try:
                operands[name] = [[tensor.to(device, dtype) for tensor in tensors] for tensors in host]
                first = min(_passes(operands[name], device, 1) for _ in range(3))  # warm-up: kernels, caches
            except (RuntimeError, TypeError):  # e.g. bf16 on a GPU without it
                operands.pop(name, None)
                continue
            repeats[name] = max(1, min(1000, int(seconds_per_turn / max(first, 1e-9))))
        names = list(operands)
        turns = [name for number in range(rounds) for name in (names if number % 2 == 0 else names[::-1])]
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for name in turns:
            seconds[name].append(_passes(operands[name], device, repeats[name]) / repeats[name])
    return seconds


def _passes(operands: list[list[torch.Tensor]], device: torch.device, repeats: int) -> float:
    """Seconds of `repeats` passes through the linears."""
    start = time.perf_counter()
    for _ in range(repeats):
        for arguments in operands:
            torch.nn.functional.linear(*arguments)
    synchronize(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# Matmul rates at a model's shapes (also the bench's peak: bench/flops.py)


def model_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of the encoder's Linear layers: attention projections and the two feed-forward ones."""
    def first(*names):
        return next((value for value in (getattr(config, name, None) for name in names) if value), None)

    hidden = first("hidden_size", "dim", "d_model", "n_embd")  # BERT/RoBERTa, DistilBERT, T5-style, GPT-2
    inner = first("intermediate_size", "hidden_dim", "d_ff", "n_inner") or 4 * hidden
    return [(hidden, hidden), (hidden, inner), (inner, hidden)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_linears(shapes: list[tuple[int, int]], rows: int, dtypes: dict[str, torch.dtype], device: torch.device,
                 seconds_per_shape: float) -> dict[str, dict[tuple[int, int], float]]:
    """Best seconds of one `F.linear([rows x in], [out x in], bias)` per dtype and shape. Per shape the dtypes
    take turns in ~50 ms groups until each has had `seconds_per_shape`, so a machine whose load changes
    during the probe slows them alike. A dtype the device cannot run is left out."""
    generator = torch.Generator().manual_seed(0)
    best: dict[str, dict[tuple[int, int], float]] = {name: {} for name in dtypes}
    for fan_in, fan_out in shapes:
        host = [torch.randn(size, generator=generator) for size in ((rows, fan_in), (fan_out, fan_in), (fan_out,))]
        operands = {}
        with torch.inference_mode():
            for name, dtype in dtypes.items():
                try:
                    operands[name] = [tensor.to(device, dtype) for tensor in host]
                    for _ in range(3):  # warm-up: kernel selection, caches
                        torch.nn.functional.linear(*operands[name])
                    synchronize(device)
                except (RuntimeError, TypeError):  # e.g. bf16 on a GPU without it
                    operands.pop(name, None)
                    best.pop(name, None)
            spent = {name: 0.0 for name in operands}
            repeats = {name: 1 for name in operands}
            while any(seconds < seconds_per_shape for seconds in spent.values()):
                for name, arguments in operands.items():
                    if spent[name] >= seconds_per_shape:
                        continue
                    start = time.perf_counter()
                    for _ in range(repeats[name]):
                        torch.nn.functional.linear(*arguments)
                    synchronize(device)
                    elapsed = time.perf_counter() - start
                    fastest = min(best[name].get((fan_in, fan_out), float("inf")), elapsed / repeats[name])
                    best[name][fan_in, fan_out] = fastest
                    spent[name] += elapsed
                    repeats[name] = max(1, min(1000, int(0.05 / max(fastest, 1e-9))))  # ~50 ms per timed group
    return best


def measure_peak(shapes: list[tuple[int, int]], rows: int, dtype: torch.dtype, device: torch.device,
                 seconds_per_shape: float = 0.6) -> dict:
    """GFLOP/s of `F.linear([rows x in], [out x in], bias)` per shape; the best one is the peak, and
    `overall_gflops` is all shapes' FLOPs over their summed best times (the rate of one pass through them).

    `rows` is tokens per batch (batch x typical padded length), so the kernels are the ones the model runs.
    """
    best = time_linears(shapes, rows, {"measured": dtype}, device, seconds_per_shape).get("measured")
    if best is None:
        raise RuntimeError(f"{dtype} matmuls do not run on {device}")
    flops = {shape: 2.0 * rows * shape[0] * shape[1] for shape in shapes}
    results = {f"{rows}x{fan_in} @ {fan_in}x{fan_out}": flops[fan_in, fan_out] / best[fan_in, fan_out] / 1e9
               for fan_in, fan_out in shapes}
    return {"gflops": max(results.values()), "by_shape": {k: round(v, 1) for k, v in results.items()},
            "overall_gflops": sum(flops.values()) / sum(best.values()) / 1e9, "rows": rows,
            "dtype": str(dtype).removeprefix("torch.")}


# ----------------------------------------------------------------------------------------------
# The cache file


def _threads(device: torch.device) -> int | None:
    return torch.get_num_threads() if device.type == "cpu" else None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on Windows
        return None


def _valid(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("gflops"), dict)
            and isinstance(entry["gflops"].get("fp32"), (int, float))
            and isinstance(entry.get("bf16_speedup"), (int, float))
            and all(key in entry for key in ("shapes", "threads", "torch", "measured_at")))


def _store(path: Path, key: str, entry: dict) -> None:
    """Add one entry; a cache that cannot be written only costs the next run a probe."""
    try:
        write_json_atomic(Path(path), {**read_json(path), key: entry})
    except OSError:
        pass
