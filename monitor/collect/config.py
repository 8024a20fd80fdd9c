"""Config section `collect:` of the daemon's YAML file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CollectConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
