"""Input drift per served model version (seed 002): the population stability index of
each feature over a sliding window of live inputs, against the reference profile the
version was registered with (``pyfunc_models.profile``).

The request path only appends the input to the version's window (a bounded deque:
the last ``window`` inputs); a batch's table is kept as its last ``window`` rows and
turned into JSON objects only when a report reads the window (per 20,000-row chunk
of a CSV batch that was ~6 ms of the gateway's CPU, paid whether or not anyone
asked).  The PSI is computed when asked -- ``GET
/monitoring/drift`` and each ``/metrics`` scrape (a few ms for 1,000 inputs of 8
features) -- on a copy of the window, in a worker thread.  Profiles are read from
MLflow once per version (registered versions are immutable); a missing one is asked
again after ``RETRY_MISSING`` seconds.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from mlplatform.pyfunc_models.profile import STABLE, check_profile, feature_psi, verdict

from .errors import NotFound, Unavailable
from .registry import RegistryUnavailable

RETRY_MISSING = 30.0
SEVERITY = {STABLE: 0, "watch": 1, "drift": 2}
Key = Tuple[str, str]


class NoProfile(NotFound):
    """The version has no usable reference profile (404, with the reason)."""


class DriftMonitor:
    def __init__(self, registry: Any, window: int, min_inputs: int, idle: float = 900.0):
        self.registry = registry
        self.window = max(1, window)
        self.min_inputs = max(1, min(min_inputs, self.window))
        self.idle = idle
        self.windows: Dict[Key, Deque[Any]] = {}
        self._frames: Dict[Key, List[Any]] = {}  # tables observed since the window was read
        self._profiles: Dict[Key, Tuple[Optional[dict], str, float]] = {}
        # (identity of the newest input, since when it is the newest), per window
        self._activity: Dict[Key, Tuple[int, float]] = {}

    def observe(self, model: str, version: str, document: Any) -> None:
        """One input (a JSON object of features); other shapes are not profiled."""
        if isinstance(document, dict):
            self._window(model, version).append(document)
        elif isinstance(document, list):
            self._window(model, version).extend(d for d in document[-self.window:]
                                                if isinstance(d, dict))

    def observe_rows(self, model: str, version: str, records: List[dict]) -> None:
        self._window(model, version).extend(records[-self.window:])

    def observe_frame(self, model: str, version: str, frame: Any) -> None:
        """A table's rows (a DataFrame): its tail waits as it is until a report reads it."""
        key = (model, version or "")
        if key not in self.windows:  # keys: served (model, version) pairs only -- bounded
            self.windows[key] = deque(maxlen=self.window)
        tail = frame.iloc[-self.window:]
        frames = self._frames.setdefault(key, [])
        frames.append(tail)
        while sum(len(f) for f in frames[1:]) >= self.window:  # the oldest is pushed out
            frames.pop(0)

    def _window(self, model: str, version: str) -> Deque[Any]:
        key = (model, version or "")
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = deque(maxlen=self.window)
        for frame in self._frames.pop(key, ()):  # tables first: inputs stay in order
            window.extend(frame.to_dict("records"))
        return window

    async def profile(self, model: str, version: str) -> dict:
        key = (model, version)
        known = self._profiles.get(key)
        if known is None or (known[0] is None and time.monotonic() - known[2] > RETRY_MISSING):
            known = await self._read_profile(model, version)
            self._profiles[key] = known
        if known[0] is None:
            raise NoProfile(known[1])
        return known[0]

    async def _read_profile(self, model: str, version: str):
        try:
            profile = await self.registry.reference_profile(model, version)
        except RegistryUnavailable as exc:
            raise Unavailable(f"the reference profile of {model} version {version} cannot be "
                              f"read now: {exc}") from exc
        reason = ""
        if profile is None:
            reason = (f"{model} version {version} has no reference profile: it was registered "
                      "without a table of training inputs (profiles are stored at "
                      "registration of models trained on features, e.g. fraud)")
        elif (problem := check_profile(profile)) is not None:
            reason = f"the reference profile of {model} version {version} is unusable: {problem}"
            profile = None
        return profile, reason, time.monotonic()

    async def report(self, model: str, version: str) -> Dict[str, Any]:
        """PSI and verdict per feature over the version's window (404 without a profile)."""
        profile = await self.profile(model, version)
        inputs = list(self._window(model, version)) if (model, version) in self.windows else []
        features = await asyncio.to_thread(self._features, profile, inputs)
        enough = len(inputs) >= self.min_inputs
        worst = max((f["verdict"] for f in features.values()), key=SEVERITY.get,
                    default=STABLE) if enough else None
        return {"model": model, "version": version, "window": self.window,
                "inputs": len(inputs), "min_inputs": self.min_inputs,
                "verdict": worst, "features": features if enough else {},
                **({} if enough else {"reason": f"{len(inputs)} inputs seen, the verdict "
                                                f"needs {self.min_inputs}"})}

    @staticmethod
    def _features(profile: dict, inputs: List[dict]) -> Dict[str, Dict[str, Any]]:
        found = {}
        for name, feature in profile["features"].items():
            value = feature_psi(feature, [d.get(name) for d in inputs])
            found[name] = {"psi": round(value, 4), "verdict": verdict(value)}
        return found

    def expire_idle(self, now: Optional[float] = None) -> None:
        """Forget the windows of versions that got no input for ``idle`` seconds (a retired
        version, a finished canary): their gauges would otherwise report old traffic
        forever.  Checked when reports are asked, so the request path pays nothing."""
        now = time.monotonic() if now is None else now
        for key, window in list(self.windows.items()):
            frames = self._frames.get(key)
            newest = id(frames[-1]) if frames else id(window[-1]) if window else 0
            seen = self._activity.get(key)
            if seen is None or seen[0] != newest:
                self._activity[key] = (newest, now)
            elif now - seen[1] > self.idle:
                del self.windows[key], self._activity[key]
                self._frames.pop(key, None)

    async def reports(self) -> List[Dict[str, Any]]:
        """Every observed version that has a profile and enough inputs (for the gauges)."""
        self.expire_idle()
        found = []
        for model, version in list(self.windows):
            try:
                report = await self.report(model, version)
            except NoProfile:
                continue
            if report["verdict"] is not None:
                found.append(report)
        return found
