"""Model directories for the scoring tests (exporters.tiny: untrained, no torch, fast)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .kit import make_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_model(tmp_path_factory.mktemp("model") / "v1", version="1.0.0", seed=0)


@pytest.fixture(scope="session")
def tiny_model_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_model(tmp_path_factory.mktemp("model") / "v2", version="2.0.0", seed=1)
