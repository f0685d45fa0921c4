"""Classification metrics from scikit-learn (evaluate.load needs the Hub)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(labels, predicted, class_names) -> dict:
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    classes = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    macro = precision_recall_fscore_support(labels, predicted, labels=classes, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),  # mean recall over the classes present
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def validation_metrics(eval_prediction) -> dict:
    """For the Trainer's per-epoch validation: accuracy and macro-F1."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    predicted = np.asarray(logits).argmax(axis=-1)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0))}
