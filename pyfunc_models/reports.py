"""Metrics and plots of a classifier on held-out rows, for the training pipeline.

The same function scores the trained estimator (``train_model``), the registered
artifact as served (``inference_model``) and the champion on the same rows, so
the numbers side by side are comparable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


def decisions(probabilities: np.ndarray, classes: Sequence[Any],
              threshold: Optional[float]) -> np.ndarray:
    """The predicted label per row: the tuned threshold for binary models, else argmax."""
    if threshold is not None and len(classes) == 2:
        return np.where(probabilities[:, 1] >= threshold, classes[1], classes[0])
    return np.asarray(classes, dtype=object)[np.argmax(probabilities, axis=1)]


def classification_metrics(truth: Sequence[Any], probabilities: np.ndarray,
                           classes: Sequence[Any], threshold: Optional[float] = None
                           ) -> Dict[str, float]:
    """Binary: ROC AUC, PR AUC, F1, precision, recall, accuracy, log loss.  Multiclass: the
    same per class (one against the rest) and their macro averages."""
    from sklearn import metrics

    truth = np.asarray([_same_type(t, classes) for t in truth], dtype=object)
    predicted = decisions(probabilities, classes, threshold)
    # Served answers round probabilities to 6 places: rows may sum to 1 +- 1e-6.
    probabilities = np.clip(probabilities, 1e-15, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    found: Dict[str, float] = {
        "accuracy": metrics.accuracy_score(truth.astype(str), predicted.astype(str)),
        "log_loss": metrics.log_loss(truth.astype(str), probabilities,
                                     labels=[str(c) for c in classes]),
        "rows": float(len(truth)),
    }
    if len(classes) == 2:
        positive = truth.astype(str) == str(classes[1])
        chosen = predicted.astype(str) == str(classes[1])
        found.update({
            "roc_auc": metrics.roc_auc_score(positive, probabilities[:, 1]),
            "pr_auc": metrics.average_precision_score(positive, probabilities[:, 1]),
            "f1": metrics.f1_score(positive, chosen, zero_division=0),
            "precision": metrics.precision_score(positive, chosen, zero_division=0),
            "recall": metrics.recall_score(positive, chosen, zero_division=0),
        })
        return {k: float(v) for k, v in found.items()}
    names = [str(c) for c in classes]
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        truth.astype(str), predicted.astype(str), labels=names, zero_division=0)
    for index, name in enumerate(names):
        positive = truth.astype(str) == name
        found.update({f"precision_{name}": precision[index], f"recall_{name}": recall[index],
                      f"f1_{name}": f1[index]})
        if 0 < positive.sum() < len(positive):
            found[f"roc_auc_{name}"] = metrics.roc_auc_score(positive, probabilities[:, index])
            found[f"pr_auc_{name}"] = metrics.average_precision_score(
                positive, probabilities[:, index])
    found.update({"macro_precision": np.mean(precision), "macro_recall": np.mean(recall),
                  "macro_f1": np.mean(f1)})
    aucs = [v for k, v in found.items() if k.startswith("roc_auc_")]
    if aucs:
        found["macro_roc_auc"] = np.mean(aucs)
    return {k: float(v) for k, v in found.items()}


def headline(metrics: Dict[str, float]) -> str:
    """The one metric the learning curve and summaries show."""
    return "roc_auc" if "roc_auc" in metrics else "macro_f1"


def _same_type(value: Any, classes: Sequence[Any]) -> Any:
    if classes and isinstance(classes[0], (int, np.integer)):
        return int(value)
    return str(value)


def plots(folder: Path, truth: Sequence[Any], probabilities: np.ndarray,
          classes: Sequence[Any], threshold: Optional[float],
          importances: List[Tuple[str, float]],
          learning: List[Tuple[int, float, float]]) -> List[Path]:
    """ROC, precision-recall, confusion matrix, feature importance and learning curve as
    PNG files in ``folder`` (the last two when there is something to show)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from sklearn import metrics

    folder.mkdir(parents=True, exist_ok=True)
    truth = np.asarray([str(_same_type(t, classes)) for t in truth])
    names = [str(c) for c in classes]
    shown = names[1:] if len(names) == 2 else names  # binary: the positive class only
    written = []

    def save(figure, name: str) -> None:
        path = folder / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)

    for name, curve, axes_names in (
            ("roc", metrics.roc_curve, ("false positive rate", "true positive rate")),
            ("precision_recall", metrics.precision_recall_curve, ("recall", "precision"))):
        figure, axes = plt.subplots(figsize=(5, 4))
        for label in shown:
            index = names.index(label)
            x, y, _ = curve(truth == label, probabilities[:, index])
            if name == "precision_recall":
                x, y = y, x
            axes.plot(x, y, label=label)
        axes.set_xlabel(axes_names[0])
        axes.set_ylabel(axes_names[1])
        axes.set_title(name.replace("_", "-").upper() if name == "roc" else "precision-recall")
        axes.legend(fontsize=7)
        save(figure, name)

    predicted = decisions(probabilities, classes, threshold).astype(str)
    matrix = metrics.confusion_matrix(truth, predicted, labels=names)
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix")
    save(figure, "confusion_matrix")

    if importances:
        top = importances[:15][::-1]
        figure, axes = plt.subplots(figsize=(5, 4))
        axes.barh([name for name, _ in top], [value for _, value in top])
        axes.set_title("feature importance")
        axes.tick_params(axis="y", labelsize=7)
        save(figure, "feature_importance")
    if learning:
        figure, axes = plt.subplots(figsize=(5, 4))
        sizes = [size for size, _, _ in learning]
        axes.plot(sizes, [train for _, train, _ in learning], marker="o", label="training rows")
        axes.plot(sizes, [test for _, _, test in learning], marker="o", label="held-out rows")
        axes.set_xlabel("training rows")
        axes.set_title("learning curve")
        axes.legend()
        save(figure, "learning_curve")
    return written
