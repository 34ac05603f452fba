"""Credit-default model in the Neomaril Sync style (seed 002): score(data, base_path)."""
import json

import numpy as np

from features import to_features


def score(data, base_path):
    """data: a JSON string; base_path: the folder holding model.json. Returns a dict."""
    with open(base_path + "/model.json") as f:
        model = json.load(f)
    x = to_features(json.loads(data))
    z = model["intercept"] + np.dot(model["weights"], x)
    proba = 1.0 / (1.0 + np.exp(-z))
    # numpy int64 / float64 are fine here: the platform converts them to JSON.
    return {"pred": np.int64(proba >= model["threshold"]), "proba": np.float64(round(proba, 6))}
