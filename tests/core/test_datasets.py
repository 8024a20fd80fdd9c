"""Finding the shared datasets folder: explicit, $RISKWIRE_DATASETS, beside the checkout, or
beside the working copy a fresh clone came from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monitor.datasets import DATASETS_ENV, locate_datasets
from monitor.errors import ConfigError


def _datasets(parent: Path) -> Path:
    root = parent / "shared" / "datasets"
    (root / "financial_phrasebank").mkdir(parents=True)
    return root


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASETS_ENV, raising=False)


def test_the_folder_beside_the_checkout(tmp_path: Path) -> None:
    root = _datasets(tmp_path)
    (tmp_path / "rw").mkdir()
    assert locate_datasets(checkout=tmp_path / "rw") == root


def test_a_fresh_clone_finds_the_folder_beside_its_origin(tmp_path: Path) -> None:
    root = _datasets(tmp_path / "work")
    origin = tmp_path / "work" / "main"
    _git("init", "-q", str(origin))
    clone = tmp_path / "elsewhere" / "rw"
    _git("clone", "-q", str(origin), str(clone))
    assert locate_datasets(checkout=clone) == root


def test_the_environment_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _datasets(tmp_path)
    other = _datasets(tmp_path / "other")
    monkeypatch.setenv(DATASETS_ENV, str(other))
    (tmp_path / "rw").mkdir()
    assert locate_datasets(checkout=tmp_path / "rw") == other


def test_nothing_found_names_every_place_and_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "rw").mkdir()
    with pytest.raises(ConfigError) as info:
        locate_datasets(checkout=tmp_path / "rw")
    text = str(info.value)
    assert str(tmp_path / "shared" / "datasets") in text and "beside this checkout" in text
    assert "--datasets DIR" in text and DATASETS_ENV in text


def test_an_explicit_folder_without_phrasebank_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no financial_phrasebank/ folder"):
        locate_datasets(tmp_path)
