"""WMS REST emulator: allocations (stock reservations per subscription delivery) and stock
(see docs/sandbox-wms.md)."""

from sandbox.wms.app import API, create_app
from sandbox.wms.seed import seed_records
from sandbox.wms.settings import WmsSettings

__all__ = ["API", "WmsSettings", "create_app", "seed_records"]
