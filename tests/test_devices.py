"""The CUDA paths replayed on PyTorch's meta device: no host/device mix-up, and the host waits for the device
only where documented (epochs.train_one_epoch: once per epoch; augmentation: never; evaluation: once per pass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foodcnn.data import subsets, devices, transforms
from foodcnn.models import registry
from foodcnn.training import syncs
from foodcnn.training import epochs, features, streams, train

META = torch.device("meta")
S = 32


def split(n: int, size: int = S) -> subsets.Decoded:
    rng = np.random.default_rng(0)
    return subsets.Decoded(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), np.arange(n) % 4,
                        [str(i) for i in range(n)], [])


def epoch_syncs(augment: str, batches: int, batch: int = 4) -> syncs.SyncCounter:
    """Return the counter that watched one training epoch of `batches` steps on the meta device."""
    model = registry.build("baseline", num_classes=4).to(META)
    stream = streams.ImageStream(split(batches * batch), model, META, batch, transforms.make(augment, S), False)
    optimizer = epochs.make_optimizer(model, 1e-3, META)
    transforms.normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8, device=META), *registry.input_normalisation(model))
    _, counter = syncs.count(epochs.train_one_epoch, model, stream, optimizer, torch.Generator().manual_seed(0), META,
                             False, False, "test")
    return counter


def test_sync_counter_sees_what_makes_a_gpu_wait():
    with syncs.SyncCounter() as c:
        x = torch.ones(4, device=META)
        x.sum().item()
        x.cpu()
        x.nonzero()
        x[x > 0]
        torch.ones(4).to(META)  # pageable host memory
        x[torch.tensor([0, 2])]  # a host index into a device tensor: the op copies it over
        torch.tensor([1.0, 2.0], device=META)
    assert [kind for kind, _ in c.syncs()] == ["item", "to host", "data-dependent", "data-dependent",
                                               "blocking copy", "implicit copy", "blocking copy"]
    with syncs.SyncCounter() as c:
        devices.to_device(torch.ones(4), META)  # pinned, non_blocking: queued, not waited for
        torch.ones(4, device=META) * torch.tensor(2.0)  # a host scalar travels as a kernel argument
    assert c.syncs() == [] and c.summary() == {"async copy": 1}
    with pytest.raises(RuntimeError, match="device"):  # as on a GPU, an op refuses host and device operands
        torch.ones(4, device=META) + torch.ones(4)


def test_feature_stream_with_hflip_stays_on_the_features_device():
    n, dim = 10, 6
    stream = streams.FeatureStream(torch.zeros(n, dim, device=META), torch.zeros(n, dtype=torch.long, device=META), 4,
                                 torch.zeros(n, dim, device=META))
    with syncs.SyncCounter() as c:
        out = list(stream(torch.Generator().manual_seed(0), train=True))
    assert [x.shape[0] for x, _ in out] == [4, 4, 2]
    assert all(x.device == META and y.device == META for x, y in out)
    assert c.syncs() == []


@pytest.mark.parametrize("augment", ["none", "hflip", "wide"])
def test_a_training_epoch_waits_for_the_device_once(augment):
    short, long = epoch_syncs(augment, 2), epoch_syncs(augment, 5)
    assert short.syncs() == long.syncs() == [("to host", "_to_copy")]  # the loss and accuracy sums, read at the end


@pytest.mark.parametrize("augment", ["hflip", "wide"])
def test_augmentations_never_wait_for_the_device(augment):
    x = torch.zeros(8, 3, S, S, dtype=torch.uint8, device=META)
    out, counter = syncs.count(transforms.make(augment, S), x, torch.Generator().manual_seed(0))
    assert out.device == META and out.shape == x.shape and out.dtype == torch.uint8
    assert counter.syncs() == [] and counter.summary() == {"async copy": 1}  # its draws, made on the host


def test_evaluation_and_feature_extraction_wait_once_per_pass():
    for n in (8, 20):
        model = registry.build("baseline", num_classes=4).to(META)
        registry.set_train_mode(model, False)
        ev, counter = syncs.count(epochs.evaluate, model, streams.ImageStream(split(n), model, META, 4, None, False),
                                  META, False)
        assert counter.syncs() == [("to host", "_to_copy")] and ev["prob"].shape == (n, 4)
        backbone = registry.build("resnet18", num_classes=4, pretrained="none", freeze="head").to(META)
        feats, counter = syncs.count(features.extract, backbone, split(n), META, batch_size=4)
        assert feats.device == META and feats.shape == (n, 512) and counter.syncs() == []


def test_host_batches_are_pinned_and_the_next_copy_is_queued_first():
    pulled = []

    def source():
        for i in range(3):
            pulled.append(i)
            yield torch.full((2, 3), i), torch.tensor([i, i])

    with syncs.SyncCounter() as c:
        for i, (x, y) in enumerate(devices.prefetch(source(), META)):
            assert x.device == y.device == META
            assert pulled == list(range(min(i + 2, 3)))  # batch i+1 was fetched and sent before step i
    assert c.syncs() == [] and c.summary() == {"async copy": 6}
    cpu = list(devices.prefetch(source(), torch.device("cpu")))
    assert all(torch.equal(x, torch.full((2, 3), i)) for i, (x, _) in enumerate(cpu))


def test_deterministic_means_errors_not_warnings():
    try:
        train.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        train.seed_everything(0, deterministic=False)


@pytest.mark.parametrize("size, out", [(7, (7, 7)), (14, (7, 7)), (5, 1), (9, (1, 1)), (10, (7, 7))])
def test_even_average_pool_equals_the_adaptive_one(size, out):
    x = torch.randn(2, 3, size, size, requires_grad=True)
    ours = registry.EvenAvgPool2d(out)(x)
    ours.sum().backward()
    g = x.grad.clone()
    x.grad = None
    theirs = torch.nn.AdaptiveAvgPool2d(out)(x)
    theirs.sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-6) and torch.allclose(g, x.grad, atol=1e-6)


def test_deterministic_pooling_replaces_every_adaptive_average_pool():
    for name in registry.names():
        kw = dict(pretrained="none") if registry.family(name) == "pretrained" else {}
        model = registry.build(name, num_classes=4, **kw).eval()
        size = 64 if name != "custom_b" else 103
        x = torch.randn(1, 3, size, size)
        before = model(x)
        assert registry.deterministic_pooling(model) >= 1
        assert not any(type(m) is torch.nn.AdaptiveAvgPool2d for m in model.modules())
        assert torch.allclose(model(x), before, atol=1e-5), name
