"""The torch engine: the reference every other engine and precision is checked against.

fp32 on every device; bf16 autocast on CPUs with native bf16 (detected: ``engines.cpu``; ~1.8x fp32 for ResNet18
on an AVX512_BF16 EPYC, where emulated bf16 would be slower than fp32) and on GPUs that support it; fp16 on CUDA;
channels_last on CPU and CUDA; MPS at fp32. On the
CPU the job loop runs one single-threaded worker per core, forked from a parent that already holds the model:
two 1-thread processes forward ResNet18 ~8% faster than one 2-thread process here, each decodes its own images
while the other computes, and forking starts them in milliseconds with the weights shared. CUDA and MPS cannot
cross a fork, and OpenMP is only fork-safe when each worker keeps to one thread, so those run in-process or spawn.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from dogbreed.engines import Choice, Engine, Execution, ModelSpec, Scores, cpu_execution
from dogbreed.engines import cpu as cpu_features
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource


def load_predictor(source: ModelSource) -> tuple[torch.nn.Module, ModelSpec]:
    """The inference graph of a checkpoint or ready model (on the CPU, eval mode) and its spec."""
    from dogbreed.breeds import BREEDS
    from dogbreed.models.build import load_checkpoint
    from dogbreed.models.predictor import Predictor

    if source.kind == "checkpoint":
        model, meta = load_checkpoint(source.ref)
        net = Predictor(model)
        return net.eval(), ModelSpec(tuple(meta.wnids), meta.preprocessing, net.has_dog)
    if source.kind == "ready":
        from dogbreed.models import zoo

        model, info = zoo.load_imagenet_model(source.arch, source.weights, source.weights_file)
        net = Predictor(model, imagenet=True)
        return net.eval(), ModelSpec(tuple(b.wnid for b in BREEDS), info.preprocessing, True)
    raise DogbreedError(f"{source.ref} is an exported model: run it with --engine openvino (or auto)")


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, source: ModelSource, device: str = "cpu", precision: str = "fp32"):
        from dogbreed.models.predictor import prepare_for_inference

        self.device, self.precision = device, precision
        self._device = torch.device(device)
        net, self.spec = load_predictor(source)
        self.net = prepare_for_inference(net, self._device)
        self._channels_last = self._device.type in ("cpu", "cuda")

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self._device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast(self._device.type, dtype=torch.float16)
        return nullcontext()

    def predict(self, batch: np.ndarray) -> Scores:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device, non_blocking=True)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self.net(x)
            probs = out[0].float().cpu().numpy()
            dog = out[1].float().cpu().numpy() if len(out) > 1 else None
        return Scores(probs, dog)

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(max(1, threads))

    @classmethod
    def validate(cls, source: ModelSource) -> None:
        """A checkpoint is read and built on the meta device (its weights must fit its own description); a local
        weights file is read; published weights are checked when they are downloaded."""
        if source.kind == "checkpoint":
            from dogbreed.models.build import load_checkpoint

            load_checkpoint(source.ref, device="meta")
        elif source.kind == "ready" and source.weights_file:
            from dogbreed.models.weights import read_weights_file

            read_weights_file(Path(source.weights_file))
        elif source.kind == "export":
            raise DogbreedError(f"{source.ref} is an exported model: run it with --engine openvino (or auto)")

    @classmethod
    def supports(cls, source: ModelSource, device: str, precision: str) -> tuple[bool, str]:
        kind = device.split(":")[0]
        if precision == "fp32":
            return True, ""
        if precision == "int8":
            return False, "int8 runs on quantized exports ('dogbreed export --int8')"
        if kind == "cuda":
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return False, "this GPU has no bf16"
            return True, f"{precision} on {device}"
        if kind == "cpu" and precision == "bf16":
            unknown = cpu_features.detect().bf16 is None
            return cpu_features.native_bf16(torch.ops.mkldnn._is_mkldnn_bf16_supported() if unknown else None)
        return False, f"{precision} is not for {kind} (fp16 needs a CUDA GPU; MPS runs fp32)"

    @classmethod
    def choose(cls, source: ModelSource, device: str, precision: str) -> Choice:
        kind = device.split(":")[0]
        if precision == "int8":
            raise DogbreedError("int8 runs on exported models: 'dogbreed export --int8', then predict with that file")
        if precision == "fp16" and kind != "cuda":
            raise DogbreedError(f"fp16 needs a CUDA GPU; this run is on {device}: use --precision bf16 or fp32")
        if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise DogbreedError("this GPU has no bf16 support: use --precision fp16 or fp32")
        if precision == "bf16" and kind == "mps":
            raise DogbreedError("bf16 autocast is not supported on MPS here: use --precision fp32")
        ok, why = cls.supports(source, device, precision)
        warning = None
        if precision == "bf16" and kind == "cpu" and not ok:
            warning = f"{why}: bf16 is emulated on this CPU and slower than fp32 (try --precision fp32)"
        return Choice("torch", precision, device, f"torch {precision} (requested)", warning)

    @classmethod
    def execution(
        cls, device: str, n_jobs: int, batch_size: int, workers: int | None, threads: int | None
    ) -> Execution:
        if device != "cpu":  # an accelerator: the calling process feeds it best
            return Execution(workers or 0, threads or (os.cpu_count() or 1))
        plan = cpu_execution(n_jobs, batch_size, workers, threads, fork_ok=True)
        # OpenMP is only fork-safe when each worker keeps to one thread
        return plan if plan.threads == 1 else Execution(plan.workers, plan.threads, False)


ENGINE = TorchEngine
