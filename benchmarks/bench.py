"""Speed of foodcnn's data and training paths against the reports' way (benchmarks/reference.py); prints figures.

    python benchmarks/bench.py            # CPU: every model family at the demo size and at 224 px (~8 min on 2 cores)
    python benchmarks/bench.py --quick    # a smoke run: fewer steps, 224 px for resnet18 only
    python benchmarks/bench.py --device cuda   # GPU: images/s at 224 px with AMP + a projection of the paper catalogue

Both loops run in this one process, side by side, on the same model, data, batch size and number of
steps; warm-up steps (worker start-up, first oneDNN/cuDNN calls) are not timed. "ours" is the
library's own code: data.decode (the uint8 cache) -> data.batches -> transforms.normalise -> model,
driven by train.train_one_epoch; the frozen-backbone rows use train.backbone_features +
train.FeatureStream. No figure is asserted: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Subset as IndexSubset  # noqa: E402

import reference  # noqa: E402
from foodcnn import data, models, params, synth, train  # noqa: E402

FAMILIES = ["baseline", "custom_a", "custom_b", "vgg16_bn", "resnet18", "efficientnet_lite0"]
FROZEN = ["resnet18", "vgg16_bn", "efficientnet_lite0"]
# Used when params/profiles/demo.yaml does not exist (SPEC §6: the small CNNs need 16/61/103 px).
DEMO_FALLBACK = {"image_size": 64, "image_size_by_model": {"baseline": 32, "custom_a": 64, "custom_b": 104},
                 "epochs": 10, "batch_size": 32}
PAPER_SIZE = 224
# On 2 CPU cores one vgg16_bn step at 224 px takes ~15 s per 16 images; the CPU run leaves it out.
SKIP_ON_CPU_224 = {"vgg16_bn"}


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class PeakMemory:
    """Context manager: the peak memory while it is open (PSS of this process + its DataLoader workers; CUDA peak)."""

    def __init__(self, device: torch.device, interval: float = 0.05):
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
            self.peak_mb = max(self.peak_mb if self.peak_mb == self.peak_mb else 0.0, self._sample())
            self._stop.wait(self.interval)

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
    """Wraps a train.ImageStream/FeatureStream: yields warmup + steps batches and times the steps after warm-up.

    The timed window runs from asking for the first timed batch to the moment the training loop asks
    for the batch after the last one, so it holds every step's data, forward, backward, optimizer and
    bookkeeping; `data_wait` is the part spent producing batches.
    """

    def __init__(self, inner: Callable, warmup: int, steps: int, device: torch.device):
        self.inner, self.warmup, self.steps, self.device = inner, warmup, steps, device
        self.batch_size = inner.batch_size
        self.seconds = self.data_wait = 0.0
        self.images = 0

    def __len__(self) -> int:
        return (self.warmup + self.steps) * self.batch_size

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator:
        it = self.inner(generator, train)
        start = None
        for i in range(self.warmup + self.steps):
            if i == self.warmup:
                self._sync()
                start = time.perf_counter()
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
        """Return images/s and the data-wait share of the timed steps."""
        return {"images": self.images, "seconds": self.seconds,
                "images_per_s": self.images / self.seconds if self.seconds else float("nan"),
                "data_wait_share": self.data_wait / self.seconds if self.seconds else float("nan")}


def truncate(split: data.Decoded, n: int) -> data.Decoded:
    """Return the first n images of a decoded split."""
    return data.Decoded(split.images[:n], split.labels[:n], split.keys[:n], [])


def build(name: str, freeze: str, device: torch.device, channels_last: bool = False, **knobs: Any) -> torch.nn.Module:
    """Return a freshly seeded model (random init: the speed does not depend on the weights)."""
    torch.manual_seed(0)
    kw = dict(pretrained="none", freeze=freeze) if models.family(name) == "pretrained" else {}
    model = models.build(name, **kw, **knobs).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [q for q in model.parameters() if q.requires_grad]


# --------------------------------------------------------------------------------------------
# One measurement each
# --------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every measurement shares: the data, the device and the step counts."""

    subset: data.Subset
    device: torch.device
    cache_dir: Path
    demo: params.Params
    decoded: dict[int, data.Decoded] = field(default_factory=dict)
    decode_ips: dict[int, float] = field(default_factory=dict)

    def split(self, size: int) -> data.Decoded:
        """Return the train split decoded at `size`: a cold decode (timed) once, then the cache (memory-mapped)."""
        if size not in self.decoded:
            t0 = time.perf_counter()
            data.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
            self.decode_ips[size] = len(self.subset.train) / (time.perf_counter() - t0)
            self.decoded[size] = data.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
        return self.decoded[size]

    def reference_train(self, size: int, mean, std) -> IndexSubset:
        """Return the reports' dataset restricted to foodcnn's train images (their random_split)."""
        ds = reference.FoodFolder(self.subset.root, "train", classes=self.subset.classes,
                                  transform=reference.make_transform(size, mean=mean, std=std))
        keep = {str(s.path) for s in self.subset.train}
        return IndexSubset(ds, [i for i, (path, _) in enumerate(ds.samples) if path in keep])

    def reference_val(self, size: int, mean, std) -> IndexSubset:
        ds = reference.FoodFolder(self.subset.root, "train", classes=self.subset.classes,
                                  transform=reference.make_transform(size, mean=mean, std=std))
        keep = {str(s.path) for s in self.subset.val}
        return IndexSubset(ds, [i for i, (path, _) in enumerate(ds.samples) if path in keep])


def measure_reference(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int,
                      freeze: str = "none", workers: int | None = None) -> dict:
    """Return images/s, data-wait share and peak memory of the reports' training loop."""
    model = build(name, freeze, s.device)
    mean, std = models.input_normalisation(model)
    loader = reference.make_loader(s.reference_train(size, mean, std), batch, shuffle=True, num_workers=workers)
    opt = torch.optim.Adam(trainable(model), lr=1e-3)
    torch.manual_seed(0)
    with PeakMemory(s.device) as mem:
        timer = reference.train(model, loader, opt, s.device, steps, warmup)
    return {**timer.as_dict(), "peak_mb": mem.peak_mb, "cuda_peak_mb": mem.cuda_peak_mb}


def measure_reference_eval(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int) -> dict:
    """Return images/s of the reports' evaluation loop (frozen model, no_grad, PIL each time)."""
    model = build(name, "head", s.device)
    mean, std = models.input_normalisation(model)
    loader = reference.make_loader(s.reference_val(size, mean, std), batch, shuffle=False)
    return reference.evaluate(model, loader, s.device, steps, warmup).as_dict()


def measure_ours(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int, freeze: str = "none",
                 channels_last: bool = False, amp: bool = False, knobs: dict | None = None) -> dict:
    """Return images/s, data-wait share and peak memory of foodcnn's training path (train.train_one_epoch)."""
    split = truncate(s.split(size), (warmup + steps) * batch)
    model = build(name, freeze, s.device, channels_last, **(knobs or {}))
    stream = TimedStream(train.ImageStream(split, model, s.device, batch, None, channels_last), warmup, steps, s.device)
    opt = torch.optim.Adam(trainable(model), lr=1e-3)
    models.set_train_mode(model, True)
    torch.manual_seed(0)
    with PeakMemory(s.device) as mem:
        train.train_one_epoch(model, stream, opt, torch.Generator().manual_seed(0), s.device, amp, False, "bench")
    return {**stream.result(), "peak_mb": mem.peak_mb, "cuda_peak_mb": mem.cuda_peak_mb}


def measure_eval(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int, channels_last: bool = False,
                 amp: bool = False, knobs: dict | None = None) -> dict:
    """Return images/s of train.evaluate (validation and test passes) over the whole model."""
    split = truncate(s.split(size), (warmup + steps) * batch)
    model = build(name, "none", s.device, channels_last, **(knobs or {}))
    stream = TimedStream(train.ImageStream(split, model, s.device, batch, None, channels_last), warmup, steps, s.device)
    models.set_train_mode(model, False)
    train.evaluate(model, stream, s.device, amp)
    return stream.result()


def measure_features(s: Setup, name: str, size: int, batch: int, warmup: int, steps: int,
                     channels_last: bool = False, inference_mode: bool = False) -> dict:
    """Return images/s of train.backbone_features (the one-off pass of a frozen-backbone run) and peak memory."""
    model = build(name, "head", s.device, channels_last)
    split = s.split(size)
    mode = torch.inference_mode if inference_mode else contextlib.nullcontext

    def stream(n: int) -> train.ImageStream:
        return train.ImageStream(truncate(split, n), model, s.device, batch, None, channels_last)

    with mode():
        train.backbone_features(model, stream(warmup * batch))  # warm-up
        with PeakMemory(s.device) as mem:
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            feats = train.backbone_features(model, stream(steps * batch))
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
    return {"images_per_s": len(feats) / seconds, "dim": feats.shape[1], "peak_mb": mem.peak_mb,
            "cuda_peak_mb": mem.cuda_peak_mb}


def measure_head_epochs(s: Setup, name: str, dim: int, n_train: int, n_val: int, batch: int, epochs: int = 3) -> dict:
    """Return seconds per head-only epoch (train over n_train cached features + validation over n_val)."""
    model = build(name, "head", s.device)
    net = train.head_of(model)
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(n_train, dim, generator=g).to(s.device), torch.randint(0, 20, (n_train,)).to(s.device)
    fs_train = train.FeatureStream(feats, labels, batch, None)
    fs_val = train.FeatureStream(feats[:n_val], labels[:n_val], batch, None)
    opt = torch.optim.Adam(trainable(net), lr=1e-3)
    times = []
    for epoch in range(epochs + 1):  # the first is warm-up
        t0 = time.perf_counter()
        net.train()
        train.train_one_epoch(net, fs_train, opt, torch.Generator().manual_seed(epoch), s.device, True, False, "head")
        net.eval()
        train.evaluate(net, fs_val, s.device, True)
        times.append(time.perf_counter() - t0)
    return {"epoch_s": float(np.median(times[1:]))}


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
    """Return the demo profile's parameters (params/profiles/demo.yaml, or the fallback) and where they came from."""
    path = REPO / "params" / "profiles" / "demo.yaml"
    if path.is_file():
        raw = params.read_yaml(path)
        return params.from_mapping(raw, source=str(path)), str(path.relative_to(REPO))
    return params.from_mapping(DEMO_FALLBACK, source="<bench fallback>"), "fallback (no params/profiles/demo.yaml)"


def make_setup(device: torch.device, root: str | None) -> Setup:
    demo, _ = demo_params()
    data_root = Path(root or demo.data_root)
    if not data_root.is_absolute():
        data_root = REPO / data_root
    try:
        data.find_root(data_root)
    except data.DatasetError:
        out = data_root.parent if data_root.name == "food-101" else data_root
        print(f"generating the synthetic dataset under {out} ...", flush=True)
        synth.generate(out, progress=False)
    subset = data.load_subset(data_root, demo.classes, demo.num_classes, demo.val_fraction, demo.split_seed,
                              demo.max_train_per_class, demo.max_test_per_class)
    cache = Path(tempfile.mkdtemp(prefix="foodcnn-bench-"))
    return Setup(subset, device, cache, demo)


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


# --------------------------------------------------------------------------------------------
# CPU: the side-by-side comparison
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Step counts: (warm-up, timed) per size class, and rounds of alternation at the demo size."""

    demo_steps: tuple[int, int] = (2, 5)
    big_steps: tuple[int, int] = (1, 3)
    big_batch: int = 16
    rounds: int = 2
    big_models: list[str] | None = None  # None: all but SKIP_ON_CPU_224
    frozen_steps: tuple[int, int] = (1, 4)
    patches: bool = True


def scratch_rows(s: Setup, names: list[str], plan: Plan) -> tuple[list[list[Any]], dict]:
    rows, at_demo = [], {}
    for size_kind in ("demo", "224"):
        for name in names:
            if size_kind == "demo":
                size, batch, (w, k), rounds = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size, \
                    plan.demo_steps, plan.rounds
            else:
                if (plan.big_models is not None and name not in plan.big_models) or \
                        (plan.big_models is None and name in SKIP_ON_CPU_224):
                    continue
                size, batch, (w, k), rounds = PAPER_SIZE, plan.big_batch, plan.big_steps, 1
            freeze = "none"  # from scratch (small CNNs) or fine-tune all (pretrained)
            s.split(size)
            ref, ours = [], []
            for _ in range(rounds):  # alternate, so that a change in machine load hits both
                ref.append(measure_reference(s, name, size, batch, w, k, freeze))
                ours.append(measure_ours(s, name, size, batch, w, k, freeze))
            r = combine(ref)
            o = combine(ours)
            ratio = o["images_per_s"] / r["images_per_s"]
            rows.append([name, size, batch, r["images_per_s"], o["images_per_s"], f"{ratio:.2f}x",
                         pct(r["data_wait_share"]), pct(o["data_wait_share"]), r["peak_mb"], o["peak_mb"]])
            if size_kind == "demo":
                at_demo[name] = {"ratio": ratio, "ours_wait": o["data_wait_share"], "ref": r, "ours": o}
            print(f"  {name} @{size}px: reference {r['images_per_s']:.1f} img/s, ours {o['images_per_s']:.1f} img/s "
                  f"({ratio:.2f}x)", flush=True)
    return rows, at_demo


def combine(results: list[dict]) -> dict:
    """Return the pooled figures of several rounds (images / seconds summed)."""
    images = sum(r["images"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    wait = sum(r["data_wait_share"] * r["seconds"] for r in results)
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "data_wait_share": wait / seconds,
            "peak_mb": max(r["peak_mb"] for r in results)}


def frozen_rows(s: Setup, names: list[str], plan: Plan, epochs: int) -> tuple[list[list[Any]], dict]:
    n_train, n_val, n_test = len(s.subset.train), len(s.subset.val), len(s.subset.test)
    n_all = n_train + n_val + n_test
    rows, speedups = [], {}
    for name in names:
        size, batch = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size
        w, k = plan.frozen_steps
        s.split(size)
        ref = measure_reference(s, name, size, batch, w, k, freeze="head")
        ref_eval = measure_reference_eval(s, name, size, batch, 1, max(1, min(k, n_val // batch - 1)))
        feat = measure_features(s, name, size, batch, w, k)
        head = measure_head_epochs(s, name, feat["dim"], n_train, n_val, batch)
        # One run of E epochs: train + validation every epoch, the test split once.
        ref_epoch = n_train / ref["images_per_s"] + n_val / ref_eval["images_per_s"]
        ref_run = epochs * ref_epoch + n_test / ref_eval["images_per_s"]
        one_off = n_all / s.decode_ips[size] + n_all / feat["images_per_s"]  # cold decode + backbone features
        ours_run = one_off + epochs * head["epoch_s"]
        speedup = ref_run / ours_run
        per_epoch = ref_epoch / head["epoch_s"]
        # Epochs after which the run is 10x faster: solve E*ref_epoch + t_test >= 10*(one_off + E*head).
        need = (10 * one_off - n_test / ref_eval["images_per_s"]) / (ref_epoch - 10 * head["epoch_s"])
        speedups[name] = speedup
        rows.append([name, size, ref["images_per_s"], pct(ref["data_wait_share"]), feat["images_per_s"], one_off,
                     head["epoch_s"], ref_epoch, f"{per_epoch:,.0f}x", f"{speedup:.1f}x",
                     max(1, math.ceil(need)) if need == need else "-", ref["peak_mb"], feat["peak_mb"]])
        print(f"  {name} @{size}px frozen: reference {ref_epoch:.1f} s/epoch, ours one-off {one_off:.1f} s "
              f"+ {head['epoch_s'] * 1000:.0f} ms/epoch -> {speedup:.1f}x over {epochs} epochs", flush=True)
    return rows, speedups


def patch_rows(s: Setup, names: list[str], plan: Plan) -> list[list[Any]]:
    """Candidate library patches measured on this CPU (same steps as the demo rows, one round)."""
    real_autocast = train._autocast

    def cpu_bf16(device: torch.device, amp: bool):
        if amp and device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return real_autocast(device, amp)

    rows = []
    w, k = plan.demo_steps
    for name in names:
        size, batch = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size
        base = measure_ours(s, name, size, batch, w, k)
        cl = measure_ours(s, name, size, batch, w, k, channels_last=True)
        train._autocast = cpu_bf16
        try:
            bf = measure_ours(s, name, size, batch, w, k, amp=True)
            clbf = measure_ours(s, name, size, batch, w, k, channels_last=True, amp=True)
        finally:
            train._autocast = real_autocast
        b = base["images_per_s"]
        rows.append([name, size, b, *(f"{r['images_per_s']:.1f} ({r['images_per_s'] / b:.2f}x)" for r in (cl, bf, clbf))])
        print(f"  patches {name}: done", flush=True)
    return rows


def feature_patch_rows(s: Setup, names: list[str], plan: Plan) -> list[list[Any]]:
    """The frozen-backbone pass: the library's (batch 32, no_grad) against inference_mode, larger batch, channels_last."""
    rows = []
    w, k = plan.frozen_steps
    for name in names:
        size, batch = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size
        base = measure_features(s, name, size, batch, w, k)["images_per_s"]
        variants = [measure_features(s, name, size, batch, w, k, inference_mode=True),
                    measure_features(s, name, size, 4 * batch, 1, max(1, k // 4), inference_mode=True),
                    measure_features(s, name, size, 4 * batch, 1, max(1, k // 4), channels_last=True,
                                     inference_mode=True)]
        rows.append([name, size, base, *(f"{v['images_per_s']:.1f} ({v['images_per_s'] / base:.2f}x)" for v in variants)])
    return rows


def run_cpu(args: argparse.Namespace) -> None:
    device = torch.device("cpu")
    s = make_setup(device, args.root)
    demo, demo_src = demo_params()
    plan = Plan()
    if args.quick:
        plan = Plan(demo_steps=(1, 2), big_steps=(1, 1), rounds=1, big_models=["resnet18"], frozen_steps=(1, 2),
                    patches=False)
    if args.patches is not None:
        plan.patches = args.patches
    names = [n for n in (args.models or FAMILIES) if n in models.names()]
    frozen = [n for n in FROZEN if n in names]
    epochs = args.epochs or demo.epochs
    print(describe_machine(device))
    print(f"data: {s.subset.root} ({'synthetic' if s.subset.synthetic else 'real'}), train/val/test = "
          f"{len(s.subset.train)}/{len(s.subset.val)}/{len(s.subset.test)}; demo settings from {demo_src}; "
          f"reference DataLoader workers = os.cpu_count() = {os.cpu_count()}")
    t_start = time.perf_counter()
    try:
        print("\n[1/3] from scratch / fine-tune all: training steps, reference vs ours (fp32, CPU)", flush=True)
        rows, at_demo = scratch_rows(s, names, plan)
        print("\n[2/3] frozen backbone (freeze: head)", flush=True)
        frows, speedups = frozen_rows(s, frozen, plan, epochs)
        prow = fprow = None
        if plan.patches:
            print("\n[3/3] candidate library patches (ours, demo size)", flush=True)
            prow = patch_rows(s, names, plan)
            fprow = feature_patch_rows(s, frozen, plan)
    finally:
        shutil.rmtree(s.cache_dir, ignore_errors=True)
    d, w, k = plan.demo_steps[0], plan.demo_steps[1], plan.big_steps[1]
    print(f"\n== Training steps: images/s (batch {demo.batch_size} at the demo size, {plan.rounds} alternating rounds "
          f"of {d} warm-up + {w} timed steps; batch {plan.big_batch} at 224 px, {plan.big_steps[0]} warm-up + {k} timed)")
    print(table(["model", "px", "batch", "ref img/s", "ours img/s", "ours/ref", "ref data wait", "ours data wait",
                 "ref peak MB", "ours peak MB"], rows))
    skipped = [n for n in names if (plan.big_models is None and n in SKIP_ON_CPU_224)
               or (plan.big_models is not None and n not in plan.big_models)]
    if skipped:
        print(f"(224 px on CPU left out for {', '.join(skipped)}: too slow for `make bench` on 2 cores)")
    print("peak MB: proportional set size (PSS) of this process plus its DataLoader workers during the steps; "
          "it includes the Python/torch runtime (~the same in both)")
    decode = ", ".join(f"{sz} px {ips:.0f} img/s" for sz, ips in sorted(s.decode_ips.items()))
    print(f"one-off cold decode into the uint8 cache (per size, reused by every later run and epoch): {decode}")
    print(f"\n== Frozen backbone (freeze: head), demo size, one run of {epochs} epochs (train {len(s.subset.train)} + "
          f"val {len(s.subset.val)} each epoch, test {len(s.subset.test)} once)")
    print(table(["model", "px", "ref train img/s", "ref data wait", "ours feat img/s", "ours one-off s",
                 "ours s/epoch", "ref s/epoch", "per epoch", f"run ({epochs} ep)", "10x after ep",
                 "ref peak MB", "ours peak MB"], frows))
    print("reference: forward through the frozen backbone (train mode) + head backward, PIL every epoch; ours: "
          "cold decode + backbone features of all three splits once (charged in full), then head-only epochs")
    if prow is not None:
        print("\n== Candidate library patches, ours at the demo size (training img/s; ratio to the library as it is)")
        print(table(["model", "px", "library fp32", "channels_last", "bf16 autocast", "channels_last+bf16"], prow))
        print("\n== Frozen-backbone feature pass (img/s; library: batch 32 under no_grad)")
        print(table(["model", "px", "library", "inference_mode", "inference_mode, batch 128",
                     "+ channels_last"], fprow))
    print(f"\nthreads: torch uses {torch.get_num_threads()} intra-op threads on {os.cpu_count()} CPUs; "
          f"total {time.perf_counter() - t_start:.0f} s")
    frozen_speedup = geomean(list(speedups.values()))
    scratch_speedup = geomean([v["ratio"] for v in at_demo.values()])
    wait = geomean([v["ours_wait"] for v in at_demo.values()])
    print(f"frozen_speedup={frozen_speedup:.1f} scratch_speedup={scratch_speedup:.2f} data_wait={100 * wait:.1f}%")


# --------------------------------------------------------------------------------------------
# GPU: images/s at 224 px with AMP and a projection of the paper catalogue
# --------------------------------------------------------------------------------------------

# SPEC §4, one row per params file: (id, model, freeze, augment, model knobs). Used when params/*.yaml is absent.
CATALOGUE = [
    ("a_baseline", "baseline", "none", "none", {}),
    ("a_new_ini", "baseline", "none", "none", {"init": "normal"}),
    ("a_new_p_0.4", "baseline", "none", "none", {"dropout": 0.4}),
    ("a_new_p_0.6", "baseline", "none", "none", {"dropout": 0.6}),
    ("a_i_lr", "baseline", "none", "none", {}),
    ("a_d_lr", "baseline", "none", "none", {}),
    ("a_new_arc", "custom_a", "none", "none", {}),
    ("a_ron_flip", "baseline", "none", "hflip", {}),
    ("a_custom", "custom_a", "none", "hflip", {}),
    ("a_vgg16", "vgg16", "head", "none", {}),
    ("a_vgg16_3x", "vgg16", "every_nth:3", "none", {}),
    ("a_vgg16_new_lr", "vgg16", "head", "none", {}),
    ("a_resnet18", "resnet18", "head", "none", {}),
    ("a_resnet18_10x", "resnet18", "every_nth:10", "none", {}),
    ("a_resnet18_ron_flip", "resnet18", "head", "hflip", {}),
    ("b_baseline", "baseline", "none", "none", {}),
    ("b_custom1", "baseline", "none", "none", {"extra_convs": 2, "extra_convs_after": "conv3"}),
    ("b_custom2", "baseline", "none", "none", {"activation": "silu"}),
    ("b_custom3", "baseline", "none", "none", {"extra_pool_after": "conv2"}),
    ("b_custom4", "baseline", "none", "none", {}),
    ("b_custom5", "custom_b", "none", "none", {}),
    ("b_custom6", "custom_b", "none", "none", {"activation": "silu"}),
    ("b_custom7", "custom_b", "none", "none", {}),
    ("b_resnet_stock", "resnet18", "head", "none", {}),
    ("b_resnet1", "resnet18", "none", "none", {}),
    ("b_resnet2", "resnet18", "none", "none", {}),
    ("b_resnet3", "resnet18", "head", "none", {}),
    ("b_resnet4", "resnet18", "conv1", "none", {}),
    ("b_resnet5", "resnet18", "conv1", "wide", {}),
    ("b_resnet6", "resnet18", "none", "wide", {}),
    ("b_vgg_stock", "vgg16_bn", "head", "none", {}),
    ("b_vgg1", "vgg16_bn", "none", "none", {}),
    ("b_vgg2", "vgg16_bn", "none", "none", {}),
    ("b_vgg3", "vgg16_bn", "conv1", "none", {}),
    ("b_vgg4", "vgg16_bn", "none", "wide", {}),
    ("b_vgg5", "vgg16_bn", "none", "wide", {}),
    ("b_vgg6", "vgg16_bn", "conv1", "wide", {}),
]
# SPEC §1/§3: 750 train images per class (20 % of them validation), 250 test, 20 classes, up to 25 epochs.
PAPER_COUNTS = {"train": 20 * 600, "val": 20 * 150, "test": 20 * 250}
KNOB_KEYS = ("activation", "dropout", "init", "extra_convs", "extra_convs_after", "extra_pool_after")


@dataclass
class Row:
    id: str
    model: str
    freeze: str
    augment: str
    knobs: dict
    epochs: int = 25
    batch: int = 32
    size: int = PAPER_SIZE
    seeds: int = 1


def catalogue() -> tuple[list[Row], str]:
    """Return the paper-profile catalogue rows: from params/*.yaml when present, else SPEC §4's 37 rows."""
    files = sorted((REPO / "params").glob("*.yaml"))
    if not files:
        return [Row(i, m, f, a, k) for i, m, f, a, k in CATALOGUE], "SPEC §4 (37 rows; no params/*.yaml yet)"
    paper = REPO / "params" / "profiles" / "paper.yaml"
    rows = []
    for path in files:
        p = params.load(path, profile=str(paper) if paper.is_file() else None)
        knobs = {k: getattr(p, k) for k in KNOB_KEYS}
        rows.append(Row(p.id, p.model, p.freeze, p.augment, knobs, p.epochs, p.batch_size, p.resolved_image_size,
                        len(p.seeds)))
    return rows, f"{len(files)} files in params/" + (" + profiles/paper.yaml" if paper.is_file() else "")


def measure_wide_cpu(size: int, batch: int, steps: int = 3) -> float:
    """Return seconds per image of the `wide` augmentation (it runs on uint8 CPU batches in the main process)."""
    from foodcnn import transforms

    aug = transforms.make("wide", size)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    aug(x, g)
    t0 = time.perf_counter()
    for _ in range(steps):
        aug(x, g)
    return (time.perf_counter() - t0) / (steps * batch)


def run_cuda(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    s = make_setup(device, args.root)
    rows, source = catalogue()
    quick = args.quick
    w, k = (2, 3) if quick else (5, 15)
    batch = 32
    print(describe_machine(device))
    print(f"catalogue: {source}; paper data: {PAPER_COUNTS}, {rows[0].epochs if rows else 25} epochs")
    ours_train: dict[tuple, float] = {}
    ours_eval: dict[str, float] = {}
    mrows = []
    size = args.size or PAPER_SIZE
    names = [n for n in (args.models or sorted({r.model for r in rows} | set(FAMILIES))) if n in models.names()]
    try:
        for name in names:
            ref = measure_reference(s, name, size, batch, w, k, "none")
            o = measure_ours(s, name, size, batch, w, k, "none", channels_last=True, amp=True)
            o32 = measure_ours(s, name, size, batch, w, k, "none")
            ev = measure_features(s, name, size, batch, w, k, channels_last=True) if models.family(name) == "pretrained" \
                else None
            ours_train[(name, "none", "{}")] = o["images_per_s"]
            mrows.append([name, size, ref["images_per_s"], pct(ref["data_wait_share"]), o32["images_per_s"],
                          o["images_per_s"], f"{o['images_per_s'] / ref['images_per_s']:.2f}x",
                          pct(o["data_wait_share"]), ev["images_per_s"] if ev else float("nan"), o["cuda_peak_mb"]])
            print(f"  {name}: ref {ref['images_per_s']:.0f} img/s, ours AMP {o['images_per_s']:.0f} img/s", flush=True)
        # Every distinct (model, knobs, freeze) of the catalogue that trains through the network.
        for r in rows:
            key = (r.model, "head" if r.freeze == "head" else r.freeze, repr(sorted(r.knobs.items())))
            if r.freeze == "head" and r.augment in ("none", "hflip"):
                if r.model not in ours_eval:
                    ours_eval[r.model] = measure_features(s, r.model, r.size, r.batch, w, k,
                                                          channels_last=True)["images_per_s"]
            elif key not in ours_train:
                ours_train[key] = measure_ours(s, r.model, r.size, r.batch, w, k, r.freeze, channels_last=True,
                                               amp=True, knobs=r.knobs)["images_per_s"]
            if r.model not in ours_eval:  # validation/test passes
                ours_eval[r.model] = measure_eval(s, r.model, r.size, r.batch, w, k, channels_last=True, amp=True,
                                                  knobs=r.knobs)["images_per_s"]
        wide_s = measure_wide_cpu(size, batch, 1 if quick else 3) if any(r.augment == "wide" for r in rows) else 0.0
    finally:
        shutil.rmtree(s.cache_dir, ignore_errors=True)
    n_tr, n_va, n_te = PAPER_COUNTS["train"], PAPER_COUNTS["val"], PAPER_COUNTS["test"]
    total, prow = 0.0, []
    for r in rows:
        ev = ours_eval[r.model]
        if r.freeze == "head" and r.augment in ("none", "hflip"):
            t = ((2 if r.augment == "hflip" else 1) * n_tr + n_va + n_te) / ev  # features once; head epochs ~0
            how = "cached features"
        else:
            key = (r.model, r.freeze, repr(sorted(r.knobs.items())))
            tr = ours_train.get(key) or ours_train[(r.model, "none", "{}")]
            t = r.epochs * (n_tr / tr + n_va / ev + (n_tr * wide_s if r.augment == "wide" else 0.0)) + n_te / ev
            how = "wide aug on CPU" if r.augment == "wide" else "full network"
        total += t * r.seeds
        prow.append([r.id, r.model, r.freeze, r.augment, how, r.seeds, t / 60])
    print(f"\n== Training images/s at {size} px, batch {batch} ({w} warm-up + {k} timed steps)")
    print(table(["model", "px", "ref fp32 img/s", "ref data wait", "ours fp32 img/s", "ours AMP img/s", "AMP/ref",
                 "ours data wait", "features img/s", "ours AMP GPU peak MB"], mrows))
    print("ours AMP = bf16 autocast + channels_last + cudnn.benchmark; reference = fp32, default memory format, "
          f"PIL + DataLoader(num_workers={os.cpu_count()}) on the embedded synthetic images (smaller than Food-101's "
          "512 px JPEGs, so real decoding costs the reference more)")
    print(f"\n== Projected wall time of the paper catalogue ({len(rows)} rows, up to 25 epochs, no early stopping)")
    print(table(["id", "model", "freeze", "augment", "path", "seeds", "minutes"], prow))
    if wide_s:
        print(f"`wide` augmentation on the CPU: {1000 * wide_s:.2f} ms per image at {size} px (main process, serial)")
    print(f"projected_total_hours={total / 3600:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, 224 px for resnet18 only, no patch section")
    ap.add_argument("--device", default="cpu", help="cpu (side-by-side comparison) or cuda (AMP + catalogue projection)")
    ap.add_argument("--models", nargs="+", help="model families to measure (default: all)")
    ap.add_argument("--root", help="dataset root (default: the demo profile's data_root, data/food-101)")
    ap.add_argument("--epochs", type=int, help="epochs a frozen-backbone run amortises its one-off pass over "
                                               "(default: the demo profile's)")
    ap.add_argument("--patches", action=argparse.BooleanOptionalAction, default=None,
                    help="measure candidate library patches (default: on, off with --quick)")
    ap.add_argument("--size", type=int, help="image size of the --device cuda table (default 224)")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.device == "cpu":
        run_cpu(args)
    else:
        run_cuda(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
