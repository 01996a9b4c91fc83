"""``mfad``: run the daemon and its offline administration commands.

Exit codes: 0 ok, 1 refused or failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mfad
from mfad.config import Config, find_config, load_config
from mfad.core.errors import ConfigError, InvalidInput, MfadError, SchemaError, SecretsError, Unavailable
from mfad.core.model import Role
from mfad.importers import BadImportFile, add_import_arguments
from mfad.core import decisions
from mfad.observability.logging import setup_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("mfad")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="FILE", default=None,
                        help="TOML configuration file (default: $MFAD_CONFIG, else /etc/mfad/mfad.toml when it "
                             "exists, else built-in defaults with paths relative to the working directory)")
    parser = argparse.ArgumentParser(prog="mfad", description="Second-factor authentication daemon.")
    parser.add_argument("--version", action="version", version=f"mfad {mfad.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument("--workers", type=int, default=None,
                       help="RADIUS worker processes sharing the port (overrides radius.workers)")
    sub.add_parser("migrate", parents=[common], help="upgrade the database schema")
    sub.add_parser("check-config", parents=[common],
                   help="run every check 'serve' runs (store read-only, key file, files, TLS, listeners) and exit")

    token = sub.add_parser("token", help="gRPC caller tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", parents=[common], help="create a caller token (printed once)")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=[r.value for r in Role],
                        help="what the caller may call (docs/grpc.md)")
    create.add_argument("--expires-in", type=int, metavar="DAYS",
                        help="the token stops working after this many days (default: never)")
    create.add_argument("--json", action="store_true", help="print name, role, token and expiry as JSON")
    listing = token.add_parser("list", parents=[common], help="list caller tokens")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    revoke = token.add_parser("revoke", parents=[common], help="revoke a caller token by name")
    revoke.add_argument("name")

    imports = sub.add_parser("import", parents=[common], help="import users and TOTP secrets from another system "
                             "into the local store (docs/import.md)")
    add_import_arguments(imports)

    export = sub.add_parser("export", parents=[common],
                            help="export every active TOTP device's secret as an encrypted PSKC file (RFC 6030) "
                                 "from the local store (metadata only: 'mfactl export')")
    export.add_argument("--include-secrets", action="store_true", required=True,
                        help="required: says that the secrets leave mfad (each export is audited per device)")
    export.add_argument("--pskc-key-file", required=True, metavar="FILE",
                        help="the pre-shared AES-128 key, 32 hex digits in a file only its owner may read "
                             "(what 'import pskc --pskc-key-file' reads back)")
    export.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the PSKC file to write (created 0600; an existing file is not overwritten)")

    rotate = sub.add_parser("rotate-key", parents=[common],
                            help="add a new secrets key and re-encrypt every secret under it")
    rotate.add_argument("--retire", action="store_true",
                        help="afterwards remove keys that no stored secret uses any more")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = find_config(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"mfad: config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    decisions.use_line_writer(setup_logging(config.logging.level, config.logging.format))
    source = str(path) if path is not None else "built-in defaults"
    if args.command == "check-config":
        return _check_config(config, source)
    if args.command == "serve":
        return _serve(config, args.workers, path)
    handlers: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "migrate": _migrate, "rotate-key": _rotate_key, "import": _import, "export": _export}
    token_handlers = {"create": _token_create, "list": _token_list, "revoke": _token_revoke}
    handler = token_handlers[args.token_command] if args.command == "token" else handlers[args.command]
    return _run(_offline(config, source, path is not None, args, handler))


def _check_config(config: Config, source: str) -> int:
    from mfad.preflight import preflight

    report = asyncio.run(preflight(config, bind=True))
    for problem in report.problems:
        print(f"mfad: config: {problem}", file=sys.stderr)
    if report.problems:
        return EXIT_USAGE
    state = "existing database" if report.existing else "no database yet: serve creates it"
    print(f"configuration ok ({source}); store {report.store} ({state})")
    return EXIT_OK


async def _offline(config: Config, source: str, configured: bool, args: argparse.Namespace,
                   handler: Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]) -> int:
    """An offline command: say which store it works on, and run the pre-flight first, so
    that a mistyped key file or a stray working directory never makes a new store or key."""
    from mfad.preflight import preflight

    report = await preflight(config, schema=args.command != "migrate")
    print(f"mfad: store {report.store} (config: {source})", file=sys.stderr)
    if not report.existing and not configured and args.command != "migrate":
        print(f"mfad: no configuration file and no database at {report.store}: pass --config (or set "
              "MFAD_CONFIG), or run from the directory 'mfad serve' runs in", file=sys.stderr)
        return EXIT_USAGE
    if report.problems:
        raise ConfigError(report.problems)
    return await handler(config, args)


def _run(coro: Awaitable[int]) -> int:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except BadImportFile as exc:
        for problem in exc.problems:
            print(f"mfad: import: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"mfad: config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (SchemaError, SecretsError, InvalidInput) as exc:
        print(f"mfad: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as exc:
        print(f"mfad: store unavailable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MfadError as exc:
        print(f"mfad: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _serve(config: Config, workers: int | None, path: Path | None) -> int:
    from mfad.app import serve

    if workers is not None:
        if workers < 1:
            print("mfad: --workers must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        config = dataclasses.replace(config, radius=dataclasses.replace(config.radius, workers=workers))
    try:
        import uvloop
    except ImportError:
        runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    else:
        runner = uvloop.run
    if config.radius.workers > 1:
        from mfad.workers import run_workers, worker_config

        def serve_worker(cfg: Config, index: int) -> int:
            def own(new: Config) -> Config:  # a reload keeps the worker's own view, as it started
                return worker_config(dataclasses.replace(new, radius=dataclasses.replace(
                    new.radius, workers=config.radius.workers)), index)

            return _guarded(runner, serve(cfg, reuse_port=True, config_path=path, transform=own))

        return run_workers(config, serve_worker)
    return _guarded(runner, serve(config, config_path=path, transform=_keep_workers(config)))


def _keep_workers(config: Config) -> Callable[[Config], Config]:
    """A reload keeps ``--workers`` as given on the command line (not a config change)."""
    return lambda new: dataclasses.replace(new, radius=dataclasses.replace(new.radius, workers=config.radius.workers))


def _guarded(runner: Callable[[Coroutine[Any, Any, int]], int], coro: Coroutine[Any, Any, int]) -> int:
    try:
        return runner(coro)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("refusing to start: %s", problem)
        return EXIT_USAGE
    except (SchemaError, SecretsError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except Unavailable as exc:
        log.error("store unavailable at start: %s", exc)
        return EXIT_FAILED
    except (OSError, MfadError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAILED


async def _migrate(config: Config, args: argparse.Namespace) -> int:
    from mfad.store import open_store

    store = await open_store(config.storage)
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.aclose()
    print(f"schema v{version}" + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"))
    return EXIT_OK


async def _token_create(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core

    async with open_core(config) as mfa:
        expires_at = mfa.clock.now() + timedelta(days=args.expires_in) if args.expires_in is not None else None
        caller, token = await mfa.callers.create(args.name, Role(args.role), actor="cli", expires_at=expires_at)
    if args.json:
        print(json.dumps({"name": caller.name, "role": caller.role.value, "token": token,
                          "expires_at": _iso(caller.expires_at)}))
    else:
        print(token)
        print(f"# token {caller.name!r} (role {caller.role}) — shown once; store it now", file=sys.stderr)
    return EXIT_OK


async def _token_list(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core

    async with open_core(config) as mfa:
        callers = await mfa.callers.list()
        now = mfa.clock.now()
    rows = [{"name": c.name, "role": c.role.value, "created_at": c.created_at.isoformat(), "revoked": c.revoked,
             "expires_at": _iso(c.expires_at)} for c in callers]
    if args.json:  # the shape of every list mfactl prints
        print(json.dumps({"items": rows, "next_page_token": ""}))
    else:
        for c, r in zip(callers, rows):
            state = "revoked" if c.revoked else "active" if c.is_live(now) else "expired"
            print(f"{r['name']}\t{r['role']}\t{r['created_at']}\t{state}\t{r['expires_at'] or 'never'}")
    return EXIT_OK


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


async def _token_revoke(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core

    async with open_core(config) as mfa:
        await mfa.callers.revoke(args.name, actor="cli")
    return EXIT_OK


async def _import(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core
    from mfad.importers import apply_local, read_all, summary

    records = read_all(args.format, args.files, username=args.user, pskc_key_file=args.pskc_key_file)
    async with open_core(config) as mfa:
        report = await apply_local(records, mfa, origin=args.format, create_users=args.create_users, actor="cli")
    for line in summary(report):
        print(line)
    return EXIT_FAILED if report.failed else EXIT_OK


async def _export(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core
    from mfad.import_records import TotpRecord
    from mfad.importers import read_key_file
    from mfad.pskc import EXPORT_KEY_BYTES, write_pskc

    key = read_key_file(args.pskc_key_file)
    if len(key) != EXPORT_KEY_BYTES:
        raise BadImportFile([f"--pskc-key-file: the key must be {EXPORT_KEY_BYTES} bytes (32 hex digits), "
                             f"not {len(key)}"])
    try:  # created before any secret is read: never a world-readable file, never an overwrite
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"mfad: --output: cannot create {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        async with open_core(config) as mfa:
            exported = await mfa.devices.export_totp_secrets(actor="cli")
        out.write(write_pskc([TotpRecord(username=e.username, secret=e.secret, params=e.params, name=e.name)
                              for e in exported], key))
    print(f"exported {len(exported)} TOTP secret(s) to {args.output} (PSKC, AES-128-CBC under the pre-shared key)")
    return EXIT_OK


async def _rotate_key(config: Config, args: argparse.Namespace) -> int:
    from mfad.app import open_core

    async with open_core(config) as mfa:
        kid = mfa.keyring.rotate()
        count = await mfa.reencrypt_secrets()
        print(f"new key {kid}: re-encrypted {count} secret(s)")
        if args.retire:
            in_use = set(await mfa.store.count_sealed_by_kid())
            removed = mfa.keyring.retire(in_use)
            print(f"retired key(s): {', '.join(removed) or 'none'}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

