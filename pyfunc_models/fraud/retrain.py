"""The fraud models' trainers for the pipeline (``mlplatform pipeline fraud``): fit on
the labelled rows of the feature store instead of freshly generated ones.

``fraud_gbm`` is gradient-boosted (scikit-learn's histogram GBM): its per-iteration
training and validation losses are the pipeline's TensorBoard curves.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from ..catalog import BuildContext, ModelBundle, register_model
from ..training import Fitted, Trainer, register_trainer
from .data import generate_transactions
from .features import feature_frame
from .model import FraudModel, ScenarioModel
from .train import (
    DEFAULT_PARAMS,
    ONNX_REQUIREMENTS,
    TrainingResult,
    _bundle,
    best_f1_threshold,
    build_preprocessor,
    forest,
)

GBM_PARAMS: Dict[str, Any] = {"seed": 42, "max_iter": 200, "learning_rate": 0.1,
                              "max_leaf_nodes": 31, "n_iter_no_change": 15}
THRESHOLD_SHARE = 0.15  # of the training rows, held back to tune the binary threshold


def _importances(pipeline: Pipeline) -> List[Tuple[str, float]]:
    classifier = pipeline.named_steps["classifier"]
    if not hasattr(classifier, "feature_importances_"):
        return []
    names = pipeline.named_steps["features"].get_feature_names_out()
    return sorted(((str(n).split("__", 1)[-1], float(v)) for n, v in
                   zip(names, classifier.feature_importances_)), key=lambda p: -p[1])


def _binary(rows: pd.DataFrame, params: Dict[str, Any], pipeline: Pipeline) -> Fitted:
    features, labels = feature_frame(rows), rows["fraud"].astype(int).to_numpy()
    x_fit, x_valid, y_fit, y_valid = train_test_split(
        features, labels, test_size=THRESHOLD_SHARE, stratify=labels,
        random_state=params["seed"])
    pipeline.fit(x_fit, y_fit)
    classifier = pipeline.named_steps["classifier"]
    if "n_jobs" in classifier.get_params():
        classifier.set_params(n_jobs=1)  # serving scores a request at a time
    threshold = best_f1_threshold(y_valid, pipeline.predict_proba(x_valid)[:, 1])
    curves = {}
    if hasattr(classifier, "train_score_"):  # scoring="loss": scores are negative losses
        curves = {"train": [-float(v) for v in classifier.train_score_],
                  "validation": [-float(v) for v in classifier.validation_score_]}
    return Fitted(pipeline, [int(c) for c in pipeline.classes_], {"threshold": threshold},
                  params, threshold=threshold, loss_curves=curves,
                  importances=_importances(pipeline), reference=x_fit)


def fit_fraud(rows: pd.DataFrame, overrides: Dict[str, Any]) -> Fitted:
    params = {**DEFAULT_PARAMS, **overrides}
    return _binary(rows, params, forest(params))


def fit_scenario(rows: pd.DataFrame, overrides: Dict[str, Any]) -> Fitted:
    params = {**DEFAULT_PARAMS, **overrides}
    features = feature_frame(rows)
    pipeline = forest(params).fit(features, rows["scenario"].astype(str).to_numpy())
    pipeline.named_steps["classifier"].set_params(n_jobs=1)
    classes = [str(c) for c in pipeline.classes_]
    return Fitted(pipeline, classes, {"classes": classes}, params,
                  importances=_importances(pipeline), reference=features)


def gbm(params: Dict[str, Any]) -> Pipeline:
    return Pipeline([
        ("features", build_preprocessor()),
        ("classifier", HistGradientBoostingClassifier(
            max_iter=params["max_iter"], learning_rate=params["learning_rate"],
            max_leaf_nodes=params["max_leaf_nodes"], early_stopping=True, scoring="loss",
            validation_fraction=0.1, n_iter_no_change=params["n_iter_no_change"],
            class_weight="balanced", random_state=params["seed"])),
    ])


def fit_gbm(rows: pd.DataFrame, overrides: Dict[str, Any]) -> Fitted:
    params = {**GBM_PARAMS, **overrides}
    return _binary(rows, params, gbm(params))


def _served(model_class):
    def bundle(context: BuildContext, fitted: Fitted) -> ModelBundle:
        return _bundle(context, model_class(), TrainingResult(
            fitted.estimator, fitted.config, {}, fitted.params, fitted.reference), as_onnx=True)
    return bundle


for _name, _fit, _class in (("fraud", fit_fraud, FraudModel),
                            ("fraud_scenario", fit_scenario, ScenarioModel),
                            ("fraud_gbm", fit_gbm, FraudModel)):
    register_trainer(Trainer(_name, _fit, feature_frame, _served(_class), ONNX_REQUIREMENTS))


@register_model("fraud_gbm", "Binary card-fraud classifier, gradient-boosted (histogram GBM), "
                "ONNX; the pipeline logs its loss curves to TensorBoard",
                requirements=ONNX_REQUIREMENTS)
def build_gbm(context: BuildContext) -> ModelBundle:
    rows = generate_transactions(DEFAULT_PARAMS["n_rows"], DEFAULT_PARAMS["seed"])
    fitted = fit_gbm(rows, {})
    probabilities = fitted.estimator.predict_proba(feature_frame(rows))[:, 1]
    bundle = _served(FraudModel)(context, fitted)
    bundle.metrics = {"threshold": float(fitted.threshold),
                      "train_fraud_rate": float(np.mean(rows["fraud"])),
                      "train_mean_probability": float(np.mean(probabilities))}
    return bundle
