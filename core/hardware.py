"""Where runs execute and in which precision."""
from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_has_amx() -> bool:
    """AMX tiles make bf16 matmuls several times faster than fp32; AVX512-BF16 alone does not pay
    (measured on a 2-core AVX512-BF16 Xeon without AMX: bf16 autocast ran MiniLM inference 0.6x as fast as
    fp32; bench/NOTES.md). Older torch exposes a check; torch 2.13 does not, so the CPU's flags decide."""
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


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_amx()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = _cpuinfo("model name") or "unknown CPU"
    return f"{model}, {torch.get_num_threads()} threads, AMX {'yes' if cpu_has_amx() else 'no'}"


def is_main_process() -> bool:
    """Under torchrun / accelerate launch only rank 0 writes results."""
    return int(os.environ.get("RANK", 0)) == 0
