"""A sync in its own process, for the crash tests: reads the sandbox environment from a
file, syncs everything with small push batches, and prints one line per batch committed
(``tick``) so the parent can SIGKILL it at a chosen point of the work."""

import argparse
import sys
from pathlib import Path

from connectors import registry
from connectors.base import Connector
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.settings import read_env_file
from hub.store import create_store_engine
from hub.sync.engine import Counts, SyncEngine
from hub.systems import connect


def mapped_connectors(env_file: Path) -> dict[str, Connector]:
    """A connector for every configured system that has mappings."""
    env = read_env_file(env_file)
    mapped = {spec.system for spec in load_all(MAPPINGS_DIR)[0]}
    return {s: connect(s, env) for s in registry.configured_systems(env) if s in mapped}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--push-batch", type=int, default=3)
    args = parser.parse_args()
    connectors = mapped_connectors(Path(args.env_file))

    def tick(system: str, entity: str, _: Counts) -> None:
        print(f"tick {system} {entity}", flush=True)

    engine = SyncEngine(
        create_store_engine(args.store),
        connectors,
        push_batch_size=args.push_batch,
        progress=tick,
    )
    engine.run()
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
