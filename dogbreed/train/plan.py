"""The model plan: which architecture, mode, preprocessing and starting weights a run trains, for a fresh run,
a warm start (``--from``) or a resumed run; and the model built from it, the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.formats.checkpoint import CheckpointMeta, read_checkpoint
from dogbreed.imaging import Preprocessing
from dogbreed.models.build import Classifier, build_model, resolve_arch
from dogbreed.store import connect
from dogbreed.train.config import TrainConfig
from dogbreed.train.distributed import Context


def preprocessing_for(arch: str, image_size: int | None) -> Preprocessing:
    """The architecture's own published preprocessing (torchvision's weights transforms: resize, crop,
    interpolation, mean, std); an explicit ``image_size`` sets the crop and scales the resize with it."""
    from dogbreed.models import zoo

    try:
        prep = zoo.describe(arch).preprocessing
    except DogbreedError:  # an architecture without published weights: the classic ImageNet recipe
        return Preprocessing.for_crop(image_size or 224)
    if image_size is None or image_size == prep.crop_size:
        return prep
    resize = int(round(image_size * prep.resize_size / prep.crop_size))
    return Preprocessing(image_size, resize, prep.interpolation, prep.mean, prep.std)


@dataclass
class Plan:
    """What every rank needs to build the same model (rank 0 decides it; weights reach the others by broadcast)."""

    arch: str
    mode: str
    prep: Preprocessing
    imagenet_head: bool
    imagenet_overlap: bool
    init_from: str | None = None  # what the record says the weights came from
    notes: list[str] = field(default_factory=list)  # warnings
    explained: str = ""  # a choice made for the user, said when the run starts


@dataclass
class Start:
    """Where the weights (and, when resuming, the rest of the training state) come from: rank 0 only."""

    weights: dict | None = None  # warm start: tensors to carry (name -> tensor)
    state: dict | None = None  # resume: the saved training state
    model_state: dict | None = None  # resume: the weights of the last completed epoch


def _warm_source(ref: str, conn) -> tuple[Any, Any]:
    """The checkpoint a warm start reads (a run id or a path) as a ModelSource, and its run when the store has
    it."""
    from dogbreed.models import sources

    if ref.isdigit():
        source = sources.from_run(conn, int(ref))
    else:
        source = sources.from_checkpoint(ref)
        if source.kind != "checkpoint":
            raise DogbreedError(f"--from needs a dogbreed checkpoint (.pt), not an exported model: {ref}")
    return source, sources.training_run(conn, source)


def plan_warm_start(config: TrainConfig, classes: list[list[str]], db_path: Path) -> tuple[Plan, Start]:
    """--from: the source's architecture, mode and preprocessing unless the options say otherwise; its weights
    wherever they fit (the head only for the same breeds in the same mode)."""
    from dogbreed.models.sources import imagenet_overlap

    conn = connect(db_path)
    try:
        source, source_run = _warm_source(str(config.init_from), conn)
    finally:
        conn.close()
    meta, state, _ = read_checkpoint(source.ref, expect_sha256=source.key)  # the file its run was found by
    if config.model is not None and resolve_arch(config.model) != meta.arch:
        raise DogbreedError(
            f"--from {config.init_from} is a {meta.arch}; a warm start keeps the architecture (drop --model)"
        )
    mode = config.mode or meta.mode
    if config.image_size in (None, meta.image_size):
        prep = meta.preprocessing
    else:
        prep = preprocessing_for(meta.arch, config.image_size)
    same_head = mode == meta.mode and meta.wnids == [c[0] for c in classes]
    carried = {k: v for k, v in state.items() if k.startswith(("backbone.", "imagenet_fc.")) or same_head}
    notes = []
    if not same_head:
        why = f"{meta.mode} head -> {mode} head" if mode != meta.mode else "the dataset's breeds differ"
        notes.append(f"warm start from {source.name}: backbone carried over, the head starts fresh ({why})")
    overlap = imagenet_overlap(source, source_run, meta)
    label = f"run {source_run.id}" if source_run is not None else source.ref
    plan = Plan(meta.arch, mode, prep, meta.imagenet_head and mode == "extractor", overlap, label, notes)
    return plan, Start(weights=carried)


IMPLIED_FINETUNE = (
    "--no-pretrained: training the whole network (--finetune), since a head on a frozen random backbone learns "
    "next to nothing (--extractor --random-backbone asks for one)"
)


def plan_fresh(config: TrainConfig) -> Plan:
    """A new run's plan. Without a mode asked for: extractor on ImageNet weights, finetune without them."""
    arch = resolve_arch(config.model or "ResNet")
    from_imagenet = (config.pretrained and not config.random_backbone) or config.weights is not None
    mode = config.mode or ("extractor" if from_imagenet or config.random_backbone else "finetune")
    keep = mode == "extractor" and from_imagenet
    explained = IMPLIED_FINETUNE if config.mode is None and mode == "finetune" else ""
    return Plan(arch, mode, preprocessing_for(arch, config.image_size), keep, from_imagenet, explained=explained)


def build(plan: Plan, config: TrainConfig, num_classes: int, ctx: Context, fresh: bool) -> Classifier:
    """The model on every rank. Only a fresh run on rank 0 reads ImageNet weights: warm starts and resumes load
    their own, and the other ranks get rank 0's by broadcast."""
    if ctx.main and fresh and plan.init_from is None:
        pretrained = config.pretrained and config.weights is None and not config.random_backbone
        return build_model(
            plan.arch,
            plan.mode,
            num_classes,
            pretrained=pretrained,
            weights_file=config.weights,
            keep_imagenet_head=plan.imagenet_head,
        )
    return build_model(plan.arch, plan.mode, num_classes, keep_imagenet_head=plan.imagenet_head)


def load_carried(model: Classifier, carried: dict, what: str) -> None:
    own = model.state_dict()
    fits = {k: v for k, v in carried.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not any(k.startswith("backbone.") for k in fits):
        raise DogbreedError(f"{what} does not fit this model (no backbone weights match)")
    model.load_state_dict(fits, strict=False)


def plan_resumed(state: dict, config: TrainConfig, classes: list[list[str]]) -> Plan:
    meta = state["meta"]
    if [c[0] for c in meta["classes"]] != [c[0] for c in classes]:
        raise DogbreedError(
            f"the dataset {config.dataset} no longer has the breeds this run trained on; resume with the same data"
        )
    prep = Preprocessing(meta["image_size"], meta["resize_size"], meta["interpolation"], meta["mean"], meta["std"])
    overlap = bool((meta.get("metrics") or {}).get("imagenet_overlap", False))
    return Plan(meta["arch"], meta["mode"], prep, bool(meta["imagenet_head"]), overlap)


def checkpoint_meta(plan: Plan, classes: list[list[str]], synthetic: bool = False) -> CheckpointMeta:
    """What the run's checkpoints say about the model: architecture, mode, breeds, preprocessing, and whether it
    learnt from a synthetic dataset."""
    prep = plan.prep
    return CheckpointMeta(
        plan.arch,
        plan.mode,
        classes,
        image_size=prep.crop_size,
        mean=list(prep.mean),
        std=list(prep.std),
        resize_size=prep.resize_size,
        interpolation=prep.interpolation,
        metrics={"imagenet_overlap": plan.imagenet_overlap, "synthetic": synthetic},
    )


def decide(
    config: TrainConfig, db_path: Path, classes: list[list[str]], state: dict | None, model_state: dict | None
) -> tuple[Plan, Start]:
    """Rank 0's plan: a resumed run's own (``state``), a warm start's (``--from``), or a fresh run's."""
    if state is not None:
        return plan_resumed(state, config, classes), Start(state=state, model_state=model_state)
    if config.init_from is not None:
        return plan_warm_start(config, classes, db_path)
    return plan_fresh(config), Start()
