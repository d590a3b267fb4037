"""Fine-tuning a pretrained backbone at small scale: which recipe a run follows, and its first phase.

The reports fine-tune with one learning rate for every layer from the first step (the default: Params.head_epochs
0, backbone_lr_scale 1, no warm-up, BatchNorm statistics updated). On a few hundred images a class that recipe
lets the new head's random gradients wreck the pretrained features before the head has learned anything. The
small-data recipe (Howard & Ruder 2018, "Universal Language Model Fine-tuning", gradual unfreezing and
discriminative rates; Kornblith et al. 2019, "Do Better ImageNet Models Transfer Better?", BatchNorm statistics)
is two phases:

1. the head alone on the frozen backbone (`head_epochs` at `head_lr`), on the feature cache, so nearly free; the
   best epoch by validation loss is kept;
2. the row's own training (its freeze policy, augmentation, epochs and early stopping) with the backbone at
   `lr * backbone_lr_scale` and the head at `lr`, warmed up over `warmup_epochs`, optionally with a cosine
   schedule, and with BatchNorm statistics kept as pretrained when `bn_frozen`.

Only rows that train a pretrained backbone (freeze other than "head") follow it; for every other row the keys
change nothing, and `recipe(...).describe()` says which recipe a run followed (result.json "recipe").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import checkpoints
from ..models import registry
from ..params import Params
from . import epochs, features
from .streams import Loaded, make_streams

log = logging.getLogger(__name__)


@dataclass
class Recipe:
    """How a run trains its pretrained backbone (or that it has none to fine-tune)."""

    fine_tunes: bool  # a pretrained backbone whose weights train
    head_first: bool = False
    backbone_lr_scale: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] | None = None  # what phase 1 did (warm_head), when it ran in this process

    def describe(self) -> dict[str, Any] | None:
        """Return the recipe as result.json records it (None: no backbone fine-tuned)."""
        if not self.fine_tunes:
            return None
        staged = self.head_first or self.backbone_lr_scale != 1.0 or self.params["bn_frozen"] or \
            self.params["warmup_epochs"] > 0 or self.params["schedule"] != "constant"
        out = {"name": "staged" if staged else "reports", **self.params}
        if self.head is not None:
            out["head_phase"] = self.head
        return out


def recipe(p: Params, model: nn.Module) -> Recipe:
    """Return the recipe a run follows; tag the model bn_frozen when its BatchNorm statistics stay as pretrained."""
    fine_tunes = registry.family(p.model) == "pretrained" and p.freeze != "head"
    if not fine_tunes:
        return Recipe(False)
    if p.bn_frozen:
        setattr(model, "bn_frozen", True)  # read by registry.set_train_mode
    keys = ("head_epochs", "head_lr", "lr", "backbone_lr_scale", "warmup_epochs", "schedule", "bn_frozen")
    return Recipe(True, head_first=p.head_epochs > 0, backbone_lr_scale=p.backbone_lr_scale,
                  params={k: getattr(p, k) for k in keys})


def warm_head(p: Params, model: nn.Module, loaded: Loaded, device: torch.device) -> dict[str, Any]:
    """Phase 1: train the new head alone on the frozen backbone for p.head_epochs; keep its best epoch.

    The backbone's weights are left exactly as they were (its features are computed once, or read from the feature
    cache that the frozen row of the same backbone and images filled); the row's freeze policy is restored after.
    """
    head_name = model.head_name
    registry.apply_freeze(model, "head", head_name)
    # the head sees the views a cached-feature run can give: flipped ones where the row augments at all
    hp = p.replace(freeze="head", augment="hflip" if p.augment != "none" else "none", feature_cache=True)
    trained = checkpoints.Trained(model, "head", lambda: features.head_state(model),
                                  lambda state: features.load_head_state(model, state), features.backbone_digest(model))
    s = make_streams(hp, model, trained, loaded, device)
    optimizer = epochs.make_optimizer(model, p.head_lr if p.head_lr is not None else p.lr, device)
    best_loss, best_epoch, best_acc, best_state = math.inf, 0, float("nan"), features.head_state(model)
    for epoch in range(1, p.head_epochs + 1):
        torch.manual_seed(p.seed * 7_919 + epoch)
        g = torch.Generator().manual_seed(p.seed * 104_729 + epoch)
        registry.set_train_mode(s.net, True)
        epochs.train_one_epoch(s.net, s.train, optimizer, g, device, p.amp, p.progress, f"head {epoch}")
        registry.set_train_mode(s.net, False)
        ev = epochs.evaluate(s.net, s.val, device, p.amp)
        if ev["loss"] < best_loss:
            best_loss, best_epoch, best_acc, best_state = ev["loss"], epoch, ev["acc"], features.head_state(model)
    features.load_head_state(model, best_state)
    registry.apply_freeze(model, p.freeze, head_name)
    log.info("%s seed %d: head trained first, %d epochs on the frozen backbone; best epoch %d, val acc %.3f",
             p.id, p.seed, p.head_epochs, best_epoch, best_acc)
    return {"epochs": p.head_epochs, "best_epoch": best_epoch, "val_loss": best_loss, "val_acc": best_acc,
            "features_from_disk": s.from_disk}
