"""Peak memory of a run: resident set size sampled in the background, plus CUDA's own peak."""
from __future__ import annotations

import threading

import psutil
import torch


class PeakMemory:
    """`with PeakMemory() as peak: ...` then peak.rss_mb and peak.cuda_mb (None without CUDA).

    rss_mb is the process's peak, which in a process that runs several runs includes what earlier ones left;
    increase_mb (peak minus the resident size when the block began) is this block's own share of it."""

    def __init__(self, interval_seconds: float = 0.05):
        self.interval = interval_seconds
        self.rss_mb = 0.0
        self.start_rss_mb = 0.0
        self.cuda_mb: float | None = None
        self._stop = threading.Event()
        self._process = psutil.Process()

    def __enter__(self) -> "PeakMemory":
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._sample()
        self.start_rss_mb = self.rss_mb
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if torch.cuda.is_available():
            self.cuda_mb = torch.cuda.max_memory_allocated() / 2**20

    @property
    def increase_mb(self) -> float:
        return self.rss_mb - self.start_rss_mb

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.rss_mb = max(self.rss_mb, self._process.memory_info().rss / 2**20)
