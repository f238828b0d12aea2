"""dataset download / info / synthetic. Every one of them takes the dataset folder as --dataset, with the same
default as train and eval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dogbreed.cli import dataset_app
from dogbreed.cli.common import (
    Column,
    CsvOpt,
    DatasetOpt,
    JsonOpt,
    NlOpt,
    QuietOpt,
    emit,
    err,
    examples,
    out,
    output_format,
    pick,
    print_json,
    safe,
    warn,
)

DirOld = typer.Option(None, "--dir", hidden=True, help="Old name of --dataset.")


def _dataset_dir(dataset: Path | None, old: Path | None) -> Path:
    from dogbreed.config import resolve_paths

    return resolve_paths(dataset=pick(dataset, old, "--dir", "--dataset")).dataset


@dataset_app.command(
    "download",
    epilog=examples(
        "dogbreed dataset download",
        "dogbreed dataset download --dataset ~/data/stanford-dogs --annotations",
        "dogbreed dataset download --url http://mirror.example/stanford-dogs/ --timeout 600",
    ),
)
def dataset_download_cmd(
    dataset: DatasetOpt = None,
    directory: Path | None = DirOld,
    url: str | None = typer.Option(
        None, "--url", help="Base URL of the archives (default: Stanford's; a custom one skips the checksum check)."
    ),
    annotations: bool = typer.Option(False, "--annotations", help="Also fetch annotation.tar (bounding boxes)."),
    timeout: int = typer.Option(
        3 * 3600, "--timeout", min=1, max=7 * 24 * 3600, help="Give up on one archive after this many seconds."
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download images.tar and lists.tar (resumable), verify them and extract them safely.

    Stanford's archives are checked against their published size and sha256 before anything is extracted; every
    member must be a plain file or folder landing inside the dataset folder.
    """
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from dogbreed.datasets.archive import Limits
    from dogbreed.datasets.stanford import STANFORD_URL, download

    dest = _dataset_dir(dataset, directory)
    show = not (as_json or quiet) and err.is_terminal
    with Progress(
        TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(), console=err, disable=not show
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        report = download(
            dest,
            url or STANFORD_URL,
            annotations=annotations,
            on_progress=on_progress,
            on_warning=warn,
            limits=Limits(deadline_s=float(timeout)),
        )
    if as_json:
        print_json({"dataset": str(dest), "archives": report})
        return
    if not quiet:
        for item in report:
            extra = f" ({item['members']} files)" if "members" in item else ""
            out.print(f"{item['archive']}: {item['status']}{extra}")
    out.print(f"dataset ready in {safe(dest)}", soft_wrap=True)


INFO_COLUMNS = [Column("wnid", "WordNet id"), Column("name", "breed"), Column("images", "images", justify="right")]


@dataset_app.command("info", epilog=examples("dogbreed dataset info", "dogbreed dataset info --no-verify --json"))
def dataset_info_cmd(
    dataset: DatasetOpt = None,
    directory: Path | None = DirOld,
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Decode every image once (cached) and list bad ones."
    ),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Breeds, images per breed, whether the official split is present, and unreadable files."""
    from rich.progress import Progress

    from dogbreed.datasets.stanford import info

    fmt = output_format(as_json, as_csv, as_nl)
    root = _dataset_dir(dataset, directory)
    with Progress(console=err, transient=True, disable=fmt != "table" or not verify or not err.is_terminal) as progress:
        task = progress.add_task("verifying", total=None)
        report = info(root, run_verify=verify, on_progress=lambda i, n: progress.update(task, completed=i, total=n))
    if fmt == "json":
        print_json(report)
    else:
        _print_info(report, fmt, verify)
    if report["incomplete"]:
        raise typer.Exit(1)


def _print_info(report: dict[str, Any], fmt: str, verify: bool) -> None:
    emit(report["per_class"], INFO_COLUMNS, fmt, title=f"{safe(report['dataset'])}: {report['classes']} breeds")
    if report["incomplete"]:  # on stderr, so that CSV and NL output show it too
        err.print(f"[red]INCOMPLETE:[/red] {safe(report['incomplete'])}; train refuses it", soft_wrap=True)
    if fmt != "table":
        return
    split = (
        f"official split: {report['official_train']} train / {report['official_test']} test"
        if report["official_split"]
        else "no official lists/: training will use a seeded stratified split"
    )
    out.print(f"{report['images']} images; {split}")
    if verify:
        bad = report["unreadable"]
        out.print(f"{len(bad)} unreadable file(s)" + (":" if bad else ""))
        for item in bad:
            out.print(f"  {safe(item['path'])}: {safe(item['reason'])}", soft_wrap=True)


@dataset_app.command(
    "synthetic",
    epilog=examples(
        "dogbreed dataset synthetic && dogbreed train --no-pretrained --image-size 64 --epochs 4",
        "dogbreed dataset synthetic --dataset dataset/synthetic-dogs --breeds 6 --per-class 40",
    ),
)
def dataset_synthetic_cmd(
    dataset: DatasetOpt = None,
    directory: Path | None = DirOld,
    breeds: int = typer.Option(6, "--breeds", min=2, max=120, help="Number of breeds."),
    per_class: int = typer.Option(40, "--per-class", min=4, max=10_000, help="Images per breed."),
    size: int = typer.Option(96, "--size", min=16, max=2048, help="Image width in pixels (height is 3/4 of it)."),
    lists: bool = typer.Option(True, "--lists/--no-lists", help="Also write official-style lists/*.mat."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Random seed."),
) -> None:
    """Write a small SYNTHETIC dataset (stripe patterns, not dogs) in the Stanford layout.

    It goes where train looks by default, so 'dogbreed dataset synthetic && dogbreed train' works offline.
    """
    from dogbreed.datasets.synthetic import make_synthetic
    from dogbreed.errors import DogbreedError

    root = _dataset_dir(dataset, directory)
    if (root / "Images").exists():
        raise DogbreedError(f"{root}/Images already exists; choose another --dataset or remove it")
    chosen = make_synthetic(
        root, breeds=breeds, per_class=per_class, size=(size, size * 3 // 4), lists=lists, seed=seed
    )
    out.print(
        f"wrote {len(chosen) * per_class} synthetic images of {len(chosen)} breeds to {safe(root)}", soft_wrap=True
    )
