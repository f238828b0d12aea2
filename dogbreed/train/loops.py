"""The loops every rank runs: one training pass, an evaluation pass, a feature-extraction pass, and the gathering of
every rank's share back into one result in the data's own order.

A ``Loop`` holds what each pass needs besides its model and batches (device, precision, the distributed context,
where progress goes, where images that could not be decoded are noted), so the passes take only those.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from dogbreed.errors import DogbreedError
from dogbreed.evaluate import Scored
from dogbreed.train import distributed
from dogbreed.train.config import Listener
from dogbreed.train.distributed import Context
from dogbreed.train.precision import Precision


class Evaluation(NamedTuple):
    loss: float
    y_true: np.ndarray
    probs: np.ndarray
    paths: list[str]


def in_order(parts: list[Any], order: list[str]) -> list[int]:
    """Positions that put gathered items (keyed by path) back in the order of ``order``."""
    where = {key: i for i, key in enumerate(order)}
    return sorted(range(len(parts)), key=lambda i: where[parts[i]])


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


@dataclass
class Loop:
    """How this process runs its batches."""

    device: torch.device
    listener: Listener
    amp: Precision
    ctx: Context
    skipped: set[str] = field(default_factory=set)  # images that could not be decoded, as batches name them

    def quiet(self) -> Loop:
        """The same loop showing no progress and noting nothing (a pass over data already accounted for)."""
        return replace(self, listener=Listener(), skipped=set())

    def train_epoch(self, model: nn.Module, batches: Any, optimizer: Any, scaler: Any) -> tuple[float, float, float]:
        """One pass over the training data: (mean loss, accuracy, macro F1) of the predictions made while training,
        over every rank's batches."""
        from sklearn.metrics import f1_score

        model.train()
        loss_fn = nn.CrossEntropyLoss()
        total_loss, seen = 0.0, 0
        ys, preds = [], []
        for x, y, _keys, failed in batches:
            self.skipped.update(failed)
            # BatchNorm cannot train on a single sample; under DDP every rank must take the same steps
            if not distributed.all_agree(self.ctx, x is not None and len(y) >= 2):
                self.listener.advance(len(failed) + (0 if y is None else len(y)))
                continue
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with self.amp.autocast():
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                raise DogbreedError(
                    f"the training loss became {value} (diverged); lower --lr (now {optimizer.param_groups[0]['lr']:g})"
                )
            total_loss += value * len(y)
            seen += len(y)
            ys.append(y.cpu().numpy())
            preds.append(logits.argmax(1).cpu().numpy())
            self.listener.advance(len(y) + len(failed), loss=total_loss / seen)
        parts = distributed.gather(self.ctx, (total_loss, seen, _cat(ys), _cat(preds)))
        total_loss = sum(p[0] for p in parts)
        seen = sum(p[1] for p in parts)
        y_all, pred_all = _cat([p[2] for p in parts]), _cat([p[3] for p in parts])
        if not seen:
            return 0.0, 0.0, 0.0
        f1 = float(f1_score(y_all, pred_all, average="macro", zero_division=0))
        return total_loss / seen, float((y_all == pred_all).mean()), f1

    @torch.inference_mode()
    def evaluate(self, forward: Any, batches: Any) -> Evaluation:
        """Loss and probabilities over this process's batches (not yet gathered: see ``gathered``), in fp32 whatever
        the training precision: checkpoint selection must see what the reference fp32 engine (predict, eval) sees
        of those weights, not a rounded approximation of it."""
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        total, ys, probs, paths = 0.0, [], [], []
        for x, y, keys, failed in batches:
            self.skipped.update(failed)
            if x is None:
                self.listener.advance(len(failed))
                continue
            logits = forward(x.to(self.device)).float()
            total += float(loss_fn(logits, y.to(self.device)))
            ys.append(y.numpy())
            probs.append(torch.softmax(logits, 1).cpu().numpy())
            paths.extend(keys)
            self.listener.advance(len(y) + len(failed))
        width = 0 if not probs else probs[0].shape[1]
        return Evaluation(total, _cat(ys), np.concatenate(probs) if probs else np.zeros((0, width)), paths)

    def gathered(self, local: Evaluation, order: list[str]) -> Evaluation:
        """Every rank's share of an evaluation, in the order of ``order``, with the mean loss."""
        parts = distributed.gather(self.ctx, local)
        paths = [p for part in parts for p in part.paths]
        if not paths:
            raise DogbreedError("no readable images to evaluate on")
        ys = np.concatenate([part.y_true for part in parts])
        probs = np.concatenate([part.probs for part in parts if len(part.y_true)])
        at = in_order(paths, order)
        return Evaluation(sum(part.loss for part in parts) / len(paths), ys[at], probs[at], [paths[i] for i in at])

    @torch.inference_mode()
    def extract(self, model: Any, batches: Any, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The frozen backbone's feature vectors of this process's batches, with their labels and keys: at the
        training precision, or in fp32 when ``exact`` (validation features, scored as ``evaluate`` scores)."""
        model.eval()
        feats, labels, keys = [], [], []
        for x, y, batch_keys, failed in batches:
            self.skipped.update(failed)
            if x is not None:
                with nullcontext() if exact else self.amp.autocast():
                    feats.append(model.features(x.to(self.device)).float().cpu())
                labels.append(y)
                keys.extend(batch_keys)
            self.listener.advance(len(failed) + (0 if y is None else len(y)))
        if not feats:
            return torch.zeros(0, model.feature_dim), torch.zeros(0, dtype=torch.long), []
        return torch.cat(feats), torch.cat(labels), keys


def gathered_scores(ctx: Context, local: Scored, order: list[str]) -> Scored:
    """Every rank's share of a scoring (``evaluate.score``), in the order of ``order``."""
    parts = distributed.gather(ctx, local)
    keys = [k for p in parts for k in p.keys]
    if not keys:
        raise DogbreedError("no readable images to evaluate on")
    at = in_order(keys, order)
    y = np.concatenate([p.y_true for p in parts])[at]
    probs = np.concatenate([p.probs for p in parts if len(p.y_true)])[at]
    return Scored(y, probs, [keys[i] for i in at], [f for p in parts for f in p.failed])
