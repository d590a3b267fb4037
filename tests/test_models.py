"""Models: exact architectures of SPEC §2, ablation knobs, registry, pretrained loading and freezing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from foodcnn import checkpoints
from foodcnn.models import registry, pretrained, smallcnn
from foodcnn import params


def test_baseline_parameter_count_by_hand():
    # conv(k=3) params = cin*cout*9 + cout (bias); BatchNorm = 2*c; Linear = in*out + out
    conv1 = 3 * 64 * 9 + 64  # 1,792
    conv2 = 64 * 128 * 9 + 128  # 73,856
    conv3 = 128 * 128 * 9 + 128  # 147,584
    conv4 = 128 * 128 * 9 + 128  # 147,584
    bn = 2 * (64 + 128 + 128 + 128)  # 896
    fc1 = 128 * 128 + 128  # 16,512
    fc2 = 128 * 20 + 20  # 2,580
    expected = conv1 + conv2 + conv3 + conv4 + bn + fc1 + fc2
    assert expected == 390_804
    total, trainable = registry.count_parameters(registry.build("baseline"))
    assert total == trainable == expected


def test_custom_a_parameter_count_by_hand():
    convs = [(3, 64), (64, 128), (128, 168), (168, 168), (168, 168), (168, 128)]
    conv = sum(i * o * 9 + o for i, o in convs)  # 1792+73856+193704+254184+254184+193664
    bn = 2 * sum(o for _, o in convs)
    expected = conv + bn + (128 * 128 + 128) + (128 * 20 + 20)
    assert conv == 971_384
    assert registry.count_parameters(registry.build("custom_a"))[0] == expected


def test_custom_b_parameter_count_by_hand():
    convs = [(3, 64), (64, 128)] + [(128, 128)] * 4
    expected = sum(i * o * 9 + o for i, o in convs) + 2 * sum(o for _, o in convs) + 16_512 + 2_580
    assert expected == 1792 + 73856 + 4 * 147584 + 2 * (64 + 128 * 5) + 16512 + 2580 == 686_484
    assert registry.count_parameters(registry.build("custom_b"))[0] == expected


@pytest.mark.parametrize("name,size", [("baseline", 15), ("custom_a", 61), ("custom_b", 103)])
def test_minimum_input_size(name, size):
    # SPEC §2: no padding, so each small CNN needs a minimum input; one pixel less leaves nothing
    model = registry.build(name).eval()
    assert model.min_input_size == size
    assert model(torch.zeros(1, 3, size, size)).shape == (1, 20)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, size - 1, size - 1))


def test_baseline_layer_order_and_pool_stride():
    m = registry.build("baseline")
    assert list(m.features._modules) == ["conv1", "conv2", "conv3", "pool1", "conv4"]
    assert m.features.conv4.conv.stride == (2, 2)
    assert m.features.pool1.stride == 3  # SPEC §2: PyTorch's default stride = kernel
    assert isinstance(m.features.conv1.act, nn.ReLU) and isinstance(m.features.conv1.bn, nn.BatchNorm2d)


def test_report_b_customs_are_configurations():
    custom1 = registry.build("baseline", extra_convs=2, extra_convs_after="conv3")
    assert list(custom1.features._modules) == ["conv1", "conv2", "conv3", "conv4", "conv5", "pool1", "conv6"]
    custom2 = registry.build("baseline", activation="silu")
    assert all(isinstance(b.act, nn.SiLU) for b in custom2.features if isinstance(b, smallcnn.ConvBlock))
    assert isinstance(custom2.act, nn.SiLU)
    custom3 = registry.build("baseline", extra_pool_after="conv2")
    assert list(custom3.features._modules) == ["conv1", "conv2", "pool1", "conv3", "pool2", "conv4"]
    assert custom3.min_input_size > 15
    with pytest.raises(ValueError, match="conv9"):
        registry.build("baseline", extra_pool_after="conv9")


def test_dropout_and_init_knobs():
    m = registry.build("baseline", dropout=0.4, init="normal")
    assert m.drop.p == 0.4
    w = m.features.conv2.conv.weight
    assert abs(w.std().item() - 0.02) < 0.002  # N(0, 0.02^2)
    x = registry.build("baseline", init="xavier").features.conv2.conv.weight
    bound = (6 / (64 * 9 + 128 * 9)) ** 0.5
    assert x.abs().max().item() <= bound


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_model_runs_forward(name):
    # timm-style: a model added to the registry is tested the moment it is registered
    model = registry.build(name, num_classes=7, pretrained="none").eval()
    size = getattr(model, "min_input_size", 32)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name,head", [("resnet18", "fc"), ("vgg16", "classifier.6"), ("vgg16_bn", "classifier.6")])
def test_freeze_head_trains_only_the_new_head(name, head):
    m = registry.build(name, num_classes=20, pretrained="none", freeze="head")
    assert _trainable(m) == {f"{head}.weight", f"{head}.bias"}
    assert m.get_submodule(head).out_features == 20
    assert registry.backbone_frozen(m)
    registry.set_train_mode(m, True)
    assert not any(mod.training for mod in m.modules())  # the frozen backbone keeps BN/dropout fixed


def test_freeze_none_and_conv1():
    m = registry.build("resnet18", pretrained="none", freeze="none")
    assert _trainable(m) == {n for n, _ in m.named_parameters()}
    m = registry.build("resnet18", pretrained="none", freeze="conv1")
    assert _trainable(m) == {n for n, _ in m.named_parameters()} - {"conv1.weight"}
    v = registry.build("vgg16_bn", pretrained="none", freeze="conv1")
    assert {"features.0.weight", "features.0.bias"}.isdisjoint(_trainable(v))
    assert "features.1.weight" in _trainable(v)  # only the conv is frozen, not its BatchNorm


def test_freeze_every_nth_indexes_parameterised_layers():
    m = registry.build("vgg16", pretrained="none", freeze="every_nth:3")
    layers = registry.parameterised_layers(m, exclude="classifier.6")
    # vgg16: 13 convs + 2 Linear layers before the head, numbered 0..14
    assert [n for n, _ in layers][:3] == ["features.0", "features.2", "features.5"]
    assert len(layers) == 15
    trained = {n.rsplit(".", 1)[0] for n in _trainable(m)}
    expected = {layers[i][0] for i in range(0, 15, 3)} | {"classifier.6"}
    assert trained == expected


def test_pretrained_weights_load_from_torch_home(tmp_path, monkeypatch):
    # NOTES: a file already in $TORCH_HOME/hub/checkpoints loads with no network; the hash is not checked
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        ref.conv1.weight.fill_(0.125)
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt / "resnet18-f37072fd.pth")
    m = registry.build("resnet18", pretrained="required", freeze="head")
    assert torch.all(m.conv1.weight == 0.125)
    assert m.weights_source.startswith("ImageNet")


def test_pretrained_required_offline_names_file_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("FOODCNN_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(pretrained.WeightsUnavailable) as e:
        registry.build("vgg16_bn", pretrained="required")
    msg = str(e.value)
    assert "vgg16_bn-6c64b313.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_pretrained_auto_offline_falls_back_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("FOODCNN_ALLOW_DOWNLOAD", raising=False)
    m = registry.build("resnet18", pretrained="auto", freeze="head")
    assert m.weights_source.startswith("random init")


def test_explicit_weights_path(tmp_path):
    import torchvision

    ref = torchvision.models.vgg16(weights=None)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    m = registry.build("vgg16", pretrained="required", weights_path=str(tmp_path / "w.pth"))
    assert torch.equal(m.features[0].weight, ref.features[0].weight)
    with pytest.raises(pretrained.WeightsUnavailable):
        registry.build("vgg16", pretrained="required", weights_path=str(tmp_path / "missing.pth"))


def test_damaged_or_foreign_weights_path_is_refused_with_a_summary(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(resnet, tmp_path / "resnet18.pth")
    (tmp_path / "damaged.pth").write_bytes((tmp_path / "resnet18.pth").read_bytes()[:5000])
    resized = {**resnet, "fc.weight": torch.zeros(20, 512)}
    torch.save(resized, tmp_path / "resized.pth")
    checkpoints.save(tmp_path / "best.pt", model=resnet, epoch=3)
    torch.save(registry.build("baseline").state_dict(), tmp_path / "baseline.pth")
    with pytest.raises(pretrained.WeightsUnavailable) as e:
        registry.build("resnet18", pretrained="required", weights_path=str(tmp_path / "baseline.pth"))
    msg = str(e.value)
    assert "does not fit resnet18 (122 of resnet18's 122 tensors missing: conv1.weight, bn1.weight" in msg
    assert "unexpected: " in msg and "another architecture's weights" in msg
    assert "resnet18-f37072fd.pth" in msg and len(msg) < 600  # a summary, not a dump of every key
    for name, expected in (("damaged.pth", "cannot be loaded"), ("resized.pth", "1 of another shape: fc.weight (20, 512) "
                                                                "in the file, (1000, 512) in resnet18"),
                           ("best.pt", "is a foodcnn run checkpoint")):
        with pytest.raises(pretrained.WeightsUnavailable, match=re.escape(expected)) as e:
            registry.build("resnet18", pretrained="auto", weights_path=str(tmp_path / name))
        assert "weights_only" not in str(e.value) and "resnet18-f37072fd.pth" in str(e.value)
    assert registry.build("resnet18", pretrained="required",
                        weights_path=str(tmp_path / "resnet18.pth")).weights_source == "ImageNet (resnet18.pth)"


def test_weights_path_on_a_model_that_reads_none_is_a_parameter_error():
    for model in ("baseline", "efficientnet_lite0"):
        with pytest.raises(params.ParamsError, match=f"key 'weights_path': {model} "):
            params.from_mapping({"model": model, "weights_path": "w.pth"}, source="x.yaml")


def test_fetch_puts_weights_where_build_reads_them(tmp_path, monkeypatch):
    # `python -m foodcnn data fetch` downloads through torchvision's weights API and torch.hub; only the
    # transfer itself is replaced, by a stand-in that writes a state dict where torch.hub asked for the file.
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    urls = []

    def fake_download(url, dst, *args, **kwargs):
        urls.append(url)
        is_resnet = url.rsplit("/", 1)[-1].startswith("resnet18")
        torch.save(torchvision.models.resnet18(weights=None).state_dict() if is_resnet else {}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    files = registry.fetch_weights()
    assert sorted(f.name for f in files) == ["resnet18-f37072fd.pth", "vgg16-397923af.pth", "vgg16_bn-6c64b313.pth"]
    assert all(f.parent == tmp_path / "hub" / "checkpoints" and f.is_file() for f in files)
    assert len(urls) == 3
    registry.fetch_weights()  # files in the cache are not fetched again
    assert len(urls) == 3
    monkeypatch.delenv("FOODCNN_ALLOW_DOWNLOAD", raising=False)
    assert registry.build("resnet18", pretrained="required").weights_source == "ImageNet (resnet18-f37072fd.pth)"


# --- what the registry answers about each model -------------------------------------------------

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_model_has_its_facts(name):
    entry = registry.entry(name)
    assert (NOTEBOOKS / entry.notebook).is_file()
    assert len(entry.mean) == len(entry.std) == 3
    if entry.family == "pretrained":  # the head the builder replaced is where the registry says
        model = registry.build(name, num_classes=7, pretrained="none", freeze="head")
        assert model.head_name == entry.head and model.get_submodule(entry.head).out_features == 7
        assert registry.input_normalisation(model) == (entry.mean, entry.std)
    else:
        assert entry.head is None and entry.channels_last_from_px is None


def test_registration_order_is_the_spec_order():
    assert registry.in_order() == ["baseline", "custom_a", "custom_b", "vgg16", "vgg16_bn", "resnet18",
                                 "efficientnet_lite0"]


def test_from_scratch_are_the_small_cnns_of_spec_2():
    # the headline findings count these rows as "from scratch"; a pretrained model or a name not registered is not
    assert [n for n in registry.in_order() if registry.from_scratch(n)] == list(registry.SMALL_SPECS)
    assert not registry.from_scratch("resnet18") and not registry.from_scratch("") and not registry.from_scratch("nope")


def test_efficientnet_keeps_its_own_input_normalisation():
    # its weights were trained on (pixel - 127) / 128, not ImageNet's mean/std (effnet.py)
    mean, std = registry.input_normalisation(registry.build("efficientnet_lite0", pretrained="none"))
    assert mean == (127 / 255,) * 3 and std == (128 / 255,) * 3
    assert registry.input_normalisation(registry.build("baseline")) == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)
    assert registry.input_normalisation(nn.Conv2d(3, 3, 1)) == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)


@pytest.mark.parametrize("name,size,expected", [
    ("baseline", 224, False), ("custom_b", 103, False), ("vgg16_bn", 32, True), ("efficientnet_lite0", 32, True),
    ("resnet18", 32, False), ("resnet18", 64, False), ("resnet18", 96, True), ("resnet18", 224, True),
])
def test_channels_last_where_it_pays_on_cpu(name, size, expected):
    from foodcnn.training import streams

    assert streams.channels_last_pays(name, torch.device("cpu"), size) is expected
    assert streams.channels_last_pays(name, torch.device("cuda"), size)  # tensor cores: always
