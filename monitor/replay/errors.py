"""Errors of the replay tool.

RiskwireError (monitor/errors.py)
 └── ReplayError   a replay cannot start or go on (bad range, missing extra, unknown format)
"""

from __future__ import annotations

from monitor.errors import RiskwireError


class ReplayError(RiskwireError):
    """A replay cannot start or go on; the message says what and where."""
