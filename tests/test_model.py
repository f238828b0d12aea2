from __future__ import annotations

import pickle

import pytest
import torch

from dogbreed import model
from dogbreed.errors import DogbreedError


def test_aliases_and_registry_names():
    assert model.resolve_arch("ResNet") == "resnet18"
    assert model.resolve_arch("EfficientNet") == "efficientnet_b0"
    assert model.resolve_arch("resnet50") == "resnet50"
    with pytest.raises(DogbreedError, match="resnet18"):
        model.resolve_arch("resnet181")


def test_extractor_head_shape_and_frozen_backbone():
    net = model.build_model("ResNet", "extractor", 120)
    layers = [type(m).__name__ for m in net.head]
    assert layers == [
        "BatchNorm1d",
        "Linear",
        "ReLU",
        "BatchNorm1d",
        "Linear",
        "ReLU",
        "BatchNorm1d",
        "Dropout",
        "Linear",
    ]
    assert net.head[1].in_features == 512 and net.head[-1].out_features == 120
    assert not any(p.requires_grad for p in net.backbone.parameters())
    net.train()
    assert not net.backbone.training and net.head.training


def test_frozen_backbone_batchnorm_statistics_do_not_drift():
    net = model.build_model("resnet18", "extractor", 5)
    before = net.backbone.bn1.running_mean.clone()
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32) * 5 + 3), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.equal(before, net.backbone.bn1.running_mean)


def test_finetune_trains_everything_with_a_linear_head():
    net = model.build_model("EfficientNet", "finetune", 7)
    assert isinstance(net.head, torch.nn.Linear) and net.head.in_features == 1280
    assert all(p.requires_grad for p in net.parameters())
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_device_selection_and_fallback():
    assert model.select_device("cpu") == (torch.device("cpu"), None)
    if not torch.cuda.is_available():
        device, warning = model.select_device("gpu")
        assert device.type == "cpu" and "CUDA is not available; using cpu" in warning
    with pytest.raises(DogbreedError, match="unknown device"):
        model.select_device("tpu")


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    net = model.build_model("resnet18", "finetune", 3).eval()
    classes = [["n02085620", "Chihuahua"], ["n02088364", "Beagle"], ["n02099601", "Golden retriever"]]
    meta = model.CheckpointMeta("resnet18", "finetune", classes, image_size=64, metrics={"val_acc": 0.5})
    sha = model.save_checkpoint(tmp_path / "c.pt", net, meta)
    assert sha == model.file_sha256(tmp_path / "c.pt")
    loaded, meta2 = model.load_checkpoint(tmp_path / "c.pt")
    assert meta2.classes == classes and meta2.image_size == 64 and meta2.metrics == {"val_acc": 0.5}
    assert {"torch", "torchvision", "dogbreed", "python"} <= set(meta2.versions)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(net(x), loaded(x), atol=1e-5)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left nothing behind


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoints_that_need_unpickling_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dogbreed-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(DogbreedError, match="cannot read checkpoint"):
        model.read_checkpoint(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DogbreedError):
        model.read_checkpoint(plain)


def test_weights_file_initialises_the_backbone(tmp_path):
    import torchvision

    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    net = model.build_model("resnet18", "extractor", 4, weights_file=tmp_path / "w.pth")
    assert torch.equal(net.backbone.conv1.weight, source.conv1.weight)
    with pytest.raises(DogbreedError, match="does not fit"):
        model.build_model("efficientnet_b0", "extractor", 4, weights_file=tmp_path / "w.pth")


def test_pretrained_weights_come_through_torchvision_weights_api(tmp_path, monkeypatch):
    """torchvision looks in $TORCH_HOME/hub/checkpoints before downloading: seed it so no network is touched."""
    import torchvision

    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = model.build_model("ResNet", "extractor", 4, pretrained=True)
    assert torch.equal(net.backbone.conv1.weight, source.conv1.weight)


def test_pretrained_weights_offline_is_a_one_line_error(tmp_path, monkeypatch):
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(DogbreedError, match="--no-pretrained"):
        model.build_model("resnet18", "extractor", 4, pretrained=True)
