"""Settings of the PIM emulator, with sandbox defaults. ``hub sandbox up`` overrides the
credentials with ones generated per data directory and writes them to sandbox.env as
PIM_CLIENT_ID / PIM_SECRET / PIM_USERNAME / PIM_PASSWORD."""

from __future__ import annotations

from pydantic import BaseModel, Field


def _families() -> dict[str, str]:
    # The catalogue's families (sandbox/seed/catalog.py), code -> English label.
    return {
        "software": "Software",
        "services": "Services",
        "usage": "Usage-based",
        "hardware": "Hardware",
        "consumables": "Consumables",
    }


def _attributes() -> dict[str, list[str] | None]:
    # attribute code -> allowed option codes (simple select) or None (free text)
    return {
        "name": None,
        "description": None,
        "unit": None,
        "lifecycle": ["active", "retired"],
    }


class PimSettings(BaseModel):
    """Everything the emulator needs to know; every field has a sandbox default."""

    client_id: str = "hub_sandbox_client"
    secret: str = "sandbox-secret"  # noqa: S105 - sandbox default, documented
    username: str = "hub_integration"
    password: str = "sandbox-password"  # noqa: S105 - sandbox default, documented
    token_ttl_seconds: int = Field(default=3600, ge=1)
    refresh_ttl_seconds: int = Field(default=14 * 86400, ge=1)
    page_limit_max: int = Field(default=100, ge=1)
    page_limit_default: int = Field(default=10, ge=1)
    collection_max_lines: int = Field(default=100, ge=1)
    text_max_length: int = Field(default=255, ge=1)
    families: dict[str, str] = Field(default_factory=_families)
    attributes: dict[str, list[str] | None] = Field(default_factory=_attributes)
