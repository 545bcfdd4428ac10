"""A reconciliation in its own process, for the crash tests: reads the sandbox environment
from a file, reconciles everything and prints one line per stage (``tick``) so the parent
can SIGKILL it at a chosen point (while staging a system, comparing, or persisting)."""

import argparse
import sys
from pathlib import Path

from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.mapping.transforms import load_code_lists
from hub.recon.run import reconcile
from hub.store import create_store_engine
from tests.e2e.sync_child import mapped_connectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    reconcile(
        create_store_engine(args.store),
        mapped_connectors(Path(args.env_file)),
        load_all(MAPPINGS_DIR)[0],
        load_code_lists(MAPPINGS_DIR),
        progress=lambda message: print(f"tick {message}", flush=True),
    )
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
