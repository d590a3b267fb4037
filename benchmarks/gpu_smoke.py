"""The first GPU session's checks in one process (gpu_smoke.sh runs them): one table, exit 1 on any failure.

Every model family through short runs of train.run at the given size on synthetic data (frozen backbone,
fine-tune, hflip, wide, AMP on and off), the host-device waits of a real training epoch, a resume after a kill,
a determinism check, the feature-cache hit; each row with its images/s and peak GPU memory.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import torch  # noqa: E402

from foodcnn.data import subsets, synth, transforms  # noqa: E402
from foodcnn.models import registry
from foodcnn import params
from foodcnn.training import syncs
from foodcnn.training import epochs, streams, train  # noqa: E402

METRICS = ("train_loss", "val_loss", "test_loss", "test_acc")


class Smoke:
    """Runs the checks, one table row each, and remembers whether any failed."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.rows, self.failed = args, [], False
        self.device = torch.device(args.device)
        self.work = Path(args.work)
        self.root = self.work / "data"
        self.n = 0

    def params(self, **kw: Any) -> params.Params:
        """Return validated params for a short run on the smoke data; `kw` overrides."""
        a = self.args
        self.n += 1
        base = dict(id=f"smoke{self.n}", data_root=str(self.root / "food-101"), num_classes=4, image_size=a.size,
                    image_size_by_model={"custom_a": max(a.size, 61), "custom_b": max(a.size, 104)},
                    epochs=a.epochs, patience=a.epochs, batch_size=a.batch, pretrained="none", progress=False,
                    device=a.device, runs_dir=str(self.work / "runs" / str(self.n)),
                    cache_dir=str(self.work / "cache"))
        base.update(kw)
        return params.from_mapping(base, source="<gpu_smoke>")

    def check(self, name: str, fn: Callable[[], tuple[bool, str, dict]]) -> None:
        """Run one check and add its row: (passed, note, figures)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            ok, note, fig = fn()
        except Exception as e:  # noqa: BLE001 - every failure becomes a row of the table
            traceback.print_exc()
            ok, note, fig = False, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}", {}
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else float("nan")
        self.rows.append([name, "ok" if ok else "FAIL", fig.get("img/s", float("nan")), peak,
                          time.perf_counter() - t0, note])
        self.failed |= not ok
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {note}", flush=True)

    def run_row(self, **kw: Any) -> Callable[[], tuple[bool, str, dict]]:
        def go() -> tuple[bool, str, dict]:
            p = self.params(**kw)
            r = train.run(p)
            ok = r["status"] == "ok" and r["test_acc"] is not None and math.isfinite(r["test_loss"])
            if p.freeze == "head" and p.augment != "wide":
                ok &= bool(r["feature_cache"])
            return ok, (f"test acc {r['test_acc']:.2f}, {r['epochs_run']} epochs, {r['image_size']} px"
                        if r["test_acc"] is not None else r["status"]), {"img/s": r["train_images_per_s"] or 0.0}
        return go


def family_checks(s: Smoke) -> None:
    for name in registry.names():
        if registry.family(name) == "pretrained":
            variants = [("frozen", dict(freeze="head")), ("frozen hflip", dict(freeze="head", augment="hflip")),
                        ("fine-tune", dict(freeze="none")), ("fine-tune wide, AMP off",
                                                             dict(freeze="conv1", augment="wide", amp=False))]
        else:
            variants = [("scratch", {}), ("hflip", dict(augment="hflip")), ("wide, AMP off", dict(augment="wide",
                                                                                                 amp=False))]
        for label, kw in variants:
            s.check(f"{name} {label}", s.run_row(model=name, **kw))


def sync_check(s: Smoke) -> tuple[bool, str, dict]:
    """A real training epoch on the device: the host waits for it once (epochs.train_one_epoch's contract)."""
    size, batch = s.args.size, s.args.batch
    subset = subsets.load_subset(s.root / "food-101", num_classes=4)
    split = subsets.decode(subset.train, size, cache_dir=s.work / "cache", progress=False)
    model = registry.build("resnet18", num_classes=4, pretrained="none").to(s.device)
    model = model.to(memory_format=torch.channels_last)
    stream = streams.ImageStream(split, model, s.device, batch, transforms.make("wide", size), True)
    opt = epochs.make_optimizer(model, 1e-3, s.device)
    g = torch.Generator().manual_seed(0)
    epochs.train_one_epoch(model, stream, opt, g, s.device, True, False, "warm-up")  # constants, autotuning
    _, counter = syncs.count(epochs.train_one_epoch, model, stream, opt, g, s.device, True, False, "counted")
    waits = counter.syncs()
    steps = math.ceil(len(split) / batch)
    expected = 0 if s.device.type == "cpu" else 1  # the loss and accuracy sums read at the end; none on a CPU
    return len(waits) == expected, f"{len(waits)} waits in an epoch of {steps} steps (wide, AMP): {waits[:3]}", {}


def resume_check(s: Smoke) -> tuple[bool, str, dict]:
    """Kill a run (SIGKILL) once it has written last.pt, resume it: the metrics equal an uninterrupted run's."""
    kw = dict(model="baseline", deterministic=True, epochs=max(4, s.args.epochs + 2), checkpoint_every_s=0)
    p = s.params(**kw)
    yaml_path = s.work / "resume.yaml"
    yaml_path.write_text(params.dump(p))
    rdir = s.work / "resume-run"
    proc = subprocess.Popen([sys.executable, "-m", "foodcnn", "run", str(yaml_path), "--out", str(rdir)],
                            env={**os.environ, "PYTHONPATH": str(REPO / "lib")})
    while proc.poll() is None and not (rdir / "last.pt").is_file():
        time.sleep(0.02)
    if proc.poll() is not None:
        return False, "the run finished before it wrote last.pt: nothing to kill (raise --epochs)", {}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = train.run(p, out=rdir, resume=True)
    whole = train.run(p, out=s.work / "resume-whole")
    same = all(resumed[k] == whole[k] for k in METRICS)
    return (same and resumed["resumed_from_epoch"] is not None,
            f"resumed after epoch {resumed['resumed_from_epoch']}; metrics {'identical' if same else 'DIFFER'}", {})


def determinism_check(s: Smoke, **kw: Any) -> Callable[[], tuple[bool, str, dict]]:
    def go() -> tuple[bool, str, dict]:
        a = train.run(s.params(deterministic=True, **kw))
        b = train.run(s.params(deterministic=True, **kw))
        diff = [k for k in METRICS if a[k] != b[k]]
        return not diff, "identical metrics" if not diff else f"differ in {diff}", {"img/s": a["train_images_per_s"]}
    return go


def cache_check(s: Smoke) -> tuple[bool, str, dict]:
    first = train.run(s.params(model="resnet18", freeze="head", cache_dir=str(s.work / "cache-hit")))
    again = train.run(s.params(model="resnet18", freeze="head", cache_dir=str(s.work / "cache-hit")))
    ok = first["features_from_disk"] == [] and again["features_from_disk"] == ["train", "val", "test"]
    return ok, f"second run read {again['features_from_disk']} from the feature cache", {}


def bench_row(s: Smoke, log: Path, rc: int, seconds: float) -> None:
    text = log.read_text() if log.is_file() else ""
    hours = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("projected_total_hours=")]
    ok = rc == 0 and bool(hours)
    note = f"projected paper catalogue on 1 device: {hours[0]} h" if hours else f"exit {rc}, see {log}"
    s.rows.append(["bench.py projection", "ok" if ok else "FAIL", float("nan"), float("nan"), seconds, note])
    s.failed |= not ok


def device_facts(device: torch.device) -> str:
    facts = [f"torch {torch.__version__}", f"device {device}"]
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(0)
        facts += [torch.cuda.get_device_name(0), f"capability {prop.major}.{prop.minor}",
                  f"{prop.total_memory / 2**30:.0f} GiB", f"{prop.multi_processor_count} SMs",
                  f"CUDA {torch.version.cuda}", f"cuDNN {torch.backends.cudnn.version()}",
                  f"bf16 {torch.cuda.is_bf16_supported()}"]
    return ", ".join(facts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=40, help="train images per class (4 classes)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--bench-log", help="bench.py's output, summarised as the table's last row")
    ap.add_argument("--bench-rc", type=int, default=0)
    ap.add_argument("--bench-seconds", type=float, default=float("nan"))
    args = ap.parse_args()
    from printing import table  # benchmarks/ on the path (gpu_smoke.sh)

    t0 = time.perf_counter()
    s = Smoke(args)
    print(device_facts(s.device), flush=True)
    if s.device.type == "cuda" and not torch.cuda.is_available():
        print("torch sees no CUDA device", file=sys.stderr)
        return 1
    synth.generate(s.root, num_classes=4, train_per_class=args.per_class, test_per_class=max(4, args.per_class // 4),
                   max_side=args.size + 32, progress=False)
    family_checks(s)
    s.check("host-device waits per epoch", lambda: sync_check(s))
    s.check("resume after kill", lambda: resume_check(s))
    s.check("determinism baseline", determinism_check(s, model="baseline", augment="hflip"))
    s.check("determinism resnet18 wide", determinism_check(s, model="resnet18", freeze="none", augment="wide"))
    s.check("feature cache hit", lambda: cache_check(s))
    if args.bench_log:
        bench_row(s, Path(args.bench_log), args.bench_rc, args.bench_seconds)
    print(f"\n== GPU smoke: {device_facts(s.device)}; {args.size} px, batch {args.batch}, {args.epochs} epochs, "
          f"{4 * args.per_class} train+val images")
    print(table(["check", "result", "train img/s", "peak GPU MB", "wall s", "note"], s.rows))
    failed = sum(r[1] != "ok" for r in s.rows)
    print(f"{len(s.rows) - failed} ok, {failed} failed; checks took {time.perf_counter() - t0:.0f} s")
    return 1 if s.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
