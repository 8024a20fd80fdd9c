"""Fixtures for the replay tests: tiny model directories (exporters.tiny) and chosen headlines."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from exporters.tiny import build_tiny_model_dir

from .kit import Headlines, pick_headlines


@pytest.fixture(scope="session")
def replay_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_model_dir(tmp_path_factory.mktemp("replay-model") / "v1", seed=0)


@pytest.fixture(scope="session")
def replay_model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_model_dir(tmp_path_factory.mktemp("replay-model") / "v2", seed=3)


@pytest.fixture(scope="session")
def headlines(replay_model: Path) -> Headlines:
    return pick_headlines(replay_model)
