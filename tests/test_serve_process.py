"""`dogbreed serve` as a real process on 127.0.0.1: a browser driving the page, 32 clients with a `dogbreed
predict` beside them, two servers on one store, and SIGTERM handing claimed jobs back.

Every wait is bounded and synchronised on something the code produces (the line the server prints when it is
ready, a store row, an HTTP answer), never on a sleep. Sizes are small (64x48 photos, a 32-pixel model) so the
load test runs in seconds on two busy cores; its bounds are the photo count (500) and a deadline per request."""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tests.conftest import make_checkpoint  # noqa: E402
from tests.images import jpeg_bytes  # noqa: E402

START_LIMIT_S = 240  # python, torch and the model loading in a spawned worker, on a loaded 2-core machine
REQUEST_LIMIT_S = 120


class Served:
    """`dogbreed --db DB serve --port 0 ...` in its own process; ready once it prints its URL."""

    def __init__(self, db: Path, *args: str, log: Path):
        self.db, self.log = db, log
        env = {**os.environ, "DOGBREED_HOME": str(db.parent / "home")}
        self.stderr = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dogbreed", "--db", str(db), "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=START_LIMIT_S)
        except queue.Empty:
            line = ""
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"serve did not start: {line!r}\n{self.errors()}")
        self.url = match.group(0)

    def errors(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()
        return code

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            assert self.stop() == 0, self.errors()


def sql(db: Path, query: str, params=()):
    conn = sqlite3.connect(db, timeout=60)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def distinct_photos(n: int, offset: int = 0) -> list[bytes]:
    """n small JPEGs, all different (``jpeg_bytes``' seed repeats every 256: the colour tells these apart)."""
    photos = [
        jpeg_bytes(size=(64, 48), color=(i % 256, (i // 256 * 67) % 256, 90), seed=i) for i in range(offset, offset + n)
    ]
    assert len(set(photos)) == n
    return photos


def audit_claims(db: Path) -> None:
    """Record in the store itself every time a job is claimed or finished (test-only triggers), so 'every job
    done once' is read from what happened, not inferred."""
    from dogbreed.store import open_store

    open_store(db).close()
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE audit (job_id INTEGER, event TEXT, pid INTEGER);
        CREATE TRIGGER audit_claim AFTER UPDATE OF status ON jobs WHEN NEW.status = 'running'
            BEGIN INSERT INTO audit VALUES (NEW.id, 'claim', NEW.owner_pid); END;
        CREATE TRIGGER audit_finish AFTER UPDATE OF status ON jobs WHEN NEW.status IN ('done', 'failed')
            BEGIN INSERT INTO audit VALUES (NEW.id, 'finish', OLD.owner_pid); END;
        """
    )
    conn.close()


def assert_store_consistent(db: Path, photos: int) -> None:
    """Every photo stored once, every job claimed and finished exactly once and done, one prediction per image,
    and SQLite's own integrity check."""
    assert sql(db, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images") == [(photos, photos)]
    statuses = dict(sql(db, "SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    assert set(statuses) == {"done"}, statuses
    per_job = sql(
        db,
        "SELECT j.id, SUM(a.event = 'claim'), SUM(a.event = 'finish') FROM jobs j "
        "LEFT JOIN audit a ON a.job_id = j.id GROUP BY j.id",
    )
    assert all(claims == 1 and finishes == 1 for _, claims, finishes in per_job), [
        r for r in per_job if r[1:] != (1, 1)
    ][:5]
    assert sql(db, "SELECT COUNT(*), COUNT(DISTINCT image_id) FROM predictions") == [(photos, photos)]
    orphans = sql(
        db, "SELECT COUNT(*) FROM predictions p LEFT JOIN jobs j ON j.id = p.job_id WHERE j.status IS NOT 'done'"
    )
    assert orphans == [(0,)]
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]


def classify_all(url: str, sends: list[tuple[int, bytes]], clients: int, after: int = 0, started=None) -> list:
    """``clients`` threads send one classify request per photo until ``sends`` is empty; (photo index, status,
    answer) for each. ``started`` is set once ``after`` answers are in."""
    todo: queue.Queue = queue.Queue()
    for item in sends:
        todo.put(item)
    answers: list = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_LIMIT_S) as http:
            while True:
                try:
                    index, data = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    response = http.post("/api/classify", files={"files": (f"p{index}.jpg", data, "image/jpeg")})
                    answer = (index, response.status_code, response.json())
                except Exception as exc:  # recorded, then asserted on: a lost request fails the test
                    answer = (index, None, repr(exc))
                with lock:
                    answers.append(answer)
                    if started is not None and len(answers) >= after:
                        started.set()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_LIMIT_S * len(sends))
    return answers


def assert_all_classified(answers: list, photos: list[bytes]) -> None:
    failures = [a for a in answers if a[1] != 200]
    assert not failures, failures[:3]
    by_photo: dict[int, set[int]] = {}
    for index, _, body in answers:
        (item,) = body["data"]
        assert item["upload"] in ("new", "duplicate") and item["state"] == "SUCCESS" and item["breed"], item
        by_photo.setdefault(index, set()).add(item["id"])
    assert sorted(by_photo) == list(range(len(photos)))
    assert all(len(ids) == 1 for ids in by_photo.values())  # the same photo is the same image, whoever sent it
    assert len({next(iter(ids)) for ids in by_photo.values()}) == len(photos)  # and different photos are not


def quiet(log_text: str) -> None:
    assert "database is locked" not in log_text and "Traceback" not in log_text, log_text[-3000:]


# ---------------------------------------------------------------- load: 32 clients, 500 photos, predict beside


def test_32_clients_and_a_predict_share_one_store(tmp_path, checkpoint):
    db = tmp_path / "load.db"
    audit_claims(db)
    photos = distinct_photos(500)
    sends = list(enumerate(photos)) + [(i, photos[i]) for i in range(0, 500, 25)]  # 20 photos sent twice
    random.Random(0).shuffle(sends)
    started = threading.Event()
    with Served(db, "--checkpoint", str(checkpoint), "--workers", "1", log=tmp_path / "serve.log") as server:
        results: list = []
        clients = threading.Thread(target=lambda: results.extend(classify_all(server.url, sends, 32, 100, started)))
        clients.start()
        assert started.wait(REQUEST_LIMIT_S), "no classify answer came back"
        predict = subprocess.run(  # beside the clients, on the same store and model: they share the jobs
            [sys.executable, "-m", "dogbreed", "--db", str(db), "predict", "--all", "--checkpoint", str(checkpoint)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "DOGBREED_HOME": str(tmp_path / "home")},
        )
        clients.join(REQUEST_LIMIT_S * 10)
        assert not clients.is_alive(), "the clients did not finish in time"
        assert predict.returncode == 0, predict.stdout[-2000:] + predict.stderr[-2000:]
        quiet(predict.stdout + predict.stderr)
        assert re.search(r"\d+ predicted, 0 failed", predict.stdout), predict.stdout[-500:]
    quiet(server.errors())
    assert len(results) == len(sends)
    assert_all_classified(results, photos)
    assert_store_consistent(db, len(photos))


# ---------------------------------------------------------------- two servers, one store


def test_two_servers_on_one_store_share_photos_and_jobs(tmp_path, checkpoint):
    db = tmp_path / "two.db"
    audit_claims(db)
    photos = distinct_photos(40, offset=600)
    args = ("--checkpoint", str(checkpoint), "--workers", "1")
    with Served(db, *args, log=tmp_path / "a.log") as a, Served(db, *args, log=tmp_path / "b.log") as b:
        answers: list = []
        both = [  # every photo sent to both servers at once: each may reuse the other's image and job
            threading.Thread(target=lambda url=url: answers.extend(classify_all(url, list(enumerate(photos)), 8)))
            for url in (a.url, b.url)
        ]
        for t in both:
            t.start()
        for t in both:
            t.join(REQUEST_LIMIT_S * 10)
    quiet(a.errors() + b.errors())
    assert len(answers) == 2 * len(photos)
    assert_all_classified(answers, photos)
    assert sql(db, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images") == [(40, 40)]
    assert set(dict(sql(db, "SELECT status, COUNT(*) FROM jobs GROUP BY status"))) == {"done"}
    claims = sql(db, "SELECT job_id, COUNT(*) FROM audit WHERE event = 'claim' GROUP BY job_id HAVING COUNT(*) > 1")
    assert claims == []
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]


# ---------------------------------------------------------------- stopping hands claimed jobs back


def test_sigterm_hands_claimed_jobs_back_and_predict_pending_finishes_them(tmp_path):
    slow = make_checkpoint(tmp_path / "slow.pt", image_size=224)  # a few seconds of work: a window to stop in
    db = tmp_path / "stop.db"
    photos = [("files", (f"s{i}.jpg", jpeg_bytes(size=(160, 120), seed=40_000 + i), "image/jpeg")) for i in range(48)]
    server = Served(db, "--checkpoint", str(slow), "--workers", "1", "--batch-size", "4", log=tmp_path / "s.log")
    try:
        answer = httpx.post(f"{server.url}/api/classify", files=photos, params={"wait": 0}, timeout=REQUEST_LIMIT_S)
        assert answer.status_code in (200, 202), answer.text
        deadline = time.monotonic() + REQUEST_LIMIT_S
        while not sql(db, "SELECT 1 FROM jobs WHERE status = 'running' AND owner_pid = ?", (server.proc.pid,)):
            assert time.monotonic() < deadline, "no job was claimed"
            time.sleep(0.01)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.errors()
    quiet(server.errors())
    statuses = dict(sql(db, "SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    assert "running" not in statuses and statuses.get("queued", 0) > 0, statuses
    assert sum(statuses.values()) == 48 and set(statuses) <= {"queued", "done"}
    if "handed back" in server.errors():
        assert re.search(r"\((\d+) handed back\)", server.errors())
    finish = subprocess.run(
        [sys.executable, "-m", "dogbreed", "--db", str(db), "predict", "--pending", "--checkpoint", str(slow)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DOGBREED_HOME": str(tmp_path / "home")},
    )
    assert finish.returncode == 0, finish.stderr
    assert sql(db, "SELECT COUNT(DISTINCT image_id) FROM predictions") == [(48,)]
    assert set(dict(sql(db, "SELECT status, COUNT(*) FROM jobs GROUP BY status"))) == {"done"}


# ---------------------------------------------------------------- the page in a real browser


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def chromium(profile: Path):
    """Debian's chromium and chromium-driver (.ci/run installs them where apt is available)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium here: .ci/run installs Debian's chromium and chromium-driver where apt-get works")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_browser_uploads_a_photo_sees_its_breed_and_corrects_its_label(tmp_path, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from dogbreed.datasets.synthetic import make_synthetic
    from tests.tiny_model import tiny_model

    model = tiny_model(tmp_path_factory.getbasetemp())  # trained on 4 synthetic breeds: it knows the answers
    make_synthetic(tmp_path / "photos", breeds=4, per_class=2, size=(320, 240), lists=False, seed=11)
    others = sorted((tmp_path / "photos").glob("Images/*/*_00001.jpg"))
    beagle = next((tmp_path / "photos").glob("Images/*beagle/*_00000.jpg"))
    photo = beagle.rename(tmp_path / "rex <b>the dog.jpg")  # a name that would be markup if the page let it
    db = tmp_path / "page.db"
    with Served(db, "--checkpoint", str(model.checkpoint), "--workers", "1", log=tmp_path / "page.log") as server:
        driver = chromium(tmp_path / "profile")
        try:
            driver.get(server.url + "/")
            picker = driver.find_element(By.ID, "files")
            picker.send_keys("\n".join(str(p) for p in others))
            wait = WebDriverWait(driver, REQUEST_LIMIT_S)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result .breed")) == len(others))
            picker.send_keys(str(photo))
            named = "//li[contains(@class, 'result')][.//a[contains(., 'the dog')]]"
            card = wait.until(lambda d: d.find_elements(By.XPATH, named))[0]
            breed = wait.until(lambda d: card.find_element(By.CSS_SELECTOR, ".breed").text)
            assert breed == "Beagle"
            image_id = int(card.get_attribute("data-image-id"))
            assert sql(db, "SELECT top1 FROM predictions WHERE image_id = ?", (image_id,)) == [("n02088364",)]
            assert "rex <b>the dog.jpg" in card.text  # shown as text, not as markup
            card.find_element(By.CSS_SELECTOR, "a").click()
            wait.until(lambda d: d.find_elements(By.ID, "label-form"))
            assert driver.find_element(By.ID, "top-breed").text.startswith("Beagle")
            Select(driver.find_element(By.ID, "ground-truth")).select_by_visible_text("Border collie")
            driver.find_element(By.CSS_SELECTOR, "#label-form button").click()
            wait.until(lambda d: d.find_element(By.ID, "label-status").text.startswith("saved"))
            assert sql(db, "SELECT ground_truth FROM images WHERE id = ?", (image_id,)) == [("n02106166",)]
            save_screenshot(driver, None, "serve-image.png")
            save_screenshot(driver, server.url + "/", "serve.png")
        finally:
            driver.quit()
    quiet(server.errors())


def save_screenshot(driver, url: str | None, name: str) -> None:
    """For the README: written where DOGBREED_SCREENSHOTS points (a folder), else nowhere."""
    folder = os.environ.get("DOGBREED_SCREENSHOTS")
    if not folder:
        return
    if url is not None:
        driver.get(url)
    Path(folder).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(folder) / name))


# ---------------------------------------------------------------- a worker that dies is replaced


def worker_pids(server_pid: int) -> list[int]:
    """The server's prediction workers: its children that multiprocessing spawned."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == server_pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_is_replaced_and_the_request_still_answered(tmp_path, checkpoint):
    db = tmp_path / "kill.db"
    with Served(db, "--checkpoint", str(checkpoint), "--workers", "1", log=tmp_path / "k.log") as server:
        (victim,) = worker_pids(server.proc.pid)
        os.kill(victim, signal.SIGKILL)
        photo = [("files", ("after.jpg", jpeg_bytes(seed=4711), "image/jpeg"))]
        answer = httpx.post(f"{server.url}/api/classify", files=photo, timeout=REQUEST_LIMIT_S)
        assert answer.status_code == 200 and answer.json()["data"][0]["state"] == "SUCCESS", answer.text
        (replacement,) = worker_pids(server.proc.pid)
        assert replacement != victim
        assert httpx.get(f"{server.url}/api/health").json()["restarts"] >= 1
    assert sql(db, "SELECT status FROM jobs") == [("done",)]
