"""Fixtures for the passkey and U2F tests (the helpers are in ``relying.py``).

``wa``
    A :class:`relying.Relying` party over the shared ``store`` fixture (both engines).
``wa_factory``
    ``await wa_factory(**webauthn_settings)`` → another one with other ``[webauthn]`` values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from relying import Relying, webauthn_settings

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
        mfa = Mfa(config=cfg, store=store, keyring=keyring, clock=clock, metrics=CorePrometheusMetrics(registry))
        made.append(mfa)
        await mfa.start()
        return Relying(mfa=mfa, registry=registry, store=store, clock=clock)

    yield make
    for m in made:
        m.close()


@pytest.fixture
async def wa(wa_factory: Callable[..., Awaitable[Relying]]) -> Relying:
    return await wa_factory()
