"""Live reload: SIGHUP (``systemctl reload mfad``) re-reads the configuration file.

Guarantees: the new file is loaded and validated in full before anything changes — a
file with a problem changes nothing, and each problem is logged with its key. What can
change under a running daemon is then applied between two packets, never dropping a
request in flight (a request being decided finishes with the settings it started with):
the RADIUS clients and their secrets (``[[radius.clients]]`` over UDP), the log level and
format (``[logging]``), the mail server (``[smtp]`` host, port, security, CA,
credentials, sender), and gRPC's certificate renewed in place (for new connections).
Every TLS file of the new configuration passes the pre-flight's checks first (loads, its key
matches, not expired). Every other changed key is named in one WARNING line as needing a
restart, and keeps its running value. ``[policy]`` holds the initial values of the
policy stored in the database (``mfactl policy set`` changes it live), so a reload says
so rather than pretending to apply it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mfad.config import Config, load_config
from mfad.core.errors import ConfigError
from mfad.mail.service import RELOADABLE_KEYS as SMTP_KEYS
from mfad.mail.service import ReloadableMailer
from mfad.observability import systemd
from mfad.core import decisions
from mfad.observability.logging import setup_logging
from mfad.preflight import tls_problems

log = logging.getLogger("mfad")

Apply = Callable[[], None]
#: A part of the daemon that takes part in a reload: given the new config, (what applies
#: it — None if nothing changed for it —, the keys it saw changed but cannot apply).
Reloadable = Callable[[Config], tuple[Apply | None, list[str]]]


def changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    """``section.key`` of every field that differs between two sections."""
    return [f"{prefix}.{f.name}" for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


class Reloader:
    """A service of the daemon: waits for a reload request, reloads, waits again."""

    def __init__(self, path: Path | None, current: Config, parts: Sequence[Reloadable], *,
                 transform: Callable[[Config], Config] = lambda config: config,
                 on_reload: Callable[[str], None] = lambda result: None) -> None:
        """``on_reload("applied" | "refused")`` after each reload (the metrics)."""
        self._path = path
        self._on_reload = on_reload
        self._current = current
        self._parts = list(parts)
        self._transform = transform
        self._wanted = asyncio.Event()
        self._stop = asyncio.Event()

    def request(self) -> None:
        """The SIGHUP handler's part: called on the event loop, returns at once."""
        self._wanted.set()

    async def start(self) -> None:
        """Nothing to bind."""

    async def run(self) -> None:
        while True:
            stop = asyncio.ensure_future(self._stop.wait())
            wanted = asyncio.ensure_future(self._wanted.wait())
            await asyncio.wait({stop, wanted}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            wanted.cancel()
            if self._stop.is_set():
                return
            self._wanted.clear()
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            ok = False
            try:
                ok = self.reload()
            finally:
                self._on_reload("applied" if ok else "refused")
                systemd.notify("READY=1")

    def reload(self) -> bool:
        """Load, validate, apply what can be applied. False: refused, nothing changed."""
        source = str(self._path) if self._path is not None else "the built-in defaults"
        try:
            new = self._transform(load_config(self._path))
            expired = tls_problems(new)  # a renewed certificate that is expired or not its key's: kept out
            if expired:
                raise ConfigError(expired)
            prepared = [part(new) for part in self._parts]  # every check before the first change
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused, nothing changed: %s", problem)
            return False
        except OSError as exc:
            log.error("reload refused, nothing changed: %s", exc)
            return False
        restart = sorted({key for _, keys in prepared for key in keys} | self._unhandled(new))
        applied = 0
        for apply, _ in prepared:
            if apply is not None:
                apply()
                applied += 1
        if "policy" in {key.partition(".")[0] for key in restart}:
            log.warning("reload: [policy] holds the initial values of the stored policy only; change the live "
                        "policy with 'mfactl policy set'")
            restart = [key for key in restart if not key.startswith("policy.")]
        if restart:
            log.warning("reload: changed but needs a restart (the running values stay): %s", ", ".join(restart))
        log.info("reloaded %s: %s", source, f"{applied} part(s) applied" if applied else "nothing to apply")
        self._current = new
        return True

    def _unhandled(self, new: Config) -> set[str]:
        """Changed keys of the sections no part reloads (radius, logging and smtp have theirs)."""
        keys: set[str] = set()
        for f in dataclasses.fields(Config):
            if f.name in ("radius", "logging", "smtp"):
                continue
            old_section, new_section = getattr(self._current, f.name), getattr(new, f.name)
            if dataclasses.is_dataclass(old_section):
                keys.update(changed_keys(old_section, new_section, f.name))
            elif old_section != new_section:
                keys.add(f.name)
        return keys

    async def aclose(self) -> None:
        self._stop.set()


def logging_part(current: Config) -> Reloadable:
    state = {"logging": current.logging}

    def prepare(new: Config) -> tuple[Apply | None, list[str]]:
        if new.logging == state["logging"]:
            return None, []

        def apply() -> None:
            decisions.use_line_writer(setup_logging(new.logging.level, new.logging.format))
            state["logging"] = new.logging
            log.info("logging reloaded: level %s, format %s", new.logging.level, new.logging.format)

        return apply, []

    return prepare


def smtp_part(current: Config, mailer: ReloadableMailer) -> Reloadable:
    state = {"smtp": current.smtp}

    def prepare(new: Config) -> tuple[Apply | None, list[str]]:
        old = state["smtp"]
        changed = changed_keys(old, new.smtp, "smtp")
        restart = [key for key in changed if key.partition(".")[2] not in SMTP_KEYS]
        if len(restart) == len(changed):
            return None, restart
        smtp = dataclasses.replace(old, **{f.name: getattr(new.smtp, f.name) for f in dataclasses.fields(old)
                                          if f.name in SMTP_KEYS})
        prepared = mailer.prepare(smtp)

        def apply() -> None:
            mailer.replace(prepared)
            state["smtp"] = smtp
            log.info("mail server reloaded: %s:%d (%s)", smtp.host, smtp.port, smtp.security)

        return apply, restart

    return prepare
