"""The inference graph every engine runs and every export contains (``Predictor``), and the inference copy of a
model (``prepare_for_inference``)."""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """What every engine runs and every export contains: a normalised batch in, breed probabilities out (over the
    model's own classes, rows summing to 1) and, when the model can tell, the probability of a dog at all.

    - a dogbreed Classifier: softmax of its head; dog probability from the kept ImageNet layer, if any;
    - a ready ImageNet model (``imagenet=True``): the softmax restricted to the 120 breeds and renormalised
      (the same thing as a softmax over those 120 logits), and the softmax mass on every dog class.
    Log-sum-exp keeps both stable where a plain softmax would underflow.
    """

    def __init__(self, net: nn.Module, *, imagenet: bool = False):
        super().__init__()
        from dogbreed import imagenet as inet

        self.net, self.imagenet = net, imagenet
        self.has_dog = imagenet or getattr(net, "imagenet_fc", None) is not None
        self.register_buffer("breed_index", torch.tensor(inet.breed_indices(), dtype=torch.long), persistent=False)
        self.register_buffer("dog_index", torch.tensor(inet.dog_indices(), dtype=torch.long), persistent=False)

    def _dog(self, logits1000: torch.Tensor) -> torch.Tensor:
        dog = torch.logsumexp(torch.index_select(logits1000, 1, self.dog_index), dim=1)
        return torch.exp(dog - torch.logsumexp(logits1000, dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.imagenet:
            logits = self.net(x).float()
            breeds = torch.index_select(logits, 1, self.breed_index)
            return torch.softmax(breeds, dim=1), self._dog(logits)
        if self.has_dog:
            feats = self.net.backbone(x)
            probs = torch.softmax(self.net.head(feats).float(), dim=1)
            return probs, self._dog(self.net.imagenet_fc(feats).float())
        return (torch.softmax(self.net(x).float(), dim=1),)


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """An inference copy of the model: BatchNorm folded into the convolutions (torch.fx), channels_last memory
    format. Both measured faster on CPU; a model that fx cannot trace runs as it is."""
    model = model.to(device).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        model = fuse(model)
    except Exception:  # fx cannot trace every architecture; eager is correct, just a little slower
        pass
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------- checkpoints
