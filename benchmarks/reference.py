"""The reports' way of training, kept as the yardstick for benchmarks/bench.py: PIL + DataLoader workers, fp32.

An ImageFolder-style Dataset over the Food-101 layout opens and decodes every JPEG with PIL in
every epoch, torchvision.transforms resize it, ToTensor and Normalize it, a DataLoader with
num_workers = os.cpu_count() collates it; the model trains in fp32 and the default memory format,
in train mode, with Adam and cross entropy. Nothing here is used by the library.

Run on its own: `python benchmarks/reference.py --model baseline --size 32 --steps 10`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pil_loader(path: str) -> Image.Image:
    """Return the image as RGB, as torchvision.datasets.folder.pil_loader does."""
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


class FoodFolder(Dataset):
    """ImageFolder-style dataset over <root>/images/<class>/<id>.jpg with the official split from meta/."""

    def __init__(self, root: str | Path, split: str = "train", num_classes: int = 20,
                 classes: Sequence[str] | None = None, transform: Callable | None = None):
        root = Path(root)
        meta = root / "meta"
        all_classes = [c.strip() for c in (meta / "classes.txt").read_text().splitlines() if c.strip()]
        self.classes = list(classes) if classes is not None else all_classes[:num_classes]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if (meta / f"{split}.json").is_file():
            ids = json.loads((meta / f"{split}.json").read_text())
        else:
            ids = {}
            for line in (meta / f"{split}.txt").read_text().split():
                ids.setdefault(line.split("/")[0], []).append(line)
        self.samples = [(str(root / "images" / f"{key}.jpg"), self.class_to_idx[c])
                        for c in self.classes for key in sorted(ids[c])]
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = pil_loader(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def make_transform(size: int, crop: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> T.Compose:
    """Return Resize(size)+CenterCrop(size) (crop) or Resize((size, size)), then ToTensor and Normalize."""
    resize = [T.Resize(size), T.CenterCrop(size)] if crop else [T.Resize((size, size))]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def make_loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = True,
                num_workers: int | None = None) -> DataLoader:
    """Return the reports' DataLoader: num_workers = os.cpu_count() unless told otherwise."""
    workers = os.cpu_count() if num_workers is None else num_workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers)


class StepTimer:
    """Seconds of the timed steps, and the part of them spent waiting for the next batch."""

    def __init__(self):
        self.seconds = self.data_wait = 0.0
        self.images = self.steps = 0

    def as_dict(self) -> dict:
        """Return images/s, the data-wait share and the raw sums."""
        return {"images": self.images, "steps": self.steps, "seconds": self.seconds, "data_wait_s": self.data_wait,
                "images_per_s": self.images / self.seconds if self.seconds else float("nan"),
                "data_wait_share": self.data_wait / self.seconds if self.seconds else float("nan")}


def train(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device,
          steps: int | None = None, warmup: int = 0, on_timed_start: Callable[[], None] | None = None) -> StepTimer:
    """Train like the reports (model.train(), fp32, Adam, cross entropy); time the steps after `warmup`.

    Stops after warmup + steps batches (the whole epoch when steps is None); `on_timed_start` is
    called just before the first timed step.
    """
    criterion = nn.CrossEntropyLoss()
    model.train()
    timer = StepTimer()
    running_loss, correct, total = 0.0, 0, 0
    it = iter(loader)
    step = 0
    while steps is None or step < warmup + steps:
        if step == warmup and on_timed_start is not None:
            on_timed_start()
        t0 = time.perf_counter()
        try:
            images, labels = next(it)
        except StopIteration:
            break
        images, labels = images.to(device), labels.to(device)
        t1 = time.perf_counter()
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * images.size(0)
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
        t2 = time.perf_counter()
        if step >= warmup:
            timer.seconds += t2 - t0
            timer.data_wait += t1 - t0
            timer.images += labels.size(0)
            timer.steps += 1
        step += 1
    del it  # shuts the workers down, as the end of an epoch does
    return timer


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, steps: int | None = None,
             warmup: int = 0) -> StepTimer:
    """Evaluate like the reports (model.eval(), torch.no_grad()); time the batches after `warmup`."""
    criterion = nn.CrossEntropyLoss()
    model.eval()
    timer = StepTimer()
    it = iter(loader)
    step = 0
    with torch.no_grad():
        while steps is None or step < warmup + steps:
            t0 = time.perf_counter()
            try:
                images, labels = next(it)
            except StopIteration:
                break
            images, labels = images.to(device), labels.to(device)
            t1 = time.perf_counter()
            outputs = model(images)
            criterion(outputs, labels).item()
            (outputs.argmax(1) == labels).sum().item()
            t2 = time.perf_counter()
            if step >= warmup:
                timer.seconds += t2 - t0
                timer.data_wait += t1 - t0
                timer.images += labels.size(0)
                timer.steps += 1
            step += 1
    del it
    return timer


def main(argv: list[str] | None = None) -> int:
    """Train a few steps the reports' way and print images/s."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
    from foodcnn.models import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/food-101")
    ap.add_argument("--model", default="baseline", choices=registry.names())
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--freeze", default="none", help="none | head (pretrained models)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    kw = {"freeze": args.freeze, "pretrained": "none"} if registry.family(args.model) == "pretrained" else {}
    model = registry.build(args.model, **kw).to(device)
    mean, std = registry.input_normalisation(model)
    ds = FoodFolder(args.root, "train", transform=make_transform(args.size, mean=mean, std=std))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    timer = train(model, make_loader(ds, args.batch_size), optimizer, device, args.steps, args.warmup)
    print(json.dumps(timer.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
