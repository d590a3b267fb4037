"""Training one run: fit with Adam and early stopping, evaluate the best epoch on the test set, write the run directory."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import allocator, checkpoints, data, features, models, runs, transforms
from .atomic import atomic_write_bytes, atomic_write_text, remove_temps
from .params import Params, ParamsError, dump

log = logging.getLogger(__name__)


# A frozen-backbone (head-only) epoch takes milliseconds, and writing metrics.csv and last.pt after it (two
# fsyncs each) took twice as long as the epoch: such a run commits both at most this often, so an interruption
# costs it at most this much work. Other runs commit after every epoch.
HEAD_CHECKPOINT_EVERY_S = 5.0


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch, random and NumPy; switch torch's deterministic kernels on or off as asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read before its first use)
        torch.backends.cudnn.benchmark = False
    # Set both ways: a run in the same process after a deterministic one must not inherit the setting.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """Return the torch device for "auto" | "cpu" | "cuda"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("key 'device': cuda was asked for but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(name)


def versions() -> dict[str, str]:
    """Return the versions a run records."""
    from importlib.metadata import version  # not `import torchvision`: it costs seconds

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": version("torchvision"),
            "numpy": np.__version__, "foodcnn": __version__}


def _epoch_seed(seed: int, epoch: int) -> int:
    # Each epoch draws from its own seed, so a resumed run repeats exactly what an uninterrupted one does.
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


@dataclass
class Loaded:
    """Decoded splits of a run's data."""

    subset: data.Subset
    train: data.Decoded
    val: data.Decoded
    test: data.Decoded

    @property
    def bad(self) -> list[dict]:
        """Return every unreadable image of the three splits."""
        return self.train.bad + self.val.bad + self.test.bad


def load_subset(p: Params) -> data.Subset:
    """Return the run's class subset and splits (reads only the dataset's meta files)."""
    return data.load_subset(p.data_root, p.classes, p.num_classes, p.val_fraction, p.split_seed,
                            p.max_train_per_class, p.max_test_per_class)


def load_data(p: Params, subset: data.Subset | None = None) -> Loaded:
    """Return the run's decoded train/val/test splits (through the decode cache)."""
    subset = subset or load_subset(p)
    size = p.resolved_image_size
    kw = dict(cache_dir=p.cache_dir, bad_images=p.bad_images, progress=p.progress)
    splits = {name: data.decode(getattr(subset, name), size, desc=f"decode {name} @{size}px", **kw)
              for name in ("train", "val", "test")}
    for name, d in splits.items():
        if len(d) == 0:
            raise data.DatasetError(f"no readable images in the {name} split of {subset.root}")
    return Loaded(subset, **splits)


# --------------------------------------------------------------------------------------------
# A "stream" turns a split into model inputs: images through the network, or (frozen backbone)
# cached backbone features through the head alone.
# --------------------------------------------------------------------------------------------


class ImageStream:
    """Batches of normalised images for the whole model."""

    def __init__(self, split: data.Decoded, model: nn.Module, device: torch.device, batch_size: int,
                 augment: transforms.Augment | None, channels_last: bool):
        self.split, self.device, self.batch_size, self.augment = split, device, batch_size, augment
        self.mean, self.std = models.input_normalisation(model)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.split)

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        aug = self.augment if train else None
        for x, y in data.batches(self.split, self.batch_size, shuffle=train, generator=generator):
            x = x.to(self.device, non_blocking=True)  # uint8: a quarter of the float batch's bytes
            if aug is not None:
                x = aug(x, generator)  # on the device: the GPU when there is one (issue 5); draws stay on the CPU
            x = transforms.normalise(x, self.mean, self.std).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)


def head_of(model: nn.Module) -> nn.Module:
    """Return the trainable head of a pretrained model."""
    return model.get_submodule(model.head_name)


class FeatureStream:
    """Batches of cached backbone features; `hflip` picks the flipped view with the same draws as transforms.hflip."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int, feats_flip: torch.Tensor | None):
        self.feats, self.labels, self.batch_size, self.feats_flip = feats, labels, batch_size, feats_flip

    def __len__(self) -> int:
        return len(self.labels)

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if train else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.feats[idx]
            if train and self.feats_flip is not None:
                flip = torch.rand(len(idx), generator=generator) < 0.5
                x = torch.where(flip[:, None], self.feats_flip[idx], x)
            yield x, self.labels[idx]


def channels_last_pays(model_name: str, device: torch.device, image_size: int | None = None) -> bool:
    """Return whether training `model_name` at `image_size` px on `device` is faster in channels_last memory format."""
    if device.type == "cuda":  # tensor cores
        return True
    start = models.entry(model_name).channels_last_from_px
    return start is not None and (image_size is None or image_size >= start)


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Return Adam over the model's trainable parameters (SPEC §3), fused where torch has the kernel."""
    # fused=True: one kernel for the whole update. On CPU it cuts VGG16's Adam step (134 M parameters) from
    # 0.73 s to 0.06 s per batch, 1.6x the images/s of a fine-tune run; on CUDA it is the fast path too.
    return torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr,
                            fused=device.type in ("cpu", "cuda"))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_one_epoch(net: nn.Module, stream: Callable, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    device: torch.device, amp: bool, progress: bool, desc: str) -> dict[str, float]:
    """Train one epoch; return mean loss, accuracy, images seen and seconds (loss NaN when it diverged)."""
    from tqdm.auto import tqdm

    total_loss, correct, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    n_batches = math.ceil(len(stream) / stream.batch_size)
    bar = tqdm(stream(generator, train=True), total=n_batches, desc=desc, disable=not progress, leave=False)
    for x, y in bar:
        with _autocast(device, amp):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
        if not torch.isfinite(loss):
            bar.close()
            return {"loss": float("nan"), "acc": correct / max(seen, 1), "images": seen,
                    "seconds": time.perf_counter() - t0}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1), "images": seen,
            "seconds": time.perf_counter() - t0}


@torch.no_grad()
def evaluate(net: nn.Module, stream: Callable, device: torch.device, amp: bool) -> dict[str, Any]:
    """Return mean loss, accuracy and per-image losses, predictions and probabilities."""
    losses, preds, probs, ys = [], [], [], []
    for x, y in stream(None, train=False):
        with _autocast(device, amp):
            logits = net(x).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
        probs.append(logits.softmax(1).cpu())
        preds.append(logits.argmax(1).cpu())
        ys.append(y.cpu())
    loss, pred, prob, y = torch.cat(losses), torch.cat(preds), torch.cat(probs), torch.cat(ys)
    return {"loss": loss.mean().item(), "acc": (pred == y).float().mean().item(), "losses": loss.numpy(),
            "pred": pred.numpy(), "prob": prob.numpy(), "y": y.numpy()}


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=runs.METRIC_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in runs.METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _read_metrics(path: Path, upto_epoch: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    for r in rows:
        r["epoch"] = int(r["epoch"])
    return [r for r in rows if r["epoch"] <= upto_epoch]


def _save_predictions(path: Path, keys: list[str], ev: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, keys=np.array(keys), y_true=ev["y"].astype(np.int16), y_pred=ev["pred"].astype(np.int16),
                        loss=ev["losses"].astype(np.float32), prob=ev["prob"].astype(np.float16))
    atomic_write_bytes(path, buf.getvalue())


def _best_agrees(rdir: Path, state: dict[str, Any]) -> bool:
    """Return whether best.pt holds the best epoch last.pt records, rewriting it from last.pt where that is the fix."""
    if "best_head" in state:  # a frozen-backbone run: best.pt is written once, at the end, from last.pt's best head
        return True
    best = rdir / runs.BEST
    held = checkpoints.load(best)["epoch"] if best.is_file() else None
    if state["best_epoch"] in (0, held):
        return True
    if state["best_epoch"] == state["epoch"]:  # killed between last.pt and best.pt (see the write order in `run`)
        checkpoints.save(best, model=state["model"], epoch=state["epoch"])
        return True
    return False  # not reachable with that order; a directory written otherwise starts afresh


def run(p: Params, out: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Train and test one run described by `p`; write its run directory; return the result mapping."""
    rdir = runs.run_dir(p, out)
    t_start = time.perf_counter()
    device = resolve_device(p.device)
    seed_everything(p.seed, p.deterministic)
    if device.type == "cpu":
        allocator.keep_freed_memory()  # each step reuses its pages instead of faulting them in anew (allocator.py)
    if device.type == "cuda" and not p.deterministic:
        torch.backends.cudnn.benchmark = True

    # Everything that can reject the inputs (classes, last.pt, unreadable images with bad_images: fail)
    # runs before the run directory is touched, so a refused run leaves nothing behind.
    subset = load_subset(p)
    last_path = rdir / runs.LAST
    state = None
    if resume and last_path.is_file():
        state = checkpoints.load(last_path)
        if state.get("fingerprint") != p.fingerprint():
            log.warning("%s was written with other parameters; starting afresh", last_path)
            state = None
        elif not _best_agrees(rdir, state):
            log.warning("%s does not hold the best epoch %s records; starting afresh", runs.BEST, last_path)
            state = None
    model = models.build_from_params(p).to(device)
    cached = p.feature_cache and models.backbone_frozen(model) and p.augment in ("none", "hflip")
    # A frozen-backbone run checkpoints only its head (plus the backbone's digest): a full VGG16 last.pt is
    # 537 MB and took 1.4 s to write, against 8 ms for a head-only epoch.
    digest = features.backbone_digest(model) if cached else None
    if state is not None and ("best_head" in state) != bool(cached):
        log.warning("%s was written with feature_cache %s; starting afresh", last_path,
                    "on" if "best_head" in state else "off")
        state = None
    elif state is not None and cached and state.get("backbone") != digest:
        log.warning("%s was written over another backbone; starting afresh", last_path)
        state = None
    loaded = load_data(p, subset)

    rdir.mkdir(parents=True, exist_ok=True)
    for tmp in remove_temps(rdir):  # a killed write leaves only ".<name>.<random>.tmp"; never read, cleared here
        log.info("removed %s left by an interrupted write", tmp.name)
    if state is None:  # a fresh start: nothing stale may be read as this run's output
        for name in (runs.RESULT, runs.METRICS, runs.BEST, runs.LAST, runs.PREDICTIONS, runs.ERROR):
            (rdir / name).unlink(missing_ok=True)
    atomic_write_text(rdir / runs.PARAMS, dump(p))

    use_cl = p.channels_last and channels_last_pays(p.model, device, p.resolved_image_size)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    total, trainable = models.count_parameters(model)
    size = p.resolved_image_size
    augment = transforms.make(p.augment, size)

    def stream(split: data.Decoded, aug: transforms.Augment | None) -> ImageStream:
        return ImageStream(split, model, device, p.batch_size, aug, use_cl)

    from_disk: list[str] = []
    if cached:
        # SPEC/issue 5: the backbone is fixed (eval mode), so its features are computed once (or read from the
        # feature cache another run with the same backbone and images filled) and the head trains on them;
        # hflip keeps both views and draws the flip exactly as transforms.hflip.
        t_feat = time.perf_counter()
        assert digest is not None

        def feats(name: str, flip: bool = False) -> torch.Tensor:
            view = f"{name}{' (flipped)' if flip else ''}"
            x, hit = features.features(model, getattr(loaded, name), device, digest, p.cache_dir, flip,
                                       p.progress, desc=f"features {view} @{size}px", amp=p.amp)
            if hit:
                from_disk.append(view)
            return x

        def labels(name: str) -> torch.Tensor:
            return torch.from_numpy(getattr(loaded, name).labels).to(device)

        train_s = FeatureStream(feats("train"), labels("train"), p.batch_size,
                                feats("train", flip=True) if p.augment == "hflip" else None)
        val_s = FeatureStream(feats("val"), labels("val"), p.batch_size, None)
        test_s = FeatureStream(feats("test"), labels("test"), p.batch_size, None)
        net: nn.Module = head_of(model)
        log.info("frozen-backbone features in %.1fs (%s)", time.perf_counter() - t_feat,
                 f"read from the feature cache: {', '.join(from_disk)}" if from_disk else "computed")
    else:
        train_s, val_s, test_s = stream(loaded.train, augment), stream(loaded.val, None), stream(loaded.test, None)
        net = model

    optimizer = make_optimizer(model, p.lr, device)
    start_epoch, best_val, best_epoch, bad_epochs, resumed_from = 1, math.inf, 0, 0, None
    rows: list[dict[str, float]] = []
    best_head = None  # frozen-backbone runs keep the best epoch's head here; best.pt is written at the end
    if state is not None:
        try:
            if cached:
                features.load_head_state(model, state["model"])
                best_head = state["best_head"]
            else:
                model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise checkpoints.CheckpointError(f"{last_path} does not fit this model ({e}); re-run without --resume") from None
        start_epoch = state["epoch"] + 1
        best_val, best_epoch, bad_epochs = state["best_val_loss"], state["best_epoch"], state["bad_epochs"]
        rows = _read_metrics(rdir / runs.METRICS, state["epoch"])
        resumed_from = state["epoch"]
        log.info("resuming %s after epoch %d", p.id, state["epoch"])

    status, diverged_epoch = "ok", None
    train_images, train_seconds = 0, 0.0
    from tqdm.auto import tqdm

    last_commit = time.perf_counter()
    epochs_bar = tqdm(range(start_epoch, p.epochs + 1), desc=f"{p.id} seed {p.seed}", disable=not p.progress,
                      initial=start_epoch - 1, total=p.epochs)
    for epoch in epochs_bar:
        if bad_epochs >= p.patience:
            break
        es = _epoch_seed(p.seed, epoch)
        torch.manual_seed(es)  # dropout and friends
        g = torch.Generator().manual_seed(es)
        models.set_train_mode(net if cached else model, True)
        tr = train_one_epoch(net, train_s, optimizer, g, device, p.amp, p.progress, f"epoch {epoch}")
        if not math.isfinite(tr["loss"]):
            status, diverged_epoch = "diverged", epoch
            log.warning("%s: loss became NaN/inf in epoch %d; stopping (%s)", p.id, epoch,
                        f"best epoch {best_epoch} kept" if best_epoch else "no epoch finished")
            break
        train_images += tr["images"]
        train_seconds += tr["seconds"]
        models.set_train_mode(net if cached else model, False)
        ev = evaluate(net, val_s, device, p.amp)
        rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": ev["loss"],
                     "val_acc": ev["acc"], "seconds": tr["seconds"]})
        commit = not cached or time.perf_counter() - last_commit >= HEAD_CHECKPOINT_EVERY_S
        if commit:
            _write_metrics(rdir / runs.METRICS, rows)
        if not math.isfinite(ev["loss"]):
            status, diverged_epoch = "diverged", epoch
            break
        improved = ev["loss"] < best_val
        if improved:
            best_val, best_epoch, bad_epochs = ev["loss"], epoch, 0
        else:
            bad_epochs += 1
        # Write order, safe wherever a kill lands: metrics.csv, then last.pt (the commit point of the
        # epoch), then best.pt. Resume drops metric rows after last.pt's epoch, and when last.pt names
        # its own epoch as best but best.pt is older (killed before it was written) `_best_agrees`
        # writes best.pt from last.pt's weights. best.pt never runs ahead of last.pt.
        # A frozen-backbone run's last.pt holds the head and the best head, so nothing else needs to agree.
        common = dict(optimizer=optimizer.state_dict(), epoch=epoch, best_val_loss=best_val, best_epoch=best_epoch,
                      bad_epochs=bad_epochs, fingerprint=p.fingerprint())
        if cached:
            if improved:
                best_head = features.head_state(model)
            if commit:
                checkpoints.save(last_path, model=features.head_state(model), best_head=best_head, backbone=digest,
                                 **common)
                last_commit = time.perf_counter()
        else:
            checkpoints.save(last_path, model=model.state_dict(), **common)
            if improved:
                checkpoints.save(rdir / runs.BEST, model=model.state_dict(), epoch=epoch)
        epochs_bar.set_postfix(train_acc=f"{tr['acc']:.3f}", val_acc=f"{ev['acc']:.3f}", val_loss=f"{ev['loss']:.3f}")
    epochs_bar.close()
    if cached:
        _write_metrics(rdir / runs.METRICS, rows)  # the epochs since its last commit

    result: dict[str, Any] = {
        "status": status, "id": p.id, "seed": p.seed, "profile": p.profile, "fingerprint": p.fingerprint(),
        "model": p.model, "image_size": size, "weights_source": model.weights_source, "freeze": model.freeze,
        "pretrained_imagenet": str(model.weights_source).startswith("ImageNet"),
        "feature_cache": bool(cached), "features_from_disk": from_disk, "device": str(device),
        "deterministic": p.deterministic, "versions": versions(),
        "params_total": total, "params_trainable": trainable, "data": loaded.subset.provenance(),
        "bad_images": loaded.bad, "bad_image_count": len(loaded.bad),
        "epochs_run": len(rows), "best_epoch": best_epoch or None, "stopped_early": len(rows) < p.epochs and status == "ok",
        "diverged_epoch": diverged_epoch, "resumed_from_epoch": resumed_from,
        "train_images_per_s": train_images / train_seconds if train_seconds else None,
    }
    best_row = next((r for r in rows if r["epoch"] == best_epoch), None)
    if best_row is not None:
        result.update(train_loss=best_row["train_loss"], train_acc=best_row["train_acc"],
                      val_loss=best_row["val_loss"], val_acc=best_row["val_acc"])
        if cached:
            assert best_head is not None
            features.load_head_state(model, best_head)
            checkpoints.save(rdir / runs.BEST, model=model.state_dict(), epoch=best_epoch)
        else:
            model.load_state_dict(checkpoints.load(rdir / runs.BEST)["model"])
        models.set_train_mode(net if cached else model, False)
        ev = evaluate(net, test_s, device, p.amp)
        result.update(test_loss=ev["loss"], test_acc=ev["acc"])
        _save_predictions(rdir / runs.PREDICTIONS, loaded.test.keys, ev)
    else:
        result.update(train_loss=None, train_acc=None, val_loss=None, val_acc=None, test_loss=None, test_acc=None)
    result["wall_time_s"] = time.perf_counter() - t_start
    runs.write_result(rdir, result)  # written last: its presence means the run is complete
    if status == "ok":
        last_path.unlink(missing_ok=True)  # only needed to resume an unfinished run
    return result


def describe(result: dict[str, Any]) -> str:
    """Return a one-line human summary of a result."""
    if result.get("test_acc") is None:
        return f"{result['id']} seed {result['seed']}: {result['status']} before any epoch finished"
    return (f"{result['id']} seed {result['seed']}: {result['status']}, best epoch {result['best_epoch']}, "
            f"train {100 * result['train_acc']:.1f}% val {100 * result['val_acc']:.1f}% "
            f"test {100 * result['test_acc']:.2f}% (loss {result['test_loss']:.3f}), {result['wall_time_s']:.0f}s")
