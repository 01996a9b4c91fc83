"""Fixtures for the passkey and U2F tests (the helpers are in ``relying.py``).

``wa``
    A :class:`relying.Relying` party over the shared ``store`` fixture (both engines).
``wa_factory``
    ``await wa_factory(**webauthn_settings)`` → another one with other ``[webauthn]`` values.
``wa_grpc``
    ``wa`` behind the real gRPC servicers on loopback: a :class:`relying.GrpcRelying`
    with typed clients (``admin``, ``portal``, ``service``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from relying import GrpcRelying, Relying, serve_grpc, webauthn_settings


from mfad.core.clock import FixedClock
from mfad.core.keyring import Keyring
from mfad.core.ports import Store
from mfad.core.service import Mfa
from mfad.observability.metrics import CorePrometheusMetrics


@pytest.fixture
async def wa_factory(store: Store, keyring: Keyring, clock: FixedClock,
                     config: Any) -> AsyncIterator[Callable[..., Awaitable[Relying]]]:
    made: list[Mfa] = []

    async def make(**webauthn: Any) -> Relying:
        registry = CollectorRegistry()
        cfg = dataclasses.replace(config, webauthn=webauthn_settings(**webauthn))
        mfa = Mfa(settings=cfg.core, store=store, keyring=keyring, clock=clock, metrics=CorePrometheusMetrics(registry))
        made.append(mfa)
        await mfa.start()
        return Relying(mfa=mfa, registry=registry, store=store, clock=clock)

    yield make
    for m in made:
        m.close()


@pytest.fixture
async def wa(wa_factory: Callable[..., Awaitable[Relying]]) -> Relying:
    return await wa_factory()


@pytest.fixture
async def wa_grpc(wa: Relying, config: Any) -> AsyncIterator[GrpcRelying]:
    """``wa`` served over the real gRPC front end on 127.0.0.1:0, with clients per role."""
    server, running = await serve_grpc(wa, config)
    yield running
    await running.close()
    await server.aclose()
