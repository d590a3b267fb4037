"""One epoch: the training pass with Adam over a stream and the evaluation pass, both waiting for the device once."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Return Adam over the model's trainable parameters (SPEC §3), fused where torch has the kernel."""
    # fused=True: one kernel for the whole update instead of a loop over every parameter tensor. Unfused, the
    # update of a large model (VGG16's 134 M parameters) is a large share of a CPU fine-tune step; on CUDA fused
    # is the fast path too.
    return torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr,
                            fused=device.type in ("cpu", "cuda"))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# The step bar shows the running loss at most this often: reading it makes the host wait for the GPU, and under
# papermill every refresh is a widget message.
PROGRESS_EVERY_S = 2.0


def train_one_epoch(net: nn.Module, stream: Callable, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    device: torch.device, amp: bool, progress: bool, desc: str) -> dict[str, float]:
    """Train one epoch; return mean loss, accuracy, images seen and seconds (loss NaN when it diverged).

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
    for x, y in bar:
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
