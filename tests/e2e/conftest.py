from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..support.stack import Stack, shared_stack


@pytest.fixture(scope="session")
def e2e_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One Prometheus + Alertmanager + exporter + fleet for the alerting and dashboard tests."""
    yield from shared_stack(request.config)
