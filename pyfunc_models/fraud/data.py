"""A synthetic card-transactions data set, generated deterministically in code.

No download, no file: the same seed gives the same rows on every machine, so
training is reproducible and tests can rely on it.  Each row belongs to a
scenario; the binary ``fraud`` label is "scenario is not legit".  The fraud
scenarios are shaped after common fraud patterns:

* ``card_testing``: many tiny online payments in a short time;
* ``account_takeover``: large online purchases, often abroad and at night;
* ``stolen_card``: card-present purchases far from home, high-value goods.

About 3 % of rows are fraudulent.  Like real fraud, some of it hides: a share
of fraudulent rows (``CAMOUFLAGED_SHARE``) is drawn from legitimate behaviour,
and legitimate customers sometimes travel, buy jewellery at night or shop a
lot, so the task is imbalanced and not trivially separable.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SCENARIOS = ("legit", "card_testing", "account_takeover", "stolen_card")
SCENARIO_SHARE = (0.97, 0.012, 0.010, 0.008)

MERCHANT_CATEGORIES = (
    "grocery", "restaurants", "fuel", "online_services", "electronics",
    "travel", "gaming", "jewelry", "clothing", "pharmacy",
)
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "NG", "CN", "RU", "MX")
HOME_COUNTRY = "US"
CAMOUFLAGED_SHARE = 0.15


def _categorical(rng: np.random.Generator, n: int, weights: dict) -> np.ndarray:
    names = list(weights)
    p = np.array([weights[name] for name in names], dtype=float)
    return rng.choice(names, size=n, p=p / p.sum())


def _legit(rng: np.random.Generator, n: int) -> dict:
    online = rng.random(n) < 0.3
    abroad = rng.random(n) < 0.07
    return {
        "amount": np.round(rng.lognormal(3.4, 1.25, n), 2),
        "hour": np.clip(np.round(rng.normal(14, 4.5, n)), 0, 23).astype(int),
        "merchant_category": _categorical(rng, n, {
            "grocery": 30, "restaurants": 20, "fuel": 12, "online_services": 12,
            "electronics": 6, "travel": 5, "gaming": 4, "jewelry": 1, "clothing": 7, "pharmacy": 3,
        }),
        "country": np.where(abroad, rng.choice(COUNTRIES[1:], n), HOME_COUNTRY),
        "card_age_days": rng.integers(30, 3650, n),
        "is_online": online,
        "distance_from_home_km": np.round(
            np.where(online, 0.0, rng.exponential(12, n)) + abroad * rng.exponential(2000, n), 1),
        "transactions_last_24h": rng.poisson(np.where(rng.random(n) < 0.1, 7.0, 2.0)),
    }


def _card_testing(rng: np.random.Generator, n: int) -> dict:
    return {
        "amount": np.round(rng.uniform(0.5, 12.0, n), 2),
        "hour": rng.integers(0, 24, n),
        "merchant_category": _categorical(rng, n, {
            "online_services": 50, "gaming": 30, "clothing": 10, "electronics": 10,
        }),
        "country": np.where(rng.random(n) < 0.5, rng.choice(COUNTRIES[1:], n), HOME_COUNTRY),
        "card_age_days": rng.integers(1, 3650, n),
        "is_online": rng.random(n) < 0.95,
        "distance_from_home_km": np.round(rng.exponential(20, n), 1),
        "transactions_last_24h": rng.poisson(9.0, n),
    }


def _account_takeover(rng: np.random.Generator, n: int) -> dict:
    night = rng.random(n) < 0.55
    return {
        "amount": np.round(rng.lognormal(6.0, 0.8, n), 2),
        "hour": np.where(night, rng.integers(0, 6, n), rng.integers(6, 24, n)),
        "merchant_category": _categorical(rng, n, {
            "electronics": 40, "jewelry": 20, "travel": 25, "online_services": 15,
        }),
        "country": np.where(rng.random(n) < 0.6, rng.choice(COUNTRIES[1:], n), HOME_COUNTRY),
        "card_age_days": rng.integers(180, 3650, n),
        "is_online": rng.random(n) < 0.85,
        "distance_from_home_km": np.round(rng.exponential(1500, n), 1),
        "transactions_last_24h": rng.poisson(3.5, n),
    }


def _stolen_card(rng: np.random.Generator, n: int) -> dict:
    return {
        "amount": np.round(rng.lognormal(5.2, 0.9, n), 2),
        "hour": rng.integers(0, 24, n),
        "merchant_category": _categorical(rng, n, {
            "electronics": 35, "jewelry": 25, "fuel": 20, "clothing": 20,
        }),
        "country": np.where(rng.random(n) < 0.3, rng.choice(COUNTRIES[1:], n), HOME_COUNTRY),
        "card_age_days": rng.integers(1, 3650, n),
        "is_online": rng.random(n) < 0.15,
        "distance_from_home_km": np.round(rng.exponential(400, n), 1),
        "transactions_last_24h": rng.poisson(4.5, n),
    }


_GENERATORS = {
    "legit": _legit,
    "card_testing": _card_testing,
    "account_takeover": _account_takeover,
    "stolen_card": _stolen_card,
}


def generate_transactions(n_rows: int = 60_000, seed: int = 42) -> pd.DataFrame:
    """``n_rows`` transactions with a ``scenario`` and a binary ``fraud`` column."""
    if n_rows < len(SCENARIOS):
        raise ValueError(f"n_rows must be at least {len(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    scenario = rng.choice(SCENARIOS, size=n_rows, p=SCENARIO_SHARE)
    camouflaged = (scenario != "legit") & (rng.random(n_rows) < CAMOUFLAGED_SHARE)
    behaviour = np.where(camouflaged, "legit", scenario)
    frame = pd.DataFrame(index=range(n_rows))
    for name, generate in _GENERATORS.items():
        rows = np.flatnonzero(behaviour == name)
        if len(rows) == 0:
            continue
        for column, values in generate(rng, len(rows)).items():
            if column not in frame:
                frame[column] = pd.Series(dtype=np.asarray(values).dtype)
            frame.loc[rows, column] = values
    frame["is_online"] = frame["is_online"].astype(bool)
    frame["hour"] = frame["hour"].astype(int)
    frame["card_age_days"] = frame["card_age_days"].astype(int)
    frame["transactions_last_24h"] = frame["transactions_last_24h"].astype(int)
    frame["scenario"] = scenario
    frame["fraud"] = (scenario != "legit").astype(int)
    return frame
