"""The two ways an epoch is trained: the full network on augmented images (``FullFitter``), or, in extractor mode,
the head alone on backbone features computed once (``CachedHeadFitter``). Either gives, per epoch, the training
figures and the gathered validation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from dogbreed.datasets import OpenedDataset
from dogbreed.datasets.loaders import Batch, DatasetImages, EvalTransform, TrainTransform, loader
from dogbreed.datasets.stanford import Sample
from dogbreed.errors import DogbreedError
from dogbreed.imaging import Preprocessing
from dogbreed.train import distributed
from dogbreed.train.config import TrainConfig
from dogbreed.train.distributed import Context
from dogbreed.train.features import FeatureCache, backbone_key, image_keys
from dogbreed.train.loops import Evaluation, Loop, in_order

Trained = tuple[float, float, float]  # the epoch's training loss, accuracy and macro F1


def train_sampler(dataset: Any, ctx: Context, seed: int) -> Any:
    """Each rank's share of the training data, reshuffled every epoch (None when not distributed)."""
    if not ctx.active:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed)


def head_loader(
    feats: torch.Tensor, labels: torch.Tensor, batch: int, shuffle: bool, seed: int, sampler: Any = None
) -> DataLoader:
    """Batches of cached feature vectors, shaped like the image loaders' ``Batch``."""

    def collate(items) -> Batch:
        return Batch(torch.stack([f for f, _ in items]), torch.stack([y for _, y in items]), [], [])

    drop_last = shuffle and sampler is None and len(labels) % batch == 1  # never leave BatchNorm a batch of one
    return DataLoader(
        TensorDataset(feats, labels),
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
    )


class FullFitter:
    """Each epoch: the images (augmented) through the trainable network, then validation."""

    def __init__(self, model: Any, data: OpenedDataset, config: TrainConfig, prep: Preprocessing, loop: Loop):
        self.model, self.data, self.loop = model, data, loop
        ctx = loop.ctx
        train_set = DatasetImages(data.index, data.train, TrainTransform(prep))
        self.sampler = train_sampler(train_set, ctx, config.seed)
        self.train_loader = loader(
            train_set, config.batch, workers=config.workers, shuffle=True, seed=config.seed, sampler=self.sampler
        )
        val_share = [data.val[i] for i in ctx.shard(len(data.val))]
        val_set = DatasetImages(data.index, val_share, EvalTransform(prep))
        self.val_loader = loader(val_set, config.batch, workers=config.workers, seed=config.seed)
        self.net = distributed.wrap(ctx, model, loop.device)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)

    @property
    def skipped(self) -> set[str]:
        return self.loop.skipped

    @property
    def generator(self) -> torch.Generator:
        return self.train_loader.generator

    def epoch(self, n: int, scaler: Any) -> tuple[Trained, Evaluation]:
        listener = self.loop.listener
        if self.sampler is not None:
            self.sampler.set_epoch(n)
        listener.start(f"epoch {n}: train", len(self.data.train) // self.loop.ctx.world)
        trained = self.loop.train_epoch(self.net, self.train_loader, self.optimizer, scaler)
        listener.stop()
        self.model.eval()
        listener.start(f"epoch {n}: validate", len(self.val_loader.dataset))
        local = self.loop.evaluate(self.model, self.val_loader)
        listener.stop()
        return trained, self.loop.gathered(local, [s.path for s in self.data.val])


class CachedHeadFitter:
    """Extractor mode with cached features: the frozen backbone sees each (centre-cropped) image once, in
    epoch 1, each rank a share, gathered so every rank holds all of them; every epoch then trains the head alone on
    the stored feature vectors."""

    def __init__(self, model: Any, data: OpenedDataset, config: TrainConfig, prep: Preprocessing, loop: Loop):
        self.model, self.data, self.config, self.prep, self.loop = model, data, config, prep, loop
        self.net = distributed.wrap(loop.ctx, model.head, loop.device)
        self.optimizer = torch.optim.AdamW(model.head.parameters(), lr=config.lr, weight_decay=1e-4)
        self.features: tuple | None = None
        self.generator = torch.Generator()  # unused: each epoch's head loader is seeded by the epoch
        self._features_caches: dict[str, FeatureCache] = {}

    @property
    def skipped(self) -> set[str]:
        return self.loop.skipped

    def _cache(self, exact: bool) -> FeatureCache:
        precision = "fp32" if exact else self.loop.amp.name
        if precision not in self._features_caches:
            from dogbreed.config import resolve_paths

            key = backbone_key(self.model, self.prep, precision)
            self._features_caches[precision] = FeatureCache.open(resolve_paths().cache / "features", key)
        return self._features_caches[precision]

    def _compute(self, samples: list[Sample], exact: bool) -> dict[str, torch.Tensor]:
        """{sample path: feature} of the images the backbone has not seen yet (unreadable ones left out)."""
        if not samples:
            return {}
        cfg = self.config
        images = DatasetImages(self.data.index, samples, EvalTransform(self.prep))
        batches = loader(images, cfg.batch, workers=cfg.workers, seed=cfg.seed)
        feats, _, paths = self.loop.extract(self.model, batches, exact=exact)
        return dict(zip(paths, feats))

    def _extract_share(self, share: list[Sample], exact: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """This rank's features: read back from the cache where this backbone saw the image before, computed (and
        kept) for the rest. ``exact``: in fp32 whatever the training precision."""
        cache = self._cache(exact)
        keys = dict(zip((s.path for s in share), image_keys(self.data.index, share)))
        features = {s.path: torch.from_numpy(f) for s in share if (f := cache.load(keys[s.path])) is not None}
        self.loop.listener.advance(len(features))
        computed = self._compute([s for s in share if s.path not in features], exact)
        for path, feature in computed.items():
            cache.save(keys[path], feature.numpy())
        features.update(computed)
        kept = [s for s in share if s.path in features]
        if not kept:
            return torch.zeros(0, self.model.feature_dim), torch.zeros(0, dtype=torch.long), []
        stacked = torch.stack([features[s.path].float() for s in kept])
        return stacked, torch.tensor([s.label for s in kept]), [s.path for s in kept]

    def _extract_part(self, part: list[Sample], exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.loop.ctx
        share = [part[i] for i in ctx.shard(len(part))]
        parts = distributed.gather(ctx, self._extract_share(share, exact))
        keys = [k for p in parts for k in p[2]]
        if not keys:
            raise DogbreedError("no readable images to extract features from")
        at = in_order(keys, [s.path for s in part])
        return torch.cat([p[0] for p in parts])[at], torch.cat([p[1] for p in parts])[at]

    def epoch(self, n: int, scaler: Any) -> tuple[Trained, Evaluation]:
        listener, ctx = self.loop.listener, self.loop.ctx
        if self.features is None:
            total = (len(self.data.train) + len(self.data.val)) // ctx.world
            listener.start(f"epoch {n}: backbone features (once)", total)
            # validation features in fp32, as predict's reference engine computes them: checkpoint selection
            # scores what will be served; the head trains on features at the training precision
            self.features = (self._extract_part(self.data.train), self._extract_part(self.data.val, exact=True))
            listener.stop()
        (train_x, train_y), (val_x, val_y) = self.features
        sampler = None
        if ctx.active:
            sampler = train_sampler(TensorDataset(train_x, train_y), ctx, self.config.seed)
            sampler.set_epoch(n)
        batches = head_loader(train_x, train_y, self.config.batch, True, self.config.seed + n, sampler)
        listener.start(f"epoch {n}: head", len(train_y) // ctx.world)
        trained = self.loop.train_epoch(self.net, batches, self.optimizer, scaler)  # feature batches fail nothing
        listener.stop()
        self.model.head.eval()
        local = self.loop.quiet().evaluate(self.model.head, head_loader(val_x, val_y, 4096, False, 0))
        # every rank holds every validation feature: each computes the same full validation
        return trained, Evaluation(local.loss / max(len(val_y), 1), local.y_true, local.probs, local.paths)


def make_fitter(model: Any, data: OpenedDataset, config: TrainConfig, mode: str, prep: Preprocessing, loop: Loop):
    """Extractor mode with ``cache_features`` trains on cached features; everything else on images."""
    cached = mode == "extractor" and config.cache_features
    return (CachedHeadFitter if cached else FullFitter)(model, data, config, prep, loop)
