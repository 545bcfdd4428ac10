"""A sync in its own process, for the crash tests: reads the sandbox environment from a
file, syncs everything with small push batches, and prints one line per batch committed
(``tick``) so the parent can SIGKILL it at a chosen point of the work."""

import argparse
import sys
from pathlib import Path

from connectors import registry
from hub.mapping_spec import MAPPINGS_DIR, load_all
from hub.settings import read_env_file
from hub.store import create_store_engine
from hub.sync.engine import Counts, SyncEngine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--push-batch", type=int, default=3)
    args = parser.parse_args()
    env = read_env_file(Path(args.env_file))
    specs, _ = load_all(MAPPINGS_DIR)
    mapped = {spec.system for spec in specs}
    connectors = {
        s: registry.build(s, env) for s in registry.configured_systems(env) if s in mapped
    }

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
