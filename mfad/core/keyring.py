"""Secrets at rest: AES-256-GCM under keys kept in a 0600 key file.

Guarantee: the database alone reveals no secret. Every ciphertext names the key
that sealed it (``kid``) and is bound by its associated data to the table,
column and row it belongs to, so a ciphertext pasted into another row fails to
open. Several keys may live in the file; the last one seals, all of them open,
which is what lets ``mfad rotate-key`` re-encrypt while daemons keep running.

Key file format, one key per line (``#`` comments allowed)::

    <kid> <base64 of 32 random bytes>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mfad.core.errors import SecretsError

_KEY_BYTES = 32
_NONCE_BYTES = 12
_KID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def aad_for(table: str, column: str, row_id: int | str) -> bytes:
    return f"{table}.{column}:{row_id}".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySample:
    """A stored value that needs key ``kid``: ``sealed`` (opened to prove the key) or a keyed
    hash (``sealed`` None: only the key's presence can be checked)."""

    kid: str
    table: str
    column: str
    row_id: int
    sealed: str | None = None


def _new_kid() -> str:
    return "k" + "".join(secrets.choice(_KID_ALPHABET) for _ in range(7))


def _parse_key_file(path: Path, text: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise SecretsError(f"{path}:{lineno}: expected '<key id> <base64 key>'")
        kid, encoded = parts
        if ":" in kid:
            raise SecretsError(f"{path}:{lineno}: key id must not contain ':'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SecretsError(f"{path}:{lineno}: key is not valid base64") from None
        if len(key) != _KEY_BYTES:
            raise SecretsError(f"{path}:{lineno}: key must be {_KEY_BYTES} bytes, got {len(key)}")
        if any(kid == other for other, _ in keys):
            raise SecretsError(f"{path}:{lineno}: duplicate key id {kid!r}")
        keys.append((kid, key))
    if not keys:
        raise SecretsError(f"{path}: no key in the key file")
    return keys


def _write_key_file(path: Path, keys: list[tuple[str, bytes]]) -> None:
    """Atomically replace the key file, created 0600 before any byte is written."""
    lines = ["# mfad secrets keys: the last line seals, every line opens. Keep this file 0600.\n"]
    lines += [f"{kid} {base64.b64encode(key).decode()}\n" for kid, key in keys]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, "".join(lines).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


#: What identifies one version of the key file: (inode, size, mtime in ns). The mtime
#: alone is not enough: file times tick with the kernel's coarse clock (a few ms), so a
#: rotation right after a load kept the same mtime and went unnoticed. Every write
#: replaces the file (a new inode) and a rotation grows it.
FileStamp = tuple[int, int, int]


def _stamp(st: os.stat_result) -> FileStamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class Keyring:
    """Seals and opens secrets; reloads the key file when it changes on disk."""

    def __init__(self, path: Path, keys: list[tuple[str, bytes]], stamp: FileStamp) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._install(keys, stamp)

    def _install(self, keys: list[tuple[str, bytes]], stamp: FileStamp) -> None:
        self._ciphers = {kid: AESGCM(key) for kid, key in keys}
        self._raw = dict(keys)
        self._mac_keys: dict[str, bytes] = {}
        self._active = keys[-1][0]
        self._stamp = stamp

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Keyring:
        """Load the key file, creating it (0600, one fresh key) when absent and allowed."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise SecretsError(f"{path}: key file does not exist")
            try:
                path.parent.mkdir(exist_ok=True, mode=0o700)  # its own directory at most, never a tree
            except FileNotFoundError:
                raise SecretsError(f"{path}: the directory {path.parent.parent} does not exist") from None
            _write_key_file(path, [(_new_kid(), secrets.token_bytes(_KEY_BYTES))])
        return cls(path, *cls._read(path))

    @staticmethod
    def _read(path: Path) -> tuple[list[tuple[str, bytes]], FileStamp]:
        try:
            st = path.stat()
            text = path.read_text(encoding="ascii")
        except UnicodeDecodeError:
            raise SecretsError(f"{path}: key file is not ASCII text (corrupt?)") from None
        except OSError as exc:
            raise SecretsError(f"{path}: cannot read key file: {exc.strerror}") from None
        if st.st_mode & 0o077:
            raise SecretsError(f"{path}: key file is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
        return _parse_key_file(path, text), _stamp(st)

    def _reload_if_changed(self) -> None:
        try:
            stamp = _stamp(self._path.stat())
        except OSError:
            return  # keep serving with the keys already loaded
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._install(*self._read(self._path))

    @property
    def active_kid(self) -> str:
        self._reload_if_changed()
        return self._active

    @property
    def kids(self) -> list[str]:
        return list(self._ciphers)

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        self._reload_if_changed()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(nonce, plaintext, aad)
        return f"{self._active}:{base64.b64encode(nonce + sealed).decode()}"

    def mac(self, data: bytes) -> str:
        """A keyed hash (HMAC-SHA256 under a key derived from the active key), tagged with its kid.

        For short codes that must be compared later but never be brute-forced
        offline from a stolen database (10^6 codes hash in a second without the key)."""
        self._reload_if_changed()
        return f"{self._active}:{self._mac_with(self._active, data)}"

    def mac_matches(self, data: bytes, tagged: str) -> bool:
        kid, sep, digest = tagged.partition(":")
        if not sep:
            return False
        if kid not in self._raw:
            self._reload_if_changed()
            if kid not in self._raw:
                return False
        return hmac.compare_digest(self._mac_with(kid, data), digest)

    def _mac_with(self, kid: str, data: bytes) -> str:
        mac_key = self._mac_keys.get(kid)
        if mac_key is None:
            mac_key = self._mac_keys[kid] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                                 info=b"mfad code mac").derive(self._raw[kid])
        return hmac.new(mac_key, data, hashlib.sha256).hexdigest()

    def kid_of(self, token: str) -> str:
        return token.partition(":")[0]

    def open_secret(self, token: str, aad: bytes) -> bytes:
        kid, sep, body = token.partition(":")
        if not sep:
            raise SecretsError("sealed value has no key id")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            self._reload_if_changed()
            cipher = self._ciphers.get(kid)
            if cipher is None:
                raise SecretsError(f"sealed with unknown key {kid!r}: is the key file complete?")
        try:
            raw = base64.b64decode(body, validate=True)
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretsError("sealed value does not open (wrong key, wrong row or tampered)") from None

    def unopened(self, samples: Iterable[KeySample]) -> list[str]:
        """What this key file cannot open of the stored values, one line per key id: empty
        when every key the database needs is here and opens what it sealed."""
        problems: dict[str, str] = {}
        for sample in samples:
            if sample.kid in problems:
                continue
            where = f"{sample.table}.{sample.column} (row {sample.row_id} and maybe others)"
            if sample.kid not in self._raw:
                problems[sample.kid] = f"key {sample.kid!r}, used by {where}, is not in this key file"
            elif sample.sealed is not None:
                try:
                    self.open_secret(sample.sealed, aad_for(sample.table, sample.column, sample.row_id))
                except SecretsError:
                    problems[sample.kid] = f"key {sample.kid!r} of this file does not open {where}: a different key " \
                                           "with the same id"
        return list(problems.values())

    def rotate(self) -> str:
        """Append a new sealing key to the file; older keys stay so everything still opens."""
        with self._lock:
            keys, _ = self._read(self._path)
            kid = _new_kid()
            keys.append((kid, secrets.token_bytes(_KEY_BYTES)))
            _write_key_file(self._path, keys)
            self._install(*self._read(self._path))
        return kid

    def retire(self, keep: set[str]) -> list[str]:
        """Remove keys not in ``keep`` (the active key always stays). Returns removed ids."""
        with self._lock:
            keys, _ = self._read(self._path)
            active = keys[-1][0]
            kept = [(kid, key) for kid, key in keys if kid in keep or kid == active]
            removed = [kid for kid, _key in keys if kid not in keep and kid != active]
            if removed:
                _write_key_file(self._path, kept)
                self._install(*self._read(self._path))
        return removed
