"""Deploy: the one place that changes what a V2 server serves.

A *serving target* is a V2 server with MLServer's repository API and the folder
it loads ``model-settings.json`` files from (the local stack's MLServer, a
compose service sharing that folder as a volume, any ``mlserver start DIR``).
Deploying ``NAME@ALIAS`` (or ``NAME/VERSION``) to it:

1. resolves the reference in the MLflow registry *now* (the version is pinned);
2. writes ``<repository>/<name>/<version>/model-settings.json`` beside the
   version being served, and asks the server to load the model: MLServer loads
   every version it finds for the name, so the old version keeps answering;
3. waits until the new version says it is ready;
4. only then records it as served: the registered model's tag
   ``mlplatform.served.<target>`` (visible in the MLflow UI) -- the gateway
   routes to exactly that version, never to an alias;
5. retires the old version: its folder goes, and the load call is repeated so
   MLServer unloads what is no longer in the folder.

If the new version fails to load, its folder is removed, nothing is recorded
and the old version goes on serving; the outcome carries MLServer's reason.

Changes to one target are serialised by a lock file in its repository folder, so
the CLI, a gateway route and the gateway's alias follower never interleave two
deploys (each would retire what the other just loaded).

Moving an alias (``mlplatform register``, the MLflow UI, a retraining job) does
not change what is served by itself; ``deploy`` does, and only once the new
version answers.  A running gateway *follows* the ``champion`` alias
(``gateway/follower.py``): within ``ALIAS_POLL`` seconds of a move it deploys
the new champion through this module, the same zero-failure way.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional

from mlplatform.client.transport import InferenceServerError, ServerUnreachable, V2Transport
from mlplatform.pyfunc_models.conventions import (
    CHAMPION,
    DEFAULT_TARGET,
    SHADOW,
    PREVIOUS_CHAMPION,
    ModelReference,
    RouteRule,
    deployed_tag,
    route_tag,
    served_tag,
)

from .generator import (
    GENERATED_BY,
    MODEL_SETTINGS_FILE,
    BatchingOptions,
    ConfigError,
    ResolvedModel,
    model_settings_document,
    models_with_alias,
    resolve,
    write_json,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@dataclass(frozen=True)
class ServingTarget:
    """A V2 server and the model repository folder it loads from."""

    url: str
    repository: Path
    name: str = DEFAULT_TARGET


@dataclass
class DeployOutcome:
    name: str
    version: Optional[str]
    ok: bool
    message: str
    previous: Optional[str] = None

    def describe(self) -> str:
        where = f"{self.name}/{self.version}" if self.version else self.name
        return f"{where}: {self.message}"


LOCK_FILE = ".mlplatform-deploy.lock"


def _exclusive(method):
    """Hold the target's lock file for the call (re-entrant: promote calls deploy)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock():
            return method(self, *args, **kwargs)
    return locked


class Serving:
    """Deploy, restore and retire models on one serving target."""

    _depth = 0

    def __init__(self, registry: "MlflowClient", target: ServingTarget, *,
                 batching: BatchingOptions = BatchingOptions(), ready_timeout: float = 120.0,
                 transport: Optional[V2Transport] = None):
        self.registry = registry
        self.target = target
        self.batching = batching
        self.ready_timeout = ready_timeout
        self.server = transport or V2Transport(target.url, timeout=(5.0, 30.0))

    @contextlib.contextmanager
    def _lock(self):
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.target.repository.mkdir(parents=True, exist_ok=True)
        with open(self.target.repository / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits for a deploy in another process
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------ what is served

    def served_version(self, name: str) -> Optional[str]:
        """The version recorded as served on this target, or None."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.registry.get_registered_model(name).tags or {}
        except MlflowException:
            return None
        return tags.get(served_tag(self.target.name))

    def versions_on_disk(self, name: str) -> Dict[str, Path]:
        """The versions of ``name`` whose settings this module wrote: version -> file."""
        found: Dict[str, Path] = {}
        folder = self.target.repository / name
        for path in sorted(folder.glob(f"**/{MODEL_SETTINGS_FILE}")):
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            parameters = document.get("parameters") or {}
            if (parameters.get("extra") or {}).get("generated_by") == GENERATED_BY \
                    and document.get("name") == name:
                found[str(parameters.get("version"))] = path
        return found

    def deployed_names(self) -> List[str]:
        return sorted(path.name for path in self.target.repository.iterdir()
                      if path.is_dir() and self.versions_on_disk(path.name)) \
            if self.target.repository.exists() else []

    # ------------------------------------------------------------ deploy

    @_exclusive
    def deploy(self, reference: ModelReference) -> DeployOutcome:
        """Serve the version ``reference`` resolves to; the old one answers until it does."""
        try:
            model = resolve(self.registry, reference)
        except ConfigError as exc:
            return DeployOutcome(reference.name, None, False, str(exc))
        before = self.versions_on_disk(model.name)
        previous = self.served_version(model.name)
        if set(before) == {model.version} and previous == model.version \
                and self.server.is_ready(model.name, model.version, timeout=5):
            return DeployOutcome(model.name, model.version, True, "already served", previous)
        path = self._settings_path(model)
        write_json(path, model_settings_document(model, self.batching))
        failure = self._load(model.name) or self._wait_ready(model)
        if failure:
            if model.version not in before:
                self._remove(path)
                self._load(model.name)  # back to what was there (a no-op for MLServer)
            return DeployOutcome(model.name, model.version, False,
                                 f"not deployed, {previous or 'nothing'} still served: {failure}",
                                 previous)
        self._record(model)
        retired = [version for version in before if version != model.version]
        self._drop_route_to(model.name, retired + [model.version])
        for version in retired:
            self._remove(before[version])
        message = "serving" + (f" (was version {previous})" if previous and previous != model.version
                               else "")
        if retired:
            failure = self._load(model.name)
            if failure:
                message += f"; retiring version(s) {', '.join(retired)} failed: {failure}"
        return DeployOutcome(model.name, model.version, True, message, previous)

    @_exclusive
    def promote(self, name: str, version: str) -> DeployOutcome:
        """Serve ``version`` (as ``deploy``) and make it ``champion``; the version served
        before becomes ``previous_champion``, what ``rollback`` brings back.  Aliases move
        only once the new version answers."""
        outcome = self.deploy(ModelReference(name, version=str(version)))
        if not outcome.ok:
            return outcome
        if outcome.previous and outcome.previous != outcome.version:
            self.registry.set_registered_model_alias(name, PREVIOUS_CHAMPION, outcome.previous)
        self.registry.set_registered_model_alias(name, CHAMPION, outcome.version)
        return outcome

    @_exclusive
    def follow(self, name: str, alias: str) -> Optional[DeployOutcome]:
        """Serve the version ``alias`` points to if it is not the served one; None if it is.
        Read under the lock: a promote in flight (which records the served version, then
        moves the alias) is seen whole, never half-way."""
        from mlflow.exceptions import MlflowException

        try:
            wanted = self.registry.get_model_version_by_alias(name, alias).version
        except MlflowException:
            return None
        if wanted == self.served_version(name):
            return None
        return self.deploy(ModelReference(name, version=wanted))

    @_exclusive
    def route(self, name: str, mode: str, alias: str,
              percent: Optional[float] = None) -> DeployOutcome:
        """Load the version ``alias`` points to *beside* the served one (nothing switches)
        and record the canary or shadow rule the gateway applies to calls to ``name``:
        the canary's share of the calls, or the share a shadow copies (default all)."""
        if percent is None:
            percent = 100.0 if mode == SHADOW else 0.0
        from mlflow.exceptions import MlflowException

        served = self.served_version(name)
        if served is None:
            return DeployOutcome(name, None, False, f"{name} is not served here: deploy it first")
        try:
            version = self.registry.get_model_version_by_alias(name, alias).version
        except MlflowException:
            return DeployOutcome(name, None, False, f"{name} has no alias {alias!r}")
        if version == served:
            return DeployOutcome(name, version, False, f"{name}@{alias} is version {version}, "
                                 "the served one: nothing to compare it with")
        failure = self._load_beside(name, version)
        if failure:
            return DeployOutcome(name, version, False, f"not loaded, nothing changed: {failure}",
                                 served)
        rule = RouteRule(mode, alias, version, percent)
        self.registry.set_registered_model_tag(name, route_tag(self.target.name), rule.to_json())
        return DeployOutcome(name, version, True, rule.describe() + f"; {served} still served",
                             served)

    @_exclusive
    def clear_route(self, name: str) -> DeployOutcome:
        """Drop the canary or shadow rule and unload every version but the served one."""
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):
            self.registry.delete_registered_model_tag(name, route_tag(self.target.name))
        served = self.served_version(name)
        extra = {v: p for v, p in self.versions_on_disk(name).items() if v != served}
        for path in extra.values():
            self._remove(path)
        failure = self._load(name) if extra else None
        message = (f"no canary or shadow; unloaded version(s) {', '.join(extra)}" if extra
                   else "no canary or shadow")
        return DeployOutcome(name, served, failure is None, failure or message)

    def _load_beside(self, name: str, version: str) -> Optional[str]:
        try:
            model = resolve(self.registry, ModelReference(name, version=version))
        except ConfigError as exc:
            return str(exc)
        before = self.versions_on_disk(name)
        path = self._settings_path(model)
        write_json(path, model_settings_document(model, self.batching))
        failure = self._load(name) or self._wait_ready(model)
        if failure and version not in before:
            self._remove(path)
            self._load(name)
        return failure

    @_exclusive
    def rollback(self, name: str) -> DeployOutcome:
        """Bring back the version served before the last ``promote`` (its alias
        ``previous_champion``); rolling back twice returns to where it started."""
        from mlflow.exceptions import MlflowException

        try:
            previous = self.registry.get_model_version_by_alias(name, PREVIOUS_CHAMPION).version
        except MlflowException:
            return DeployOutcome(name, None, False, f"{name} has no {PREVIOUS_CHAMPION}: nothing "
                                 "was promoted over another version, so there is nothing to "
                                 "roll back to")
        return self.promote(name, previous)

    def deploy_alias(self, alias: str) -> List[DeployOutcome]:
        """Every registered model that has ``alias``; models deployed before that lost
        it are undeployed."""
        wanted = models_with_alias(self.registry, alias)
        outcomes = [self.deploy(reference) for reference in wanted]
        names = {reference.name for reference in wanted}
        outcomes += [self.undeploy(name) for name in self.deployed_names() if name not in names]
        return outcomes

    def deploy_many(self, references: Iterable[ModelReference]) -> List[DeployOutcome]:
        references = list(references)
        names = [reference.name for reference in references]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ConfigError(f"model(s) named more than once: {', '.join(duplicated)}")
        return [self.deploy(reference) for reference in references]

    @_exclusive
    def undeploy(self, name: str) -> DeployOutcome:
        for path in self.versions_on_disk(name).values():
            self._remove(path)
        try:
            self.server.unload(name)
        except (InferenceServerError, ServerUnreachable) as exc:
            return DeployOutcome(name, None, False, f"unload failed: {exc}")
        self._forget(name)
        return DeployOutcome(name, None, True, "unloaded")

    @_exclusive
    def restore(self) -> List[DeployOutcome]:
        """Load what the repository folder holds (after the server restarted)."""
        outcomes = []
        for name in self.deployed_names():
            versions = sorted(self.versions_on_disk(name), key=int)
            failure = self._load(name)
            outcomes.append(DeployOutcome(name, versions[-1] if versions else None,
                                          failure is None, failure or "ready"))
        return outcomes

    # ------------------------------------------------------------ steps

    def _settings_path(self, model: ResolvedModel) -> Path:
        return self.target.repository / model.name / model.version / MODEL_SETTINGS_FILE

    def _load(self, name: str) -> Optional[str]:
        """None when loaded; else why not."""
        try:
            self.server.load(name)
        except InferenceServerError as exc:
            return f"MLServer answered {exc.status_code}: {exc.message}"
        except ServerUnreachable as exc:
            return str(exc)
        return None

    def _wait_ready(self, model: ResolvedModel) -> Optional[str]:
        deadline = time.monotonic() + self.ready_timeout
        while not self.server.is_ready(model.name, model.version, timeout=5):
            if time.monotonic() > deadline:
                return f"version {model.version} not ready after {self.ready_timeout:.0f}s"
            time.sleep(0.2)
        return None

    def _record(self, model: ResolvedModel) -> None:
        self.registry.set_registered_model_tag(model.name, served_tag(self.target.name),
                                               model.version)
        self.registry.set_model_version_tag(model.name, model.version,
                                            deployed_tag(self.target.name),
                                            datetime.now(timezone.utc).isoformat())

    def _drop_route_to(self, name: str, versions: List[str]) -> None:
        """A canary or shadow rule whose version is now served or retired ends with it."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.registry.get_registered_model(name).tags or {}
        except MlflowException:
            return
        rule = RouteRule.from_json(tags.get(route_tag(self.target.name)))
        if rule is not None and rule.version in versions:
            self.registry.delete_registered_model_tag(name, route_tag(self.target.name))

    def _forget(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.registry.delete_registered_model_tag(name, served_tag(self.target.name))
        except MlflowException:
            pass

    def _remove(self, path: Path) -> None:
        """Delete a settings file and the folders it leaves empty (not the repository)."""
        path.unlink(missing_ok=True)
        root = self.target.repository.resolve()
        folder = path.parent.resolve()
        while folder != root and root in folder.parents and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
