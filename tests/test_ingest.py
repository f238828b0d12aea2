from __future__ import annotations

from pathlib import Path

from tests.images import jpeg_bytes, variety, write


def test_mixed_folder_stores_valid_images_once_and_names_each_refusal(cli, tmp_path):
    folder = tmp_path / "photos"
    variety(folder)
    write(folder / "sub" / "again.jpg", (folder / "photo.jpg").read_bytes())  # a duplicate, in a subfolder

    first = cli.json("upload", folder, expect=1)
    by_name = {Path(r["path"]).name: r for r in first["results"]}
    assert first["summary"] == {"new": 10, "duplicate": 1, "refused": 4}
    assert by_name["again.jpg"]["status"] == "duplicate"
    assert by_name["again.jpg"]["image_id"] == by_name["photo.jpg"]["image_id"]
    assert "empty" in by_name["empty.jpg"]["reason"]
    assert "not a recognised image" in by_name["notes.jpg"]["reason"]
    assert "decode" in by_name["truncated.jpg"]["reason"]
    assert "bomb" in by_name["bomb.png"]["reason"]

    second = cli.json("upload", folder, expect=1)
    assert second["summary"] == {"new": 0, "duplicate": 11, "refused": 4}
    assert cli.sql("SELECT COUNT(*) FROM images")[0][0] == 10
    assert cli.sql("SELECT COUNT(*) FROM image_blobs")[0][0] == 10
    formats = {r[0] for r in cli.sql("SELECT format FROM images")}
    assert {"JPEG", "PNG", "GIF", "HEIF", "WEBP"} <= formats
    assert cli.sql("PRAGMA integrity_check")[0][0] == "ok"


def test_refusals_print_one_line_each_and_exit_nonzero(cli, tmp_path):
    bad = write(tmp_path / "notes.jpg", b"hello")
    result = cli("upload", bad, tmp_path / "missing.jpg", expect=1)
    lines = [line for line in result.output.splitlines() if "refused" in line and ":" in line]
    assert any("notes.jpg" in line and "not a recognised image" in line for line in lines)
    assert any("missing.jpg" in line and "no such file" in line for line in lines)
    assert "Traceback" not in result.output


def test_quiet_still_names_the_refused_files(cli, tmp_path):
    write(tmp_path / "pics" / "good.jpg", jpeg_bytes(seed=4))
    write(tmp_path / "pics" / "notes.jpg", b"hello")
    result = cli("upload", tmp_path / "pics", "-q", expect=1)
    assert "notes.jpg" in result.output and "not a recognised image" in result.output
    assert "good.jpg" not in result.output and "1 new, 0 duplicate, 1 refused" in result.output


def test_a_folder_without_pictures_is_a_refusal_not_a_silent_success(cli, tmp_path):
    write(tmp_path / "docs" / "readme.txt", b"no pictures here")
    (tmp_path / "empty").mkdir()
    out = cli.json("upload", tmp_path / "docs", tmp_path / "empty", expect=1)
    assert [r["status"] for r in out["results"]] == ["refused", "refused"]
    assert all("no pictures found" in r["reason"] for r in out["results"])
    again = cli.json("upload", tmp_path / "empty", tmp_path / "docs", write(tmp_path / "a.jpg", jpeg_bytes()), expect=1)
    assert again["summary"] == {"new": 1, "duplicate": 0, "refused": 2}


def test_a_duplicate_with_another_breed_keeps_its_label_and_says_so(cli, tmp_path):
    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=8))
    cli("upload", photo, "-g", "beagle")
    (row,) = cli.json("upload", photo, "-g", "pug")["results"]
    assert row["status"] == "duplicate" and row["ground_truth_name"] == "Beagle"
    assert row["reason"].startswith("same bytes as image 1 (a.jpg); already labelled Beagle; kept")
    (same,) = cli.json("upload", photo, "-g", "beagle")["results"]
    assert same["reason"] == "same bytes as image 1 (a.jpg)"


def test_explicit_files_are_judged_by_content_not_extension(cli, tmp_path):
    odd = write(tmp_path / "photo.dat", jpeg_bytes(seed=3))
    rows = cli.json("upload", odd)["results"]
    assert rows[0]["status"] == "new"
    assert cli.json("show", rows[0]["image_id"])["format"] == "JPEG"


def test_globs_and_ground_truth_spellings(cli, tmp_path):
    for i in range(3):
        write(tmp_path / f"dog{i}.jpg", jpeg_bytes(seed=10 + i))
    out = cli.json("upload", str(tmp_path / "dog*.jpg"), "--ground-truth", "Golden_Retriever")
    assert out["summary"]["new"] == 3
    assert {r["ground_truth"] for r in out["results"]} == {"n02099601"}
    for spelling in ("golden retriever", "n02099601", "GOLDEN-retriever"):
        assert len(cli.json("list", "--breed", spelling)) == 3


def test_unknown_breed_suggests_close_matches(cli, tmp_path):
    path = write(tmp_path / "a.jpg", jpeg_bytes())
    result = cli("upload", path, "--ground-truth", "golden retreiver", expect=1)
    assert "unknown breed" in result.output and "Golden retriever" in result.output
    assert not cli.db.exists()  # refused before the store was even opened


def test_label_from_folder_uses_stanford_folder_names(cli, tmp_path):
    write(tmp_path / "Images" / "n02085620-Chihuahua" / "a.jpg", jpeg_bytes(seed=1))
    write(tmp_path / "Images" / "n02099601-golden_retriever" / "b.jpg", jpeg_bytes(seed=2))
    write(tmp_path / "Images" / "holiday" / "c.jpg", jpeg_bytes(seed=3))
    out = cli.json("upload", tmp_path / "Images", "--label-from-folder", expect=1)
    labels = {Path(r["path"]).name: (r["status"], r["ground_truth"]) for r in out["results"]}
    assert labels["a.jpg"] == ("new", "n02085620")
    assert labels["b.jpg"] == ("new", "n02099601")
    assert labels["c.jpg"][0] == "refused"


def test_filename_option_renames_a_single_upload(cli, tmp_path):
    path = write(tmp_path / "IMG_0001.jpg", jpeg_bytes())
    image_id = cli.json("upload", path, "--filename", "rex.jpg")["results"][0]["image_id"]
    assert cli.json("show", image_id)["filename"] == "rex.jpg"


def test_large_phone_photo_is_accepted(cli, tmp_path):
    from PIL import Image

    from tests.images import encode

    img = Image.new("RGB", (8160, 6120), (90, 120, 150))  # 50 megapixels
    path = write(tmp_path / "phone.jpg", encode(img, "JPEG", quality=95))
    out = cli.json("upload", path)
    assert out["summary"]["new"] == 1
    assert cli.json("show", out["results"][0]["image_id"])["width"] == 8160


def test_two_concurrent_uploads_store_each_image_once(cli, tmp_path):
    import json
    import os
    import subprocess
    import sys

    folder = tmp_path / "many"
    for i in range(80):
        write(folder / f"p{i:03d}.jpg", jpeg_bytes(seed=500 + i))
    args = [sys.executable, "-m", "dogbreed", "--db", str(cli.db), "upload", str(folder), "--json"]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr
        assert "locked" not in stderr.lower()
    summaries = [json.loads(stdout)["summary"] for stdout, _ in outs]
    assert sum(s["new"] for s in summaries) == 80
    assert sum(s["duplicate"] for s in summaries) == 80
    assert cli.sql("SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images") == [(80, 80)]
