"""Inference, metrics, per-epoch logs and summaries: everything that turns models into numbers."""
