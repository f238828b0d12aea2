"""`dogbreed serve`'s app against a real SQLite store and real prediction workers (FastAPI's TestClient, no
sockets): first the original service's own test cases, as it wrote them, then what it lacked."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from dogbreed.breeds import BY_WNID, find_breed  # noqa: E402
from tests.conftest import Cli, make_checkpoint  # noqa: E402
from tests.images import jpeg_bytes  # noqa: E402

BASE = "http://127.0.0.1"  # the loopback name: a server without a token answers only to it
# The model knows 5 breeds, so "every breed the model knows" is a set the tests can name.
KNOWN = ("n02106166", "n02106030", "n02088364", "n02099601", "n02085620")  # Border collie, collie, beagle, ...


def settings_for(db: Path, checkpoint: Path, **kw):
    from dogbreed.engines import choose
    from dogbreed.models import sources
    from dogbreed.serve.context import ServeSettings
    from dogbreed.store import open_store

    open_store(db).close()
    source = sources.from_checkpoint(checkpoint)
    return ServeSettings(db=db, source=source, choice=choose(source, "cpu", "torch", "fp32"), workers=1, **kw)


@pytest.fixture(scope="module")
def five_breeds(tmp_path_factory) -> Path:
    classes = [[w, BY_WNID[w].name] for w in KNOWN]
    return make_checkpoint(tmp_path_factory.mktemp("serve-model") / "five.pt", classes=classes)


@pytest.fixture(scope="module")
def server(tmp_path_factory, five_breeds):
    """One app with one prediction worker for the module (the worker loads the model once, as in production)."""
    from dogbreed.serve.app import create_app

    db = tmp_path_factory.mktemp("serve-store") / "dogbreed.db"
    with TestClient(create_app(settings_for(db, five_breeds)), base_url=BASE) as client:
        client.db = db
        yield client


def sql(db: Path, query: str, params=()):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def upload(client, data: bytes, filename="test_image_file.jpg", ground_truth="border_collie", ctype="image/jpg"):
    params = {"filename": filename, **({"ground_truth": ground_truth} if ground_truth else {})}
    return client.post("/api/upload", files={"file": (filename, data, ctype)}, params=params)


@pytest.fixture(scope="module")
def test_image(server) -> dict:
    response = upload(server, jpeg_bytes(seed=4242))
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_task(client, task_id: str, limit_s: float = 120) -> dict:
    """Poll the task as the original's clients did, until the worker's result is in the store (bounded)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        state = client.get(f"/api/tasks/{task_id}").json()
        if state["task_status"] in ("SUCCESS", "FAILURE"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not finished after {limit_s} s: {state}")


# ---------------------------------------------------------------- the original service's test cases


def test_upload_image(server):
    response = upload(server, jpeg_bytes(seed=1))
    assert response.status_code == 201
    assert response.json()["filename"] == "test_image_file.jpg"
    assert response.json()["ground_truth"] == "border_collie"
    assert response.json()["predictions"] is None
    stored = sql(server.db, "SELECT filename, ground_truth FROM images WHERE id = ?", (response.json()["id"],))
    assert stored == [("test_image_file.jpg", "n02106166")]


def test_upload_image_invalid_file_ext(server):
    before = sql(server.db, "SELECT COUNT(*) FROM images")
    response = server.post("/api/upload", files={"file": ("invalid_file.txt", b"just some text\n", "text/plain")})
    assert response.status_code == 422
    assert response.json()["detail"] == "Invalid image file extension."
    assert sql(server.db, "SELECT COUNT(*) FROM images") == before


def test_upload_of_bytes_that_are_no_picture_is_refused_and_nothing_is_stored(server):
    before = sql(server.db, "SELECT COUNT(*) FROM images")
    half = jpeg_bytes(size=(320, 240), seed=9)
    for name, data in (("notes.jpg", b"this is text\n"), ("cut.jpg", half[: len(half) // 2])):
        response = upload(server, data, filename=name)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith(f"{name}: ") and ("not a recognised image format" in detail or "truncated" in detail)
    assert sql(server.db, "SELECT COUNT(*) FROM images") == before


def test_upload_accepts_any_spelling_the_cli_accepts_and_refuses_unknown_breeds(server):
    for i, spelling in enumerate(("Border Collie", "n02106166", "n02106166-Border_collie", "BORDER-COLLIE")):
        response = upload(server, jpeg_bytes(seed=300 + i), ground_truth=spelling)
        assert response.status_code == 201 and response.json()["ground_truth"] == "border_collie"
    response = upload(server, jpeg_bytes(seed=310), ground_truth="border colie")
    assert response.status_code == 422 and "Did you mean: Border collie" in response.json()["detail"]


def test_list_images(server, test_image):
    response = server.get("/api/images")
    data = response.json()["data"]
    assert response.status_code == 200
    assert data, "the module's test image is stored"
    for item in data:  # "file" (the bytes) is never in the listing
        assert sorted(item) == sorted(["filename", "id", "predictions", "ground_truth"])
    assert {"id": test_image["id"], "filename": "test_image_file.jpg", "ground_truth": "border_collie"}.items() <= next(
        i for i in data if i["id"] == test_image["id"]
    ).items()


def test_get_image_by_id(server, test_image):
    response = server.get(f"/api/images/{test_image['id']}")
    assert response.status_code == 200
    assert response.json()["data"] == {k: test_image[k] for k in ("id", "filename", "ground_truth", "predictions")}


@pytest.mark.parametrize("img_id, status_code", [(500, 404), (-1, 422), (None, 422)])
def test_get_image_by_invalid_id(server, img_id, status_code):
    response = server.get(f"/api/images/{img_id}")
    assert response.status_code == status_code
    if status_code == 404:
        assert response.json() == {"detail": "No images found with that id."}


def test_predict_correctly_then_the_image_has_every_known_breed_summing_to_one(server, test_image):
    response = server.post("/api/predict", params={"img_id": test_image["id"], "device": "cpu"})
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Task received"
    assert body["data"]["state"] == body["data"]["status"] and body["data"]["state"] in ("PENDING", "STARTED")
    state = wait_for_task(server, body["data"]["task_id"])
    assert state["task_status"] == "SUCCESS", state
    predictions = server.get(f"/api/images/{test_image['id']}").json()["data"]["predictions"]
    assert set(predictions) == {BY_WNID[w].folder.split("-", 1)[1] for w in KNOWN}  # 'Border_collie', 'beagle'...
    assert "Border_collie" in predictions
    assert sum(predictions.values()) == pytest.approx(1.0, abs=1e-4)
    assert state["task_result"] == server.get(f"/api/images/{test_image['id']}").json()["data"]
    job = sql(server.db, "SELECT status, owner_pid FROM jobs WHERE id = ?", (int(body["data"]["task_id"]),))
    assert job[0][0] == "done"


@pytest.mark.parametrize("img_id, status_code", [(500, 404), (-1, 422), (None, 422)])
def test_predict_with_invalid_id(server, img_id, status_code):
    params = {"device": "cpu"} | ({} if img_id is None else {"img_id": img_id})
    jobs_before = sql(server.db, "SELECT COUNT(*) FROM jobs")
    response = server.post("/api/predict", params=params)
    assert response.status_code == status_code
    assert sql(server.db, "SELECT COUNT(*) FROM jobs") == jobs_before


def test_view_prediction_correctly(server):
    image_id = upload(server, jpeg_bytes(seed=77), filename="seen.jpg").json()["id"]
    task = server.post("/api/predict", params={"img_id": image_id}).json()["data"]["task_id"]
    assert wait_for_task(server, task)["task_status"] == "SUCCESS"
    response = server.get(f"/api/images/{image_id}/view")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    figure = Image.open(io.BytesIO(response.content))
    assert figure.format == "PNG" and figure.size == (1200, 500)  # the `dogbreed view` figure


def test_no_predictions_to_view(server):
    image_id = upload(server, jpeg_bytes(seed=78), filename="unseen.jpg").json()["id"]
    response = server.get(f"/api/images/{image_id}/view")
    assert response.status_code == 204 and response.content == b""


@pytest.mark.parametrize("img_id, status_code", [(500, 404), (-1, 422), (None, 422)])
def test_view_predictions_with_invalid_id(server, img_id, status_code):
    assert server.get(f"/api/images/{img_id}/view").status_code == status_code


# ---------------------------------------------------------------- the rest of the original API


def test_task_status_of_an_unknown_or_invalid_task(server):
    assert server.get("/api/tasks/99999").status_code == 404
    assert server.get("/api/tasks/-3").status_code == 422
    assert server.get("/api/tasks/abc").status_code == 422


def test_delete_answers_the_id_and_removes_the_image_with_its_bytes(server):
    image_id = upload(server, jpeg_bytes(seed=501), filename="gone.jpg").json()["id"]
    response = server.delete(f"/api/images/{image_id}/")
    assert response.status_code == 200 and response.json() == image_id
    assert sql(server.db, "SELECT COUNT(*) FROM image_blobs WHERE image_id = ?", (image_id,)) == [(0,)]
    assert server.get(f"/api/images/{image_id}").status_code == 404
    assert server.delete(f"/api/images/{image_id}/").json() == {"detail": "No images found with that id."}
    assert server.delete("/api/images/0/").status_code == 422


def test_stats_give_the_training_history_per_epoch(tmp_path, five_breeds):
    from dogbreed.serve.app import create_app
    from dogbreed.store import open_store
    from dogbreed.store.runs import add_epoch, start_run

    db = tmp_path / "runs.db"
    settings = settings_for(db, five_breeds)
    client = TestClient(create_app(settings), base_url=BASE)  # no lifespan: these calls need no worker
    assert client.get("/api/stats/").json() == {"detail": "No training runs yet."}
    conn = open_store(db)
    run_id = start_run(
        conn, name="r", model="resnet18", mode="extractor", device="cpu", dataset="d", params={}, num_classes=5
    )
    for epoch, (loss, acc, f1) in enumerate([(2.0, 0.3, 0.25), (1.2, 0.6, 0.55)], 1):
        row = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "train_f1": f1}
        row |= {"val_loss": loss + 0.1, "val_acc": acc - 0.1, "val_f1": f1 - 0.1, "val_top5": 1.0, "lr": 1e-3}
        add_epoch(conn, run_id, row | {"seconds": 1.0})
    conn.close()
    stats = client.get("/api/stats/").json()
    assert set(stats) == {"train_loss", "val_loss", "train_score", "train_acc", "val_score", "val_acc"}
    assert stats["train_loss"] == {"0": 2.0, "1": 1.2} and stats["val_acc"] == pytest.approx({"0": 0.2, "1": 0.5})
    assert stats["train_score"] == {"0": 0.25, "1": 0.55}
    assert client.get("/api/stats/", params={"run": 99}).status_code == 404
    assert client.get(f"/api/runs/{run_id}").json()["epochs"][1]["train_loss"] == 1.2
    curves = client.get(f"/api/runs/{run_id}/curves")
    assert curves.status_code == 200 and Image.open(io.BytesIO(curves.content)).format == "PNG"
    assert "r" in client.get("/runs").text and f"/api/runs/{run_id}/curves" in client.get("/runs").text


# ---------------------------------------------------------------- what the original lacked


def test_classify_stores_and_predicts_each_photo_and_refuses_bad_ones_alone(server):
    photos = [
        ("files", ("rex.jpg", jpeg_bytes(seed=601), "image/jpeg")),
        ("files", ("notes.txt", b"hello", "text/plain")),
        ("files", ("broken.jpg", b"\xff\xd8\xff not really", "image/jpeg")),
        ("files", ("fido.jpg", jpeg_bytes(seed=602), "image/jpeg")),
    ]
    response = server.post("/api/classify", files=photos, params={"top_k": 2, "ground_truth": "beagle"})
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    assert [i["upload"] for i in items] == ["new", "refused", "refused", "new"]
    assert "content type text/plain" in items[1]["reason"] and "not a recognised image format" in items[2]["reason"]
    for item in (items[0], items[3]):
        assert item["state"] == "SUCCESS" and item["breed"] in {BY_WNID[w].name for w in KNOWN}
        assert len(item["top"]) == 2 and item["top"][0]["probability"] == item["probability"]
        assert item["dog_probability"] is None and item["not_a_dog"] is None  # this model cannot tell
        assert item["ground_truth"] == "beagle"
        stored = sql(server.db, "SELECT top1, top1_prob, job_id FROM predictions WHERE image_id = ?", (item["id"],))
        assert stored == [(find_breed(item["breed"]).wnid, pytest.approx(item["probability"]), int(item["task_id"]))]
    assert sql(server.db, "SELECT COUNT(*) FROM images WHERE filename IN ('notes.txt', 'broken.jpg')") == [(0,)]
    again = server.post("/api/classify", files=[photos[0]]).json()["data"][0]
    assert again["upload"] == "duplicate" and again["id"] == items[0]["id"] and again["state"] == "SUCCESS"


def test_classify_with_nothing_usable_is_422(server):
    response = server.post("/api/classify", files=[("files", ("a.txt", b"text", "text/plain"))])
    assert response.status_code == 422 and "a.txt: not an image" in response.json()["detail"]


def test_classify_that_outwaits_its_limit_answers_202_with_the_tasks_to_poll(server):
    response = server.post(
        "/api/classify", files=[("files", ("slow.jpg", jpeg_bytes(seed=650), "image/jpeg"))], params={"wait": 0}
    )
    item = response.json()["data"][0]
    if response.status_code == 202:  # the usual case: the answer did not wait at all
        assert item["state"] in ("PENDING", "STARTED") and item["breed"] is None
    else:  # the worker was faster than the event loop: every correct outcome is accepted
        assert response.status_code == 200 and item["state"] == "SUCCESS"
    assert wait_for_task(server, item["task_id"])["task_status"] == "SUCCESS"


def test_label_sets_the_ground_truth_in_the_store(server):
    image_id = upload(server, jpeg_bytes(seed=701), filename="label.jpg", ground_truth=None).json()["id"]
    response = server.put(f"/api/images/{image_id}/label", json={"ground_truth": "Golden Retriever"})
    assert response.status_code == 200 and response.json()["data"]["ground_truth"] == "golden_retriever"
    assert sql(server.db, "SELECT ground_truth FROM images WHERE id = ?", (image_id,)) == [("n02099601",)]
    wrong = server.put(f"/api/images/{image_id}/label", json={"ground_truth": "golden retreiver"})
    assert wrong.status_code == 422 and "Did you mean: Golden retriever" in wrong.json()["detail"]
    assert server.put("/api/images/9999/label", json={"ground_truth": "beagle"}).status_code == 404
    assert (
        server.put(f"/api/images/{image_id}/label", json={"ground_truth": None}).json()["data"]["ground_truth"] is None
    )
    assert sql(server.db, "SELECT ground_truth FROM images WHERE id = ?", (image_id,)) == [(None,)]


def test_records_are_what_show_and_list_print(server, test_image):
    cli = Cli(server.db)
    record = server.get(f"/api/records/{test_image['id']}").json()
    assert record == cli.json("show", str(test_image["id"]))
    stored = cli.json("list", "--limit", "1000")  # the module's server: earlier tests may have stored more
    whole = server.get("/api/records", params={"limit": len(stored) + 1}).json()
    assert whole["data"] == stored and whole["next_after"] is None  # a short page: nothing after it
    page = server.get("/api/records", params={"limit": 1}).json()
    assert page["data"] == cli.json("list", "--limit", "1") and page["next_after"] == stored[0]["id"]
    follow = server.get("/api/records", params={"limit": 1, "after": page["next_after"]}).json()["data"]
    assert follow == cli.json("list", "--limit", "1", "--after", str(page["next_after"])) == stored[1:2]
    labelled = server.get("/api/records", params={"breed": "border collie", "limit": 1000}).json()["data"]
    assert labelled and {r["ground_truth"] for r in labelled} == {"n02106166"}
    assert server.get("/api/records/4040").status_code == 404


def test_health_models_and_breeds(server, five_breeds):
    health = server.get("/api/health")
    assert health.status_code == 200 and health.json()["status"] == "ready" and health.json()["workers"] == 1
    models = server.get("/api/models", params={"ready": False}).json()
    assert models["serving"]["model"] == five_breeds.name and models["serving"]["engine"] == "torch"
    breeds = server.get("/api/breeds").json()["data"]
    collie = next(b for b in breeds if b["wnid"] == "n02106166")
    assert collie == {
        "wnid": "n02106166",
        "name": "Border collie",
        "own": False,
        "note": None,
        "label": "Border_collie",
        "ground_truth": "border_collie",
    }


def test_thumbnails_are_fresh_jpegs_of_bounded_size(server, test_image):
    response = server.get(f"/api/images/{test_image['id']}/thumbnail")
    thumb = Image.open(io.BytesIO(response.content))
    assert response.headers["content-type"] == "image/jpeg" and thumb.format == "JPEG" and max(thumb.size) <= 256
    assert server.get(f"/api/images/{test_image['id']}/thumbnail", params={"size": 5000}).status_code == 422


def test_the_page_escapes_untrusted_names_and_forbids_inline_script(server):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>.jpg'
    image_id = upload(server, jpeg_bytes(seed=801), filename=evil).json()["id"]
    for path in ("/", f"/images/{image_id}"):
        page = server.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "&lt;script&gt;alert(" in page.text and '<script>alert("x")' not in page.text
        assert "onerror=alert" not in page.text.replace("onerror=alert(1)&gt;", "")
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert server.get("/images/99999").status_code == 404
    docs = server.get("/docs")
    assert docs.status_code == 200 and "/static/docs/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert server.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/api/upload", "/api/predict", "/api/images/{img_id}/view", "/api/stats/", "/api/classify"} <= set(paths)
    assert server.get("/static/app.js").status_code == 200


def test_requests_with_a_foreign_host_or_origin_are_refused(server):
    assert server.get("/api/images", headers={"Host": "rebound.example"}).status_code == 403
    before = sql(server.db, "SELECT COUNT(*) FROM images")
    sneaky = server.post(
        "/api/upload",
        files={"file": ("x.jpg", jpeg_bytes(seed=901), "image/jpeg")},
        headers={"Origin": "http://evil.example"},
    )
    assert sneaky.status_code == 403 and sql(server.db, "SELECT COUNT(*) FROM images") == before
    same = server.post(
        "/api/upload", files={"file": ("x.jpg", jpeg_bytes(seed=902), "image/jpeg")}, headers={"Origin": BASE}
    )
    assert same.status_code == 201


# ---------------------------------------------------------------- the token rule and the size cap


def test_token_rule(tmp_path, five_breeds):
    from dogbreed.serve.app import create_app

    db = tmp_path / "token.db"
    client = TestClient(create_app(settings_for(db, five_breeds, token="s3cret-token-for-tests")), base_url=BASE)
    photo = {"file": ("a.jpg", jpeg_bytes(seed=1001), "image/jpeg")}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token-for-tests"}):
        assert client.post("/api/upload", files=photo, headers=headers).status_code == 401
        assert client.get("/api/images", headers=headers).status_code == 401
        assert client.get("/", headers=headers).status_code == 401
    assert sql(db, "SELECT COUNT(*) FROM images") == [(0,)]
    good = {"Authorization": "Bearer s3cret-token-for-tests"}
    assert client.post("/api/upload", files=photo, headers=good).status_code == 201
    assert client.get("/api/images", headers=good).json()["data"][0]["filename"] == "a.jpg"
    assert client.post("/login", data={"token": "nope"}).status_code == 401
    signed_in = client.post("/login", data={"token": "s3cret-token-for-tests"}, follow_redirects=False)
    assert signed_in.status_code == 303 and "httponly" in signed_in.headers["set-cookie"].lower()
    browser = TestClient(client.app, base_url=BASE, cookies=signed_in.cookies)
    assert browser.get("/api/images").status_code == 200 and browser.get("/").status_code == 200


def test_serve_refuses_other_hosts_without_a_token_in_one_line(cli):
    result = cli("serve", "--host", "0.0.0.0", expect=1)
    assert "--token" in result.output and "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert not cli.db.exists() or cli.sql("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_serve_says_in_one_line_when_its_port_is_taken_or_its_model_cannot_load(cli, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), expect=1)
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and len(result.output.splitlines()) == 1
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    result = cli("serve", "--port", "0", "--checkpoint", str(broken), "--workers", "1", expect=1)
    assert "the model could not be loaded" in result.output and "Traceback" not in result.output
    assert cli.sql("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_oversized_upload_is_refused_before_it_is_stored(tmp_path, five_breeds):
    from dogbreed.serve.app import create_app

    db = tmp_path / "cap.db"
    client = TestClient(create_app(settings_for(db, five_breeds, max_upload_bytes=20_000)), base_url=BASE)
    big = jpeg_bytes(size=(600, 600), seed=3, quality=100)
    assert len(big) > 20_000
    response = client.post("/api/upload", files={"file": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413 and "limited to" in response.json()["detail"]
    boundary = "cap"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # no Content-Length: counted as it arrives
    streamed = client.post(
        "/api/upload", content=chunks, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert streamed.status_code == 413
    assert sql(db, "SELECT COUNT(*) FROM images") == [(0,)]
    small = client.post("/api/upload", files={"file": ("ok.jpg", jpeg_bytes(seed=4), "image/jpeg")})
    assert small.status_code == 201


def test_own_breeds_through_the_api_and_labels_with_history(server):
    image = upload(server, jpeg_bytes(seed=702), filename="own.jpg", ground_truth=None).json()["id"]
    added = server.post("/api/breeds", json={"name": "Shiba Inu", "note": "Kuro"})
    assert added.status_code == 201 and added.json()["data"]["wnid"] == "own:shiba-inu"
    assert server.post("/api/breeds", json={"name": "shiba-INU"}).status_code == 422
    own = [b for b in server.get("/api/breeds").json()["data"] if b["own"]]
    assert own == [{"wnid": "own:shiba-inu", "name": "Shiba Inu", "own": True, "note": "Kuro", "label": "Shiba_Inu",
                    "ground_truth": "shiba_inu"}]  # fmt: skip
    labelled = server.put(f"/api/images/{image}/label", json={"ground_truth": "shiba"})
    assert labelled.status_code == 200 and labelled.json()["data"]["ground_truth"] == "shiba_inu"
    assert server.get(f"/api/images/{image}").json()["data"]["ground_truth"] == "shiba_inu"
    assert server.delete("/api/breeds/Shiba Inu").status_code == 409  # an image uses it
    server.put(f"/api/images/{image}/label", json={"ground_truth": None})
    history = sql(server.db, "SELECT old, new FROM label_changes WHERE image_id = ?", (image,))
    assert history == [(None, "own:shiba-inu"), ("own:shiba-inu", None)]
    assert server.delete("/api/breeds/Shiba Inu").status_code == 200
    assert server.delete("/api/breeds/Shiba Inu").status_code == 404
