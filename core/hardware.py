"""Where runs execute: the device, its model name and thread settings (the precision: core/precision.py)."""
from __future__ import annotations

import os
import platform

import torch


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles: information only (bench machine records). `precision: auto` does not
    decide by it: a short probe measures bf16 against fp32 (core/precision.py). Older torch exposes a
    check; torch 2.13 does not, so the CPU's flags answer."""
    check = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check())
    return {"amx_tile", "amx_bf16"} <= cpu_flags()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where that cannot be read."""
    return set(_cpuinfo("flags").split())


def _cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo; empty where that cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else what the platform reports)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def device_model(device: torch.device) -> str:
    """The GPU's name, or the CPU's model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return device_model(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads, AMX {'yes' if cpu_has_amx() else 'no'}"


_THREADS_CHOSEN_BY: str | None = None  # why the intra-op thread count is what it is (set_threads), for the record


def threads() -> dict:
    """Torch's CPU thread settings: intra-op (matmuls) and inter-op, and why (when set_threads chose them)."""
    chosen = {"threads_chosen_by": _THREADS_CHOSEN_BY} if _THREADS_CHOSEN_BY else {}
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(), **chosen}


def cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(count: int, chosen_by: str | None) -> None:
    """Torch's intra-op threads from now on, and why (`threads()` records it; None: nothing to record)."""
    global _THREADS_CHOSEN_BY
    torch.set_num_threads(count)
    _THREADS_CHOSEN_BY = chosen_by


def is_main_process() -> bool:
    """Under torchrun / accelerate launch only rank 0 writes results."""
    return int(os.environ.get("RANK", 0)) == 0
