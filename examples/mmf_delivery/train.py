"""Training code for the delivery model: least squares on distance and item count."""
import csv
import json

import numpy as np


def read_rows(path, columns):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks column(s): {', '.join(missing)}")
    return rows


def fit(rows):
    x = np.array([[1.0, float(r["distance_km"]), float(r["items"])] for r in rows])
    y = np.array([float(r["minutes"]) for r in rows])
    (intercept, per_km, per_item), *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"intercept": float(intercept), "per_km": float(per_km), "per_item": float(per_item),
            "rows": len(rows)}


def save(model, path="model"):
    with open(path, "w") as f:
        json.dump(model, f, indent=2)
