"""A reconciliation in its own process, for the crash tests: reads the sandbox environment
from a file, reconciles everything and prints one line per stage (``tick``) so the parent
can SIGKILL it at a chosen point (while staging a system, comparing, or persisting)."""

import argparse
import sys
from pathlib import Path

from connectors import registry
from hub.mapping_spec import MAPPINGS_DIR, load_all
from hub.recon.run import reconcile
from hub.settings import read_env_file
from hub.store import create_store_engine
from hub.transforms import load_code_lists


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    env = read_env_file(Path(args.env_file))
    specs, _ = load_all(MAPPINGS_DIR)
    mapped = {spec.system for spec in specs}
    connectors = {
        s: registry.build(s, env) for s in registry.configured_systems(env) if s in mapped
    }
    reconcile(
        create_store_engine(args.store),
        connectors,
        specs,
        load_code_lists(MAPPINGS_DIR),
        progress=lambda message: print(f"tick {message}", flush=True),
    )
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
