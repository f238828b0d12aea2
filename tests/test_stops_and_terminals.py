"""Messages that must not lie and signals other than one Ctrl-C (issue 22).

- A terminal that cannot encode a name (``PYTHONIOENCODING=ascii``, a C locale) gets the name escaped; the work
  (uploads, predictions) is stored and the exit code says so.
- SIGTERM (timeout, systemd, docker stop) and SIGHUP (a closed terminal) stop predict and upload as Ctrl-C does:
  the work in flight handed back, one line saying what is stored and what finishes the rest, exit 128 + the
  signal, no traceback and no resource-tracker warning; Ctrl-C pressed three times prints nothing more.

Every run is held at a pause point (``dogbreed/pause.py``: predict after recording a batch, upload after storing
one) while the signal is sent, so it is certainly mid-run.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_checkpoint
from tests.images import jpeg_bytes, write
from tests.pausing import Gate

NAMES = ("chien_é_ü.jpg", "犬-Ζ.jpg", "plain.jpg")
NOISE = ("Traceback", "Exception ignored", "KeyboardInterrupt", "leaked semaphore", "resource_tracker")


@pytest.fixture
def gate(tmp_path):
    held = Gate(tmp_path)
    yield held
    held.close()


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory) -> Path:
    """Inputs of 192 px: each batch takes long enough that a run has batches in flight when it is stopped."""
    return make_checkpoint(tmp_path_factory.mktemp("slow") / "slow.pt", image_size=192)


def dogbreed_cmd(db: Path, *args) -> list[str]:
    return [sys.executable, "-m", "dogbreed", "--db", str(db), *map(str, args)]


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    """This environment without locale or Python I/O settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    return {**env, "DOGBREED_HOME": str(home), **settings}


def quiet(output: str) -> None:
    for noise in NOISE:
        assert noise not in output, output


def statuses(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    finally:
        conn.close()


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------- terminals that cannot encode a name

TERMINALS = {
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
    "LC_ALL=C": {"LC_ALL": "C"},  # Python 3.7+ switches to UTF-8 mode here (PEP 540): must work all the same
    "LC_ALL=C PYTHONUTF8=0": {"LC_ALL": "C", "PYTHONUTF8": "0"},  # a C locale Python honours: ASCII I/O and names
}


@pytest.mark.parametrize("terminal", TERMINALS)
def test_names_a_terminal_cannot_encode_are_escaped_and_the_work_is_reported_as_done(
    home, tmp_path, checkpoint, terminal
):
    db = home / "dogbreed.db"
    env = clean_env(home, **TERMINALS[terminal])
    folder = tmp_path / "pictures"
    for i, name in enumerate(NAMES):
        write(folder / name, jpeg_bytes(seed=70 + i))

    def run(*args) -> subprocess.CompletedProcess:
        proc = subprocess.run(dogbreed_cmd(db, *args), capture_output=True, env=env, timeout=300)
        text = (proc.stdout + proc.stderr).decode("ascii", "replace")
        quiet(text)
        assert "not valid UTF-8" not in text and "Error" not in text, text
        assert proc.returncode == 0, text
        return proc

    uploaded = run("upload", folder)
    assert uploaded.stdout.count(b"new ") == 3 and b"3 new, 0 duplicate, 0 refused" in uploaded.stdout
    assert count(db, "images") == 3
    stored = {r[0] for r in sqlite3.connect(db).execute("SELECT filename FROM images")}
    assert stored == set(NAMES)  # kept as the real names, in UTF-8, whatever the terminal
    listed = run("list").stdout
    shown = run("show", 1).stdout
    predicted = run("predict", "--all", "-c", checkpoint).stdout
    shows_utf8 = _stdout_encoding(env).startswith("utf")  # LC_ALL=C alone: Python's UTF-8 mode
    name = "chien_é_ü.jpg".encode() if shows_utf8 else b"chien_\\xe9_\\xfc.jpg"  # escaped, as the terminal can show
    for output in (uploaded.stdout, listed, shown, predicted):
        assert name in output, output
    assert count(db, "predictions") == 3
    assert {r["filename"] for r in json.loads(run("list", "--json").stdout)} == set(NAMES)


def _stdout_encoding(env: dict[str, str]) -> str:
    code = "import sys; print(sys.stdout.encoding.lower().replace('-', ''))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


def test_a_refused_file_with_an_unencodable_name_is_escaped_and_fails_the_exit_code_only_for_itself(home, tmp_path):
    """The exit code says what happened to the work: the good file stored, the bad one refused (exit 1), its name
    escaped in the refusal line."""
    db = home / "dogbreed.db"
    write(tmp_path / "good.jpg", jpeg_bytes())
    (tmp_path / "café.jpg").write_bytes(b"not a picture")
    env = clean_env(home, PYTHONIOENCODING="ascii")
    proc = subprocess.run(dogbreed_cmd(db, "upload", tmp_path), capture_output=True, env=env, timeout=300)
    text = (proc.stdout + proc.stderr).decode("ascii", "replace")
    quiet(text)
    assert proc.returncode == 1 and "refused" in text and "caf\\xe9.jpg" in text, text
    assert count(db, "images") == 1


# ---------------------------------------------------------------- SIGTERM and SIGHUP to predict


def _uploaded(home: Path, tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "many"
    for i in range(n):
        write(folder / f"{i:03d}.jpg", jpeg_bytes(size=(160, 120), seed=600 + i))
    db = home / "dogbreed.db"
    proc = subprocess.run(dogbreed_cmd(db, "upload", folder, "-q"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return db


def _one_line(err: str, starts: str) -> str:
    """The one line beside predict's model line (``model: ...``, printed first) that stderr holds."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("model: ")]
    assert len(lines) == 1 and lines[0].startswith(starts), err
    return lines[0]


STOPS = {
    "SIGTERM to the process (timeout, docker stop)": (signal.SIGTERM, False, 143),
    "SIGTERM to the group (systemd)": (signal.SIGTERM, True, 143),
    "SIGHUP to the group (a closed terminal)": (signal.SIGHUP, True, 129),
}
POOLS = {"forked workers": [], "spawned workers": ["--threads", "2"]}


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("stop", STOPS)
def test_sigterm_and_sighup_stop_predict_as_ctrl_c_does(home, tmp_path, slow_checkpoint, gate, stop, pool):
    sig, group, code = STOPS[stop]
    db = _uploaded(home, tmp_path, 16)
    args = ("predict", "--all", "-c", slow_checkpoint, "-b", "2", "-w", "2", "-q", *POOLS[pool])
    proc = gate.start(dogbreed_cmd(db, *args), env=clean_env(home))
    gate.wait(proc)  # held after recording its first batch, the next ones in flight
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=300)
    quiet(out + err)
    assert proc.returncode == code, out + err
    line = _one_line(err, f"interrupted ({signal.Signals(sig).name}): the predictions made so far are stored")
    assert f"'dogbreed predict --pending --checkpoint {slow_checkpoint.resolve()}' finishes them" in line
    left = statuses(db)
    assert "running" not in left and left["done"] >= 2 and left.get("queued", 0) > 0, left  # handed back
    gate.open()
    finish = subprocess.run(
        dogbreed_cmd(db, "predict", "--pending", "-c", slow_checkpoint, "--json"),
        capture_output=True,
        text=True,
        env=clean_env(home),
        timeout=300,
    )
    assert finish.returncode == 0 and json.loads(finish.stdout)["done"] == left["queued"], finish.stderr
    assert count(db, "predictions") == 16


def test_ctrl_c_three_times_prints_the_good_line_and_nothing_after_it(home, tmp_path, slow_checkpoint, gate):
    """The second and third Ctrl-C land while the first is being handled (the line is out, the process is
    shutting down): they are taken quietly."""
    db = _uploaded(home, tmp_path, 32)
    args = ("predict", "--all", "-c", slow_checkpoint, "-b", "4", "-w", "2", "-q")
    proc = gate.start(dogbreed_cmd(db, *args), env=clean_env(home))
    gate.wait(proc)
    os.killpg(proc.pid, signal.SIGINT)
    first = _read_line(proc, patience=300)
    if first.startswith("model: "):
        first = _read_line(proc, patience=300)
    assert first.startswith("interrupted: the predictions made so far are stored"), first
    for _ in range(2):
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:  # it finished shutting down first: also a correct outcome
            break
    out, rest = proc.communicate(timeout=300)
    quiet(out + rest)
    assert proc.returncode == 130 and rest.strip() == "", rest
    assert "running" not in statuses(db)


def _read_line(proc: subprocess.Popen, patience: float) -> str:
    """The next stderr line of a running process (a bound on a hang only)."""
    until = time.monotonic() + patience
    while time.monotonic() < until:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            return proc.stderr.readline()
    raise AssertionError(f"no line on stderr in {patience} s")


# ---------------------------------------------------------------- upload and the background worker


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_an_upload_stopped_between_batches_says_what_is_stored_and_the_same_upload_stores_the_rest(
    home, tmp_path, gate, sig, code
):
    db = home / "dogbreed.db"
    folder = tmp_path / "photos"
    for i in range(40):  # two batches of at most 32
        write(folder / f"{i:03d}.jpg", jpeg_bytes(seed=900 + i))
    proc = gate.start(dogbreed_cmd(db, "upload", folder, "-q"), env=clean_env(home))
    gate.wait(proc)  # held after storing its first batch of 32
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=300)
    quiet(out + err)
    assert proc.returncode == code, out + err
    name = "" if sig == signal.SIGINT else f" ({signal.Signals(sig).name})"
    line = _one_line(err, f"interrupted{name}: 32 file(s) are stored; the rest are not: run the same upload again")
    assert count(db, "images") == 32, line
    gate.open()
    again = subprocess.run(dogbreed_cmd(db, "upload", folder, "-q"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "8 new, 32 duplicate, 0 refused" in again.stdout, again.stderr


def test_sigterm_to_the_background_worker_leaves_its_jobs_queued_and_says_so(home, tmp_path, checkpoint, gate):
    db = _uploaded(home, tmp_path, 4)
    env = gate.env(clean_env(home))
    queued = subprocess.run(
        dogbreed_cmd(db, "predict", "--all", "-c", checkpoint, "--background", "--json"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert queued.returncode == 0, queued.stderr
    reply = json.loads(queued.stdout)
    deadline = time.monotonic() + 300
    while not gate.paused.exists():  # held after reading its queue
        assert time.monotonic() < deadline, Path(reply["log"]).read_text()
        time.sleep(0.02)
    os.kill(reply["pid"], signal.SIGTERM)
    from dogbreed.procs import pid_alive

    while pid_alive(reply["pid"]):
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.02)
    log = Path(reply["log"]).read_text()
    quiet(log)
    assert "stopped (SIGTERM) after 0 predicted, 0 failed; the rest stay queued: 'dogbreed predict --pending" in log
    assert statuses(db) == {"queued": 4}
