"""Config section `alerts:` of the daemon's YAML file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
