"""The background prediction worker: ``python -m dogbreed.worker --db DB --source JSON ...``.

``dogbreed predict --background`` queues the jobs and starts this detached process, which runs the model's queued
jobs and exits. A model that cannot be loaded fails its jobs with the reason instead of leaving them queued.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dogbreed import predict
from dogbreed.engines import Choice
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource
from dogbreed.pause import pause_point


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

    from dogbreed.procs import stop_exit_code, stop_on_signals, stop_signal_name

    stop_on_signals()
    source = ModelSource.from_json(args.source)
    held: dict[str, predict.PredictOutcome] = {}  # the run's outcome so far, for the line a signal ends it with
    try:
        outcome = _run(args, source, held)
    except DogbreedError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # SIGTERM (a shutdown), SIGHUP: the jobs in flight were handed back to the queue
        outcome = held.get("outcome")
        done = f" after {outcome.done} predicted, {outcome.failed} failed" if outcome else ""
        print(
            f"stopped ({stop_signal_name()}){done}; the rest stay queued: "
            f"'dogbreed predict --pending {source.as_options()}' finishes them",
            flush=True,
        )
        return stop_exit_code()
    print(f"{outcome.done} predicted, {outcome.failed} failed", flush=True)
    return 0


def _run(args: argparse.Namespace, source: ModelSource, held: dict) -> predict.PredictOutcome:
    """Load the model and run this model's queued jobs; a model that cannot be loaded fails them, saying why."""
    from dogbreed.store import jobs, open_store

    choice = Choice(args.engine, args.precision, args.device, "background worker")
    conn = open_store(args.db)
    outcome = held["outcome"] = predict.PredictOutcome(source, choice, job_ids=jobs.queued_ids(conn, source.key))
    request = predict.PredictRequest(batch_size=args.batch_size, workers=args.workers, threads=args.threads)
    print(f"{len(outcome.job_ids)} queued job(s) for {source.name}", flush=True)
    pause_point()  # tests only (DOGBREED_PAUSE_WHILE): its queue is read, the model not loaded yet
    try:
        engine = predict._preload(source, choice)
    except DogbreedError as exc:  # a model that cannot be built: its jobs would otherwise wait forever
        jobs.fail(conn, outcome.job_ids, f"the model could not be loaded: {exc}")
        raise
    predict.run_jobs(conn, args.db, source, choice, outcome, request, engine)
    return outcome

if __name__ == "__main__":
    sys.exit(main())
