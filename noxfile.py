"""Sessions: tests, lint, demo, bench. `python3 -m pip install nox && nox -s tests` needs nothing else."""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

# The torch/torchvision pair this project is built and tested with (they install together from PyPI).
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def _install(session: nox.Session, extras: str = "") -> None:
    session.install(*TORCH)
    session.install(f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed package."""
    _install(session, "[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and import order."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", "dogbreed", "tests", "bench", "noxfile.py")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job, offline, on the built-in synthetic dataset: train, upload, predict, view, stats."""
    _install(session)
    env = {"DOGBREED_HOME": os.path.abspath(".dogbreed-demo"), "DOGBREED_CHECKPOINTS": os.path.abspath("checkpoints")}
    session.run("bash", "bench/demo.sh", *session.posargs, env=env, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: every figure a rate or a ratio against a baseline measured in the same run."""
    _install(session)
    session.run("python", "bench/run.py", *session.posargs)
