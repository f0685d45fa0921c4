"""Tiny randomly initialised BERT, DistilBERT and RoBERTa models with their own small tokenizers,
and a tiny AG News folder in both CSV layouts, so every method runs on every architecture in seconds."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # on sys.path through pytest.ini's `pythonpath`
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

SHARED = ROOT.parent / "shared"


def python_env(**variables: str) -> dict[str, str]:
    """The environment of a Python process a test starts (a script, `-c` code): this checkout on its path, as
    pytest.ini's `pythonpath` puts it on the tests' own, and `variables`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **variables}
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
WORDS = {
    0: "president minister election war government country talks united nations peace troops",
    1: "game team season coach win player league cup match score championship",
    2: "stocks market oil prices company shares profit bank economy deal sales",
    3: "software computer internet microsoft space science google web research technology",
}


def make_texts(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """Label-dependent word soup: learnable, so a few steps move accuracy off chance."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = i % 4
        words = WORDS[label].split() + ["the", "a", "of", "in", "news", "today"]
        rows.append((" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))), label))
    return rows


def write_hf_csv(path: Path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def write_original_csv(path: Path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, quoting=csv.QUOTE_ALL)
        for text, label in rows:
            title, _, description = text.partition(" ")
            writer.writerow([label + 1, title, description])


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models gain nothing from two, and contend on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """train.csv in the Hugging Face layout (120 rows), test.csv in the original layout (40 rows)."""
    folder = tmp_path_factory.mktemp("ag_news")
    write_hf_csv(folder / "train.csv", make_texts(120, seed=1))
    write_original_csv(folder / "test.csv", make_texts(40, seed=2))
    return folder


def _train_tokenizer(kind: str, folder: Path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [text for text, _ in make_texts(400, seed=3)]
    if kind == "roberta":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
        tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                       cls_token="<s>", sep_token="</s>")
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        tokenizer.decoder = decoders.WordPiece()
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(folder)
    return fast


def build_tiny_model(kind: str, folder: Path) -> Path:
    """A 2-layer, hidden-32 model of the given architecture, saved as a Hugging Face folder."""
    import torch
    from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(kind, folder)
    vocab = len(tokenizer)
    if kind == "bert":
        config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    elif kind == "distilbert":
        config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    else:
        config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64 + 2,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)  # safetensors
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: build_tiny_model(kind, root / kind) for kind in ("bert", "distilbert", "roberta")}


def tiny_config(data: Path, models: list[Path], output: Path, **sections) -> dict:
    """A raw config dict (as YAML would give) over the tiny data and models; tasks A0-F by default."""
    raw = {
        "output_dir": str(output),
        "dataset": {"source": str(data), "validation_size": 20, "max_length": 48,
                    "cache_dir": str(output / ".cache")},
        "models": [str(m) for m in models],
        "training": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3,
                     "precision": "fp32"},
        "variants": {"v1": {}},
        "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
        "tasks": {
            "A0": {"method": "tfidf_nb"},
            "A": {"method": "pretrained"},
            "B": {"method": "full", "variants": ["v1"]},
            "C": {"method": "lora", "variants": ["v1"], "lora": {"target_modules": ["query"]}},
            "D": {"method": "lora", "variants": ["v1"], "lora": {"target_modules": ["key"]}},
            "E": {"method": "lora", "variants": ["v1"], "lora": {"target_modules": ["query"], "use_rslora": True}},
            "F": {"method": "lora", "variants": ["v1"], "lora": {"target_modules": ["key"], "use_rslora": True}},
        },
    }
    for key, value in sections.items():
        raw[key] = value
    return raw


def write_config(path: Path, raw: dict) -> Path:
    """As a user would write it: keys in the order given (run order follows task order)."""
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
