"""``mfactl``: administer a running mfad over gRPC.

    mfactl [--addr HOST:PORT] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] [--json] GROUP COMMAND ...

The caller token comes from ``$MFAD_TOKEN`` (or ``--token-file``), never from
the command line, where ``ps`` would show it; the address from ``--addr`` or
``$MFAD_ADDR`` (default 127.0.0.1:50051); TLS files from the flags or
``$MFAD_TLS_CA``/``_CERT``/``_KEY``. Passwords are read from standard input
with ``--password-stdin`` and nowhere else. ``--json`` (anywhere on the line)
prints one JSON document per answer (JSON lines for ``audit tail --follow``),
errors as ``{"error": {"code": ..., "message": ...}}`` on standard error.

Exit codes: 0 ok; 1 refused or failed (a code refused, not found, a rule
broken, the server unreachable or not offering the call); 2 usage or
configuration error (bad arguments, bad input, bad credentials, TLS files).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import csv
import io
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import grpc

import mfad
from mfad import importers
from mfad_client import types as t
from mfad_client.client import DEFAULT_ADDRESS, DEFAULT_TIMEOUT, DEFAULT_TOTP_NAME, MfadClient, TlsFiles
from mfad_client.errors import ClientError, NotFound

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Server answers that mean the command line or its configuration is wrong.
USAGE_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED})
MAX_PASSWORD_BYTES = 1024

P = TypeVar("P", bound=argparse.ArgumentParser)
Handler = Callable[[MfadClient, argparse.Namespace, "Output"], Awaitable[int]]


class UsageError(Exception):
    """A problem with the command line or local files: exit 2."""


class Output:
    def __init__(self, as_json: bool, stream: TextIO = sys.stdout) -> None:
        self.json = as_json
        self._stream = stream

    def emit_list(self, items: Sequence[Any], text: Iterable[str] | str, *, next_page_token: str = "",
                  **extra: Any) -> None:
        """Every list command's one JSON shape: ``{"items": [...], "next_page_token": "", ...}``
        (an empty token: nothing more to fetch)."""
        self.emit({"items": list(items), "next_page_token": next_page_token, **extra}, text)

    def emit(self, value: Any, text: Iterable[str] | str) -> None:
        """Print ``value`` as JSON, or the human-readable ``text`` lines."""
        if self.json:
            print(json.dumps(t.to_json(value), ensure_ascii=False), file=self._stream, flush=True)
        else:
            for line in [text] if isinstance(text, str) else text:
                print(line, file=self._stream, flush=True)


# --- formatting --------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in body]


def _user_lines(u: t.User) -> list[str]:
    return [f"user:       {u.username}", f"id:         {u.id}", f"disabled:   {_yes(u.disabled)}",
            f"password:   {'set' if u.has_password else 'none (the NAS checks it)'}",
            f"created:    {_when(u.created_at)}", f"role:       {u.role or 'none'}"]


def _device_lines(listing: t.DeviceList) -> list[str]:
    lines = _table(("ID", "METHOD", "STATE", "LEVEL", "NAME", "CREATED", "LAST USED"),
                   [(d.id, d.method or "?", d.state or "?", str(d.security_level), d.name, _when(d.created_at),
                     _when(d.last_used_at)) for d in listing.devices]) if listing.devices else ["no devices"]
    if listing.lockout_risk:
        lines.append("lockout risk: fewer than two method types bound; losing one device locks the user out")
    return lines


def _lockout_lines(lock: t.Lockout) -> list[str]:
    state = "hard-locked (an administrator must reset it)" if lock.hard_locked else (
        f"locked until {_when(lock.locked_until)}" if lock.locked else "not locked")
    return [f"user:                 {lock.username}", f"state:                {state}",
            f"consecutive failures: {lock.consecutive_failures}", f"lock-outs in a row:   {lock.lockouts}"]


def _policy_lines(p: t.Policy) -> list[str]:
    return [f"mfa_required:             {p.mfa_required or '?'}",
            f"allowed_methods:          {','.join(p.allowed_methods) or '-'}",
            f"self_service:             {str(p.self_service).lower()}",
            f"remember_device:          {str(p.remember_device).lower()}",
            f"remember_days:            {p.remember_days}",
            f"sensitive_reauth_seconds: {p.sensitive_reauth_seconds}",
            f"require_backup_method:    {str(p.require_backup_method).lower()}",
            f"enrolment_proof:          {p.enrolment_proof}",
            f"email_recovery:           {str(p.email_recovery).lower()}",
            f"roles_need_passkey:       {str(p.roles_need_passkey).lower()}",
            f"approval_hold:            {str(p.approval_hold).lower()}",
            f"approval_with_totp:       {str(p.approval_with_totp).lower()}",
            f"approval_email_notice:    {str(p.approval_email_notice).lower()}"]


def _audit_line(e: t.AuditEvent) -> str:
    parts = [_when(e.at), e.event, e.outcome]
    for name in ("username", "method", "protocol", "source", "actor", "reason", "detail"):
        value = getattr(e, name)
        if value:
            parts.append(f"{name}={value}")
    return "  ".join(parts)


def _remembered_lines(items: Sequence[t.RememberedDevice]) -> list[str]:
    if not items:
        return ["no remembered devices"]
    return _table(("ID", "LABEL", "CREATED", "LAST USED", "EXPIRES"),
                  [(r.id, r.label, _when(r.created_at), _when(r.last_used_at), _when(r.expires_at)) for r in items])


def _token_lines(tokens: Sequence[t.CallerToken]) -> list[str]:
    if not tokens:
        return ["no caller tokens"]
    now = datetime.now(UTC)

    def state(c: t.CallerToken) -> str:
        return "revoked" if c.revoked else "expired" if c.expires_at is not None and c.expires_at <= now else "active"

    return _table(("NAME", "ROLE", "CREATED", "EXPIRES", "STATE"),
                  [(c.name, c.role or "?", _when(c.created_at), _when(c.expires_at) if c.expires_at else "never",
                    state(c)) for c in tokens])


# --- input -------------------------------------------------------------------------------------
def _read_password(stdin: TextIO) -> str:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise UsageError(f"--password-stdin: the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return password


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _methods(text: str) -> list[t.Method]:
    try:
        return [t.Method(m.strip().lower()) for m in text.split(",") if m.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: methods are {', '.join(m.value for m in t.Method)}") from None


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None


# --- commands ----------------------------------------------------------------------------------
async def user_create(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    password = _read_password(sys.stdin) if a.password_stdin else None
    user = await c.admin.create_user(a.username, password)
    out.emit(user, _user_lines(user))
    return EXIT_OK


async def user_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    users: list[t.User] = []
    token = a.page_token or ""
    while True:
        page = await c.admin.list_users(page_size=min(500, a.limit - len(users)), page_token=token,
                                        prefix=a.prefix or "")
        users.extend(page.users)
        token = page.next_page_token
        if not token or len(users) >= a.limit:
            break
    rows = [(u.username, u.id, "disabled" if u.disabled else "active", "yes" if u.has_password else "no",
             _when(u.created_at)) for u in users]
    out.emit_list(users, _table(("USERNAME", "ID", "STATE", "PASSWORD", "CREATED"), rows) if users else ["no users"],
                  next_page_token=token)
    return EXIT_OK


async def user_show(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    details = await c.admin.get_user(a.username)
    out.emit(details, [*_user_lines(details.user), "", *_device_lines(details.devices), "",
                       *_lockout_lines(details.lockout)])
    return EXIT_OK


async def user_disable(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    user = await c.admin.disable_user(a.username, a.reason or "")
    out.emit(user, f"{user.username}: disabled")
    return EXIT_OK


async def user_prune(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    found = await c.admin.prune_directory_users(a.directory_name or "", disable=a.disable)
    lines = [f"{u.username}\t{u.directory}\t{u.why}\t{'disabled' if u.disabled else 'listed'}" for u in found]
    out.emit_list(found, lines or "no stale directory users")
    return EXIT_OK


async def user_enable(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    user = await c.admin.enable_user(a.username, a.reason or "")
    out.emit(user, f"{user.username}: enabled")
    return EXIT_OK


async def user_set_password(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    if not a.password_stdin:
        raise UsageError("user set-password: the password is read from standard input: add --password-stdin")
    revoked = await c.admin.set_password(a.username, _read_password(sys.stdin))
    out.emit({"username": a.username, "remembered_revoked": revoked},
             f"{a.username}: password set; {revoked} remembered device(s) revoked")
    return EXIT_OK


async def user_role(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    role = None if a.role == "none" else t.StaffRole(a.role)
    user = await c.admin.set_role(a.username, role)
    out.emit(user, f"{user.username}: console role {user.role or 'none'}")
    return EXIT_OK


async def user_delete(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    if not a.yes:
        raise UsageError(f"user delete: this removes {a.username} with every device, remembered device and "
                         "session (the audit log keeps their rows); add --yes to do it")
    removed = await c.admin.delete_user(a.username, a.reason or "")
    out.emit({"username": a.username, "devices_removed": removed},
             f"{a.username}: deleted with {removed} device(s)")
    return EXIT_OK


async def device_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    listing = await c.admin.list_devices(a.username)
    out.emit_list(listing.devices, _device_lines(listing), lockout_risk=listing.lockout_risk)
    return EXIT_OK


async def device_unbind(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    listing = await c.admin.unbind_device(a.username, a.device_id, a.reason or "")
    out.emit(listing, [f"{a.username}: device {a.device_id} unbound", *_device_lines(listing)])
    return EXIT_OK


async def totp_bind(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    p = await c.admin.bind_totp(a.username, a.name)
    written = {}
    for kind, target, data in (("png", a.qr_png, p.qr_png), ("svg", a.qr_svg, p.qr_svg.encode())):
        if target:
            _write_private(Path(target), data)
            written[f"qr_{kind}_file"] = target
    value = {"device_id": p.device_id, "otpauth_uri": p.otpauth_uri, "secret_base32": p.secret_base32,
             "issuer": p.issuer, "account_name": p.account_name, "digits": p.digits,
             "period_seconds": p.period_seconds, "expires_at": p.expires_at, **written}
    lines = [f"device id:  {p.device_id}", f"account:    {p.issuer}: {p.account_name}",
             f"key:        {p.secret_base32}", f"uri:        {p.otpauth_uri}",
             f"code:       {p.digits} digits every {p.period_seconds} s",
             f"confirm by: {_when(p.expires_at)}"]
    lines += [f"QR code:    {path}" for path in written.values()]
    if a.qr and not out.json:
        lines.append(_terminal_qr(p.otpauth_uri))
    lines.append(f"then:       mfactl totp confirm {a.username} {p.device_id} CODE")
    out.emit(value, lines)
    return EXIT_OK


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only (0600), also when the file was there before: a QR code is the TOTP secret."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)
        file.write(data)


def _terminal_qr(uri: str) -> str:
    import segno  # a dependency of the package: always there

    buffer = io.StringIO()
    segno.make(uri, error="m", micro=False).terminal(out=buffer, compact=True)
    return buffer.getvalue()


async def totp_confirm(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    device, listing = await c.admin.confirm_totp(a.username, a.device_id, a.code)
    out.emit({"device": device, "devices": listing},
             [f"{a.username}: TOTP device {device.id} confirmed", *_device_lines(listing)])
    return EXIT_OK


async def email_bind(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    sent = await c.admin.bind_email(a.username, a.address)
    # mfad waits a few seconds for the mail server: "sent" only once it accepted the message,
    # else "queued" (retried; delivery failures are in the audit log and mfad_email_* metrics).
    delivery = "sent" if sent.accepted else "queued"
    shown = (f"code sent:   {sent.masked_email}" if sent.accepted
             else f"code queued: {sent.masked_email} (mailed when the mail server accepts it)")
    out.emit({**t.to_json(sent), "delivery": delivery},
             [f"device id:   {sent.device_id}", shown,
              f"then:        mfactl email confirm {a.username} {sent.device_id} CODE"])
    return EXIT_OK


async def email_confirm(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    device, listing = await c.admin.confirm_email(a.username, a.device_id, a.code)
    out.emit({"device": device, "devices": listing},
             [f"{a.username}: security email {device.id} confirmed", *_device_lines(listing)])
    return EXIT_OK


def _passkey_lines(keys: t.DeviceList) -> list[str]:
    def backup(d: t.Device) -> str:
        if d.passkey is None:
            return "-"
        return "synced" if d.passkey.backup_state else ("eligible" if d.passkey.backup_eligible else "no")

    def model(d: t.Device) -> str:
        if d.u2f is not None:
            return f"appid {d.u2f.app_id}"
        return (d.passkey.aaguid if d.passkey is not None else "") or "-"

    lines = _table(("ID", "KIND", "LEVEL", "NAME", "BACKUP", "CREATED", "LAST USED", "AUTHENTICATOR"),
                   [(d.id, d.method or "?", str(d.security_level), d.name, backup(d), _when(d.created_at),
                     _when(d.last_used_at), model(d)) for d in keys.devices])
    if any(d.method is t.Method.U2F for d in keys.devices):
        lines.append("u2f keys: legacy, level 2; the user can upgrade them to passkeys (self-service)")
    return lines


async def passkey_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    listing = await c.admin.list_devices(a.username)
    keys = t.DeviceList(devices=tuple(d for d in listing.devices if d.method in (t.Method.PASSKEY, t.Method.U2F)),
                        lockout_risk=listing.lockout_risk)
    out.emit_list(keys.devices, _passkey_lines(keys) if keys.devices else ["no passkeys or U2F keys"],
                  lockout_risk=keys.lockout_risk)
    return EXIT_OK


def _b64(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise argparse.ArgumentTypeError("must be base64 (URL-safe)") from None


async def passkey_import_u2f(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    device, listing = await c.admin.import_u2f(a.username, key_handle=a.key_handle, public_key=a.public_key,
                                               app_id=a.app_id, counter=a.counter, name=a.name)
    out.emit({"device": device, "devices": listing},
             [f"{a.username}: U2F key {device.id} imported ({device.name})", *_device_lines(listing)])
    return EXIT_OK


async def policy_get(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    policy = await c.admin.get_policy()
    out.emit(policy, _policy_lines(policy))
    return EXIT_OK


async def policy_set(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    changes = {name: getattr(a, name) for name in ("mfa_required", "allowed_methods", "self_service",
                                                    "remember_device", "remember_days", "sensitive_reauth_seconds",
                                                    "require_backup_method", "enrolment_proof", "email_recovery",
                                                    "roles_need_passkey", "approval_hold", "approval_with_totp",
                                                    "approval_email_notice")}
    if all(v is None for v in changes.values()):
        raise UsageError("policy set: give at least one setting to change (see mfactl policy set --help)")
    if changes["mfa_required"] is not None:
        changes["mfa_required"] = t.MfaRequired(changes["mfa_required"])
    if changes["enrolment_proof"] is not None:
        changes["enrolment_proof"] = t.EnrolmentProof(changes["enrolment_proof"])
    policy = await c.admin.set_policy(**changes)
    out.emit(policy, _policy_lines(policy))
    return EXIT_OK


def _rule_lines(position: int, r: t.PolicyRule) -> list[str]:
    def value(v: object) -> str:
        if v is None:
            return "(global)"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, tuple):
            return ",".join(str(getattr(x, "value", x)) for x in v) or "-"
        return str(getattr(v, "value", v))

    return [f"name:            {r.name}", f"position:        {position}",
            f"groups:          {','.join(r.groups) or '(any)'}", f"clients:         {','.join(r.clients) or '(any)'}",
            f"mfa_required:    {value(r.mfa_required)}", f"allowed_methods: {value(r.allowed_methods)}",
            f"remember_device: {value(r.remember_device)}", f"remember_days:   {value(r.remember_days)}"]


def _rules_table(rules: Sequence[t.PolicyRule]) -> list[str]:
    def opt(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, tuple):
            return ",".join(m.value for m in v)
        return str(getattr(v, "value", v))

    if not rules:
        return ["no rules: the global policy applies to every sign-in"]
    return _table(("POS", "NAME", "GROUPS", "CLIENTS", "MFA", "METHODS", "REMEMBER", "DAYS"),
                  [(str(i), r.name, ",".join(r.groups) or "*", ",".join(r.clients) or "*", opt(r.mfa_required),
                    opt(r.allowed_methods), opt(r.remember_device), opt(r.remember_days))
                   for i, r in enumerate(rules)])


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


_RULE_SETTINGS = ("mfa_required", "allowed_methods", "remember_device", "remember_days")


def _rule_settings(a: argparse.Namespace) -> dict[str, Any]:
    found = {name: getattr(a, name) for name in _RULE_SETTINGS if getattr(a, name) is not None}
    if "mfa_required" in found:
        found["mfa_required"] = t.MfaRequired(found["mfa_required"])
    return found


async def policy_rule_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    rules = await c.admin.list_policy_rules()
    out.emit_list(rules, _rules_table(rules))
    return EXIT_OK


async def policy_rule_show(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    position, rule = await c.admin.get_policy_rule(a.name)
    out.emit({"position": position, "rule": rule}, _rule_lines(position, rule))
    return EXIT_OK


async def policy_rule_add(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    settings = _rule_settings(a)
    if not settings:
        raise UsageError("policy rule add: give at least one setting (--mfa-required, --allowed-methods, "
                         "--remember-device, --remember-days)")
    if "allowed_methods" in settings:
        settings["allowed_methods"] = tuple(settings["allowed_methods"])
    rule = t.PolicyRule(name=a.name, groups=tuple(a.groups or ()), clients=tuple(a.clients or ()), **settings)
    rules = await c.admin.add_policy_rule(rule, position=a.position)
    out.emit_list(rules, _rules_table(rules))
    return EXIT_OK


async def policy_rule_update(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    settings = _rule_settings(a)
    inherit = [n.replace("-", "_") for n in a.inherit or ()]
    if not settings and not inherit and a.groups is None and a.clients is None:
        raise UsageError("policy rule update: give at least one change (see mfactl policy rule update --help)")
    rules = await c.admin.update_policy_rule(a.name, groups=a.groups, clients=a.clients, inherit=inherit, **settings)
    out.emit_list(rules, _rules_table(rules))
    return EXIT_OK


async def policy_rule_move(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    rules = await c.admin.move_policy_rule(a.name, a.position)
    out.emit_list(rules, _rules_table(rules))
    return EXIT_OK


async def policy_rule_remove(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    rules = await c.admin.delete_policy_rule(a.name)
    out.emit_list(rules, _rules_table(rules))
    return EXIT_OK


async def verify(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    outcome = await c.auth.verify_code(a.username, a.code, client=t.ClientInfo(ip=a.client_ip or ""))
    out.emit({"username": a.username, "outcome": outcome}, str(outcome))
    return EXIT_OK if outcome is t.VerifyOutcome.ACCEPTED else EXIT_FAILED


async def remembered_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    items = await c.admin.list_remembered(a.username)
    out.emit_list(items, _remembered_lines(items))
    return EXIT_OK


async def remembered_revoke(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    if bool(a.id) == bool(a.all):
        raise UsageError("remembered revoke: give one ID or --all")
    count = await c.admin.revoke_remembered(a.username, a.id or "", all=a.all)
    out.emit({"username": a.username, "revoked": count}, f"{a.username}: {count} remembered device(s) revoked")
    return EXIT_OK


async def audit_tail(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    filters = {"username": a.user or "", "event": a.event or "", "outcome": a.outcome or "", "since": a.since}
    page = await c.admin.query_audit(page_size=a.lines, page_token=a.page_token or "", **filters)
    events = list(reversed(page.events))
    if not a.follow:
        out.emit_list(events, [_audit_line(e) for e in events] or ["no audit events"],
                      next_page_token=page.next_page_token)
        return EXIT_OK
    for e in events:
        out.emit(e, _audit_line(e))
    last = max((int(e.id) for e in events), default=0)
    try:
        while True:
            await asyncio.sleep(a.interval)
            fresh: list[t.AuditEvent] = []
            token = ""
            while True:  # page back until the last event already shown
                page = await c.admin.query_audit(page_size=100, page_token=token, **filters)
                newer = [e for e in page.events if int(e.id) > last]
                fresh.extend(newer)
                token = page.next_page_token
                if not token or len(newer) < len(page.events):
                    break
            for e in sorted(fresh, key=lambda e: int(e.id)):
                out.emit(e, _audit_line(e))
                last = max(last, int(e.id))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_OK


async def lockout_show(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    lock = await c.admin.get_lockout(a.username)
    out.emit(lock, _lockout_lines(lock))
    return EXIT_OK


async def recovery_status(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    status = await c.admin.recovery_status(a.username)
    if status.codes_left == 0:
        lines = [f"{a.username}: no recovery codes"]
    else:
        lines = [f"{a.username}: {status.codes_left} recovery code(s) left",
                 f"generated: {_when(status.created_at)}", f"last used: {_when(status.last_used_at)}"]
    out.emit(status, lines)
    return EXIT_OK


async def enrolment_code_issue(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    issued = await c.admin.issue_enrolment_code(a.username, a.hours)
    lines = [f"enrolment code for {a.username}: {issued.code}", f"valid until: {_when(issued.expires_at)}",
             "single use; shown only now." + (" The older unused code no longer works." if issued.replaced else "")]
    out.emit(issued, lines)
    return EXIT_OK


async def lockout_reset(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    lock = await c.admin.reset_lockout(a.username)
    out.emit(lock, [f"{a.username}: lock-out reset", *_lockout_lines(lock)])
    return EXIT_OK


async def token_create(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    expires_at = datetime.now(UTC) + timedelta(days=a.expires_in) if a.expires_in is not None else None
    made = await c.admin.create_caller_token(a.name, t.Role(a.role), expires_at=expires_at)
    out.emit(made, made.token)
    if not out.json:
        print(f"# token {made.caller_token.name!r} (role {a.role}): shown once; store it now", file=sys.stderr)
    return EXIT_OK


async def token_list(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    tokens = await c.admin.list_caller_tokens(include_revoked=a.all)
    out.emit_list(tokens, _token_lines(tokens))
    return EXIT_OK


async def token_revoke(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    record = await c.admin.revoke_caller_token(a.name)
    out.emit(record, f"token {record.name!r} revoked")
    return EXIT_OK


class _RemoteTarget:
    """``mfactl import`` into the daemon: each record through the Admin API."""

    #: Answers that stop the whole import rather than refuse one record.
    FATAL = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED,
                       grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED})

    def __init__(self, client: MfadClient) -> None:
        self._c = client

    async def _refusing(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ClientError as exc:
            if exc.code in self.FATAL:
                raise
            raise importers.RecordRefused(exc.details) from None

    async def has_user(self, username: str) -> bool:
        try:
            await self._c.admin.get_user(username)
        except NotFound:
            return False
        return True

    async def create_user(self, record: importers.UserRecord) -> None:
        await self._refusing(self._c.admin.create_user(record.username, record.password))
        if record.disabled:
            await self._refusing(self._c.admin.disable_user(record.username, "imported disabled"))

    async def import_totp(self, record: importers.TotpRecord, origin: str) -> None:
        p = record.params
        await self._refusing(self._c.admin.import_totp(record.username, record.secret, digits=p.digits,
                                                       period=p.period, algorithm=p.algorithm.value,
                                                       name=record.name, origin=origin))


async def import_(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    try:
        records = importers.read_all(a.format, a.files, username=a.user, pskc_key_file=a.pskc_key_file)
    except importers.BadImportFile as exc:
        raise UsageError("import: " + "; ".join(exc.problems)) from None
    report = await importers.apply(records, _RemoteTarget(c), origin=a.format, create_users=a.create_users)
    out.emit({"users_created": report.users_created, "devices_imported": report.devices_imported,
              "failed": report.failed}, list(importers.summary(report)))
    return EXIT_FAILED if report.failed else EXIT_OK


async def export(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    """Users and their devices' metadata — never a secret (they stay sealed in mfad)."""
    users: list[t.User] = []
    token = ""
    while True:
        page = await c.admin.list_users(page_size=500, page_token=token)
        users.extend(page.users)
        token = page.next_page_token
        if not token:
            break
    if a.format == "csv":  # what ``mfactl import csv`` reads back
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["username", "disabled"])
        writer.writerows([u.username, str(u.disabled).lower()] for u in users)
        document = buffer.getvalue()
    else:
        listed = [{"user": u, "devices": (await c.admin.list_devices(u.username)).devices} for u in users]
        document = json.dumps(t.to_json({"users": listed}), ensure_ascii=False, indent=1) + "\n"
    if a.output:
        _write_private(Path(a.output), document.encode())
        out.emit({"output": a.output, "users": len(users)}, f"{len(users)} user(s) exported to {a.output}")
    else:
        print(document, end="")
    return EXIT_OK


# --- shell completion --------------------------------------------------------------------------
def _completion_table(parser: argparse.ArgumentParser, key: str, table: dict[str, list[str]],
                      takes_value: set[str]) -> None:
    """``"group command"`` → the words that may follow (sub-commands and options)."""
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                _completion_table(sub, f"{key} {name}".strip(), table, takes_value)
        elif action.option_strings:
            words += [o for o in action.option_strings if o.startswith("--")]
            if action.nargs != 0:
                takes_value.update(action.option_strings)
        elif action.choices:  # a positional with fixed values (``completion bash|zsh``)
            words += [str(choice) for choice in action.choices]
    table[key] = words


def completion_script(shell: str) -> str:
    """Completes groups, commands and options (bash; zsh through its bashcompinit)."""
    table: dict[str, list[str]] = {}
    takes_value: set[str] = set()
    _completion_table(build_parser(), "", table, takes_value)
    known = "|".join(sorted(table))
    cases = "\n".join(f'        "{key}") words="{" ".join(words)}" ;;' for key, words in sorted(table.items()))
    script = f"""# mfactl completion ({shell}): eval "$(mfactl completion {shell})"
_mfactl() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} key="" skip="" w words i
    local known="|{known}|"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        if [ -n "$skip" ]; then skip=""; continue; fi
        case "$w" in
            {"|".join(sorted(takes_value))}) skip=1 ;;
            -*) ;;
            *) [[ "$known" == *"|${{key:+$key }}$w|"* ]] && key="${{key:+$key }}$w" ;;
        esac
    done
    case "$key" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _mfactl mfactl
"""
    return ("autoload -U +X bashcompinit && bashcompinit\n" + script) if shell == "zsh" else script


async def completion(c: MfadClient, a: argparse.Namespace, out: Output) -> int:
    print(completion_script(a.shell), end="")
    return EXIT_OK


# --- the command line --------------------------------------------------------------------------
def _connection_options(cls: type[P], *, documented: bool = True) -> P:
    """Accepted before the group and after the command alike (hence SUPPRESS: no default clobbers).
    Documented once, in ``mfactl --help``; the commands accept them without listing them."""
    p = cls(add_help=False)
    s = argparse.SUPPRESS

    def doc(text: str) -> str:
        return text if documented else argparse.SUPPRESS

    p.add_argument("--addr", default=s, metavar="HOST:PORT",
                   help=doc(f"mfad's gRPC address (default: $MFAD_ADDR, else {DEFAULT_ADDRESS})"))
    p.add_argument("--token-file", default=s, metavar="FILE",
                   help=doc("read the caller token from FILE (default: $MFAD_TOKEN)"))
    p.add_argument("--tls-ca", default=s, metavar="FILE", help=doc("CA certificates to verify mfad with (enables TLS)"))
    p.add_argument("--tls-cert", default=s, metavar="FILE", help=doc("client certificate for mTLS (enables TLS)"))
    p.add_argument("--tls-key", default=s, metavar="FILE", help=doc("client certificate's private key"))
    p.add_argument("--tls-server-name", default=s, metavar="NAME",
                   help=doc("expect this name in mfad's certificate instead of the address's host"))
    p.add_argument("--timeout", type=float, default=s, metavar="SECONDS",
                   help=doc(f"deadline of each call (default {DEFAULT_TIMEOUT:g})"))
    p.add_argument("--json", action="store_true", default=s, help=doc("print JSON for scripts"))
    return p


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """The command line; ``json_errors``: usage errors as ``{"error": ...}`` like every other error."""

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if not json_errors:
                super().error(message)
            print(json.dumps({"error": {"code": "USAGE", "message": f"{self.prog}: {message}"}}), file=sys.stderr)
            raise SystemExit(EXIT_USAGE)

    parser = Parser(prog="mfactl", parents=[_connection_options(Parser)],
                                     description="Administer a running mfad over gRPC.",
                                     epilog="The options above are accepted after any command too. "
                                            "Exit codes: 0 ok, 1 refused or failed, 2 usage or configuration error.")
    common = _connection_options(Parser, documented=False)
    parser.add_argument("--version", action="version", version=f"mfactl {mfad.__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")

    def group(name: str, help: str) -> Any:
        return groups.add_parser(name, help=help, parents=[common]).add_subparsers(
            dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, parents=[common],
                                                       epilog="Global options (--addr, --json, TLS, ...): mfactl --help")
        p.set_defaults(handler=handler)
        return p

    users = group("user", "end users")
    p = command(users, "create", user_create, "create a user")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input (without it: no local password)")
    p = command(users, "list", user_list, "list users")
    p.add_argument("--prefix", help="only usernames starting with this")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many (default 10000)")
    p.add_argument("--page-token", metavar="TOKEN", help="continue after a listing cut by --limit (its next_page_token)")
    command(users, "show", user_show, "a user with devices and lock-out state").add_argument("username")
    p = command(users, "prune", user_prune, "users provisioned from a directory that it no longer knows")
    p.add_argument("--directory", dest="directory_name", nargs="?", const="", required=True, metavar="NAME",
                   help="the directory to check (without NAME: every LDAP directory)")
    p.add_argument("--disable", action="store_true", help="disable the users found (default: only list them)")
    for name, handler, text in (("disable", user_disable, "refuse every sign-in of a user"),
                                ("enable", user_enable, "let a disabled user sign in again")):
        p = command(users, name, handler, text)
        p.add_argument("username")
        p.add_argument("--reason", help="why, for the audit log")
    p = command(users, "delete", user_delete, "delete a user with their devices and sessions (audit rows stay)")
    p.add_argument("username")
    p.add_argument("--yes", action="store_true", help="really delete (required: there is no undo)")
    p.add_argument("--reason", help="why, for the audit log")
    p = command(users, "role", user_role, "give a user a console role (admin, helpdesk, auditor) or take it (none)")
    p.add_argument("username")
    p.add_argument("role", choices=[*(r.value for r in t.StaffRole), "none"])
    p = command(users, "set-password", user_set_password, "set a user's password (revokes remembered devices)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    devices = group("device", "a user's MFA devices")
    command(devices, "list", device_list, "a user's devices and lock-out risk").add_argument("username")
    p = command(devices, "unbind", device_unbind, "remove a device (the lost-device path)")
    p.add_argument("username")
    p.add_argument("device_id")
    p.add_argument("--reason", help="why, for the audit log (\"lost phone\")")

    totp = group("totp", "bind an authenticator app for a user")
    p = command(totp, "bind", totp_bind, "start binding: prints the key and otpauth URI")
    p.add_argument("username")
    p.add_argument("--name", default=DEFAULT_TOTP_NAME, help=f"a name for the device (default: {DEFAULT_TOTP_NAME})")
    p.add_argument("--qr-png", metavar="FILE", help="write the QR code as PNG")
    p.add_argument("--qr-svg", metavar="FILE", help="write the QR code as SVG")
    p.add_argument("--qr", action="store_true", help="draw the QR code in the terminal")
    p = command(totp, "confirm", totp_confirm, "activate the device with a code from the app")
    p.add_argument("username")
    p.add_argument("device_id")
    p.add_argument("code")

    email = group("email", "bind a security email for a user")
    p = command(email, "bind", email_bind, "mail a code to a new security email")
    p.add_argument("username")
    p.add_argument("address")
    p = command(email, "confirm", email_confirm, "activate the security email with the mailed code")
    p.add_argument("username")
    p.add_argument("device_id")
    p.add_argument("code")

    passkeys = group("passkey", "a user's passkeys")
    command(passkeys, "list", passkey_list, "a user's passkeys and legacy U2F keys").add_argument("username")
    p = command(passkeys, "import-u2f", passkey_import_u2f, "import a U2F registration from an older system")
    p.add_argument("username")
    p.add_argument("key_handle", type=_b64, help="the key handle, base64url")
    p.add_argument("public_key", type=_b64, help="the 65-byte uncompressed P-256 public key, base64url")
    p.add_argument("app_id", help="the AppID it was registered under (https URL)")
    p.add_argument("--counter", type=int, default=0, help="the last signature counter seen (default 0)")
    p.add_argument("--name", default="", help="a name for the key (default: U2F key)")

    policy = group("policy", "the global MFA policy")
    command(policy, "get", policy_get, "show the policy in effect")
    p = command(policy, "set", policy_set, "change some settings (the others keep their values)")
    p.add_argument("--mfa-required", choices=[m.value for m in t.MfaRequired],
                   help="who must use a second factor: all users, only enrolled ones, or nobody")
    p.add_argument("--allowed-methods", type=_methods, metavar="LIST", help="comma-separated: totp,passkey,email,u2f")
    p.add_argument("--self-service", type=_bool, metavar="BOOL", help="users may manage their own devices")
    p.add_argument("--remember-device", type=_bool, metavar="BOOL",
                   help="users may tick \"remember this device\" after a second factor")
    p.add_argument("--remember-days", type=int, metavar="DAYS", help="how long a remembered device skips it (1-365)")
    p.add_argument("--sensitive-reauth-seconds", type=int, metavar="SECONDS",
                   help="how recent a second factor must be for unbinding and other sensitive operations")
    p.add_argument("--require-backup-method", type=_bool, metavar="BOOL",
                   help="users must bind a second method type before they are done")
    p.add_argument("--enrolment-proof", choices=[m.value for m in t.EnrolmentProof],
                   help="what a user with no device presents before binding the first one: none (the password "
                        "alone), access_code (an enrolment code from an administrator; recommended) or "
                        "email_code (a code mailed to the user)")
    p.add_argument("--email-recovery", type=_bool, metavar="BOOL",
                   help="after an emergency sign-in with the security email, users may remove their lost devices "
                        "themselves (default false: an administrator removes them)")
    p.add_argument("--roles-need-passkey", type=_bool, metavar="BOOL",
                   help="console roles work only in a session signed in with a passkey, and sensitive console "
                        "changes need a passkey step-up")
    p.add_argument("--approval-hold", type=_bool, metavar="BOOL",
                   help="allow RADIUS hold mode for clients with approval_hold_seconds (docs/approval.md)")
    p.add_argument("--approval-with-totp", type=_bool, metavar="BOOL",
                   help="the Approve sign-in page may take a TOTP code instead of a passkey")
    p.add_argument("--approval-email-notice", type=_bool, metavar="BOOL",
                   help="mail users that a sign-in waits for their approval (a link only; one per 15 minutes)")

    rule = policy.add_parser("rule", help="group rules on top of the global policy (first match wins)",
                             parents=[common]).add_subparsers(dest="rule_command", required=True, metavar="COMMAND")
    command(rule, "list", policy_rule_list, "the rules in evaluation order")
    command(rule, "show", policy_rule_show, "one rule and its position").add_argument("name")

    def rule_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
        p.add_argument("--groups", type=_names, metavar="LIST",
                       help="comma-separated directory groups (compared without case; empty: any group)")
        p.add_argument("--clients", type=_names, metavar="LIST",
                       help="comma-separated RADIUS client or gRPC caller names (empty: any client)")
        p.add_argument("--mfa-required", choices=[m.value for m in t.MfaRequired], help="who must use a second factor")
        p.add_argument("--allowed-methods", type=_methods, metavar="LIST",
                       help="comma-separated: passkey,totp,email,u2f,recovery,approval")
        p.add_argument("--remember-device", type=_bool, metavar="BOOL", help="offer \"remember this device\"")
        p.add_argument("--remember-days", type=int, metavar="DAYS", help="how long a remembered device skips it (1-365)")
        if update:
            p.add_argument("--inherit", action="append", metavar="FIELD",
                           choices=[n.replace("_", "-") for n in _RULE_SETTINGS],
                           help="give this setting back to the global policy (repeatable)")

    p = command(rule, "add", policy_rule_add, "add a rule (last, or at --position)")
    p.add_argument("name")
    p.add_argument("--position", type=int, metavar="N", help="where it goes (0: evaluated first; default last)")
    rule_settings(p, update=False)
    p = command(rule, "update", policy_rule_update, "change some of a rule's settings (the others keep theirs)")
    p.add_argument("name")
    rule_settings(p, update=True)
    p = command(rule, "move", policy_rule_move, "move a rule to another position")
    p.add_argument("name")
    p.add_argument("position", type=int, help="0: evaluated first")
    command(rule, "remove", policy_rule_remove, "delete a rule").add_argument("name")

    p = command(groups, "verify", verify, "check a user's second-factor code (exit 0 accepted, 1 refused)")
    p.add_argument("username")
    p.add_argument("code")
    p.add_argument("--client-ip", help="the end user's address, for the per-source limits and the audit log")

    p = command(groups, "import", import_, "import users and TOTP secrets from another system (docs/import.md)")
    importers.add_import_arguments(p)

    p = command(groups, "export", export, "users and their devices' metadata (never secrets)")
    p.add_argument("--format", choices=["json", "csv"], default="json",
                   help="json: users with their devices; csv: username,disabled, as import csv reads it")
    p.add_argument("--output", "-o", metavar="FILE", help="write here (0600) instead of standard output")
    p = command(groups, "completion", completion, "print a shell completion script: eval \"$(mfactl completion bash)\"")
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")

    remembered = group("remembered", "a user's remembered devices")
    command(remembered, "list", remembered_list, "list them").add_argument("username")
    p = command(remembered, "revoke", remembered_revoke, "forget one (ID) or all (--all)")
    p.add_argument("username")
    p.add_argument("id", nargs="?", help="the remembered device's id (mfactl remembered list)")
    p.add_argument("--all", action="store_true", help="forget every remembered device of the user")

    audit = group("audit", "the audit log")
    p = command(audit, "tail", audit_tail, "the latest events, oldest first")
    p.add_argument("-n", "--lines", type=int, default=20, help="how many (default 20, at most 500)")
    p.add_argument("--user", help="only this user's events")
    p.add_argument("--event", help="only this event name")
    p.add_argument("--outcome", help="only this outcome")
    p.add_argument("--since", type=_time, metavar="TIME", help="only events at or after this ISO 8601 time")
    p.add_argument("--page-token", metavar="TOKEN", help="the events before an earlier answer (its next_page_token)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow")

    lockout = group("lockout", "failure counters and lock-outs")
    command(lockout, "show", lockout_show, "a user's lock-out state").add_argument("username")
    command(lockout, "reset", lockout_reset, "clear a user's lock-out").add_argument("username")
    codes = group("recovery", "users' recovery codes")
    command(codes, "status", recovery_status, "how many recovery codes a user has left").add_argument("username")
    enrolment = group("enrolment-code", "one-time enrolment codes (a temporary access pass)")
    p = command(enrolment, "issue", enrolment_code_issue,
                "issue a code a user with no device presents before binding one (printed once)")
    p.add_argument("username")
    p.add_argument("--hours", type=int, default=24, metavar="N", help="how long it is valid (1-720, default 24)")

    tokens = group("token", "gRPC caller tokens")
    p = command(tokens, "create", token_create, "create a token (printed once)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.value for r in t.Role],
                   help="what the caller may call (docs/grpc.md)")
    p.add_argument("--expires-in", type=int, metavar="DAYS",
                   help="the token stops working after this many days (default: never)")
    command(tokens, "list", token_list, "list tokens (never their secrets)").add_argument(
        "--all", action="store_true", help="include revoked tokens")
    command(tokens, "revoke", token_revoke, "revoke a token by name").add_argument("name")
    return parser


def _client(a: argparse.Namespace, env: dict[str, str]) -> MfadClient:
    token_file = getattr(a, "token_file", None)
    if token_file:
        try:
            token: str | None = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file: cannot read {token_file}: {exc}") from None
    else:
        token = env.get("MFAD_TOKEN") or None
        if "MFAD_TOKEN" in env and token is None:
            # export MFAD_TOKEN=$(mfad token create ...) leaves it empty when the command failed
            raise UsageError("MFAD_TOKEN is set but empty: did 'mfad token create' fail (a name already "
                             "taken, say)? Unset it or give it a token")
    files = {k: getattr(a, f"tls_{k}", None) or env.get(f"MFAD_TLS_{k.upper()}") for k in ("ca", "cert", "key")}
    server_name = getattr(a, "tls_server_name", None) or env.get("MFAD_TLS_SERVER_NAME") or None
    tls = None
    if any(files.values()):
        if bool(files["cert"]) != bool(files["key"]):
            raise UsageError("--tls-cert and --tls-key go together")
        tls = TlsFiles(ca=_file(files["ca"], "--tls-ca"), cert=_file(files["cert"], "--tls-cert"),
                       key=_file(files["key"], "--tls-key"), server_name=server_name)
        try:
            tls.credentials()
        except (OSError, ValueError) as exc:
            raise UsageError(f"TLS: {exc}") from None
    address = getattr(a, "addr", None) or env.get("MFAD_ADDR") or DEFAULT_ADDRESS
    return MfadClient(address, token=token, tls=tls, timeout=getattr(a, "timeout", None) or DEFAULT_TIMEOUT)


def _file(value: str | None, flag: str) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"{flag}: no such file: {value}")
    return path


def _fail(out: Output, code: str, message: str, status: int) -> int:
    if out.json:
        print(json.dumps({"error": {"code": code, "message": message}}), file=sys.stderr)
    else:
        print(f"mfactl: {message}", file=sys.stderr)
    return status


async def _run(a: argparse.Namespace, out: Output) -> int:
    client = _client(a, dict(os.environ))
    try:
        handler: Handler = a.handler
        return await handler(client, a, out)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `mfactl ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(json_errors="--json" in args)
    try:
        a = parser.parse_args(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    out = Output(bool(getattr(a, "json", False)))
    try:
        return asyncio.run(_run(a, out))
    except UsageError as exc:
        return _fail(out, "USAGE", str(exc), EXIT_USAGE)
    except ClientError as exc:
        status = EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILED
        message = exc.details
        if exc.code is grpc.StatusCode.UNIMPLEMENTED:
            message = f"{a.group} {getattr(a, 'command', '')}: this mfad does not offer it yet ({exc.details})"
        elif exc.code is grpc.StatusCode.UNAVAILABLE:
            address = getattr(a, "addr", None) or os.environ.get("MFAD_ADDR") or DEFAULT_ADDRESS
            message = f"cannot reach mfad at {address} or its store ({exc.details}); mfad's gRPC address " \
                      "comes from --addr or MFAD_ADDR"
        return _fail(out, exc.code.name, f"{exc.code.name}: {message}" if not out.json else message, status)
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:  # output larger than the pipe's buffer fails here, not at the flush: main() says nothing
        raise
    except OSError as exc:  # writing a QR file, reading stdin
        return _fail(out, "OS_ERROR", str(exc), EXIT_FAILED)


if __name__ == "__main__":
    raise SystemExit(main())
