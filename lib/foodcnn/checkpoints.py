"""Checkpoint files (atomic, read with `weights_only=True`) and the policy of when a run writes them."""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .atomic import atomic_torch_save

log = logging.getLogger(__name__)

FORMAT = "foodcnn-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or not one foodcnn wrote."""


def save(path: str | Path, **content: Any) -> None:
    """Write a checkpoint (a dict of tensors and plain values) atomically."""
    atomic_torch_save(path, {"format": FORMAT, **content})


def load_error(e: Exception) -> str:
    """Return the useful sentence of a load error (torch's advice to retry with weights_only=False is dropped)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if isinstance(e, pickle.UnpicklingError) and lines[:1] and lines[0].startswith("Weights only load failed"):
        lines = [ln.split("WeightsUnpickler error:")[-1].strip() for ln in lines[1:]
                 if not ln.startswith("Check the documentation")]
        lines = [ln for ln in lines if ln]
    # The first sentence: a damaged zip's RuntimeError goes on for three more about miniz and its own guesses.
    first = lines[0].split(". ", 1)[0].rstrip(".")[:200] if lines else "empty or truncated file"
    return f"{type(e).__name__}: {first}"


def load(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's content, loaded with weights_only=True (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # mmap: tensors are read from the file when touched, so taking one layer out of a 537 MB VGG16
        # checkpoint (the report's filter grids) costs milliseconds.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # damaged bytes surface as many types: UnpicklingError, RuntimeError, EOFError, KeyError...
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({load_error(e)}). "
            "It is damaged, or was not written by foodcnn (code in a file is refused, never run); "
            "delete it and re-run (without --resume)."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "model" not in obj:
        raise CheckpointError(
            f"checkpoint {path} is not a foodcnn checkpoint (no '{FORMAT}' marker): "
            "foodcnn only reads the best.pt / last.pt files its runs write"
        )
    return obj


# --------------------------------------------------------------------------------------------
# The policy. A run's last.pt holds what training changes (every weight, or only the head over
# a frozen backbone), Adam's state, the best weights so far and where the epoch loop stands; it
# is written at most every `every_s` seconds and when the run is interrupted. The best weights
# stay in memory and become best.pt once, when the run ends. A run that finishes needs no
# last.pt: best.pt, metrics.csv and result.json record its end.
# --------------------------------------------------------------------------------------------


@dataclass
class Trained:
    """The part of a model a run trains, as its checkpoints hold it: the whole model, or its head."""

    model: nn.Module
    scope: str  # "model" or "head"
    state: Callable[[], dict[str, torch.Tensor]]  # the trained tensors (may be the model's own: copy to keep them)
    load: Callable[[dict[str, torch.Tensor]], None]
    backbone: str | None = None  # "head": the frozen backbone's digest; a head fits only the backbone it trained over


def whole(model: nn.Module) -> Trained:
    """Return the Trained part of a run that trains (or may train) every weight."""
    return Trained(model, "model", model.state_dict, model.load_state_dict)


@dataclass
class Progress:
    """Where the epoch loop stands: the last finished epoch, the best one, patience spent and the metric rows."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


def resumable(path: Path, fingerprint: str, trained: Trained) -> dict[str, Any] | None:
    """Return last.pt's content when this run can continue from it, else None with the reason logged."""
    state = load(path)
    if state.get("fingerprint") != fingerprint:
        reason = "was written with other parameters"
    elif "scope" not in state:
        reason = "was written by an older foodcnn"
    elif state["scope"] != trained.scope:
        reason = f"holds the {state['scope']} weights but this run trains its {trained.scope} (feature_cache changed)"
    elif state.get("backbone") != trained.backbone:
        reason = "was written over another backbone"
    else:
        return state
    log.warning("%s %s; starting afresh", path, reason)
    return None


class Keeper:
    """The checkpoint policy of one run: last.pt every `every_s` seconds or when asked, best weights kept on the CPU."""

    clock = staticmethod(time.monotonic)  # seconds; tests put a clock that follows the epochs in its place

    def __init__(self, last: Path, best: Path, trained: Trained, optimizer: torch.optim.Optimizer, fingerprint: str,
                 every_s: float):
        self.last, self.best_path, self.trained, self.optimizer = last, best, trained, optimizer
        self.fingerprint, self.every_s = fingerprint, every_s
        self.best: dict[str, torch.Tensor] | None = None  # CPU copies of the best epoch's trained tensors
        self.committed_at = self.clock()
        self.commit_seconds = 0.0  # spent writing last.pt

    def restore(self, state: dict[str, Any]) -> Progress:
        """Load a resumable last.pt's weights, optimizer and best weights; return where its loop stood."""
        try:
            self.trained.load(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            best = state["best"]
            progress = Progress(**{f.name: state[f.name] for f in dataclasses.fields(Progress)})
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"{self.last} does not fit this model ({e}); re-run without --resume") from None
        self.best = None if best is None else {k: v.clone() for k, v in best.items()}  # off the mmap'd file
        return progress

    def keep_best(self) -> None:
        """Copy the trained tensors to the CPU as the best weights so far (into the same buffers each time)."""
        state = self.trained.state()
        if self.best is None:
            self.best = {k: torch.empty_like(v, device="cpu") for k, v in state.items()}
        for k, v in state.items():
            self.best[k].copy_(v)

    def due(self) -> bool:
        """Return whether `every_s` seconds have passed since the last commit (or the start)."""
        return self.clock() - self.committed_at >= self.every_s

    def commit(self, progress: Progress) -> None:
        """Write last.pt: the trained weights, Adam's state, the best weights and `progress` (after its epoch)."""
        t0 = time.perf_counter()
        save(self.last, model=self.trained.state(), optimizer=self.optimizer.state_dict(), best=self.best,
             scope=self.trained.scope, backbone=self.trained.backbone, fingerprint=self.fingerprint,
             **dataclasses.asdict(progress))
        self.commit_seconds += time.perf_counter() - t0
        self.committed_at = self.clock()
        log.info("checkpoint %s after epoch %d (%.1fs)", self.last.name, progress.epoch, time.perf_counter() - t0)

    def use_best(self, epoch: int) -> None:
        """Put the best weights (of `epoch`) back into the model and write the whole model to best.pt."""
        assert self.best is not None, "no epoch was kept as best"
        self.trained.load(self.best)
        save(self.best_path, model=self.trained.model.state_dict(), epoch=epoch)  # whole: the report's filters read it
