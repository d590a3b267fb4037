"""Speed of foodcnn's data and training paths against the reports' way (benchmarks/reference.py); prints figures.

    python benchmarks/bench.py                 # CPU: every family at the demo size and 224 px (`make bench`)
    python benchmarks/bench.py --quick         # a smoke run: fewer steps, 224 px for resnet18 only
    python benchmarks/bench.py --only-patches  # candidate library patches (the other memory format, 1 thread) only
    python benchmarks/bench.py --device cuda   # GPU: images/s at 224 px with AMP + the paper catalogue's wall time
    python benchmarks/bench.py --device cuda --json costs.json  # ... and its per-row costs as JSON (gpu.row_costs)

Both loops run in one bench run, side by side, on the same model, data, batch size and number of
steps. Each table row gets two fresh helper processes (processes.Helper): the reports' loop runs in one
with the default malloc, as they ran it; ours runs in the other with the library's CPU malloc tuning
(lib/foodcnn/training/allocator.py, process-wide and not undoable). They alternate and never run at the same
time. Warm-up steps (worker start-up, first oneDNN/cuDNN calls, the heap growing to its working size)
are not timed. "ours" is the library's own code: subsets.decode (the uint8 cache) -> subsets.batches ->
transforms.normalise -> model, driven by epochs.train_one_epoch; the frozen-backbone rows use
whole train.run calls (features.features + streams.FeatureStream, head-only checkpoints). The source JPEGs
are synthetic at Food-101's resolution (longest side 512 px, --source-side). No figure is asserted:
timings depend on the machine and its load.
This file is the command line and the CPU tables. Beside it: workload.py (the data and settings measured on),
measure.py (one function per measurement), processes.py (the helper processes), reference.py (the reports'
loop), printing.py (tables), gpu.py (--device cuda and the catalogue's projection), schedule.py (N GPUs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from foodcnn.data import subsets, transforms  # noqa: E402
from foodcnn.models import registry  # noqa: E402
from foodcnn.training import allocator, features, streams  # noqa: E402
from gpu import FAMILIES, catalogue, run_cuda  # noqa: E402
from measure import FROZEN_ROWS, measure_wide, truncate  # noqa: E402
from printing import describe_machine, geomean, pct, table  # noqa: E402
from processes import helpers  # noqa: E402
from workload import FOOD101_SIDE, PAPER_SIZE, REPO, Setup, demo_params, make_setup, paper_epochs  # noqa: E402

FROZEN = ["resnet18", "vgg16_bn", "efficientnet_lite0"]
# vgg16_bn at 224 px is the costliest step of all (134 M parameters, trained in full); the CPU run leaves it out.
SKIP_ON_CPU_224 = {"vgg16_bn"}


@dataclass
class Plan:
    """Step counts: (warm-up, timed) per size class, and rounds of alternation at the demo size."""

    demo_steps: tuple[int, int] = (2, 3)
    big_steps: tuple[int, int] = (2, 1)
    big_batch: int = 8  # small: at 224 px even the baseline's step is long on a CPU, and each size is timed twice
    rounds: int = 2
    big_models: list[str] | None = None  # None: all but SKIP_ON_CPU_224
    frozen_steps: tuple[int, int] = (2, 8)
    patches: bool = False


def at_224(plan: Plan, name: str) -> bool:
    """Return whether the CPU run measures `name` at 224 px."""
    return name in plan.big_models if plan.big_models is not None else name not in SKIP_ON_CPU_224


def scratch_rows(s: Setup, names: list[str], plan: Plan) -> tuple[list[list[Any]], dict]:
    """Return the table rows of training steps (from scratch / fine-tune all) and the demo-size figures per model."""
    rows, at_demo = [], {}
    for size_kind in ("demo", "224"):
        for name in names:
            if size_kind == "demo":
                size, batch, rounds = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size, plan.rounds
                w, k = plan.demo_steps
            elif at_224(plan, name):
                size, batch, rounds = PAPER_SIZE, plan.big_batch, 1
                w, k = plan.big_steps
            else:
                continue
            freeze = "none"  # from scratch (small CNNs) or fine-tune all (pretrained)
            s.split(size)
            ref, ours = [], []
            with helpers(s) as (rp, op):
                for _ in range(rounds):  # alternate, so that a change in machine load hits both
                    ref.append(rp.call("measure_reference", name, size, batch, w, k, freeze))
                    ours.append(op.call("measure_ours", name, size, batch, w, k, freeze))
            r, o = combine(ref), combine(ours)
            ratio = o["images_per_s"] / r["images_per_s"]
            rows.append([name, size, batch, r["images_per_s"], o["images_per_s"], f"{ratio:.2f}x",
                         pct(r["data_wait_share"]), pct(o["data_wait_share"]), r["peak_mb"], o["peak_mb"]])
            if size_kind == "demo":
                at_demo[name] = {"ratio": ratio, "ours_wait": o["data_wait_share"]}
            print(f"  {name} @{size}px: reference {r['images_per_s']:.1f} img/s, ours {o['images_per_s']:.1f} img/s "
                  f"({ratio:.2f}x)", flush=True)
    return rows, at_demo


def data_path_rows(s: Setup, names: list[str], n: int = 256) -> list[list[Any]]:
    """Return the per-image CPU cost (one thread) of a model-ready batch: the PIL path against the cache path."""
    from torch.utils.data import default_collate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for size in sorted({s.demo.replace(model=m).resolved_image_size for m in names} | {PAPER_SIZE}):
            ds = s.reference_train(size, registry.IMAGENET_MEAN, registry.IMAGENET_STD)
            count = min(n, len(ds))
            t0 = time.perf_counter()
            for start in range(0, count, 32):
                default_collate([ds[i] for i in range(start, min(start + 32, count))])
            ref_us = 1e6 * (time.perf_counter() - t0) / count
            split = truncate(s.split(size), count)
            t0 = time.perf_counter()
            for x, _ in subsets.batches(split, 32, shuffle=True, generator=torch.Generator().manual_seed(0)):
                transforms.normalise(x, registry.IMAGENET_MEAN, registry.IMAGENET_STD)
            ours_us = 1e6 * (time.perf_counter() - t0) / count
            rows.append([size, ref_us, ours_us, f"{ref_us / ours_us:.0f}x"])
    finally:
        torch.set_num_threads(threads)
    return rows


def combine(results: list[dict]) -> dict:
    """Return the pooled figures of several rounds (images / seconds summed)."""
    images = sum(r["images"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    wait = sum(r["data_wait_share"] * r["seconds"] for r in results)
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "data_wait_share": wait / seconds,
            "peak_mb": max(r["peak_mb"] for r in results)}


def frozen_runs(profile: str = "demo") -> dict[str, int]:
    """Return, per model, how many runs of the profile's catalogue train a head on a frozen backbone (rows x seeds)."""
    rows, _ = catalogue(profile)
    out: dict[str, int] = {}
    for r in rows:
        if r.freeze == "head" and r.augment in ("none", "hflip"):
            out[r.model] = out.get(r.model, 0) + r.seeds
    return out


def frozen_rows(s: Setup, names: list[str], plan: Plan, epochs: int, demo_epochs: int) -> tuple[list[list[Any]], dict]:
    """Return the frozen-backbone table rows and each model's speed-up of one cold run over the reference."""
    n_train, n_val, n_test = len(s.subset.train), len(s.subset.val), len(s.subset.test)
    rows, speedups = [], {}
    sharing = frozen_runs("demo")
    for name in names:
        size, batch = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size
        w, k = plan.frozen_steps
        s.split(size)
        with helpers(s) as (rp, op):
            ref = rp.call("measure_reference", name, size, batch, w, k, freeze="head")
            ref_eval = rp.call("measure_reference_eval", name, size, batch, 1, max(1, min(k, n_train // batch - 1)))
            feat = op.call("measure_features", name, size, max(features.BATCH, k * batch))
            run = op.call("measure_frozen_run", name, epochs)
            short = op.call("measure_frozen_run", name, demo_epochs)
        # The reports' run of E epochs: train + validation every epoch, the test split once (checkpoints not charged).
        ref_epoch = n_train / ref["images_per_s"] + n_val / ref_eval["images_per_s"]
        ref_test = n_test / ref_eval["images_per_s"]
        ref_run, ref_short = epochs * ref_epoch + ref_test, demo_epochs * ref_epoch + ref_test
        speedups[name] = speedup = ref_run / run["cold_s"]
        k_runs = max(1, sharing.get(name, 1))
        shared = ref_run / ((run["cold_s"] + (k_runs - 1) * run["warm_s"]) / k_runs)
        rows.append([name, size, ref["images_per_s"], pct(ref["data_wait_share"]), ref_epoch, feat["images_per_s"],
                     short["cold_s"], run["cold_s"], run["warm_s"], f"{ref_short / short['cold_s']:.1f}x",
                     f"{speedup:.1f}x", f"{ref_run / run['warm_s']:.1f}x", f"{shared:.1f}x ({k_runs})", ref["peak_mb"],
                     feat["peak_mb"]])
        print(f"  {name} @{size}px frozen, {epochs} epochs: reference {ref_run:.1f} s, ours {run['cold_s']:.1f} s "
              f"(first run), {run['warm_s']:.1f} s (features cached) -> {speedup:.1f}x", flush=True)
    return rows, speedups


def patch_rows(s: Setup, names: list[str], plan: Plan) -> list[list[Any]]:
    """Return training img/s of candidate library patches on this CPU (same steps as the demo rows, one round)."""
    rows = []
    w, k = plan.demo_steps
    for name in names:
        size, batch = s.demo.replace(model=name).resolved_image_size, s.demo.batch_size
        other = not streams.channels_last_pays(name, s.device, size)  # the memory format the library does not use
        s.split(size)
        with helpers(s, reference=False) as (_, op):
            base = op.call("measure_ours", name, size, batch, w, k)
            cl = op.call("measure_ours", name, size, batch, w, k, channels_last=other)
            one = op.call("measure_ours", name, size, batch, w, k, threads=1)
            base2 = op.call("measure_ours", name, size, batch, w, k)  # again, to show the noise
        b = (base["images_per_s"] + base2["images_per_s"]) / 2
        rows.append([name, size, f"{base['images_per_s']:.1f} / {base2['images_per_s']:.1f}",
                     *(f"{r['images_per_s']:.1f} ({r['images_per_s'] / b:.2f}x)" for r in (cl, one))])
        print(f"  patches {name}: done", flush=True)
    return rows


def wide_rows(s: Setup, names: list[str]) -> list[list[Any]]:
    """Return ms/image of the wide augmentation with torch's threads as they are and with one thread."""
    rows = []
    for size in sorted({s.demo.replace(model=m).resolved_image_size for m in names} | {PAPER_SIZE}):
        default = measure_wide(size, 32, 2)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = measure_wide(size, 32, 2)
        finally:
            torch.set_num_threads(threads)
        rows.append([size, 1000 * default, f"{1000 * one:.2f} ({default / one:.1f}x)"])
    return rows


def print_patches(prow: list, names: list[str], s: Setup) -> None:
    print("\n== Candidate library patches, ours at the demo size (training img/s; ratio to the library as it is)")
    print(table(["model", "px", "library (twice)", "other memory format", "1 thread"], prow))
    print("\n== `wide` augmentation (transforms.Wide, per image on uint8 CPU tensors), ms per image")
    print(table(["px", f"library ({torch.get_num_threads()} threads)", "1 thread"], wide_rows(s, names)))


def run_cpu(args: argparse.Namespace) -> None:
    device = torch.device("cpu")
    s = make_setup(device, args.root, args.source_side or None)
    demo, demo_src = demo_params()
    plan = Plan()
    if args.quick:
        plan = Plan(demo_steps=(2, 1), big_steps=(2, 1), rounds=1, big_models=["resnet18"], frozen_steps=(2, 2))
    if args.patches is not None:
        plan.patches = args.patches
    names = [n for n in (args.models or FAMILIES) if n in registry.names()]
    frozen = [n for n in FROZEN if n in names]
    # A frozen-backbone run pays its feature pass once and gains on every epoch: its speed-up is quoted for a
    # run of the paper profile's length (the reports' 25 epochs, SPEC §3), and shown for the demo's too.
    epochs = args.epochs or paper_epochs()
    print(describe_machine(device))
    side = 0
    for x in s.subset.train[:20]:  # the header gives the size; nothing is decoded
        with Image.open(x.path) as im:
            side = max(side, *im.size)
    print(f"data: {s.subset.root} ({'synthetic' if s.subset.synthetic else 'real'}, longest side {side} px), "
          f"train/val/test = "
          f"{len(s.subset.train)}/{len(s.subset.val)}/{len(s.subset.test)}; demo settings from {demo_src}; "
          f"reference DataLoader workers = os.cpu_count() = {os.cpu_count()}")
    t_start = time.perf_counter()
    try:
        print("each row runs in two fresh helper processes: the reference with the default malloc, ours with "
              f"the library's CPU malloc tuning (lib/foodcnn/training/allocator.py; "
              f"{'in effect' if allocator.supported() and allocator.wanted() else 'not in effect: not glibc, or FOODCNN_MALLOC=default'})",
              flush=True)
        prow = None
        if args.only_patches:
            print("\n[3/3] candidate library patches (ours, demo size)", flush=True)
            print_patches(patch_rows(s, names, plan), names, s)
            return
        print("\n[1/3] from scratch / fine-tune all: training steps, reference vs ours (fp32, CPU)", flush=True)
        drows = data_path_rows(s, names, 96 if args.quick else 256)
        rows, at_demo = scratch_rows(s, names, plan)
        print("\n[2/3] frozen backbone (freeze: head)", flush=True)
        frows, speedups = frozen_rows(s, frozen, plan, epochs, demo.epochs)
        if plan.patches:
            print("\n[3/3] candidate library patches (ours, demo size)", flush=True)
            prow = patch_rows(s, names, plan)
    finally:
        shutil.rmtree(s.cache_dir, ignore_errors=True)
    d, w, k = plan.demo_steps[0], plan.demo_steps[1], plan.big_steps[1]
    print(f"\n== Training steps: images/s (batch {demo.batch_size} at the demo size, {plan.rounds} alternating rounds "
          f"of {d} warm-up + {w} timed steps; batch {plan.big_batch} at 224 px, {plan.big_steps[0]} warm-up + {k} "
          "timed)")
    print(table(["model", "px", "batch", "ref img/s", "ours img/s", "ours/ref", "ref data wait", "ours data wait",
                 "ref peak MB", "ours peak MB"], rows))
    skipped = [n for n in names if not at_224(plan, n)]
    if skipped:
        print(f"(224 px on CPU left out for {', '.join(skipped)}: too slow for `make bench` on 2 cores)")
    print("peak MB: proportional set size (PSS) of the process that ran the loop (the reference: the bench itself plus "
          "its DataLoader workers; ours: the helper process) during the steps; it includes the Python/torch runtime")
    decode = ", ".join(f"{sz} px {ips:.0f} img/s" for sz, ips in sorted(s.decode_ips.items()))
    print(f"one-off cold decode into the uint8 cache (per size, reused by every later run and epoch): {decode}")
    print("\n== The data path alone: CPU time per image to produce a normalised float batch of 32, one thread")
    print(table(["px", "reference µs/img (PIL open+decode, Resize+CenterCrop, ToTensor, Normalize, collate)",
                 "ours µs/img (cache -> batches -> normalise)", "ratio"], drows))
    print(f"\n== Frozen backbone (freeze: head), demo size, one run of {demo.epochs} (demo) and {epochs} (paper) "
          f"epochs (train {len(s.subset.train)} + "
          f"val {len(s.subset.val)} each epoch, test {len(s.subset.test)} once)")
    print(table(["model", "px", "ref train img/s", "ref data wait", "ref s/epoch", "ours feat img/s",
                 f"ours run {demo.epochs} ep s", f"ours run {epochs} ep s", "cached features s",
                 f"run {demo.epochs} ep", f"run {epochs} ep", "cached features", "catalogue (runs)", "ref peak MB",
                 "ours peak MB"], frows))
    print("reference: forward through the frozen backbone (train mode) + head backward, PIL every epoch, test once "
          "(timed steps; its checkpoint writes are not charged). ours: the whole train.run of the family's catalogue "
          f"row ({', '.join(FROZEN_ROWS[n] for n in frozen)}, demo profile, no early stopping), wall time in the "
          "helper process: decode, features, head epochs, head-only checkpoints, test, run directory.\n"
          "run N ep: a first run (decode and feature caches empty); cached features: a later run over the same "
          "backbone and images (another row or seed), which reads its features from the cache; catalogue (runs): "
          "the mean over the demo catalogue's runs that share the backbone, the first paying the feature pass "
          "(their count in brackets). ours peak MB: the feature pass")
    if prow is not None:
        print_patches(prow, names, s)
    print(f"\nthreads: torch uses {torch.get_num_threads()} intra-op threads on {os.cpu_count()} CPUs; "
          f"total {time.perf_counter() - t_start:.0f} s")
    frozen_speedup = geomean(list(speedups.values()))
    scratch_speedup = geomean([v["ratio"] for v in at_demo.values()])
    wait = geomean([v["ours_wait"] for v in at_demo.values()])
    print(f"frozen_speedup: a first frozen-backbone run of {epochs} epochs, caches empty; scratch_speedup, data_wait: training steps "
          "at the demo size (geometric means over the model families)")
    print(f"frozen_speedup={frozen_speedup:.1f} scratch_speedup={scratch_speedup:.2f} data_wait={100 * wait:.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer steps, 224 px for resnet18 only")
    ap.add_argument("--device", default="cpu",
                    help="cpu (side-by-side comparison) or cuda (AMP + catalogue projection)")
    ap.add_argument("--models", nargs="+", help="model families to measure (default: all)")
    ap.add_argument("--root", help="dataset root (default: the demo profile's data_root, data/food-101)")
    ap.add_argument("--source-side", type=int, default=FOOD101_SIDE, metavar="PX",
                    help="longest side of the synthetic source JPEGs the bench generates (default: Food-101's 512); "
                         "0: the demo profile's own data (data/food-101, 128 px thumbnails)")
    ap.add_argument("--epochs", type=int, help="epochs a frozen-backbone run amortises its one-off pass over "
                                               "(default: the paper profile's, 25)")
    ap.add_argument("--patches", action=argparse.BooleanOptionalAction, default=None,
                    help="also measure candidate library patches: the other memory format and one thread on CPU, "
                         "and the `wide` augmentation on one thread (a second pass over every family)")
    ap.add_argument("--only-patches", action="store_true", help="measure only the candidate library patches")
    ap.add_argument("--size", type=int, help="image size of the --device cuda table (default 224)")
    ap.add_argument("--projection", action="store_true",
                    help="the --device cuda tables and catalogue projection on any device (a dry run on the CPU)")
    ap.add_argument("--json", metavar="PATH", help="with the projection: write its per-row costs to PATH")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.device == "cpu" and not args.projection:
        run_cpu(args)
    else:
        run_cuda(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
