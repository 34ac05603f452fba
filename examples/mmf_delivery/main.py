"""Delivery-time model in the MMF style (seed 000): plain functions in main.py.

Like the seed, the model is loaded when the module is imported, from a path
relative to this folder; mlplatform runs the code from its own folder.
The model file is JSON (readable, and nothing to unpickle).
"""
import csv
import json
import os
import tempfile

from train import fit, read_rows, save

with open("model") as f:
    model = json.load(f)


def _minutes(distance_km, items):
    return model["intercept"] + model["per_km"] * distance_km + model["per_item"] * items


def score(data):
    """data: {"distance_km": float, "items": int} -> {"minutes": float}"""
    try:
        distance, items = float(data["distance_km"]), int(data["items"])
    except (KeyError, TypeError, ValueError):
        raise ValueError('expected {"distance_km": <number>, "items": <whole number>}')
    return {"minutes": round(_minutes(distance, items), 1)}


def score_file(path):
    """CSV with distance_km,items in -> path of the same rows with a minutes column."""
    rows = read_rows(path, ("distance_km", "items"))
    out_dir = tempfile.mkdtemp(prefix="delivery-")
    output = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + "_scored.csv")
    with open(output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["minutes"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "minutes": score(row)["minutes"]})
    return output


def train(path):
    """Refit on a CSV with distance_km,items,minutes and overwrite the model artifact."""
    global model
    model = fit(read_rows(path, ("distance_km", "items", "minutes")))
    save(model)
    return model
