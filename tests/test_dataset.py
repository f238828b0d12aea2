from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dogbreed.datasets import archive
from dogbreed.datasets import stanford as dataset
from dogbreed.datasets.synthetic import make_synthetic
from dogbreed.errors import DogbreedError
from tests.servers import Server


@pytest.fixture
def synth(tmp_path) -> Path:
    root = tmp_path / "synthetic"
    make_synthetic(root, breeds=3, per_class=12, size=(40, 30), lists=True)
    return root


def test_scan_orders_breeds_canonically_and_reads_official_lists(synth):
    index = dataset.scan(synth)
    assert [b.wnid for b in index.classes] == ["n02085620", "n02088364", "n02099601"]
    assert len(index.samples) == 36
    splits = dataset.make_splits(index, seed=0)
    assert splits.official and not splits.notes
    train_files, test_files = dataset.official_lists(synth)
    assert {s.path for s in splits.test} == set(test_files)
    assert {s.path for s in splits.train + splits.val} == set(train_files)  # validation carved from train only
    assert not {s.path for s in splits.val} & {s.path for s in splits.train}
    assert {s.label for s in splits.val} == {0, 1, 2}  # stratified: every breed validated


def test_without_lists_a_seeded_stratified_split_is_used(tmp_path):
    root = tmp_path / "nolists"
    make_synthetic(root, breeds=3, per_class=10, size=(40, 30), lists=False)
    index = dataset.scan(root)
    a, b = dataset.make_splits(index, seed=3), dataset.make_splits(index, seed=3)
    assert not a.official and "seeded" in a.notes[0]
    assert [s.path for s in a.test] == [s.path for s in b.test]
    assert [s.path for s in dataset.make_splits(index, seed=4).test] != [s.path for s in a.test]
    for part in (a.train, a.val, a.test):
        assert {s.label for s in part} == {0, 1, 2}
    assert len(a.test) == 6  # 20% of each breed's 10


def test_limit_per_class_caps_each_split(synth):
    splits = dataset.make_splits(dataset.scan(synth), limit_per_class=2)
    for part in (splits.train, splits.val, splits.test):
        assert max(sum(s.label == k for s in part) for k in range(3)) <= 2


def test_a_folder_that_is_not_a_breed_is_an_error_naming_it(synth):
    (synth / "Images" / "holiday-snaps").mkdir()
    with pytest.raises(DogbreedError, match="holiday-snaps"):
        dataset.scan(synth)


def test_missing_images_folder_suggests_download(tmp_path):
    with pytest.raises(DogbreedError, match="dataset download"):
        dataset.scan(tmp_path)


def test_verify_lists_corrupt_files_and_caches_results(synth):
    bad = synth / "Images" / "n02088364-beagle" / "n02088364_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    index = dataset.scan(synth)
    assert list(dataset.verify(index)) == ["n02088364-beagle/n02088364_broken.jpg"]
    assert (synth / dataset.VERIFY_CACHE).exists()
    decoded = []
    import dogbreed.imaging as imaging

    real = imaging.validate
    try:
        imaging.validate = lambda data: decoded.append(1) or real(data)
        assert len(dataset.verify(index)) == 1
        assert decoded == []  # everything came from the cache
        good = synth / "Images" / "n02085620-Chihuahua" / "n02085620_00000.jpg"
        good.write_bytes(b"now broken")
        assert len(dataset.verify(index)) == 2 and decoded == [1]  # only the changed file was decoded again
    finally:
        imaging.validate = real


def test_open_dataset_splits_verifies_and_leaves_unreadable_images_out(synth):
    """The one way in: the splits make_splits makes, each without the images verify rejects, which are named per
    split; a verdict made elsewhere (another rank) gives the same dataset."""
    from dogbreed.datasets import open_dataset

    index = dataset.scan(synth)
    splits = dataset.make_splits(index, seed=2)
    broken = splits.test[0].path
    (synth / "Images" / broken).write_bytes(b"not a picture")
    stages = []
    opened = open_dataset(synth, seed=2, on_stage=stages.append)
    assert stages and "verifying" in stages[0]
    assert list(opened.unreadable) == [broken] and list(opened.left_out["test"]) == [broken]
    assert opened.left_out["train"] == opened.left_out["val"] == {}
    assert [s.path for s in opened.test] == [s.path for s in splits.test if s.path != broken]
    assert opened.train == splits.train and opened.val == splits.val and opened.official

    unverified = open_dataset(synth, seed=2, verify=False)
    assert unverified.unreadable == {} and broken in {s.path for s in unverified.test}
    assert unverified.leaving_out(opened.unreadable) == opened
    assert opened.leaving_out(opened.unreadable) == opened  # a verdict taken twice changes nothing


def test_open_dataset_refuses_an_empty_required_split_before_verifying(synth):
    from dogbreed.datasets import open_dataset

    stages, notes = [], []
    tiny = open_dataset(synth, limit_per_class=1, verify=False)
    assert all(len(tiny.part(name)) == 3 for name in ("train", "val", "test"))
    for p in (synth / "Images").rglob("*.jpg"):
        if p.name != "n02085620_00011.jpg":
            p.unlink()
    (synth / "lists").rename(synth / "lists-away")  # a seeded split, which says so in a note
    with pytest.raises(DogbreedError, match=r"too small to split into train/validation/test \(\d+/\d+/\d+\)"):
        open_dataset(synth, require=("train", "val", "test"), on_stage=stages.append, on_note=notes.append)
    with pytest.raises(DogbreedError, match="the val split of .* is empty"):
        open_dataset(synth, require=("val",))
    assert stages == [] and "seeded" in notes[0]  # nothing verified; the note came first


def test_dataset_info_cli(cli, synth):
    report = cli.json("dataset", "info", "--dataset", synth)
    assert report["classes"] == 3 and report["images"] == 36 and report["official_split"]
    assert report["official_test"] == 9 and report["unreadable"] == []


# ---------------------------------------------------------------- download against a local server


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server(synth):
    images = {f"Images/{p.parent.name}/{p.name}": p.read_bytes() for p in sorted((synth / "Images").rglob("*.jpg"))}
    lists = {p.name: p.read_bytes() for p in (synth / "lists").glob("*.mat")}  # bare, as Stanford ships them
    with Server({"images.tar": _tar_bytes(images), "lists.tar": _tar_bytes(lists)}) as srv:
        yield srv


def test_download_resumes_checks_and_extracts_idempotently(cli, server, tmp_path):
    server.behaviour["images.tar"] = "cut_once"
    dest = tmp_path / "stanford"
    result = cli("dataset", "download", "--dir", dest, "--url", server.url, expect=1)
    assert "run the same command again to resume" in result.output
    assert (dest / "images.tar.part").stat().st_size > 0

    out = cli.json("dataset", "download", "--dir", dest, "--url", server.url)
    assert [a["status"] for a in out["archives"]] == ["extracted", "extracted"]
    assert ("images.tar", f"bytes={len(server.files['images.tar']) // 2}-") in server.requests  # resumed
    index = dataset.scan(dest)
    assert len(index.samples) == 36 and dataset.official_lists(dest) is not None

    before = len(server.requests)
    again = cli.json("dataset", "download", "--dir", dest, "--url", server.url)
    assert [a["status"] for a in again["archives"]] == ["already extracted"] * 2
    assert len(server.requests) == before  # nothing fetched twice


def test_an_archive_that_escapes_the_target_is_refused(cli, server, tmp_path):
    server.files["images.tar"] = _tar_bytes({"Images/ok.txt": b"fine", "../escaped.txt": b"gotcha"})
    dest = tmp_path / "stanford"
    result = cli("dataset", "download", "--dir", dest, "--url", server.url, expect=1)
    assert "refusing to extract" in result.output
    assert not (tmp_path / "escaped.txt").exists()


def test_a_file_that_is_not_a_tar_is_refused(cli, server, tmp_path):
    server.files["images.tar"] = b"<html>Service unavailable</html>" * 40
    result = cli("dataset", "download", "--dir", tmp_path / "d", "--url", server.url, expect=1)
    assert "not a tar archive" in result.output


def test_a_truncated_tar_is_refused(tmp_path):
    data = _tar_bytes({"Images/a.bin": b"x" * 5000, "Images/b.bin": b"y" * 5000})
    path = tmp_path / "images.tar"
    path.write_bytes(data[:6000])
    with pytest.raises(DogbreedError, match="truncated"):
        archive.check_tar(path)


def test_unreachable_server_is_a_one_line_error(cli, tmp_path):
    result = cli("dataset", "download", "--dir", tmp_path / "d", "--url", "http://127.0.0.1:9/", expect=1)
    assert "cannot download" in result.output and "Traceback" not in result.output
