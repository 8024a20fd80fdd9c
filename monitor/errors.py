"""The error tree of Riskwire. Every error the daemon raises on purpose derives from one root.

RiskwireError
 ├── ConfigError          a config file, env var or override is wrong (carries key path)
 ├── RecordError          a record could not be decoded or failed its schema check
 ├── BusError             the bus (embedded log or Kafka) failed an operation
 │    └── BusUnavailable  the bus cannot be reached at all
 ├── ModelError           a model directory is missing, corrupt or inconsistent
 └── RoleUnavailable      a role was asked for that this build does not provide
"""

from __future__ import annotations


class RiskwireError(Exception):
    """Root of every error Riskwire raises on purpose."""


class ConfigError(RiskwireError):
    """Bad configuration. ``problems`` lists every error found, each naming its key path."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


class RecordError(RiskwireError):
    """A record that cannot be decoded or does not match its schema."""


class BusError(RiskwireError):
    """A bus operation failed."""


class BusUnavailable(BusError):
    """The bus cannot be reached."""


class ModelError(RiskwireError):
    """A model directory is missing, corrupt or inconsistent."""


class RoleUnavailable(RiskwireError):
    """A role that this build does not (yet) provide."""
