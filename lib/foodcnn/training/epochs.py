"""One epoch: the training pass with Adam over a stream and the evaluation pass, both waiting for the device once."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


def make_optimizer(model: nn.Module, lr: float, device: torch.device,
                   backbone_lr_scale: float = 1.0) -> torch.optim.Adam:
    """Return Adam over the model's trainable parameters (SPEC §3), fused where torch has the kernel.

    With backbone_lr_scale != 1 (a pretrained model's fine-tune), the backbone's parameters form their own group
    at lr * backbone_lr_scale and the head's at lr. Each group keeps its "base_lr" for a schedule (lr_factor).
    """
    trainable = [q for q in model.parameters() if q.requires_grad]
    head_name = getattr(model, "head_name", None)
    if backbone_lr_scale != 1.0 and head_name is not None:
        head = {id(q) for q in model.get_submodule(head_name).parameters()}
        groups = [{"params": [q for q in trainable if id(q) not in head], "lr": lr * backbone_lr_scale},
                  {"params": [q for q in trainable if id(q) in head], "lr": lr}]
    else:
        groups = [{"params": trainable, "lr": lr}]
    for g in groups:
        g["base_lr"] = g["lr"]
    # fused=True: one kernel for the whole update instead of a loop over every parameter tensor. Unfused, the
    # update of a large model (VGG16's 134 M parameters) is a large share of a CPU fine-tune step; on CUDA fused
    # is the fast path too.
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, fused=device.type in ("cpu", "cuda"))


def lr_factor(schedule: str, warmup_epochs: float, epochs: int) -> Callable[[float], float] | None:
    """Return the learning-rate factor at t epochs into training (0 <= t < epochs), or None for a constant rate.

    Linear warm-up from 0 over `warmup_epochs`, then constant or a cosine fall to 0 at `epochs`. A function of t
    alone, so a resumed run follows the same rates as an uninterrupted one.
    """
    if schedule == "constant" and warmup_epochs <= 0:
        return None

    def factor(t: float) -> float:
        if t < warmup_epochs:
            return (t + 1e-3) / warmup_epochs
        if schedule == "constant" or epochs <= warmup_epochs:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (t - warmup_epochs) / (epochs - warmup_epochs)))

    return factor


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# The step bar shows the running loss at most this often: reading it makes the host wait for the GPU, and under
# papermill every refresh is a widget message.
PROGRESS_EVERY_S = 2.0


def train_one_epoch(net: nn.Module, stream: Callable, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    device: torch.device, amp: bool, progress: bool, desc: str,
                    schedule: Callable[[float], float] | None = None, epoch: int = 1) -> dict[str, float]:
    """Train one epoch; return mean loss, accuracy, images seen and seconds (loss NaN when it diverged).

    `schedule` (lr_factor) sets each group's rate to base_lr * schedule(t) before each step, t in epochs from the
    start of training (`epoch` is this epoch's number, from 1).

    A step never makes the host wait for the device: loss and correct count are summed where they are computed
    and read once at the end of the epoch (syncs.py counts this; tests/test_devices.py holds it), plus once per
    refresh of the progress bar (at most every PROGRESS_EVERY_S). A NaN/inf loss is seen at those reads.
    """
    from tqdm.auto import tqdm

    # float64 sums: the same arithmetic as adding loss.item() * batch in Python, so CPU results are unchanged.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    t0 = shown = time.perf_counter()
    n_batches = math.ceil(len(stream) / stream.batch_size)
    bar = tqdm(stream(generator, train=True), total=n_batches, desc=desc, disable=not progress, leave=False,
               mininterval=PROGRESS_EVERY_S)
    for step, (x, y) in enumerate(bar):
        if schedule is not None:
            f = schedule(epoch - 1 + step / n_batches)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * f
        with _autocast(device, amp):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach().double() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if progress and time.perf_counter() - shown >= PROGRESS_EVERY_S:
            so_far, right = torch.stack([total_loss, correct.double()]).tolist()
            if not math.isfinite(so_far):
                break
            bar.set_postfix(loss=f"{so_far / seen:.3f}", acc=f"{right / seen:.3f}", refresh=False)
            shown = time.perf_counter()
    bar.close()
    loss_sum, n_correct = torch.stack([total_loss, correct.double()]).tolist()  # the epoch's one wait
    return {"loss": loss_sum / max(seen, 1) if math.isfinite(loss_sum) else float("nan"),
            "acc": n_correct / max(seen, 1), "images": seen, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def evaluate(net: nn.Module, stream: Callable, device: torch.device, amp: bool) -> dict[str, Any]:
    """Return mean loss, accuracy and per-image losses, predictions and probabilities."""
    rows = []
    for x, y in stream(None, train=False):
        with _autocast(device, amp):
            logits = net(x).float()
        # One row per image (loss, prediction, label, probabilities), kept on the device until the pass ends.
        rows.append(torch.cat([F.cross_entropy(logits, y, reduction="none")[:, None],
                               logits.argmax(1, keepdim=True).float(), y[:, None].float(), logits.softmax(1)], 1))
    packed = torch.cat(rows).cpu()  # the pass's one wait for the device; labels < 2**24 are exact in float32
    loss, prob = packed[:, 0].contiguous(), packed[:, 3:].contiguous()
    pred, y = packed[:, 1].long(), packed[:, 2].long()
    return {"loss": loss.mean().item(), "acc": (pred == y).float().mean().item(), "losses": loss.numpy(),
            "pred": pred.numpy(), "prob": prob.numpy(), "y": y.numpy()}
