"""Peak RSS of one bulk import, in a process of its own (python -m bench.rss ...).

The workload is streamed from its generator, so what is measured is the storage path's
memory, not the benchmark's list of records.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.backends import open_fresh
from bench.measure import peak_rss_mb
from bench.workload import Workload
from polylogue.storage.repository import StorageRepository


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--postgres-url")
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args()
    workload = Workload(args.messages)
    with open_fresh(args.backend, args.workdir, args.postgres_url) as backend:
        baseline = peak_rss_mb()
        repository = StorageRepository(backend)
        start = time.perf_counter()
        if args.batch_size:
            repository.save_many(workload.bundles(), batch_size=args.batch_size)
        else:
            repository.save_many(workload.bundles())
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "peak_rss_mb": peak_rss_mb(),
                "before_import_mb": baseline,
                "messages_per_s": workload.messages / seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
