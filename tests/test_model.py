from __future__ import annotations

import pickle

import pytest
import torch

from dogbreed.errors import DogbreedError
from dogbreed.files import file_sha256
from dogbreed.formats import torchfile
from dogbreed.formats.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from dogbreed.formats.torchfile import atomic_torch_save
from dogbreed.imaging import Preprocessing
from dogbreed.models.build import build_model, check_input_size, load_checkpoint, resolve_arch
from dogbreed.models.devices import select_device
from dogbreed.models.predictor import Predictor
from dogbreed.models.weights import read_weights_file


def test_aliases_and_registry_names():
    assert resolve_arch("ResNet") == "resnet18"
    assert resolve_arch("EfficientNet") == "efficientnet_b0"
    assert resolve_arch("resnet50") == "resnet50"
    with pytest.raises(DogbreedError, match="resnet18"):
        resolve_arch("resnet181")


def test_extractor_head_shape_and_frozen_backbone():
    net = build_model("ResNet", "extractor", 120)
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
    net = build_model("resnet18", "extractor", 5)
    before = net.backbone.bn1.running_mean.clone()
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32) * 5 + 3), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.equal(before, net.backbone.bn1.running_mean)


def test_finetune_trains_everything_with_a_linear_head():
    net = build_model("EfficientNet", "finetune", 7)
    assert isinstance(net.head, torch.nn.Linear) and net.head.in_features == 1280
    assert all(p.requires_grad for p in net.parameters())
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_device_selection_and_fallback():
    assert select_device("cpu") == (torch.device("cpu"), None)
    if not torch.cuda.is_available():
        device, warning = select_device("gpu")
        assert device.type == "cpu" and "CUDA is not available; using cpu" in warning
    with pytest.raises(DogbreedError, match="unknown device"):
        select_device("tpu")


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    net = build_model("resnet18", "finetune", 3).eval()
    classes = [["n02085620", "Chihuahua"], ["n02088364", "Beagle"], ["n02099601", "Golden retriever"]]
    meta = CheckpointMeta("resnet18", "finetune", classes, image_size=64, metrics={"val_acc": 0.5})
    sha = save_checkpoint(tmp_path / "c.pt", net, meta)
    assert sha == file_sha256(tmp_path / "c.pt")
    loaded, meta2 = load_checkpoint(tmp_path / "c.pt")
    assert meta2.classes == classes and meta2.image_size == 64 and meta2.metrics == {"val_acc": 0.5}
    assert meta2.preprocessing == Preprocessing(64, 73, "bilinear")  # the classic 256/224 recipe
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
    with pytest.raises(DogbreedError, match="pickled Python objects, which dogbreed never loads") as info:
        read_checkpoint(path)
    assert "weights_only" not in str(info.value)  # never reads as advice to turn the protection off
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DogbreedError):
        read_checkpoint(plain)


def test_weights_file_initialises_the_backbone(tmp_path):
    import torchvision

    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    net = build_model("resnet18", "extractor", 4, weights_file=tmp_path / "w.pth")
    assert torch.equal(net.backbone.conv1.weight, source.conv1.weight)
    with pytest.raises(DogbreedError, match=r"does not fit efficientnet_b0.*missing key.*unexpected key"):
        build_model("efficientnet_b0", "extractor", 4, weights_file=tmp_path / "w.pth")


def test_pretrained_weights_come_through_torchvision_weights_api(tmp_path, monkeypatch):
    """torchvision looks in $TORCH_HOME/hub/checkpoints before downloading: seed it so no network is touched."""
    import torchvision

    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = build_model("ResNet", "extractor", 4, pretrained=True)
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
    with pytest.raises(DogbreedError, match="Offline") as info:
        build_model("resnet18", "extractor", 4, pretrained=True)
    expected = tmp_path / "empty" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in str(info.value) and "--weights FILE" in str(info.value)


def _crafted(tmp_path, name, meta=None, state=None, **payload):
    net = build_model("resnet18", "finetune", 2)
    good = {
        "arch": "resnet18",
        "mode": "finetune",
        "classes": [["n02085620", "Chihuahua"], ["n02088364", "Beagle"]],
        "image_size": 32,
    }
    body = {"format": "dogbreed-checkpoint", "version": 2, "meta": {**good, **(meta or {})}}
    body["state_dict"] = state if state is not None else net.state_dict()
    body.update(payload)
    torch.save(body, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    "meta, state, expected",
    [
        ({"image_size": 30000}, None, "image_size"),
        ({"image_size": "big"}, None, "image_size"),
        ({"classes": [["n02085620", "Chihuahua"]]}, None, "classes"),
        ({"classes": [["n99999999", "\x1b[2Jevil"], ["n02088364", "Beagle"]]}, None, "not one of the 120"),
        ({"classes": [["n02085620", "a"], ["n02085620", "b"]]}, None, "twice"),
        ({"mode": "sideways"}, None, "mode"),
        ({"arch": "../../etc"}, None, "arch"),
        ({"std": [0, 1, 1]}, None, "std"),
        ({"mean": [float("nan"), 0, 0]}, None, "mean"),
        ({"interpolation": "lanczos9"}, None, "interpolation"),
        ({"metrics": [1, 2]}, None, "metrics"),
        ({}, [1, 2, 3], "no usable weights"),
        ({}, {"conv1.weight": "not a tensor"}, "no usable weights"),
    ],
)
def test_crafted_checkpoint_metadata_is_a_one_line_error(tmp_path, meta, state, expected):
    path = _crafted(tmp_path, "crafted.pt", meta, state)
    with pytest.raises(DogbreedError, match=expected) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_names_in_a_checkpoint_come_from_the_breed_table_not_the_file(tmp_path):
    path = _crafted(tmp_path, "labels.pt", {"classes": [["n02085620", "[/]\x1b]0;pwned\x07"], ["n02088364", "B"]]})
    _, meta = load_checkpoint(path)
    assert meta.classes == [["n02085620", "Chihuahua"], ["n02088364", "Beagle"]]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty"),
        (b"\xff\xd8\xff\xe0 a jpeg", "a JPEG image, not a torch file"),
        (b"just some notes\n", "a text file, not a torch file"),
        (None, "plain state dict"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, expected):
    path = tmp_path / "thing.pt"
    if content is None:
        torch.save({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(DogbreedError, match=expected):
        read_checkpoint(path)


def test_weights_errors_say_what_the_file_is(tmp_path):
    ckpt = _crafted(tmp_path, "ckpt.pt")
    with pytest.raises(DogbreedError, match="is a dogbreed checkpoint, not a torchvision state dict"):
        read_weights_file(ckpt)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(DogbreedError, match="holds a list, not a state dict"):
        read_weights_file(tmp_path / "list.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(DogbreedError, match="holds a Tensor"):
        read_weights_file(tmp_path / "tensor.pth")


def test_a_checkpoint_from_before_preprocessing_was_recorded_still_loads(tmp_path):
    """Version-1 checkpoints had no resize size or interpolation: they get the classic recipe."""
    net = build_model("resnet18", "finetune", 2)
    meta = {
        "arch": "resnet18",
        "mode": "finetune",
        "classes": [["n02085620", "C"], ["n02088364", "B"]],
        "image_size": 64,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "metrics": {},
        "versions": {},
        "run_id": None,
    }
    torch.save(
        {"format": "dogbreed-checkpoint", "version": 1, "meta": meta, "state_dict": net.state_dict()},
        tmp_path / "v1.pt",
    )
    _, loaded = load_checkpoint(tmp_path / "v1.pt")
    assert loaded.preprocessing == Preprocessing(64, 73, "bilinear") and not loaded.imagenet_head


def test_an_extractor_on_imagenet_weights_keeps_the_imagenet_layer_for_the_dog_probability(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "w.pth")
    net = build_model("resnet18", "extractor", 3, weights_file=tmp_path / "w.pth")
    assert net.imagenet_fc is not None and net.imagenet_fc.out_features == 1000
    assert not any(p.requires_grad for p in net.imagenet_fc.parameters())
    probs, dog = Predictor(net).eval()(torch.randn(2, 3, 32, 32))
    assert probs.shape == (2, 3) and dog.shape == (2,) and torch.all((dog >= 0) & (dog <= 1))
    finetuned = build_model("resnet18", "finetune", 3, weights_file=tmp_path / "w.pth")
    assert finetuned.imagenet_fc is None  # a fine-tuned backbone's features no longer fit that layer
    assert len(Predictor(finetuned).eval()(torch.randn(1, 3, 32, 32))) == 1
    scratch = build_model("resnet18", "extractor", 3)
    assert scratch.imagenet_fc is None  # random weights know nothing about dogs


def test_checkpoint_with_the_imagenet_layer_round_trips(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "w.pth")
    net = build_model("resnet18", "extractor", 2, weights_file=tmp_path / "w.pth").eval()
    classes = [["n02085620", "Chihuahua"], ["n02088364", "Beagle"]]
    save_checkpoint(tmp_path / "c.pt", net, CheckpointMeta("resnet18", "extractor", classes, 32))
    loaded, meta = load_checkpoint(tmp_path / "c.pt")
    assert meta.imagenet_head
    x = torch.randn(2, 3, 32, 32)
    for a, b in zip(Predictor(net)(x), Predictor(loaded)(x)):
        assert torch.allclose(a, b, atol=1e-5)


def test_ctrl_c_inside_a_checkpoint_write_stays_an_interrupt_and_leaves_no_file(tmp_path, monkeypatch):
    """Ctrl-C while torch.save writes the tensors makes its zip writer fail on the way out ("unexpected pos"):
    that RuntimeError must not turn an interrupted run into a failed one."""
    import io
    import os

    real_fdopen = os.fdopen

    class CutShort(io.FileIO):
        def write(self, data):
            if self.tell() > 2**20:
                raise KeyboardInterrupt
            return super().write(data)

    def fdopen(fd, mode="r", *args, **kwargs):
        return CutShort(fd, "wb") if "w" in mode else real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(torchfile.os, "fdopen", fdopen)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"w": torch.zeros(2**20)}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_an_input_size_the_architecture_cannot_take_is_refused_before_training():
    cnn = build_model("resnet18", "finetune", 3).train()
    check_input_size(cnn, "resnet18", 32)  # any size works for a CNN with global pooling
    assert cnn.training  # the probe left the mode as it was
    for arch, mode in (("vit_b_16", "finetune"), ("maxvit_t", "extractor")):
        with pytest.raises(DogbreedError, match=f"{arch} cannot take 32 px input.*drop --image-size"):
            check_input_size(build_model(arch, mode, 3), arch, 32)


def test_architectures_built_with_tensor_arithmetic_load_too(tmp_path):
    """RegNet's constructor computes its block widths with tensors, which the meta device cannot: checkpoints and
    ImageNet weights files of such models still load (built normally instead)."""
    from dogbreed.models import zoo
    from tests.conftest import imagenet_state_dict, make_checkpoint

    path = make_checkpoint(tmp_path / "regnet.pt", arch="regnet_y_400mf", mode="finetune", classes=None)
    loaded, meta = load_checkpoint(path)
    assert meta.arch == "regnet_y_400mf" and loaded(torch.zeros(1, 3, 32, 32)).shape[-1] == 120
    weights = imagenet_state_dict(tmp_path / "regnet.pth", 207, arch="regnet_y_400mf")
    ready, _ = zoo.load_imagenet_model("regnet_y_400mf", weights_file=weights)
    assert ready(torch.zeros(1, 3, 64, 64)).argmax().item() == 207
