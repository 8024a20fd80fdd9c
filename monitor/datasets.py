"""Where the shared datasets folder is: training, evaluation and the scoring benchmark read it.

The folder sits beside the checkout (``../shared/datasets``), outside git. A fresh ``git clone``
of a working copy into another folder has no ``../shared`` of its own, so the folder beside the
checkout it was cloned from (its ``origin``, when that is a local path) is looked at next.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from monitor.errors import ConfigError

DATASETS_ENV = "RISKWIRE_DATASETS"
CHECKOUT = Path(__file__).resolve().parents[1]
MARKER = "financial_phrasebank"


def _origin_checkout(checkout: Path) -> Path | None:
    """The local working copy ``checkout`` was cloned from, if its origin is a local path."""
    try:
        url = subprocess.run(
            ["git", "-C", str(checkout), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or not Path(url).is_absolute():
        return None  # a remote URL: no shared folder to find beside it
    return Path(url)


def candidates(checkout: Path = CHECKOUT) -> Iterator[tuple[Path, str]]:
    """Places to look, in order, each with where the guess came from. Lazy: git is asked for
    the origin only when the folder is not beside the checkout."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        yield Path(env), f"${DATASETS_ENV}"
    yield checkout.parent / "shared" / "datasets", "beside this checkout"
    origin = _origin_checkout(checkout)
    if origin is not None:
        yield origin.parent / "shared" / "datasets", f"beside its origin {origin}"


def locate_datasets(explicit: str | Path | None = None, *, checkout: Path = CHECKOUT) -> Path:
    """``explicit`` if given, else the first candidate holding ``financial_phrasebank/``.

    Raises ``ConfigError`` naming every place tried and how to point at the folder.
    """
    if explicit:
        root = Path(explicit)
        if not (root / MARKER).is_dir():
            raise ConfigError([f"datasets: {root} has no {MARKER}/ folder"], "datasets")
        return root
    tried = []
    for root, why in candidates(checkout):
        if (root / MARKER).is_dir():
            return root
        tried.append((root, why))
    raise ConfigError(
        [f"datasets: no {MARKER}/ folder in {root} ({why})" for root, why in tried]
        + [f"point at the datasets folder with --datasets DIR or ${DATASETS_ENV}=DIR"],
        "datasets",
    )
