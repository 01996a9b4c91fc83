"""Reading users and TOTP secrets exported by other systems, for ``mfad import`` and
``mfactl import``.

Formats: ``otpauth`` (a list of ``otpauth://totp/...`` URIs, one a line),
``google-authenticator`` (the per-user ``~/.google_authenticator`` file of
libpam-google-authenticator), ``pskc`` (RFC 6030, plain or with a pre-shared
AES key: :mod:`mfad.pskc`) and ``csv`` (a header ``username[,password]
[,disabled][,totp_secret...]``).

Guarantees: a file is parsed completely before anything is imported, and every
problem is reported at once with its place (``users.csv:4: totp_secret: not
base32``), so a bad file imports nothing; secrets are handed on as typed values
and never appear in a message. Importing is left to the local core in batches
(:func:`apply_local`) or to an :class:`ImportTarget` (a running daemon), which seal each
secret like a generated one.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from mfad.core.errors import AlreadyExists, InvalidInput, MfadError, NotFound, PermissionDenied, PreconditionFailed
from mfad.core.model import HashAlgorithm, TotpParams
from mfad.import_records import DEFAULT_DEVICE_NAME, BadImportFile, TotpRecord, UserRecord

if TYPE_CHECKING:
    from mfad.core.service import Mfa

FORMATS = ("otpauth", "google-authenticator", "pskc", "csv")
__all__ = ["FORMATS", "BadImportFile", "ImportReport", "ImportTarget", "RecordRefused", "TotpRecord",
           "UserRecord", "add_import_arguments", "apply", "apply_local", "read", "read_all", "summary"]
_ALGORITHMS = {a.value: a for a in HashAlgorithm}


class RecordRefused(MfadError):
    """An import target refused one record (the others may still go in)."""


#: What refuses one record rather than the whole import.
_REFUSALS = (RecordRefused, InvalidInput, AlreadyExists, PreconditionFailed, NotFound, PermissionDenied)


def _base32(text: str) -> bytes:
    clean = re.sub(r"[\s-]", "", text).upper()
    if not clean:
        raise ValueError("empty")
    try:
        return base64.b32decode(clean + "=" * (-len(clean) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("not base32") from None


def _params(digits: str | None, period: str | None, algorithm: str | None) -> TotpParams:
    """Each value as the source wrote it; ValueError names the bad one."""
    try:
        d = int(digits) if digits else 6
        p = int(period) if period else 30
    except ValueError:
        raise ValueError("digits and period must be numbers") from None
    name = (algorithm or "SHA1").upper().replace("-", "")
    if name not in _ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r}: must be SHA1, SHA256 or SHA512")
    return TotpParams(digits=d, period=p, algorithm=_ALGORITHMS[name])


# --- otpauth:// URIs ---------------------------------------------------------------------------
def parse_otpauth(text: str, source: str) -> list[UserRecord]:
    """One ``otpauth://totp/[Issuer:]account?secret=...`` per line; ``#`` comments and blank lines."""
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            records.append(UserRecord(username=(r := _otpauth(line)).username, totp=r))
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
    _raise(problems)
    return records


def _otpauth(uri: str) -> TotpRecord:
    parts = urlsplit(uri)
    if parts.scheme != "otpauth":
        raise ValueError("not an otpauth:// URI")
    if parts.netloc != "totp":
        raise ValueError(f"otpauth://{parts.netloc}: only totp is supported")
    label = unquote(parts.path.lstrip("/"))
    issuer, _, account = label.rpartition(":")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    account = account.strip()
    if not account:
        raise ValueError("no account name in the label")
    if "secret" not in query:
        raise ValueError("no secret")
    try:
        secret = _base32(query["secret"])
    except ValueError as exc:
        raise ValueError(f"secret: {exc}") from None
    name = (query.get("issuer") or issuer.strip() or DEFAULT_DEVICE_NAME)[:64]
    return TotpRecord(username=account, secret=secret, name=name,
                      params=_params(query.get("digits"), query.get("period"), query.get("algorithm")))


# --- google-authenticator ----------------------------------------------------------------------
def parse_google_authenticator(text: str, source: str, username: str) -> list[UserRecord]:
    """The secret on the first line, then ``" OPTION`` lines, then scratch codes (not imported)."""
    lines = text.splitlines()
    options = {ln[2:].split()[0]: ln[2:].split()[1:] for ln in lines[1:] if ln.startswith('" ') and ln[2:].split()}
    problems = []
    if not lines or not lines[0].strip():
        problems.append(f"{source}:1: no secret")
    if "HOTP_COUNTER" in options:
        problems.append(f"{source}: a counter-based (HOTP) secret: only time-based ones can be imported")
    elif "TOTP_AUTH" not in options:
        problems.append(f"{source}: no \" TOTP_AUTH line: not a time-based google-authenticator file")
    step = options.get("STEP_SIZE", ["30"])
    secret = b""
    if lines and lines[0].strip():
        try:
            secret = _base32(lines[0])
        except ValueError as exc:
            problems.append(f"{source}:1: secret: {exc}")
    _raise(problems)
    try:
        params = _params("6", step[0] if step else "", "SHA1")
    except ValueError as exc:
        raise BadImportFile([f"{source}: STEP_SIZE: {exc}"]) from None
    return [UserRecord(username=username, totp=TotpRecord(username=username, secret=secret, params=params,
                                                          name="google-authenticator"))]


# --- CSV of users ------------------------------------------------------------------------------
CSV_COLUMNS = ("username", "password", "disabled", "totp_secret", "totp_digits", "totp_period", "totp_algorithm")


def parse_users_csv(text: str, source: str) -> list[UserRecord]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if "username" not in header or unknown:
        raise BadImportFile([f"{source}:1: the header must name username and only {', '.join(CSV_COLUMNS)}"
                             + (f" (unknown: {', '.join(unknown)})" if unknown else "")])
    records, problems = [], []
    for row in reader:
        place = f"{source}:{reader.line_num}"
        try:
            records.append(_csv_user(row))
        except ValueError as exc:
            problems.append(f"{place}: {exc}")
    _raise(problems)
    return records


def _csv_user(row: dict[str, str]) -> UserRecord:
    username = (row.get("username") or "").strip()
    if not username:
        raise ValueError("username: empty")
    disabled_text = (row.get("disabled") or "false").strip().lower()
    if disabled_text not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError("disabled: must be true or false")
    totp = None
    if (row.get("totp_secret") or "").strip():
        try:
            secret = _base32(row["totp_secret"])
        except ValueError as exc:
            raise ValueError(f"totp_secret: {exc}") from None
        totp = TotpRecord(username=username, secret=secret, params=_params(
            row.get("totp_digits"), row.get("totp_period"), row.get("totp_algorithm")))
    return UserRecord(username=username, password=row.get("password") or None,
                      disabled=disabled_text in ("true", "yes", "1"), totp=totp)


def _raise(problems: list[str]) -> None:
    if problems:
        raise BadImportFile(problems)


def read(path: Path, fmt: str, *, username: str | None = None, pskc_key: bytes | None = None) -> list[UserRecord]:
    """Parse one file of format ``fmt``. ``username``: google-authenticator (default: the
    name of the file's directory, a home directory); ``pskc_key``: PSKC's pre-shared key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadImportFile([f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    source = str(path)
    if fmt == "otpauth":
        return parse_otpauth(text, source)
    if fmt == "google-authenticator":
        return parse_google_authenticator(text, source, username or path.resolve().parent.name)
    if fmt == "csv":
        return parse_users_csv(text, source)
    if fmt == "pskc":
        from mfad.pskc import parse_pskc

        return parse_pskc(text, source, pskc_key)
    raise BadImportFile([f"{source}: unknown format {fmt!r}; known: {', '.join(FORMATS)}"])


def read_key_file(name: str) -> bytes:
    """A PSKC pre-shared key: hex in a file that only its owner may read."""
    path = Path(name)
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadImportFile([f"--pskc-key-file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]) from None
    if mode & 0o077:
        raise BadImportFile([f"--pskc-key-file: {path} is readable by group or others (mode {mode:04o}): "
                             "chmod 600 it"])
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadImportFile([f"--pskc-key-file: {path} does not hold a hex key"]) from None


def read_all(fmt: str, files: Sequence[str], *, username: str | None = None,
             pskc_key_file: str | None = None) -> list[UserRecord]:
    """Every file parsed; BadImportFile lists the problems of all of them."""
    records: list[UserRecord] = []
    problems: list[str] = []
    key = read_key_file(pskc_key_file) if pskc_key_file else None
    for name in files:
        try:
            records += read(Path(name), fmt, username=username, pskc_key=key)
        except BadImportFile as exc:
            problems += exc.problems
    _raise(problems)
    return records


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mfad import`` and ``mfactl import`` (one command line for both)."""
    parser.add_argument("format", choices=FORMATS, help="the files' format")
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to import (all parsed before any is)")
    parser.add_argument("--user", help="google-authenticator: the file's owner (default: its directory's name)")
    parser.add_argument("--create-users", action="store_true",
                        help="create users that do not exist yet, without a password (csv always does)")
    parser.add_argument("--pskc-key-file", metavar="FILE",
                        help="pskc: the pre-shared key (hex, in a file only its owner can read)")


# --- applying -----------------------------------------------------------------------------------
class ImportTarget(Protocol):
    """Where records go one by one: a daemon (``mfactl import``)."""

    async def has_user(self, username: str) -> bool: ...
    async def create_user(self, record: UserRecord) -> None: ...
    async def import_totp(self, record: TotpRecord, origin: str) -> None: ...


@dataclass(slots=True)
class ImportReport:
    users_created: int = 0
    devices_imported: int = 0
    #: "username: reason" for every record that was not (fully) imported.
    failed: list[str] = field(default_factory=list)


async def apply(records: Sequence[UserRecord], target: ImportTarget, *, origin: str,
                create_users: bool) -> ImportReport:
    """Import each record in turn; one refused record (a user who already has a TOTP device,
    a password the policy refuses) is reported and the others still go in."""
    report = ImportReport()
    for record in records:
        try:
            if not await target.has_user(record.username):
                if not create_users and origin != "csv":
                    report.failed.append(f"{record.username}: no such user (add --create-users)")
                    continue
                await target.create_user(record)
                report.users_created += 1
            elif origin == "csv" and (record.password or record.disabled):
                report.failed.append(f"{record.username}: exists already; its password and state were left as "
                                     "they are")
            if record.totp is not None:
                await target.import_totp(record.totp, origin)
                report.devices_imported += 1
        except _REFUSALS as exc:
            report.failed.append(f"{record.username}: {exc}")
    return report


def summary(report: ImportReport) -> Iterable[str]:
    yield f"{report.users_created} user(s) created, {report.devices_imported} TOTP device(s) imported"
    for line in report.failed:
        yield f"not imported: {line}"


#: Records per transaction of ``mfad import`` (a few statements each, whatever the count).
LOCAL_BATCH = 1000


async def apply_local(records: Sequence[UserRecord], mfa: Mfa, *, origin: str, create_users: bool,
                      actor: str = "import") -> ImportReport:
    """:func:`apply` on the local store, ``LOCAL_BATCH`` records per transaction
    (:class:`mfad.core.imports.ImportService`): the same checks, refusals and audit rows."""
    from mfad.core.imports import ImportRequest
    from mfad.core.ports import ImportTotp

    report = ImportReport()
    create = create_users or origin == "csv"
    for start in range(0, len(records), LOCAL_BATCH):
        chunk = records[start:start + LOCAL_BATCH]
        outcomes = await mfa.imports.import_batch([ImportRequest(
            username=r.username, create=create, password=r.password, disabled=r.disabled,
            totp=None if r.totp is None else ImportTotp(secret=r.totp.secret, params=r.totp.params, name=r.totp.name))
            for r in chunk], origin=origin, actor=actor)
        for record, outcome in zip(chunk, outcomes):
            if outcome.missing:
                report.failed.append(f"{record.username}: no such user (add --create-users)")
                continue
            report.users_created += outcome.created
            if outcome.existed and origin == "csv" and (record.password or record.disabled):
                report.failed.append(f"{record.username}: exists already; its password and state were left as "
                                     "they are")
            report.devices_imported += outcome.device
            if outcome.refused is not None:
                report.failed.append(f"{record.username}: {outcome.refused}")
    return report
