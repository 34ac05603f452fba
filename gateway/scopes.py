"""What a token may do: the scopes, how they are written, and the grant a request carries.

Each route's scope is in the route contract (``contract.py``); ``auth.py`` checks it.
A token made before scopes existed has none stored: it keeps working as ``admin`` and
``mlplatform token list`` flags it, so that it can be replaced by a narrower one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional

PREDICT = "predict"
JOBS = "jobs"
LIFECYCLE = "lifecycle"
PREDICTIONS_READ = "predictions:read"
ADMIN = "admin"

# What each scope allows, in the words of docs/gateway.md and `mlplatform token create`.
SCOPES = {
    PREDICT: "the predict routes when they are closed (PUBLIC_PREDICT=false): /forward, "
             "/forward_batch, /evaluate, /predict, /metadata, /models, monitoring views",
    JOBS: "submit file jobs and read their status and results (/jobs)",
    LIFECYCLE: "add data, retrain, read trainings, deploy, roll back and list versions of "
               "every model; `lifecycle:<model>` for one model",
    PREDICTIONS_READ: "read the prediction log (/predictions): every model's inputs and answers",
    ADMIN: "everything above",
}
_MODEL_SCOPE = re.compile(rf"^{LIFECYCLE}:([A-Za-z0-9][A-Za-z0-9_.\-]*)$")


class ScopeError(ValueError):
    """A scope that is not one of SCOPES (or lifecycle:<model>)."""


def parse(scope: str) -> str:
    scope = scope.strip()
    if scope in SCOPES or _MODEL_SCOPE.match(scope):
        return scope
    raise ScopeError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}, or "
                     f"{LIFECYCLE}:<model> for one model's lifecycle")


@dataclass(frozen=True)
class Grant:
    """A valid token's id, group and scopes; ``legacy``: made before scopes (so admin)."""

    token_id: str
    group: str
    scopes: FrozenSet[str]
    legacy: bool = False

    @classmethod
    def of(cls, token_id: str, group: str, stored: Optional[str]) -> "Grant":
        if stored is None:
            return cls(token_id, group, frozenset({ADMIN}), legacy=True)
        return cls(token_id, group, frozenset(stored.split()))

    def allows(self, scope: str, model: Optional[str] = None) -> bool:
        """``scope`` for ``model``; a lifecycle route that does not know its model yet
        (a training id) asks with ``model=None``: any lifecycle scope lets it look."""
        if ADMIN in self.scopes or scope in self.scopes:
            return True
        if scope != LIFECYCLE:
            return False
        if model is None:
            return any(_MODEL_SCOPE.match(s) for s in self.scopes)
        return f"{LIFECYCLE}:{model}" in self.scopes

    def missing(self, scope: str, model: Optional[str] = None) -> str:
        """The scope to name in a 403."""
        return f"{LIFECYCLE}:{model}" if scope == LIFECYCLE and model else scope


def stored(scopes: Iterable[str]) -> str:
    """Scopes as the store keeps them (space-separated, sorted, each checked)."""
    parsed = sorted({parse(s) for s in scopes})
    if not parsed:
        raise ScopeError(f"a token needs at least one scope: {', '.join(SCOPES)}, or "
                         f"{LIFECYCLE}:<model>")
    return " ".join(parsed)
