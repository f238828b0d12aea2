from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.images import jpeg_bytes, write


def _upload(cli, tmp_path, n=3, **kw):
    paths = [write(tmp_path / f"img{i}.jpg", jpeg_bytes(seed=100 + i)) for i in range(n)]
    args = ["upload", *paths]
    if kw.get("breed"):
        args += ["--ground-truth", kw["breed"]]
    return [r["image_id"] for r in cli.json(*args)["results"]]


def test_list_show_delete_roundtrip(cli, tmp_path):
    ids = _upload(cli, tmp_path, 3, breed="beagle")
    rows = cli.json("list")
    assert [r["id"] for r in rows] == ids
    assert rows[0]["ground_truth"] == "n02088364" and rows[0]["ground_truth_name"] == "Beagle"
    assert "data" not in rows[0]
    assert [r["id"] for r in cli.json("list", "--limit", 1, "--offset", 1)] == ids[1:2]
    assert [r["id"] for r in cli.json("list", "--after", ids[0])] == ids[1:]

    shown = cli.json("show", ids[0])
    assert shown["width"] == 64 and shown["height"] == 48 and shown["format"] == "JPEG"
    assert shown["predictions"] == []
    table = cli("show", ids[0]).output
    assert "Beagle" in table and "img0.jpg" in table

    assert cli.json("delete", ids[0]) == {"deleted": [ids[0]], "missing": []}
    assert [r["id"] for r in cli.json("list")] == ids[1:]


def test_missing_ids_are_one_line_errors(cli, tmp_path):
    _upload(cli, tmp_path, 1)
    for args in (("show", "42"), ("delete", "42")):
        result = cli(*args, expect=1)
        assert "no image with id 42" in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_unreadable_store_is_a_one_line_error(home, tmp_path):
    from tests.conftest import Cli

    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"definitely not sqlite" * 200)
    result = Cli(bogus)("list", expect=1)
    assert "bogus.db" in result.output and "Traceback" not in result.output


def test_db_location_flag_beats_env_beats_home(home, tmp_path, monkeypatch):
    from tests.conftest import Cli

    assert Cli(tmp_path / "flag.db").json("paths")["db"] == str(tmp_path / "flag.db")
    monkeypatch.setenv("DOGBREED_DB", str(tmp_path / "env.db"))
    from typer.testing import CliRunner

    from dogbreed.cli import app

    out = CliRunner().invoke(app, ["paths", "--json"]).stdout
    assert str(tmp_path / "env.db") in out and str(home) in out


def test_breeds_lists_all_120(cli):
    rows = cli.json("breeds")
    assert len(rows) == 120 and len({r["wnid"] for r in rows}) == 120
    assert {
        "wnid": "n02099267",
        "folder": "n02099267-flat-coated_retriever",
        "name": "Flat-coated retriever",
        "index": 54,
        "imagenet_index": 205,
    } in rows


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "1"]])
def test_light_commands_never_import_torch_or_matplotlib(home, args):
    code = (
        "import sys\n"
        "from dogbreed.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'matplotlib', 'sqlmodel') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "DOGBREED_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_python_dash_m_works(home):
    proc = subprocess.run([sys.executable, "-m", "dogbreed", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "dogbreed" in proc.stdout


def test_names_that_look_like_rich_markup_print_literally(cli, tmp_path):
    good = write(tmp_path / "[red]rex[1].jpg", jpeg_bytes(seed=77))
    bad = write(tmp_path / "[bold]notes.jpg", b"text")
    result = cli("upload", good, bad, expect=1)
    assert "[red]rex[1].jpg" in result.output and "[bold]notes.jpg" in result.output
    assert "[red]rex[1].jpg" in cli("list").output
