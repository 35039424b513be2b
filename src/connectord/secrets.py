"""Secrets: AES-GCM encryption under a key ring, and the split of a config into
its public part and its secret part.

A connector's secrets are one JSON tree (``{"password": "...", "auth":
{"client_secret": "..."}}``) encrypted as one blob. The key id is stored
beside the ciphertext and the tenant and connector ids are bound in as
associated data, so a ciphertext copied to another row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets as _stdlib_secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from connectord.errors import ConfigurationError, SecretsError

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_NAME = "secret.keys"

SecretTree = dict[str, Any]


def _key_id(key: bytes) -> str:
    # Derived, not chosen, so the same key always has the same id on every replica.
    return hashlib.sha256(key).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """An encrypted blob and the id of the key that sealed it."""

    key_id: str
    data: bytes


class KeyRing:
    """Keys by id; the newest (last) seals, every key opens."""

    def __init__(self, keys: Iterable[bytes], *, path: Path | None = None) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._raw: dict[str, bytes] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ConfigurationError(f"a secret key must be {KEY_BYTES} bytes, got {len(key)}")
            kid = _key_id(key)
            self._keys[kid] = AESGCM(key)
            self._raw[kid] = key
        if not self._keys:
            raise ConfigurationError("the key ring is empty")
        self.primary_id = list(self._keys)[-1]
        self.path = path

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key, oldest first."""
        return list(self._keys)

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """Parse ``CONNECTORD_SECRET_KEY``: comma-separated base64 keys (standard or URL-safe
        alphabet, padding optional), newest last.

        Each item may carry a label before a colon (``2026-11:BASE64``); the label
        is for people only, key ids are derived from the key bytes.
        """
        keys = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            encoded = item.rsplit(":", 1)[-1]
            try:
                keys.append(_decode_key(encoded))
            except ValueError as exc:
                raise ConfigurationError("CONNECTORD_SECRET_KEY holds an item that is not base64") from exc
        return cls(keys)

    @classmethod
    def load_or_create_file(cls, data_dir: Path) -> KeyRing:
        """Open the embedded key file, creating it (mode 0600) on first use."""
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_key_file(path, [generate_key()])
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigurationError(f"{path} must not be readable by others (mode {mode:o}); chmod 600 it")
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        return cls([base64.b64decode(ln) for ln in lines], path=path)

    def with_new_key(self) -> KeyRing:
        """A ring with one more (now primary) key; saved if the ring lives in a file."""
        keys = [*self._raw.values(), generate_key()]
        if self.path is not None:
            _write_key_file(self.path, keys)
        return KeyRing(keys, path=self.path)

    def without(self, key_ids: Iterable[str]) -> KeyRing:
        """A ring without the given keys (never the primary); saved if file-backed."""
        drop = set(key_ids) - {self.primary_id}
        keys = [raw for kid, raw in self._raw.items() if kid not in drop]
        if self.path is not None:
            _write_key_file(self.path, keys)
        return KeyRing(keys, path=self.path)

    def fingerprint(self, data: bytes) -> str:
        """A keyed hash (HMAC-SHA256 under the primary key): compares requests that
        carry secrets without storing anything a stolen database could brute-force."""
        key = hashlib.sha256(b"connectord/fingerprint/" + self._raw[self.primary_id]).digest()
        return hmac.new(key, data, hashlib.sha256).hexdigest()

    def secret_fingerprint(self, tenant_id: str, connector_id: str, field: str, value: str) -> str:
        """The fingerprint of one stored secret: ``hmac-sha256:<key id>:<32 hex>``, an HMAC
        under a key derived from the primary key for this connector and field, so equal
        values in two connectors (or two fields) do not show as equal, and a stolen database
        or export gives nothing to brute-force. It changes when the value changes, and when
        the primary key does (the key id says which ring made it; ``docs/secrets.md``)."""
        scope = f"connectord/secret-fingerprint/v1/{tenant_id}/{connector_id}/{field}".encode()
        key = hmac.new(self._raw[self.primary_id], scope, hashlib.sha256).digest()
        digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
        return f"hmac-sha256:{self.primary_id}:{digest}"

    def encrypt(self, plaintext: bytes, associated: bytes) -> Ciphertext:
        """Seal under the primary key."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary_id].encrypt(nonce, plaintext, associated)
        return Ciphertext(self.primary_id, nonce + sealed)

    def decrypt(self, blob: Ciphertext, associated: bytes) -> bytes:
        """Open with the key the blob names."""
        aead = self._keys.get(blob.key_id)
        if aead is None:
            raise SecretsError(f"secret sealed with key {blob.key_id}, which is not in the key ring")
        try:
            return aead.decrypt(blob.data[:NONCE_BYTES], blob.data[NONCE_BYTES:], associated)
        except InvalidTag as exc:
            raise SecretsError(f"secret does not decrypt with key {blob.key_id}") from exc

    def seal_tree(self, tree: SecretTree, tenant_id: str, connector_id: str) -> Ciphertext:
        """Encrypt a connector's secret tree."""
        return self.encrypt(json.dumps(tree).encode(), _aad(tenant_id, connector_id))

    def open_tree(self, blob: Ciphertext, tenant_id: str, connector_id: str) -> SecretTree:
        """Decrypt a connector's secret tree."""
        data: SecretTree = json.loads(self.decrypt(blob, _aad(tenant_id, connector_id)))
        return data


def _aad(tenant_id: str, connector_id: str) -> bytes:
    return f"connectord/v1/{tenant_id}/{connector_id}".encode()


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return _stdlib_secrets.token_bytes(KEY_BYTES)


def new_ring_entry(label: str | None = None) -> str:
    """A fresh key as an item of ``CONNECTORD_SECRET_KEY`` (``[label:]base64``), for an
    operator to append to the ring; nothing is stored."""
    if label is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", label):
        raise ValueError("a label is 1-32 letters, digits, '.', '_' or '-'")
    encoded = base64.b64encode(generate_key()).decode()
    return f"{label}:{encoded}" if label else encoded


def _write_key_file(path: Path, keys: list[bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(base64.b64encode(k).decode() + "\n" for k in keys))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def keyring_from_settings(secret_key: SecretStr | None, data_dir: Path) -> KeyRing:
    """The env key ring when set, else the embedded key file."""
    if secret_key is not None:
        return KeyRing.from_env_value(secret_key.get_secret_value())
    return KeyRing.load_or_create_file(data_dir)


# --- the split between public config and secrets ------------------------------------


def split_secrets(dumped: Mapping[str, Any]) -> tuple[dict[str, Any], SecretTree]:
    """Split a dumped config (``model_dump()``, SecretStr kept) into public and secret trees."""
    public: dict[str, Any] = {}
    secret: SecretTree = {}
    for key, value in dumped.items():
        if isinstance(value, SecretStr):
            secret[key] = value.get_secret_value()
        elif isinstance(value, Mapping):
            sub_public, sub_secret = split_secrets(value)
            public[key] = sub_public
            if sub_secret:
                secret[key] = sub_secret
        else:
            public[key] = value
    return public, secret


def overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``top`` over ``base``: ``top`` wins, and a ``None`` in ``top`` removes.

    Used both to put secrets back into a public config (for a probe) and to carry
    stored secrets into an update that omits them (``overlay(secrets, incoming)``).
    """
    merged: dict[str, Any] = dict(base)
    for key, value in top.items():
        current = merged.get(key)
        if value is None and key in merged:
            # Removed, not set to None: an entry of a ``dict[str, SecretStr]`` cannot be None.
            del merged[key]
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = overlay(current, value)
        else:
            merged[key] = value
    return merged


def secret_paths(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the secrets set in a tree, sorted."""
    paths: list[str] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            paths.extend(secret_paths(value, name + "."))
        else:
            paths.append(name)
    return sorted(paths)


def leaf_values(tree: Mapping[str, Any]) -> list[str]:
    """Every secret value in a tree, for redaction."""
    values: list[str] = []
    for value in tree.values():
        if isinstance(value, Mapping):
            values.extend(leaf_values(value))
        elif value is not None:
            values.append(str(value))
    return values


# One alphabet per key: standard (+/) or URL-safe (-_), which many key generators print.
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/]+=*|[A-Za-z0-9_-]+=*")


def _decode_key(encoded: str) -> bytes:
    """The bytes of a base64 key in either alphabet, with or without its ``=`` padding."""
    if not _BASE64_KEY.fullmatch(encoded):
        raise ValueError("not base64")
    core = encoded.rstrip("=").translate(str.maketrans("-_", "+/"))
    return base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
