"""The background prediction worker: ``python -m dogbreed.worker --db DB --source JSON ...``.

``dogbreed predict --background`` queues the jobs and starts this detached process, which runs the model's queued
jobs and exits. A model that cannot be loaded fails its jobs with the reason instead of leaving them queued.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dogbreed.engines import Choice
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dogbreed.worker", description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--source", required=True, help="the model, as ModelSource JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)

    from dogbreed import predict
    from dogbreed.store import jobs, open_store

    source = ModelSource.from_json(args.source)
    choice = Choice(args.engine, args.precision, args.device, "background worker")
    conn = open_store(args.db)
    outcome = predict.PredictOutcome(source, choice, job_ids=jobs.queued_ids(conn, source.key))
    request = predict.PredictRequest(batch_size=args.batch_size, workers=args.workers, threads=args.threads)
    print(f"{len(outcome.job_ids)} queued job(s) for {source.name}", flush=True)
    try:
        engine = predict._preload(source, choice)
    except DogbreedError as exc:  # a model that cannot be built: its jobs would otherwise wait forever
        jobs.fail(conn, outcome.job_ids, f"the model could not be loaded: {exc}")
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        predict.run_jobs(conn, args.db, source, choice, outcome, request, engine)
    except DogbreedError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"{outcome.done} predicted, {outcome.failed} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
