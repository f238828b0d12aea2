"""Your own breeds and labels, through the real CLI and the real store: breeds add/remove, label, upload -g, the
list filters that find what to label next, and what hostile or mistaken input does (one line, nothing changed)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.images import jpeg_bytes, write


def one_line_error(result) -> str:
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.output
    return result.stderr


def test_breeds_add_lists_own_breeds_marked_and_a_stable_key(cli):
    added = cli.json("breeds", "add", "Australian", "shepherd", "--note", "Rex and Luna")
    assert added["wnid"] == "own:australian-shepherd" and added["own"] is True and added["note"] == "Rex and Luna"
    rows = cli.json("breeds")
    assert len(rows) == 121 and rows[-1]["name"] == "Australian shepherd" and rows[-1]["own"] is True
    assert sum(r["own"] for r in rows) == 1 and not any(r["wnid"].startswith("own:") for r in rows[:120])
    assert [r["name"] for r in cli.json("breeds", "shepherd")] == ["German shepherd", "Australian shepherd"]
    assert "(1 of your own)" in cli("breeds", "shep").stdout


@pytest.mark.parametrize(
    "name, expected",
    [
        ("australian-SHEPHERD", "already one of your breeds"),
        ("Beagle", "already a Stanford breed (n02088364)"),
        ("golden_retriever", "already a Stanford breed"),
        ("\x1b[2Jevil", "control or invisible characters"),
        ("x" * 10_000, "at most 64 characters"),
        ("1234", "needs at least one letter"),
        ("n02088364", "looks like a breed key"),
        ("own:rex", "looks like a breed key"),
    ],
)
def test_a_breed_added_twice_or_a_bad_name_is_one_line_and_adds_nothing(cli, name, expected):
    cli("breeds", "add", "Australian shepherd")
    assert expected in one_line_error(cli("breeds", "add", name, expect=1))
    assert cli.sql("SELECT name FROM breeds") == [("Australian shepherd",)]


def test_markup_in_a_name_is_kept_and_printed_literally(cli):
    cli("breeds", "add", "[bold red]Loud[/bold red] dog")
    assert "[bold red]Loud[/bold red] dog" in cli("breeds", "loud").stdout


def test_a_typo_never_creates_a_breed_and_says_how_to_add_one(cli, tmp_path):
    write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    error = one_line_error(cli("upload", tmp_path / "a.jpg", "-g", "Labradoodle", expect=1))
    assert "unknown breed 'Labradoodle'" in error and "dogbreed breeds add NAME" in error
    assert not cli.db.exists()  # refused before the store was even created
    cli("breeds")  # an existing store: still nothing added
    cli("upload", tmp_path / "a.jpg", "-g", "Labradoodle", expect=1)
    assert cli.sql("SELECT COUNT(*) FROM breeds") == [(0,)] and cli.sql("SELECT COUNT(*) FROM images") == [(0,)]


def test_one_breed_matcher_takes_a_unique_prefix_or_word_and_lists_ambiguity(cli, tmp_path):
    write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    write(tmp_path / "b.jpg", jpeg_bytes(seed=2))
    cli("upload", tmp_path / "a.jpg", "-g", "labrador")
    assert cli.sql("SELECT ground_truth FROM images") == [("n02099712",)]
    error = one_line_error(cli("upload", tmp_path / "b.jpg", "-g", "retriever", expect=1))
    assert "ambiguous" in error and "Golden retriever" in error and "Labrador retriever" in error
    assert [r["id"] for r in cli.json("list", "--breed", "labr")] == [1]


def test_label_sets_corrects_and_clears_with_history(cli, uploaded):
    ids = uploaded(3)
    cli("breeds", "add", "Shiba Inu")
    cli("label", *ids[:2], "shiba")
    cli("label", ids[1], "beagle")
    done = cli.json("label", *ids, "beagle")
    assert done["changed"] == [ids[0], ids[2]] and done["unchanged"] == [ids[1]]
    cli("label", ids[0], "--clear")
    labels = dict(cli.sql("SELECT id, ground_truth FROM images"))
    assert labels == {ids[0]: None, ids[1]: "n02088364", ids[2]: "n02088364"}
    history = cli.sql("SELECT old, new, how FROM label_changes WHERE image_id = ? ORDER BY id", (ids[0],))
    assert history == [(None, "own:shiba-inu", "label"), ("own:shiba-inu", "n02088364", "label"),
                       ("n02088364", None, "clear")]  # fmt: skip
    assert [r["id"] for r in cli.json("list", "--unlabelled")] == [ids[0]]


def test_a_label_naming_an_unknown_id_changes_no_label(cli, uploaded):
    ids = uploaded(2)
    error = one_line_error(cli("label", ids[0], 999, ids[1], "beagle", expect=1))
    assert "no image with id 999" in error and "no label was changed" in error
    assert cli.sql("SELECT COUNT(*) FROM images WHERE ground_truth IS NOT NULL") == [(0,)]
    assert cli.sql("SELECT COUNT(*) FROM label_changes") == [(0,)]
    assert "unknown breed" in one_line_error(cli("label", ids[0], "Labradoodle", expect=1))
    assert "not an image id" in one_line_error(cli("label", "three", "beagle", expect=1))


def test_a_breed_in_use_cannot_be_removed(cli, uploaded):
    cli("breeds", "add", "Shiba Inu")
    ids = uploaded(2, breed="shiba inu")
    error = one_line_error(cli("breeds", "remove", "shiba inu", expect=1))
    assert "2 image(s) labelled with it" in error
    assert "Stanford breed" in one_line_error(cli("breeds", "remove", "beagle", expect=1))
    assert "not one of your breeds" in one_line_error(cli("breeds", "remove", "shiba", expect=1))  # exact names only
    cli("label", *ids, "--clear")
    cli("breeds", "remove", "Shiba Inu")
    assert cli.sql("SELECT COUNT(*) FROM breeds") == [(0,)]


def test_a_breed_used_by_a_run_cannot_be_removed(cli):
    added = cli.json("breeds", "add", "Shiba Inu")
    conn = sqlite3.connect(cli.db)
    with conn:
        conn.execute(
            "INSERT INTO runs (name, status, model, mode, device, dataset, params, num_classes, started_at, classes) "
            "VALUES ('r', 'finished', 'resnet18', 'finetune', 'cpu', 'store', '{}', 2, 'now', ?)",
            (f'["n02088364", "{added["wnid"]}"]',),
        )
    conn.close()
    assert "training run(s) 1" in one_line_error(cli("breeds", "remove", "Shiba Inu", expect=1))


def test_list_finds_wrong_and_uncertain_predictions_most_uncertain_first(cli, uploaded, golden_weights):
    ids = uploaded(3)
    cli("label", ids[0], "golden retriever")
    cli("label", ids[1], "beagle")
    cli("predict", "--all", "--model", "resnet18", "--weights", golden_weights)  # says golden retriever to all
    assert [r["id"] for r in cli.json("list", "--wrong")] == [ids[1]]
    assert [r["id"] for r in cli.json("list", "--wrong", "--model", "resnet18", "--weights", golden_weights)] == [
        ids[1]
    ]
    assert cli.json("list", "--uncertain") == []  # the golden weights are sure of themselves
    conn = sqlite3.connect(cli.db)
    with conn:
        for image_id, p in ((ids[0], 0.3), (ids[2], 0.1)):
            conn.execute("UPDATE predictions SET top1_prob = ? WHERE image_id = ?", (p, image_id))
    conn.close()
    assert [r["id"] for r in cli.json("list", "--uncertain")] == [ids[2], ids[0]]
    assert [r["id"] for r in cli.json("list", "--uncertain", "--min-probability", "0.2")] == [ids[2]]
    assert "goes with --uncertain" in one_line_error(cli("list", "--min-probability", "0.2", expect=1))


def test_upload_with_an_own_breed_and_show_it_by_name(cli, tmp_path):
    cli("breeds", "add", "Shiba Inu")
    write(tmp_path / "s.jpg", jpeg_bytes(seed=3))
    result = cli.json("upload", tmp_path / "s.jpg", "-g", "shiba")["results"][0]
    assert result["ground_truth"] == "own:shiba-inu" and result["ground_truth_name"] == "Shiba Inu"
    assert cli.json("show", result["image_id"])["ground_truth_name"] == "Shiba Inu"
    assert cli.json("list")[0]["ground_truth_name"] == "Shiba Inu"
