"""``mfad-portal --config portal.toml``: the portal alone, on a web host of its own.

The file holds one ``[portal]`` table (docs/configuration.md): ``daemon_address`` and the
TLS files to reach mfad, the ``token_file`` with a caller token of role ``portal``
(``mfad token create portal-web --role portal``), ``listen``, ``public_url`` and
``trusted_proxies``. Metrics are served on the portal's own ``/metrics``.
Exit codes: 0 stopped on SIGTERM/SIGINT, 1 failed, 2 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from mfad.config import PortalSettings, load_portal_config
from mfad.core.errors import ConfigError
from mfad.preflight import portal_tls_problems
from mfad_client import MfadClient, TlsFiles
from mfad_portal.service import PortalService

log = logging.getLogger("mfad.portal")


def client_for(p: PortalSettings) -> MfadClient:
    token = Path(p.token_file).read_text(encoding="utf-8").strip()
    tls = None
    if p.daemon_ca or p.daemon_cert:
        tls = TlsFiles(ca=Path(p.daemon_ca) if p.daemon_ca else None,
                       cert=Path(p.daemon_cert) if p.daemon_cert else None,
                       key=Path(p.daemon_key) if p.daemon_key else None, server_name=p.daemon_server_name)
    assert p.daemon_address is not None  # required by load_portal_config
    return MfadClient(p.daemon_address, token=token, tls=tls, timeout=p.daemon_timeout_seconds)


async def serve(p: PortalSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = PortalService(client_for(p), p, CollectorRegistry(), serve_metrics=True, close_client=True)
    await service.start()
    task = asyncio.create_task(service.run())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    await service.aclose()
    waiter.cancel()
    await task
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfad-portal", description="mfad's self-service portal, alone")
    parser.add_argument("--config", required=True, help="a TOML file with a [portal] table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_portal_config(args.config)
        problems = portal_tls_problems(settings)  # what mfad's pre-flight checks of these files
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"mfad-portal: config: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(settings))
    except OSError as exc:
        print(f"mfad-portal: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
