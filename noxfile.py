"""Sessions: tests, lint, demo, bench. `python3 -m pip install nox && nox -s tests` needs nothing else."""

from __future__ import annotations

import glob
import json
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


DEMO_DATA = "dataset/synthetic-dogs"
DEMO_HOME = ".dogbreed-demo"


@nox.session
def demo(session: nox.Session) -> None:
    """The main job, offline, on a built-in SYNTHETIC dataset: train, upload, predict, view, stats."""
    _install(session)
    env = {"DOGBREED_HOME": os.path.abspath(DEMO_HOME), "DOGBREED_CHECKPOINTS": os.path.abspath("checkpoints")}

    def dogbreed(*args: str, silent: bool = False) -> str:
        return session.run("dogbreed", *args, env=env, silent=silent) or ""

    if not os.path.isdir(os.path.join(DEMO_DATA, "Images")):
        dogbreed("dataset", "synthetic", "--dataset", DEMO_DATA, "--breeds", "6", "--per-class", "40")
    dogbreed("dataset", "info", "--dataset", DEMO_DATA)
    dogbreed(
        "train",
        "--dataset",
        DEMO_DATA,
        "--model",
        "ResNet",
        "--no-pretrained",
        "--finetune",  # from scratch, the whole network: a head on a frozen random backbone would learn nothing
        "--image-size",
        "64",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--loader-workers",
        "0",
        "--name",
        "demo",
    )
    # a model trained on synthetic data never answers for photos by default: the demo pins its run on purpose
    run = json.loads(dogbreed("stats", "--json", silent=True))["runs"][0]["id"]
    dogbreed("models", "--default", f"run:{run}")
    dogbreed("upload", *sorted(glob.glob(f"{DEMO_DATA}/Images/*/*_0000[0-1].jpg")), "--label-from-folder")
    dogbreed("predict", "--pending")
    dogbreed("list", "--limit", "12")
    dogbreed("view", "1", "--output", f"{DEMO_HOME}/view-1.png")
    dogbreed("eval", "--plot", f"{DEMO_HOME}/confusion.png")
    dogbreed("stats")
    dogbreed("stats", "--plot", f"{DEMO_HOME}/curves.png")
    session.log(
        f"figures: {DEMO_HOME}/view-1.png, {DEMO_HOME}/curves.png, {DEMO_HOME}/confusion.png; "
        f"store: {DEMO_HOME}/dogbreed.db"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: every figure a rate or a ratio against a baseline measured in the same run."""
    _install(session)
    session.run("python", "bench/run.py", *session.posargs)
