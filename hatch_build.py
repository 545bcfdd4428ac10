"""Hatch build hook: generate the Salesforce Pub/Sub gRPC stubs before packaging.

The stubs are not in git (``.gitignore``), so the wheel build generates them from the
vendored proto with the grpcio-tools pinned in ``[build-system] requires`` and ships them as
artifacts. ``scripts/bootstrap.sh`` does the same for a development checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

GENERATOR = Path(__file__).parent / "connectors" / "salesforce_pubsub" / "generate.py"


class PubSubStubsHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        spec = importlib.util.spec_from_file_location("pubsub_generate", GENERATOR)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for path in module.generate():
            build_data["artifacts"].append(str(Path(path).relative_to(Path(self.root))))
