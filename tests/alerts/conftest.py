"""Fixtures of the alerts tests (helpers live in kit.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .kit import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
