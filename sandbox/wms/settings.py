"""Settings of the WMS emulator, with sandbox defaults (``hub sandbox up`` replaces the API
key with one generated per data directory and writes it to sandbox.env as WMS_API_KEY)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WmsSettings(BaseModel):
    api_key: str = "wms_sandbox_key"  # sandbox default, documented; the runner generates one
    page_limit_default: int = Field(default=100, ge=1, description="page size without limit")
    page_limit_max: int = Field(default=500, ge=1, description="largest accepted limit")
    batch_max: int = Field(default=500, ge=1, description="records per batchUpsert")
    ref_filter_max: int = Field(
        default=100, ge=1, description="values in one external_ref filter (URL length)"
    )
    idempotency_ttl_seconds: int = Field(
        default=86_400, ge=1, description="how long an Idempotency-Key's answer is kept"
    )
