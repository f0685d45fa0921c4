"""One run on several processes: two torchrun "nodes" on loopback (gloo, one CPU process each), as on several
GPUs or machines. Every rank trains and scores its share of the test set; rank 0 alone logs and writes, and the
run folders end up as a single-process run leaves them."""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from conftest import ROOT, make_texts, tiny_config, write_config, write_hf_csv
from core import distributed
from core.models import load_classifier
from evaluation import inference


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wider_bert(tiny: Path, folder: Path) -> Path:
    """The tiny BERT at hidden size 64: hidden 32 sometimes stalls at 50% for a whole run, which would leave
    nothing to compare; this one reaches 100% at any seed tried."""
    from transformers import AutoModel, BertConfig

    shutil.copytree(tiny, folder)
    config = BertConfig.from_pretrained(tiny)
    config.update(dict(hidden_size=64, num_attention_heads=4, intermediate_size=128))
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def test_two_nodes_on_loopback_write_one_set_of_results_as_accurate_as_one_process(tiny_models, tmp_path,
                                                                                   one_thread):
    data = tmp_path / "data"  # 400 test texts, so that 2 points of accuracy are 8 texts
    data.mkdir()
    write_hf_csv(data / "train.csv", make_texts(420, seed=1))
    write_hf_csv(data / "test.csv", make_texts(400, seed=2))
    raw = tiny_config(data, [wider_bert(tiny_models["bert"], tmp_path / "bert64")], tmp_path / "ddp")
    raw["training"].update(epochs=4, learning_rate=2e-3, batch_size=8, ddp_timeout=120)  # 8 per rank: 16 in all
    raw["tasks"] = {"A0": raw["tasks"]["A0"], "B": raw["tasks"]["B"],
                    "C": {**raw["tasks"]["C"], "training": {"epochs": 1}}}
    config = write_config(tmp_path / "config.yaml", raw)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}",
                               str(ROOT / "main.py"), "--config", str(config), "--quiet"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    # The same run in one process at the same global batch size (16): the data order differs, the accuracy not.
    one_process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--config", str(config), "--quiet", "--only",
                               "B1_v1", "training.batch_size=16", f"output_dir={tmp_path / 'single'}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [node.communicate(timeout=300) for node in nodes]
    _, errors = one_process.communicate(timeout=300)
    assert one_process.returncode == 0, errors[-2000:]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    for run_id in ("A0", "B1_v1", "C1_v1"):  # one progress line per run, from node 0: node 1 logs nothing
        assert outputs[0][0].count(f"] {run_id}  running") == 1 and f"] {run_id}" not in outputs[1][0]
        record = json.loads((tmp_path / "ddp" / run_id / "metrics.json").read_text())
        assert record["status"] == "complete" and record["error"] is None
        predictions = pd.read_csv(tmp_path / "ddp" / run_id / "predictions.csv")
        assert len(predictions) == 400 and (predictions["index"].to_numpy() == range(400)).all()
    for run_id in ("B1_v1", "C1_v1"):
        assert (tmp_path / "ddp" / run_id / "model" / "tokenizer_config.json").is_file()
        assert list((tmp_path / "ddp" / run_id / "checkpoints").glob("checkpoint-*"))
    summary = pd.read_csv(tmp_path / "ddp" / "summary.csv")
    assert sorted(summary["run_id"]) == ["A0", "B1_v1", "C1_v1"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "ddp" / "summary.csv").stat().st_mode) == 0o666 & ~umask

    ddp, single = (json.loads((tmp_path / folder / "B1_v1" / "metrics.json").read_text()) for folder in ("ddp", "single"))
    assert single["metrics"]["accuracy"] > 0.9  # trained, so the comparison means something
    assert abs(ddp["metrics"]["accuracy"] - single["metrics"]["accuracy"]) <= 0.02
    epochs = [pd.read_csv(tmp_path / folder / "B1_v1" / "epochs.csv") for folder in ("ddp", "single")]
    assert abs(epochs[0]["train_loss"][0] - epochs[1]["train_loss"][0]) < 0.15  # a mean per text, not x ranks

    # The gathered rows are in input order: the saved model, scored here in one process, predicts them.
    model, tokenizer = load_classifier(str(tmp_path / "ddp" / "B1_v1" / "model"), 4, range(4))
    ids = tokenizer(pd.read_csv(data / "test.csv")["text"].tolist(), truncation=True, max_length=48)["input_ids"]
    expected, _ = inference.predict_probabilities(model, ids, tokenizer.pad_token_id, 32, torch.device("cpu"), False)
    written = pd.read_csv(tmp_path / "ddp" / "B1_v1" / "predictions.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(written, expected, atol=2e-6)


def test_each_rank_scores_its_share_and_every_rank_gets_all_rows(tiny_models, monkeypatch, one_thread):
    """Two ranks simulated in one process: the collective is replaced by the other rank's real share."""
    model, tokenizer = load_classifier(str(tiny_models["bert"]), 4, range(4))
    ids = [tokenizer(text)["input_ids"] for text, _ in make_texts(11, seed=5)]
    local = inference.predict_probabilities_locally
    expected, _ = local(model, ids, tokenizer.pad_token_id, 4, torch.device("cpu"), False)
    scored = []
    monkeypatch.setattr(inference, "predict_probabilities_locally",
                        lambda m, rows, *args: scored.append(len(rows)) or local(m, rows, *args))
    monkeypatch.setattr(distributed, "active", lambda: True)
    for rank in (0, 1):
        mine, theirs = list(range(rank, 11, 2)), list(range(1 - rank, 11, 2))
        their_part = local(model, [ids[i] for i in theirs], tokenizer.pad_token_id, 4, torch.device("cpu"), False)[0]
        monkeypatch.setattr(distributed, "shard", lambda count, rank=rank: range(rank, count, 2))
        monkeypatch.setattr(distributed, "all_gather", lambda value, rank=rank, part=(theirs, their_part):
                            [value, part] if rank == 0 else [part, value])
        gathered, _ = inference.predict_probabilities(model, ids, tokenizer.pad_token_id, 4, torch.device("cpu"), False)
        np.testing.assert_allclose(gathered, expected, atol=1e-6)
        assert scored[-1] == len(mine)  # 6 texts on rank 0, 5 on rank 1: not all 11


def test_ddp_timeout_comes_from_the_config_and_is_not_part_of_a_runs_identity(tiny_data, tiny_models, tmp_path):
    from types import SimpleNamespace

    from core.config import validate
    from pipeline.plan import build_plan
    from pipeline.run_state import fingerprint
    from tasks.finetune import training_arguments

    fingerprints = []
    for seconds in (60, 7200):
        raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
        raw["training"]["ddp_timeout"] = seconds
        config = validate(raw)
        [run] = build_plan(config, ["B1_v1"])
        context = SimpleNamespace(device=torch.device("cpu"), show_progress=False, config=config)
        arguments = training_arguments(run.training, tmp_path / "checkpoints", False, context, run.seed)
        assert arguments.ddp_timeout == seconds
        assert arguments.average_tokens_across_devices is False  # a mean loss is not multiplied by the ranks
        fingerprints.append(fingerprint(run, config, None))
    assert fingerprints[0] == fingerprints[1]  # changing it does not rerun complete runs
