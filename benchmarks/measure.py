"""Measuring tools of benchmarks/bench.py: timed streams, peak memory, one function per measurement, tables."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Subset as IndexSubset

import reference
from foodcnn.data import subsets, layout, synth, transforms
from foodcnn.models import registry
from foodcnn import params
from foodcnn.training import epochs, features, streams, train

REPO = Path(__file__).resolve().parents[1]
PAPER_SIZE = 224


# --------------------------------------------------------------------------------------------
# Measuring
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


@dataclass
class Setup:
    """What every measurement shares: the data, the device and the step counts."""

    subset: subsets.Subset
    device: torch.device
    cache_dir: Path
    demo: params.Params
    decoded: dict[int, subsets.Decoded] = field(default_factory=dict)
    decode_ips: dict[int, float] = field(default_factory=dict)

    def split(self, size: int) -> subsets.Decoded:
        """Return the train split decoded at `size`: a cold decode (timed) once, then the cache (memory-mapped)."""
        if size not in self.decoded:
            t0 = time.perf_counter()
            subsets.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
            self.decode_ips[size] = len(self.subset.train) / (time.perf_counter() - t0)
            self.decoded[size] = subsets.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
        return self.decoded[size]

    def reference_train(self, size: int, mean, std) -> IndexSubset:
        """Return the reports' dataset restricted to foodcnn's train images (their random_split)."""
        ds = reference.FoodFolder(self.subset.root, "train", classes=self.subset.classes,
                                  transform=reference.make_transform(size, mean=mean, std=std))
        keep = {str(s.path) for s in self.subset.train}
        return IndexSubset(ds, [i for i, (path, _) in enumerate(ds.samples) if path in keep])


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




@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Temporarily replace obj.name (a candidate library patch measured in place)."""
    real = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, real)


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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


def demo_params() -> tuple[params.Params, str]:
    """Return the demo profile's parameters (params/profiles/demo.yaml) and the file they came from."""
    path = params.profile_path("demo", REPO / "params")
    return params.from_mapping(params.read_yaml(path), source=str(path)), str(path.relative_to(REPO))


def paper_epochs() -> int:
    """Return the paper profile's epochs (params/profiles/paper.yaml)."""
    path = params.profile_path("paper", REPO / "params")
    return params.from_mapping(params.read_yaml(path), source=str(path)).epochs


FOOD101_SIDE = 512  # the longest side of a Food-101 image (SPEC §1)


def bench_root(source_side: int) -> Path:
    """Return where the bench keeps its synthetic images of this longest side (generated once, then reused)."""
    return REPO / "data" / "bench" / f"side-{source_side}" / "food-101"


def make_setup(device: torch.device, root: str | None, source_side: int | None = FOOD101_SIDE) -> Setup:
    """Return the shared set-up: the demo subset of `root`, else of synthetic images whose longest side is `source_side`.

    The reports' loop decodes and resizes every JPEG in every epoch, so its cost grows with the source images:
    by default the bench generates the demo's classes and counts at Food-101's resolution (longest side 512 px)
    rather than timing it on the embedded dataset's 128 px thumbnails. `source_side=None` uses the demo
    profile's own data (data/food-101).
    """
    demo, _ = demo_params()
    if root:
        data_root = Path(root)
    elif source_side is None:
        data_root = Path(demo.data_root)
    else:
        data_root = bench_root(source_side)
    if not data_root.is_absolute():
        data_root = REPO / data_root
    try:
        layout.find_root(data_root)
    except layout.DatasetError:
        out = data_root.parent if data_root.name == "food-101" else data_root
        if root is None and source_side is not None:
            print(f"generating synthetic images with a longest side of {source_side} px under {out} "
                  "(once; ~30 s) ...", flush=True)
            synth.generate(out, num_classes=demo.num_classes, train_per_class=demo.max_train_per_class or 40,
                           test_per_class=demo.max_test_per_class or 25, max_side=source_side, progress=False)
        else:
            print(f"generating the synthetic dataset under {out} ...", flush=True)
            synth.generate(out, progress=False)
    subset = subsets.subset_of(demo, data_root)
    cache = Path(tempfile.mkdtemp(prefix="foodcnn-bench-"))
    return Setup(subset, device, cache, demo)


class Helper:
    """A fresh process that runs measurements for the bench, one call at a time, with or without foodcnn's malloc tuning.

    foodcnn's CPU runs keep freed memory in glibc's heap (allocator.keep_freed_memory, applied by
    train.run); the reports' loop ran with the default malloc. That setting is process-wide and cannot be
    undone, and a process keeps the memory of what it measured before, so each table row measures the
    reference in one fresh helper (default malloc) and ours in another (the library's setting). The two
    alternate and never run at the same time: each call blocks until its helper answers. Helpers read the
    decode cache (`s.cache_dir`), so call `s.split(size)` in the bench first.
    """

    def __init__(self, s: Setup, library_malloc: bool):
        import multiprocessing as mp

        # forkserver: one server process imports torch and this module once; each helper is a fork of it
        # (no interpreter start and torch import per helper), made before any torch thread pool exists.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["measure"])
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_helper_main,
                                args=(child, s.subset, s.demo, str(s.cache_dir), s.device.type, library_malloc),
                                name="foodcnn-bench-helper")  # not daemonic: the reference starts DataLoader workers
        self.proc.start()
        child.close()
        self.malloc_tuned: bool | None = None

    def ready(self) -> "Helper":
        """Wait until the helper has imported torch and read the set-up; return it."""
        if self.malloc_tuned is None:
            self.malloc_tuned = bool(self._answer())
        return self

    def _answer(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"a bench helper process died (exit code {self.proc.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"in a bench helper process:\n{value}")
        return value

    def call(self, fn: str, *args: Any, threads: int | None = None, **kwargs: Any) -> dict:
        """Return measure.<fn>(setup, *args, **kwargs) run in the helper (`threads`: torch threads for this call)."""
        self.ready()
        self.conn.send((fn, args, kwargs, threads))
        return self._answer()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)


@contextlib.contextmanager
def helpers(s: Setup, reference: bool = True) -> Iterator[tuple[Helper | None, Helper]]:
    """Yield (reference helper or None, ours helper): fresh processes for one table row, started side by side."""
    started = [Helper(s, library_malloc=False) if reference else None, Helper(s, library_malloc=True)]
    try:
        for h in started:
            if h is not None:
                h.ready()
        yield started[0], started[1]
    finally:
        for h in started:
            if h is not None:
                h.close()


def _helper_main(conn: Any, subset: subsets.Subset, demo: params.Params, cache_dir: str, device: str,
                 library_malloc: bool) -> None:
    import traceback

    from foodcnn.training import allocator

    try:
        tuned = allocator.keep_freed_memory() if library_malloc else False
        s = Setup(subset, torch.device(device), Path(cache_dir), demo)
        conn.send(("ok", tuned))
    except Exception:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args, kwargs, threads = msg
        try:
            with contextlib.ExitStack() as stack:
                if threads is not None:
                    stack.callback(torch.set_num_threads, torch.get_num_threads())
                    torch.set_num_threads(threads)
                result = globals()[fn](s, *args, **kwargs)
            conn.send(("ok", result))
        except Exception:  # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))


def describe_machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = (f"machine: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
           f"load average {load:.2f}")
    if device.type == "cuda":
        out += f"; GPU: {torch.cuda.get_device_name()}"
    return out
