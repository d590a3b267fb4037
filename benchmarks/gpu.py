"""The GPU side of benchmarks/bench.py (--device cuda): images/s at 224 px with AMP; the paper catalogue's wall time.

The projection charges every run what it pays: its process start (Python, torch, CUDA context, cuDNN), cuDNN's
autotuning in its first steps (timed apart from the steady rate), training and evaluation at the steady rate of
its (model, batch size, image size), the `wide` augmentation, a checkpoint write per epoch and the best weights
at the end, and, once for the whole catalogue, the decode of the images. `row_costs` returns one record per
catalogue row (also written as JSON with --json), from which a schedule over N GPUs can be built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from foodcnn import checkpoints
from foodcnn.models import registry, smallcnn
from foodcnn import params
from foodcnn.training import epochs, features
from foodcnn.pipeline import batch as batch_runner
from schedule import projection
from measure import measure_eval, measure_features, measure_ours, measure_reference, measure_wide
from printing import describe_machine, pct, table
from workload import PAPER_SIZE, REPO, make_setup

FAMILIES = [n for n in registry.in_order() if n != "vgg16"]  # vgg16_bn times both VGGs


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


def catalogue(profile: str = "paper") -> tuple[list[Row], str]:
    """Return the catalogue rows (params/*.yaml) resolved under a profile (params/profiles/), and where they came from."""
    files = batch_runner.catalogue(REPO / "params")
    rows = []
    for path in files.values():
        p = params.load(path, profile=profile)
        knobs = {k: getattr(p, k) for k in KNOB_KEYS}
        rows.append(Row(p.id, p.model, p.freeze, p.augment, knobs, p.epochs, p.batch_size, p.resolved_image_size,
                        len(p.seeds)))
    return rows, f"{len(files)} files in params/ + profiles/{profile}.yaml"


def cached(r: Row) -> bool:
    """Return whether the row trains its head on cached backbone features (train.run's condition)."""
    return r.freeze == "head" and r.augment in ("none", "hflip")


def smallest_size(r: Row) -> int:
    """Return the smallest input the row's model accepts (SPEC §6: no padding in the small CNNs)."""
    if registry.family(r.model) != "small":
        return 32
    k = r.knobs
    return smallcnn.min_input_size(smallcnn.apply_knobs(smallcnn.SMALL_SPECS[r.model], k.get("extra_convs", 0),
                                                        k.get("extra_convs_after", "conv3"), k.get("extra_pool_after")))


def knob_key(knobs: dict) -> str:
    return repr(sorted(knobs.items()))


def train_key(r: Row) -> tuple:
    """Return the key of a row's training rate: what changes the work of a step."""
    return (r.model, r.freeze, knob_key(r.knobs), r.batch, r.size)


def eval_key(r: Row) -> tuple:
    """Return the key of a row's evaluation rate (validation and test passes through the whole model)."""
    return (r.model, knob_key(r.knobs), r.batch, r.size)


@dataclass
class Costs:
    """What one GPU was measured to do. Rates in images/s; times in seconds."""

    train: dict[tuple, float] = field(default_factory=dict)  # train_key -> steady training rate
    warmup: dict[tuple, float] = field(default_factory=dict)  # train_key -> first steps' extra time (autotuning)
    eval: dict[tuple, float] = field(default_factory=dict)  # eval_key -> steady evaluation rate
    features: dict[tuple, float] = field(default_factory=dict)  # (model, size) -> frozen-backbone feature pass
    wide_s: dict[int, float] = field(default_factory=dict)  # size -> seconds per image of the `wide` augmentation
    checkpoint_s: dict[str, float] = field(default_factory=dict)  # model -> one last.pt write (weights + Adam)
    start_s: float = 0.0  # one run's process start: Python, torch, foodcnn, CUDA context, cuDNN's first conv
    decode_ips: float = float("inf")  # decoding source images into the uint8 cache, once per image size
    checkpoint_every_s: float = params.Params().checkpoint_every_s  # the runs' setting (train.run's last.pt)


@dataclass
class RowCost:
    """A catalogue row's projected seconds: `seed_s` per seed, plus `shared_s` paid once by the row (the first
    that needs a backbone's features or an image size's decode)."""

    id: str
    model: str
    path: str
    seeds: int
    seed_s: float
    shared_s: float

    @property
    def seconds(self) -> float:
        """Return the row's seconds on one GPU, all seeds."""
        return self.seeds * self.seed_s + self.shared_s


def row_costs(rows: list[Row], costs: Costs, counts: dict[str, int] = PAPER_COUNTS) -> list[RowCost]:
    """Return each row's projected cost on one GPU, the rows run in catalogue order (no early stopping)."""
    n_tr, n_va, n_te = counts["train"], counts["val"], counts["test"]
    paid: set[tuple] = set()  # features and decodes an earlier row left in the caches
    out = []
    for r in rows:
        shared = 0.0
        if ("decode", r.size) not in paid:
            paid.add(("decode", r.size))
            shared += (n_tr + n_va + n_te) / costs.decode_ips
        if cached(r):
            # With ImageNet weights every row and seed over a model shares its backbone: its features are computed
            # by the first run (features.features) and read by the others; head epochs take ~0.
            views = {"plain": n_tr + n_va + n_te, "flipped": n_tr if r.augment == "hflip" else 0}
            for view, n in views.items():
                if n and (r.model, r.size, view) not in paid:
                    paid.add((r.model, r.size, view))
                    shared += n / costs.features[(r.model, r.size)]
            out.append(RowCost(r.id, r.model, "cached features", r.seeds, costs.start_s, shared))
            continue
        k = train_key(r)
        ev = costs.eval[eval_key(r)]
        epoch = n_tr / costs.train[k] + n_va / ev + (n_tr * costs.wide_s[r.size] if r.augment == "wide" else 0.0)
        # last.pt at most every checkpoint_every_s of training (0: every epoch), best.pt once at the end
        every = costs.checkpoint_every_s
        writes = r.epochs if every <= 0 else min(r.epochs, int(r.epochs * epoch // every))
        seed = (costs.start_s + costs.warmup.get(k, 0.0) + r.epochs * epoch + n_te / ev
                + (writes + 1) * costs.checkpoint_s[r.model])
        out.append(RowCost(r.id, r.model, "wide aug" if r.augment == "wide" else "full network", r.seeds, seed, shared))
    return out


def measure_start(device: torch.device) -> float:
    """Return the seconds a fresh process takes to import torch and foodcnn and run a first conv on `device`."""
    code = ("import time, torch; t = time.perf_counter(); import foodcnn.training.train; "
            f"x = torch.randn(8, 3, 64, 64, device='{device.type}'); w = torch.randn(16, 3, 3, 3, device=x.device); "
            "torch.nn.functional.conv2d(x, w).sum().item()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - t0


def measure_checkpoint(name: str, device: torch.device, knobs: dict | None = None) -> float:
    """Return the seconds of one last.pt write (weights and Adam state, fsynced) of a model trained in full."""
    kw = dict(pretrained="none", freeze="none") if registry.family(name) == "pretrained" else {}
    model = registry.build(name, **kw, **(knobs or {})).to(device)
    opt = epochs.make_optimizer(model, 1e-3, device)
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()  # creates Adam's two moment buffers, as after a training step
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        t0 = time.perf_counter()
        checkpoints.save(f"{tmp}/last.pt", model=model.state_dict(), optimizer=opt.state_dict(), epoch=1)
        return time.perf_counter() - t0


def measure_costs(s, rows: list[Row], steps: tuple[int, int], device: torch.device, log=print) -> Costs:
    """Return the Costs of every distinct (model, batch, size) the catalogue rows need, measured on `device`."""
    w, k = steps
    c = Costs(start_s=measure_start(device))
    for r in rows:
        if cached(r):
            if (r.model, r.size) not in c.features:
                c.features[(r.model, r.size)] = measure_features(s, r.model, r.size, max(features.BATCH, k * r.batch),
                                                                 amp=True)["images_per_s"]
            continue
        key = train_key(r)
        if key not in c.train:
            o = measure_ours(s, r.model, r.size, r.batch, w, k, r.freeze, channels_last=True, amp=True, knobs=r.knobs)
            c.train[key], c.warmup[key] = o["images_per_s"], o["warmup_excess_s"]
            log(f"  {r.model} freeze={r.freeze} {r.knobs or ''}: {o['images_per_s']:.0f} img/s", flush=True)
        if eval_key(r) not in c.eval:
            c.eval[eval_key(r)] = measure_eval(s, r.model, r.size, r.batch, w, k, channels_last=True, amp=True,
                                               knobs=r.knobs)["images_per_s"]
        if r.model not in c.checkpoint_s:
            c.checkpoint_s[r.model] = measure_checkpoint(r.model, device, r.knobs)
        if r.augment == "wide" and r.size not in c.wide_s:
            c.wide_s[r.size] = measure_wide(r.size, r.batch, max(3, k // 5), device)
    c.decode_ips = min(s.decode_ips.values()) if s.decode_ips else float("inf")
    return c


def costs_json(rows: list[Row], costs: Costs, rc: list[RowCost], device: str) -> dict:
    """Return the projection as plain data: per-row seconds and the measurements behind them."""
    return {"device": device, "counts": PAPER_COUNTS, "total_seconds": sum(r.seconds for r in rc),
            "rows": [{**asdict(r), "seconds": r.seconds} for r in rc],
            "costs": {k: ({str(kk): vv for kk, vv in v.items()} if isinstance(v, dict) else v)
                      for k, v in asdict(costs).items()}}


def run_cuda(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    s = make_setup(device, args.root, args.source_side or None)
    rows, source = catalogue()
    size = args.size or PAPER_SIZE
    if args.size:  # each row at that size or the smallest its model accepts
        rows = [Row(**{**asdict(r), "size": max(size, smallest_size(r))}) for r in rows]
    if args.models:
        rows = [r for r in rows if r.model in args.models]
    w, k = (2, 4) if args.quick else (10, 50)
    batch = 32
    print(describe_machine(device))
    print(f"catalogue: {source}; paper data: {PAPER_COUNTS}, {rows[0].epochs if rows else 25} epochs")
    mrows = []
    names = [n for n in (args.models or sorted({r.model for r in rows} | set(FAMILIES))) if n in registry.names()]
    try:
        s.split(size)  # the cold decode, timed once
        for name in names:
            px = max(size, smallest_size(Row(name, name, "none", "none", {})))
            s.split(px)
            ref = measure_reference(s, name, px, batch, w, k, "none")
            o = measure_ours(s, name, px, batch, w, k, "none", channels_last=True, amp=True)
            o32 = measure_ours(s, name, px, batch, w, k, "none")
            pretrained = registry.family(name) == "pretrained"
            ev = measure_features(s, name, px, max(features.BATCH, k * batch), amp=True) if pretrained else None
            mrows.append([name, px, ref["images_per_s"], pct(ref["data_wait_share"]), o32["images_per_s"],
                          o["images_per_s"], f"{o['images_per_s'] / ref['images_per_s']:.2f}x",
                          pct(o["data_wait_share"]), o["warmup_excess_s"], ev["images_per_s"] if ev else float("nan"),
                          o["cuda_peak_mb"]])
            print(f"  {name}: ref {ref['images_per_s']:.0f} img/s, ours AMP {o['images_per_s']:.0f} img/s", flush=True)
        print("catalogue rows:", flush=True)
        costs = measure_costs(s, rows, (w, k), device)
    finally:
        shutil.rmtree(s.cache_dir, ignore_errors=True)
    rc = row_costs(rows, costs)
    total = sum(r.seconds for r in rc)
    print(f"\n== Training images/s at {size} px, batch {batch} ({w} warm-up + {k} timed steps, full batches)")
    print(table(["model", "px", "ref fp32 img/s", "ref data wait", "ours fp32 img/s", "ours AMP img/s", "AMP/ref",
                 "ours data wait", "warm-up extra s", "features img/s", "ours AMP GPU peak MB"], mrows))
    print("ours AMP = bf16 autocast + channels_last + cudnn.benchmark; reference = fp32, default memory format, "
          f"PIL + DataLoader(num_workers={os.cpu_count()}) on synthetic images at Food-101's size; warm-up extra = "
          "the first steps' time beyond the steady rate (cuDNN autotuning, lazy initialisation), charged per run")
    print(f"\n== Projected wall time of the paper catalogue on 1 {device.type.upper()} device ({len(rows)} rows, "
          "up to 25 epochs, no early stopping)")
    print(table(["id", "model", "path", "seeds", "per seed s", "shared s", "minutes (all seeds)"],
                [[r.id, r.model, r.path, r.seeds, r.seed_s, r.shared_s, r.seconds / 60] for r in rc]))
    print(f"fixed costs: process start {costs.start_s:.1f} s per run; checkpoint write (last.pt at most every "
          f"{costs.checkpoint_every_s:.0f} s, best.pt once): "
          + ", ".join(f"{m} {v:.2f} s" for m, v in costs.checkpoint_s.items())
          + f"; decode {costs.decode_ips:.0f} img/s once per image size"
          + "".join(f"; `wide` {1000 * v:.2f} ms/img at {sz} px" for sz, v in costs.wide_s.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(costs_json(rows, costs, rc, device.type), f, indent=1)
        print(f"per-row costs written to {args.json}")
    print(f"projected_total_hours={total / 3600:.2f}")
    print_gpu_projection(rc)


def run_seconds(rc: list[RowCost]) -> list[float]:
    """Return every run's seconds (a row's seeds one by one; its first seed also pays the row's shared costs)."""
    return [r.seed_s + (r.shared_s if k == 0 else 0.0) for r in rc for k in range(r.seeds)]


def print_gpu_projection(rc: list[RowCost]) -> None:
    """Print the catalogue's wall time on 1, 2, 4 and 8 GPUs (one run per GPU, longest run first)."""
    costs = run_seconds(rc)
    rows = projection(costs)
    print(f"\n== The catalogue on N GPUs ({len(costs)} runs, each on one GPU, longest first; `batch` runs them in "
          "catalogue order, which may take longer)")
    print(table(["GPUs", "wall minutes", "lower bound: max(sum / N, longest run)", "GPUs busy"],
                [[n, wall / 60, bound / 60, pct(eff)] for n, wall, bound, eff in rows]))
    print(" ".join(f"projected_minutes_{n}gpu={wall / 60:.1f}" for n, wall, _, _ in rows))
