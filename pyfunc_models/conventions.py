"""Names both ends of the platform agree on, defined once.

Registration writes them, the MLServer config generator, the serving module,
the gateway and the client read them; none of them re-types a literal.  Only
the standard library: the client imports this without MLflow.

* tags on a registered model **version** (written at registration): how to talk
  to it (``input_format``, ``output_format``, ``accepts_table``) and what it was
  built from (``fingerprint``);
* the tag on a registered **model** that records which version a V2 server
  serves (written by ``mlserver_configs.serving`` once that version answers);
* the aliases: ``champion`` is what should be served, ``challenger`` a
  candidate that registration sets when a champion exists already;
* ``probability_<class>``: the column convention of a multiclass table answer;
* model references ``NAME``, ``NAME@ALIAS`` and ``NAME/VERSION``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

TAG_PREFIX = "mlplatform."
FINGERPRINT_TAG = TAG_PREFIX + "fingerprint"
INPUT_FORMAT_TAG = TAG_PREFIX + "input_format"
OUTPUT_FORMAT_TAG = TAG_PREFIX + "output_format"
ACCEPTS_TABLE_TAG = TAG_PREFIX + "accepts_table"
PARAMS_TAG = TAG_PREFIX + "params"  # the V2 request parameters a model takes, comma-separated
SERVED_TAG_PREFIX = TAG_PREFIX + "served."  # + the serving target's name

DEFAULT_TARGET = "local"
CHAMPION = "champion"
CHALLENGER = "challenger"
# What `rollback` brings back: the version served before the last promotion.
PREVIOUS_CHAMPION = "previous_champion"

PROBABILITY_PREFIX = "probability_"  # table answers: one column per class


def served_tag(target: str = DEFAULT_TARGET) -> str:
    """The registered-model tag holding the version ``target`` serves."""
    return SERVED_TAG_PREFIX + target


def route_tag(target: str = DEFAULT_TARGET) -> str:
    """The registered-model tag holding its canary or shadow rule on ``target`` (JSON)."""
    return "mlplatform.route." + target


CANARY, SHADOW = "canary", "shadow"


@dataclass(frozen=True)
class RouteRule:
    """Besides the served version, a second one: ``canary`` answers ``percent`` % of the
    calls to NAME; ``shadow`` gets a copy of each call, its answer only compared."""

    mode: str
    alias: str
    version: str
    percent: float = 0.0

    def to_json(self) -> str:
        import json

        return json.dumps({"mode": self.mode, "alias": self.alias, "version": self.version,
                           "percent": self.percent})

    @classmethod
    def from_json(cls, text: Optional[str]) -> Optional["RouteRule"]:
        import json

        if not text:
            return None
        try:
            found = json.loads(text)
            return cls(str(found["mode"]), str(found["alias"]), str(found["version"]),
                       float(found.get("percent", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        if self.mode == CANARY:
            return f"canary {self.alias} (version {self.version}) takes {self.percent:g} %"
        share = "every call" if self.percent >= 100 else f"{self.percent:g} % of the calls"
        return f"shadow {self.alias} (version {self.version}) gets a copy of {share}"


def deployed_tag(target: str = DEFAULT_TARGET) -> str:
    """The model-version tag holding when it was last deployed on ``target`` (ISO time)."""
    return "mlplatform.deployed_at." + target


def version_tags(input_format: str, output_format: str, accepts_table: bool,
                 params: tuple = ()) -> dict:
    """The tags registration writes on a version so clients know how to call it."""
    return {INPUT_FORMAT_TAG: input_format, OUTPUT_FORMAT_TAG: output_format,
            ACCEPTS_TABLE_TAG: str(bool(accepts_table)).lower(), PARAMS_TAG: ",".join(params)}


_REFERENCE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>\d+))?$")


class ModelReferenceError(ValueError):
    """A model reference is not NAME, NAME@ALIAS or NAME/VERSION."""


@dataclass(frozen=True)
class ModelReference:
    """``name``, ``name@alias`` or ``name/version``.

    ``parse(text, default_alias=None)`` leaves a bare name without alias or
    version: for the gateway that means "the version that is served".
    """

    name: str
    alias: Optional[str] = None
    version: Optional[str] = None

    @classmethod
    def parse(cls, text: str, default_alias: Optional[str] = CHAMPION) -> "ModelReference":
        match = _REFERENCE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise ModelReferenceError(
                f"model reference {text!r} is not NAME, NAME@ALIAS or NAME/VERSION")
        version = match["version"]
        return cls(match["name"], None if version else (match["alias"] or default_alias), version)

    def __str__(self) -> str:
        if self.version:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name

    @property
    def uri(self) -> str:
        """The MLflow URI: ``models:/name/version`` or ``models:/name@alias``."""
        return f"models:/{self}" if (self.version or self.alias) else f"models:/{self.name}@{CHAMPION}"
