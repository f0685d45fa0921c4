"""Batched, length-sorted inference returns row i for text i, as a one-at-a-time loop would."""
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import make_texts
from evaluation.inference import predict_probabilities
from evaluation.metrics import classification_metrics


def test_batched_predictions_stay_aligned_with_their_texts(tiny_models):
    for kind in ("bert", "roberta"):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_models[kind], num_labels=4).eval()
        tokenizer = AutoTokenizer.from_pretrained(tiny_models[kind])
        texts = [text for text, _ in make_texts(37, seed=5)]  # lengths 4-30 words, shuffled
        ids = tokenizer(texts, truncation=True, max_length=48)["input_ids"]
        batched, seconds = predict_probabilities(model, ids, tokenizer.pad_token_id, 8, torch.device("cpu"), False)
        with torch.inference_mode():
            single = np.stack([torch.softmax(model(input_ids=torch.tensor([x])).logits[0], -1).numpy() for x in ids])
        assert batched.shape == (37, 4) and seconds > 0
        np.testing.assert_allclose(batched, single, atol=1e-5)
        assert len(np.unique(batched[:, 0])) > 30  # distinct rows, so a shuffle would show


def test_metrics_match_hand_counts():
    labels = [0, 0, 1, 1, 2, 3, 3, 3]
    predicted = [0, 1, 1, 1, 2, 3, 0, 3]
    metrics = classification_metrics(labels, predicted, ["a", "b", "c", "d"])
    assert metrics["accuracy"] == 6 / 8
    assert metrics["per_class"]["b"] == {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    assert metrics["confusion_matrix"][3] == [1, 0, 0, 2]
    f1 = [0.5, 0.8, 1.0, 0.8]  # per-class F1 by hand
    assert abs(metrics["f1_macro"] - sum(f1) / 4) < 1e-12
