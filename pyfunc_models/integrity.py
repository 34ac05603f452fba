"""Tamper-evident versions: a sha256 manifest of every artifact file, recorded on the
model version at registration and checked before anything of the version is loaded.

What is trusted: the registry's record (the version's tags), which only accounts with
write access to the registry can change.  What is not: the artifact store's files,
which anyone holding its keys -- or MLflow's ``--serve-artifacts`` upload route -- can
overwrite after registration.  Pickles run code when loaded, so a file that differs
from the manifest is refused before it is read, naming the file and both digests.

With a signing key (``MLPLATFORM_SIGNING_KEY_FILE`` where versions are registered,
``MLPLATFORM_VERIFY_KEY_FILE`` where they are loaded), the manifest's digest is signed
together with the model's name and version: Ed25519 (a PEM private key to sign, its
public key to verify) or HMAC-SHA256 (the same secret file on both sides).  Then only
versions signed by that key are deployable: whoever can write to the registry but does
not hold the key cannot get a version served.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

MANIFEST_TAG = "mlplatform.manifest"            # {"sha256": {"<relative path>": "<hex>"}}
SIGNATURE_TAG = "mlplatform.manifest.signature"  # "<scheme>:<base64>"
# Where the files are not loaded through the registry (a KServe predictor loads the folder
# its storage initializer filled), the render carries the two tags in these variables.
MANIFEST_ENV = "MLPLATFORM_MANIFEST"
SIGNATURE_ENV = "MLPLATFORM_MANIFEST_SIGNATURE"
SIGNING_KEY_ENV = "MLPLATFORM_SIGNING_KEY_FILE"
VERIFY_KEY_ENV = "MLPLATFORM_VERIFY_KEY_FILE"
CHUNK = 1 << 20
# Written by MLflow's client into every models:/ download (name and version, YAML), never
# read from the store: not part of what was registered.
CLIENT_SIDE = {"registered_model_meta"}


MARKER = "integrity check failed"  # in every refusal's text: metrics count refusals by it


class IntegrityError(RuntimeError):
    """A version's files or record do not match what was registered; nothing was loaded."""

    def __init__(self, message: str):
        super().__init__(f"{MARKER}: {message}")


def manifest_of(folder: Path) -> Dict[str, str]:
    """sha256 of every file below ``folder``, by its POSIX path relative to it (but the
    files MLflow's client adds to a download)."""
    digests = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()
                       and p.relative_to(folder).as_posix() not in CLIENT_SIDE):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        digests[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return digests


def manifest_tag(digests: Mapping[str, str]) -> str:
    """The tag's value: canonical JSON (sorted, no spaces), so its digest is stable."""
    return json.dumps({"sha256": dict(sorted(digests.items()))}, separators=(",", ":"))


def read_manifest(tag: str, where: str) -> Dict[str, str]:
    try:
        digests = json.loads(tag)["sha256"]
        if not isinstance(digests, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
            raise ValueError("not a mapping of paths to digests")
        return digests
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{where}: the manifest tag {MANIFEST_TAG} is malformed ({exc})")


def verify_files(folder: Path, digests: Mapping[str, str], where: str) -> None:
    """IntegrityError naming the first file that is changed, missing or added."""
    found = manifest_of(folder)
    for name in sorted(set(digests) | set(found)):
        expected, actual = digests.get(name), found.get(name)
        if expected == actual:
            continue
        if actual is None:
            raise IntegrityError(f"{where}: file {name!r} is missing (registered sha256 "
                                 f"{expected})")
        if expected is None:
            raise IntegrityError(f"{where}: file {name!r} was added after registration "
                                 f"(sha256 {actual})")
        raise IntegrityError(f"{where}: file {name!r} was altered: registered sha256 "
                             f"{expected}, found {actual}")


# ------------------------------------------------------------------ signatures


def _payload(name: str, version: str, tag: str) -> bytes:
    return json.dumps({"model": name, "version": str(version),
                       "manifest_sha256": hashlib.sha256(tag.encode()).hexdigest()},
                      sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Key:
    """A signing or verifying key: ``ed25519`` (cryptography's key object) or ``hmac``."""

    scheme: str
    material: object
    source: str

    @classmethod
    def load(cls, path: str) -> "Key":
        data = Path(path).read_bytes()
        if b"-----BEGIN" not in data:
            secret = data.strip()
            if len(secret) < 32:
                raise IntegrityError(f"{path}: an HMAC key needs at least 32 bytes")
            return cls("hmac", secret, path)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )

        try:
            if b"PRIVATE KEY" in data:
                key = serialization.load_pem_private_key(data, password=None)
                if isinstance(key, Ed25519PrivateKey):
                    return cls("ed25519", key, path)
            else:
                key = serialization.load_pem_public_key(data)
                if isinstance(key, Ed25519PublicKey):
                    return cls("ed25519", key, path)
        except ValueError as exc:
            raise IntegrityError(f"{path}: not a PEM key ({exc})") from None
        raise IntegrityError(f"{path}: only Ed25519 keys (or an HMAC secret) are accepted")

    def sign(self, name: str, version: str, tag: str) -> str:
        payload = _payload(name, version, tag)
        if self.scheme == "hmac":
            raw = hmac.new(self.material, payload, hashlib.sha256).digest()
        elif hasattr(self.material, "sign"):
            raw = self.material.sign(payload)
        else:
            raise IntegrityError(f"{self.source}: a public key cannot sign; use the private key")
        return f"{self.scheme}:{base64.b64encode(raw).decode()}"

    def verify(self, name: str, version: str, tag: str, signature: Optional[str]) -> None:
        where = f"{name}/{version}"
        if not signature:
            raise IntegrityError(f"{where} is not signed; only signed versions are deployable "
                                 f"here ({VERIFY_KEY_ENV} is set)")
        scheme, _, encoded = signature.partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raw = b""
        payload = _payload(name, version, tag)
        if scheme != self.scheme:
            ok = False
        elif self.scheme == "hmac":
            ok = hmac.compare_digest(raw, hmac.new(self.material, payload, hashlib.sha256).digest())
        else:
            from cryptography.exceptions import InvalidSignature

            public = (self.material.public_key() if hasattr(self.material, "public_key")
                      else self.material)
            try:
                public.verify(raw, payload)
                ok = True
            except InvalidSignature:
                ok = False
        if not ok:
            raise IntegrityError(f"{where}: the signature does not match its manifest under "
                                 f"the key {self.source} (signed by another key, or the "
                                 "manifest was changed)")


def key_from_env(variable: str) -> Optional[Key]:
    path = os.environ.get(variable, "").strip()
    return Key.load(path) if path else None


# ------------------------------------------------------------------ the checks


def check_record(name: str, version: str, tags: Mapping[str, str],
                 key: Optional[Key]) -> Optional[Dict[str, str]]:
    """The version's manifest (None for a version registered before manifests, allowed
    only without a key), its signature checked when ``key`` is set."""
    where = f"{name}/{version}"
    tag = tags.get(MANIFEST_TAG)
    if tag is None:
        if key is not None:
            raise IntegrityError(f"{where} has no manifest (registered before manifests "
                                 "existed, or not by mlplatform) and is not signed; only signed "
                                 f"versions are deployable here ({VERIFY_KEY_ENV} is set)")
        return None
    digests = read_manifest(tag, where)
    if key is not None:
        key.verify(name, version, tag, tags.get(SIGNATURE_TAG))
    return digests
