"""One function per measurement of benchmarks/bench.py, and the instruments they use: peak memory, timed streams."""

from __future__ import annotations

import contextlib
import gc
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

import reference
from foodcnn import params
from foodcnn.data import subsets, transforms
from foodcnn.models import registry
from foodcnn.training import epochs, features, streams, train
from workload import REPO, Setup


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------


class PeakMemory:
    """Context manager: the peak memory while it is open (PSS of this process + its DataLoader workers; CUDA peak).

    Reading PSS walks the page tables of every process (the reference, with its two DataLoader workers,
    would pay three times what ours pays), so it samples during the warm-up steps,
    which do the same work as the timed ones, and stops at `stop_sampling()` (called when the timed steps
    start): the timed steps run without it, on both sides.
    """

    def __init__(self, device: torch.device, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.peak_mb = self.cuda_peak_mb = float("nan")
        self._stop = threading.Event()

    def _sample(self) -> float:
        import psutil

        total = 0
        procs = [psutil.Process()]
        with contextlib.suppress(psutil.Error):
            procs += psutil.Process().children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                try:
                    total += p.memory_full_info().pss  # forked workers share pages: PSS counts them once
                except AttributeError:
                    total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self._sample()
            if self._stop.is_set() and self.peak_mb == self.peak_mb:  # the timed steps began meanwhile: drop it
                break
            self.peak_mb = max(self.peak_mb if self.peak_mb == self.peak_mb else 0.0, sample)
            self._stop.wait(self.interval)

    def stop_sampling(self) -> None:
        """Stop sampling (the timed steps start); waits for a sample in progress to finish."""
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join()

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20


class TimedStream:
    """Wraps a streams.ImageStream/FeatureStream: yields warmup + steps batches and times the steps after warm-up.

    The timed window runs from asking for the first timed batch to the moment the training loop asks
    for the batch after the last one, so it holds every step's data, forward, backward, optimizer and
    bookkeeping; `data_wait` is the part spent producing batches.
    """

    def __init__(self, inner: Callable, warmup: int, steps: int, device: torch.device,
                 on_timed_start: Callable[[], None] | None = None):
        self.inner, self.warmup, self.steps, self.device = inner, warmup, steps, device
        self.on_timed_start = on_timed_start
        self.batch_size = inner.batch_size
        self.seconds = self.data_wait = self.warmup_seconds = 0.0
        self.images = 0

    def __len__(self) -> int:
        return (self.warmup + self.steps) * self.batch_size

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator:
        it = self.inner(generator, train)
        start = None
        first = time.perf_counter()
        for i in range(self.warmup + self.steps):
            if i == self.warmup:
                if self.on_timed_start is not None:
                    self.on_timed_start()
                self._sync()
                start = time.perf_counter()
                self.warmup_seconds = start - first
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            if i >= self.warmup:
                self.data_wait += time.perf_counter() - t0
                self.images += len(y)
            yield x, y
        if start is not None:
            self._sync()
            self.seconds = time.perf_counter() - start

    def result(self) -> dict:
        """Return images/s and the data-wait share of the timed steps, and the warm-up's time beyond that rate."""
        ips = self.images / self.seconds if self.seconds else float("nan")
        return {"images": self.images, "seconds": self.seconds, "images_per_s": ips,
                "data_wait_share": self.data_wait / self.seconds if self.seconds else float("nan"),
                "warmup_excess_s": max(0.0, self.warmup_seconds - self.warmup * self.batch_size / ips)}


def truncate(split: subsets.Decoded, n: int) -> subsets.Decoded:
    """Return the first n images of a decoded split."""
    return subsets.Decoded(split.images[:n], split.labels[:n], split.keys[:n], [])


def repeat(split: subsets.Decoded, n: int) -> subsets.Decoded:
    """Return n images of a split, starting over where it is shorter: timed steps are always full batches (a
    partial batch is another shape, which cuDNN autotunes anew inside the timed window)."""
    if n <= len(split):
        return truncate(split, n)
    idx = np.arange(n) % len(split)
    return subsets.Decoded(np.ascontiguousarray(split.images[idx]), split.labels[idx], [split.keys[i] for i in idx], [])


def build(name: str, freeze: str, device: torch.device, channels_last: bool = False, **knobs: Any) -> torch.nn.Module:
    """Return a freshly seeded model (random init: the speed does not depend on the weights)."""
    torch.manual_seed(0)
    kw = dict(pretrained="none", freeze=freeze) if registry.family(name) == "pretrained" else {}
    model = registry.build(name, **kw, **knobs).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [q for q in model.parameters() if q.requires_grad]


# --------------------------------------------------------------------------------------------
# One measurement each
# --------------------------------------------------------------------------------------------


def measure_reference(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int,
                      freeze: str = "none", workers: int | None = None) -> dict:
    """Return images/s, data-wait share and peak memory of the reports' training loop."""
    model = build(name, freeze, s.device)
    mean, std = registry.input_normalisation(model)
    loader = reference.make_loader(s.reference_train(size, mean, std), batch, shuffle=True, num_workers=workers)
    opt = torch.optim.Adam(trainable(model), lr=1e-3)
    torch.manual_seed(0)
    with PeakMemory(s.device) as mem:
        timer = reference.train(model, loader, opt, s.device, steps, warmup, on_timed_start=mem.stop_sampling)
    return {**timer.as_dict(), "peak_mb": mem.peak_mb, "cuda_peak_mb": mem.cuda_peak_mb}


def measure_reference_eval(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int) -> dict:
    """Return images/s of the reports' evaluation loop (frozen model, no_grad, PIL each time).

    Timed over the train images: the demo's validation split (60 images) holds one timed batch at most, too few
    steps for a rate that repeats from one bench run to the next.
    """
    model = build(name, "head", s.device)
    mean, std = registry.input_normalisation(model)
    loader = reference.make_loader(s.reference_train(size, mean, std), batch, shuffle=False)
    return reference.evaluate(model, loader, s.device, steps, warmup).as_dict()


def measure_ours(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int, freeze: str = "none",
                 channels_last: bool | None = None, amp: bool = False, knobs: dict | None = None) -> dict:
    """Return images/s, data-wait share and peak memory of foodcnn's training path (epochs.train_one_epoch).

    Defaults are the library's: memory format by streams.channels_last_pays, fused Adam (epochs.make_optimizer).
    """
    if channels_last is None:
        channels_last = streams.channels_last_pays(name, s.device, size)
    split = repeat(s.split(size), (warmup + steps) * batch)
    model = build(name, freeze, s.device, channels_last, **(knobs or {}))
    mem = PeakMemory(s.device)
    stream = TimedStream(streams.ImageStream(split, model, s.device, batch, None, channels_last), warmup, steps, s.device,
                         on_timed_start=mem.stop_sampling)
    opt = epochs.make_optimizer(model, 1e-3, s.device)
    registry.set_train_mode(model, True)
    torch.manual_seed(0)
    with mem:
        epochs.train_one_epoch(model, stream, opt, torch.Generator().manual_seed(0), s.device, amp, False, "bench")
    return {**stream.result(), "peak_mb": mem.peak_mb, "cuda_peak_mb": mem.cuda_peak_mb}





def measure_eval(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int, channels_last: bool = True,
                 amp: bool = False, knobs: dict | None = None) -> dict:
    """Return images/s of epochs.evaluate (validation and test passes) over the whole model."""
    split = repeat(s.split(size), (warmup + steps) * batch)
    model = build(name, "none", s.device, channels_last, **(knobs or {}))
    stream = TimedStream(streams.ImageStream(split, model, s.device, batch, None, channels_last), warmup, steps, s.device)
    registry.set_train_mode(model, False)
    epochs.evaluate(model, stream, s.device, amp)
    return stream.result()


def measure_features(s: Setup, name: str, size: int, images: int, batch: int = features.BATCH,
                     amp: bool = False) -> dict:
    """Return images/s of features.extract (the one-off pass of a frozen-backbone run) and its peak memory."""
    model = build(name, "head", s.device)
    split = repeat(s.split(size), images)
    features.extract(model, truncate(split, batch), s.device, batch_size=batch, amp=amp)  # warm-up
    # Timed without the memory sampler: reading PSS takes core time that a short pass would be charged for.
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    feats = features.extract(model, truncate(split, images), s.device, batch_size=batch, amp=amp)
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    with PeakMemory(s.device, interval=0.1) as mem:  # the same pass again, for its peak memory
        features.extract(model, truncate(split, images), s.device, batch_size=batch, amp=amp)
    return {"images_per_s": len(feats) / seconds, "dim": feats.shape[1], "peak_mb": mem.peak_mb,
            "cuda_peak_mb": mem.cuda_peak_mb}


# The catalogue row whose run the bench times for each frozen-backbone model family.
FROZEN_ROWS = {"resnet18": "a_resnet18", "vgg16_bn": "b_vgg_stock", "efficientnet_lite0": "x_effnet_stock"}


def measure_frozen_run(s: Setup, name: str, epochs: int) -> dict:
    """Return wall seconds of the library's whole run (train.run) of the family's frozen-backbone catalogue row.

    `cold_s`: a first run, caches empty: it decodes the three splits and computes their features. `warm_s`: a later
    run over the same backbone and images (another row, or seed, of the catalogue), which reads both from the
    caches. Both train `epochs` epochs (no early stopping), test, and write their run directory as `make report`
    does. The demo profile's data and sizes, random init (pretrained: none): the speed does not depend on weights.
    """
    tmp = Path(tempfile.mkdtemp(prefix="foodcnn-bench-run-"))
    try:
        p = params.load(REPO / "params" / f"{FROZEN_ROWS[name]}.yaml", profile="demo", overrides=dict(
            data_root=str(s.subset.root), classes=list(s.subset.classes), num_classes=len(s.subset.classes),
            epochs=epochs, patience=epochs, progress=False, pretrained="none",
            device=s.device.type, runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache")))
        out = {}
        for which in ("cold", "warm"):
            t0 = time.perf_counter()
            result = train.run(p, out=tmp / which)
            out[f"{which}_s"] = time.perf_counter() - t0
            out[f"{which}_from_disk"] = result["features_from_disk"]
        return {**out, "row": p.id, "epochs": epochs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_wide(size: int, batch: int, steps: int = 3, device: torch.device | str = "cpu") -> float:
    """Return seconds per image of the `wide` augmentation on uint8 batches on `device` (where train.run applies it)."""
    aug = transforms.make("wide", size)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    g = torch.Generator().manual_seed(0)
    aug(x, g)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        aug(x, g)
    sync()
    return (time.perf_counter() - t0) / (steps * batch)
