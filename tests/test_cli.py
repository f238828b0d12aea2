from __future__ import annotations

import json
import os
import shutil
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
    assert cli("delete", ids[1], "-q").output.strip() == "1 deleted"


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


def test_paths_name_the_weights_folder_torch_uses_and_the_exports_folder(cli, home, monkeypatch, tmp_path):
    from dogbreed.models.zoo import weights_dir  # torch.hub's own answer; it reads the variables at every call

    for env in ({}, {"TORCH_HOME": None, "XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"XDG_CACHE_HOME": None}):
        for name, value in env.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        paths = cli.json("paths")
        assert paths["weights"] == str(weights_dir()) and paths["exports"] == str(home / "exports")


def test_db_location_flag_beats_env_beats_home(home, tmp_path, monkeypatch):
    from tests.conftest import Cli

    assert Cli(tmp_path / "flag.db").json("paths")["db"] == str(tmp_path / "flag.db")
    monkeypatch.setenv("DOGBREED_DB", str(tmp_path / "env.db"))
    from typer.testing import CliRunner

    from dogbreed.cli import app

    out = CliRunner().invoke(app, ["paths", "--json"]).stdout
    assert str(tmp_path / "env.db") in out and str(home) in out


def test_breeds_search_ignores_case_and_separators_and_suggests(cli):
    for text in ("golden-retriever", "Golden Retriever", "golden_retriever", "n02099601"):
        assert [r["name"] for r in cli.json("breeds", text)] == ["Golden retriever"]
    assert "no breed matches 'goldn'; did you mean: Golden retriever?" in cli("breeds", "goldn").stdout


def test_breeds_lists_all_120(cli):
    rows = cli.json("breeds")
    assert len(rows) == 120 and len({r["wnid"] for r in rows}) == 120
    expected = {
        "wnid": "n02099267",
        "folder": "n02099267-flat-coated_retriever",
        "name": "Flat-coated retriever",
        "index": 54,
        "imagenet_index": 205,
        "own": False,
    }
    assert any(expected.items() <= row.items() for row in rows)


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "1"]])
def test_light_commands_never_import_torch_matplotlib_or_the_web_stack(home, args):
    code = (
        "import sys\n"
        "from dogbreed.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'matplotlib', 'sqlmodel', 'fastapi', 'starlette', 'uvicorn',"
        " 'jinja2', 'multipart') if m in sys.modules]\n"
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


# ---------------------------------------------------------------- conventions (one vocabulary, pipes, formats)


def _all_commands():
    import typer.main

    from dogbreed.cli import app

    root = typer.main.get_command(app)

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    return list(walk(root, "dogbreed"))


def test_every_short_flag_has_one_meaning_across_all_commands():
    meanings: dict[str, set[str]] = {}
    for _path, cmd in _all_commands():
        for param in cmd.params:
            opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
            longs = sorted(o for o in opts if o.startswith("--"))
            for short in (o for o in opts if len(o) == 2 and o.startswith("-")):
                meanings.setdefault(short, set()).add(longs[0] if longs else param.name)
    assert meanings, "no short flags found: the walk is broken"
    clashes = {short: names for short, names in meanings.items() if len(names) > 1}
    assert not clashes, f"short flags with several meanings: {clashes}"
    assert meanings["-b"] == {"--batch-size"} and meanings["-k"] == {"--top-k"} and meanings["-w"] == {"--workers"}


def test_every_command_help_ends_with_real_examples():
    leaves = [(path, cmd) for path, cmd in _all_commands() if not getattr(cmd, "commands", None)]
    assert len(leaves) >= 14
    for path, cmd in leaves:
        if cmd.hidden:
            continue
        epilog = cmd.epilog or ""
        assert "Examples:" in epilog and f"$ {path}" in epilog, f"{path} has no example of itself"


def test_usage_lines_are_readable(cli):
    usage = cli("upload", "--help").stdout
    assert "PATH..." in usage and "{paths}" not in usage


def _in_bash(tmp_path, script: str) -> subprocess.CompletedProcess:
    """``script`` run by bash with ``dogbreed`` on its PATH (this interpreter's dogbreed) and a HOME of its own.
    Completion is for the shell the command runs in, which typer finds among the process's ancestors; a test
    run has none of its own when CI starts it from a daemon, so bash is started here, and stays the command's
    parent: a lone command would be exec'd in place of bash, hence the trailing exit."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    launcher = bin_dir / "dogbreed"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dogbreed "$@"\n')
    launcher.chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path / "user"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([bash, "-c", f"{script}; exit $?"], capture_output=True, text=True, env=env, timeout=60)


def test_shell_completion_is_available(home, tmp_path):
    """--show-completion prints the script, --install-completion installs it, and it completes."""
    shown = _in_bash(tmp_path, "dogbreed --show-completion")
    assert shown.returncode == 0 and "_DOGBREED_COMPLETE=complete_bash" in shown.stdout, shown.stderr

    installed = _in_bash(tmp_path, "dogbreed --install-completion")
    assert installed.returncode == 0 and "bash completion installed in" in installed.stdout, installed.stderr
    script = tmp_path / "user" / ".bash_completions" / "dogbreed.sh"
    assert f"source '{script}'" in (tmp_path / "user" / ".bashrc").read_text()
    assert script.read_text().strip() == shown.stdout.strip()

    # what bash does on <TAB> after "dogbreed pre": the installed function asks dogbreed for the words
    words = _in_bash(
        tmp_path,
        f"source '{script}'; COMP_WORDS=(dogbreed pre); COMP_CWORD=1; _dogbreed_completion dogbreed; "
        'printf "%s\\n" "${COMPREPLY[@]}"',
    )
    assert words.returncode == 0 and words.stdout.split() == ["predict"], words.stdout + words.stderr


def test_piped_output_never_truncates_even_at_80_columns(cli, tmp_path, checkpoint):
    long_name = "n02088364_00039-a-rather-long-stanford-style-file-name-that-would-not-fit-80-columns.jpg"
    write(tmp_path / long_name, jpeg_bytes(seed=42))
    cli("upload", tmp_path / long_name)
    env = {**os.environ, "COLUMNS": "80", "DOGBREED_HOME": str(cli.db.parent)}
    listing = subprocess.run(
        [sys.executable, "-m", "dogbreed", "list"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert long_name in listing
    grep = subprocess.run(
        f"{sys.executable} -m dogbreed list | grep 00039-a-rather",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert grep.returncode == 0 and long_name in grep.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "dogbreed", "show", "1"], capture_output=True, text=True, env=env, check=True
    ).stdout
    sha = cli.json("show", 1)["sha256"]
    assert sha in shown and long_name in shown


def test_csv_and_nl_listings_parse(cli, tmp_path):
    import csv
    import io

    for i in range(3):
        write(tmp_path / f"p,{i}.jpg", jpeg_bytes(seed=300 + i))  # a comma in the name: CSV must quote it
    cli("upload", tmp_path, "--ground-truth", "beagle")
    rows = list(csv.DictReader(io.StringIO(cli("list", "--csv").stdout)))
    assert [r["filename"] for r in rows] == ["p,0.jpg", "p,1.jpg", "p,2.jpg"]
    assert rows[0]["ground_truth_name"] == "Beagle" and rows[0]["id"] == "1"
    lines = cli("list", "--nl").stdout.splitlines()
    assert [json.loads(line)["filename"] for line in lines] == ["p,0.jpg", "p,1.jpg", "p,2.jpg"]
    for args in (("tasks",), ("breeds",), ("stats",), ("paths",)):
        text = cli(*args, "--csv").stdout
        assert list(csv.reader(io.StringIO(text)))[0], args  # a header row at least
        for line in cli(*args, "--nl").stdout.splitlines():
            json.loads(line)
    assert "choose one output format" in cli("list", "--csv", "--json", expect=1).output


def test_upload_json_returns_the_stored_record_like_show(cli, tmp_path):
    path = write(tmp_path / "IMG_0001.jpg", jpeg_bytes(seed=9))
    result = cli.json("upload", path, "--filename", "rex.jpg", "--ground-truth", "golden retriever")["results"][0]
    shown = cli.json("show", result["id"])
    for key in (
        "id",
        "filename",
        "sha256",
        "format",
        "width",
        "height",
        "size_bytes",
        "ground_truth",
        "ground_truth_name",
        "created_at",
    ):
        assert result[key] == shown[key], key
    assert result["filename"] == "rex.jpg" and result["ground_truth_name"] == "Golden retriever"
    assert result["status"] == "new" and result["path"] == str(path)


def test_quiet_prints_only_the_summary(cli, tmp_path):
    for i in range(3):
        write(tmp_path / f"q{i}.jpg", jpeg_bytes(seed=400 + i))
    out = cli("upload", tmp_path, "--quiet").stdout
    assert out.strip() == "3 new, 0 duplicate, 0 refused"


def test_old_option_names_still_work_with_a_deprecation_note(cli, tmp_path):
    target = tmp_path / "synth"
    result = cli("dataset", "synthetic", "--dir", target, "--breeds", "2", "--per-class", "4", "--size", "32")
    assert "Deprecated: --dir is now --dataset" in result.stderr and (target / "Images").is_dir()
    result = cli("dataset", "info", "--dir", target, "--no-verify", "--json")
    assert json.loads(result.stdout)["classes"] == 2 and "Deprecated" in result.stderr


def test_one_dataset_default_for_every_command(cli, home):
    """dataset synthetic writes where train and dataset info look by default."""
    cli("dataset", "synthetic", "--breeds", "2", "--per-class", "4", "--size", "32")
    assert (home / "dataset" / "Images").is_dir()
    assert cli.json("dataset", "info", "--no-verify")["classes"] == 2
    assert cli.json("paths")["dataset"] == str(home / "dataset")


def test_predict_piped_leaves_no_progress_bar_and_one_rate(cli, uploaded, checkpoint):
    uploaded(3)
    env = {**os.environ, "DOGBREED_HOME": str(cli.db.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "dogbreed", "predict", "--all", "-c", str(checkpoint)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "predicting" not in proc.stderr and "━" not in proc.stderr
    assert "3 predicted, 0 failed" in proc.stdout and "images/s" in proc.stdout


def test_the_readme_python_example_runs(cli, tmp_path, golden_weights, monkeypatch):
    """The five lines of Python in the README classify a photo (the default model pinned to offline weights)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(import dogbreed\n.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 6
    cli("models", "--default", "resnet18", "--weights", golden_weights, "--json")
    write(tmp_path / "dog.jpg", jpeg_bytes(seed=11))
    write(tmp_path / "notes.txt", b"a shopping list")
    monkeypatch.chdir(tmp_path)
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "README.md", "exec"), {})
    printed = buffer.getvalue()
    assert "dog.jpg Golden retriever 100.0% of breeds, dog\n" in printed, printed  # among breeds; a dog at all
    assert "notes.txt" in printed and "not a recognised image" in printed, printed


def test_python_api_store_round_trip(home, tmp_path, golden_weights):
    import dogbreed

    write(tmp_path / "a.jpg", jpeg_bytes(seed=21))
    with dogbreed.Store(tmp_path / "api.db") as store:
        uploaded = store.upload([tmp_path / "a.jpg"], ground_truth="beagle")
        assert uploaded[0].status == "new" and uploaded[0].image.ground_truth == "n02088364"
        outcome = store.predict(every=True, model="resnet18", weights=golden_weights)
        assert outcome.done == 1
        pred = store.predictions(uploaded[0].image_id)[0]
        assert pred.top(1)[0].breed == "Golden retriever" and pred.dog_probability > 0.99
        assert [i.id for i in store.images()] == [uploaded[0].image_id]
    model = dogbreed.load_model("resnet18", weights=golden_weights)
    from PIL import Image

    results = model.predict([tmp_path / "a.jpg", b"not an image", Image.new("RGB", (40, 30))], top_k=2)
    assert [r.breed for r in results] == ["Golden retriever", None, "Golden retriever"]
    assert [r.source for r in results] == [str(tmp_path / "a.jpg"), "<bytes>", "<image>"]
    assert results[1].error and "not a recognised image format" in results[1].error
    assert results[0].is_dog is True and len(results[0].top) == 2


def test_bad_option_values_are_one_line_with_where_to_look(cli):
    result = cli("show", "1", "--top-k", "0", expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--top-k" in lines[0] and "dogbreed show --help" in lines[0]
    assert "No such command 'nosuch'" in cli("nosuch", expect=2).stderr
    from typer.testing import CliRunner

    from dogbreed.cli import app

    misplaced = CliRunner().invoke(app, ["list", "--db", "x.db"]).stderr
    assert "--db goes before the command: dogbreed --db PATH list" in misplaced
