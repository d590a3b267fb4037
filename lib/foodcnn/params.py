"""Typed, validated experiment parameters: one flat dataclass built from YAML plus profile overlays."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .typecheck import type_name, type_ok

AUGMENTS = ("none", "hflip", "wide")
ACTIVATIONS = ("relu", "silu")
INITS = ("xavier", "normal")
PRETRAINED_MODES = ("required", "auto", "none")
BAD_IMAGE_MODES = ("skip", "fail")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine")
SMALLEST = "smallest"  # an image size by rule: the smallest input the row's architecture accepts
FREEZE_RE = re.compile(r"^(none|head|conv1|every_nth:[1-9][0-9]*)$")
FREEZE_CHOICES = "none, head, conv1, every_nth:K (K >= 1)"
MAX_SEED = 2**63 - 1

# Fields that change how a run is executed or where it is written, not what it computes:
# a run whose other fields are unchanged is skipped on a re-run (see `fingerprint`).
NON_RESULT_FIELDS = frozenset({"runs_dir", "cache_dir", "num_workers", "progress", "profile", "title", "change",
                               "parent", "report", "seeds", "feature_cache", "checkpoint_every_s"})


class ParamsError(ValueError):
    """A parameter file or value is invalid; the message names the source, the key and the choices."""


@dataclass(frozen=True)
class Params:
    """Every setting of one run (SPEC §3, §6); flat so papermill's shallow `-f` merge works."""

    # identity (catalogue row)
    id: str = "adhoc"
    report: str = ""  # "A", "B" or "X" (beyond the reports)
    parent: str | None = None  # the row this one changes
    change: str = ""  # the "Change made" column
    title: str = ""
    # model
    model: str = "baseline"
    activation: str = "relu"
    dropout: float = 0.5
    init: str = "xavier"
    extra_convs: int = 0  # report B custom1: extra conv layers ...
    extra_convs_after: str = "conv3"  # ... inserted after this conv
    extra_pool_after: str | None = None  # report B custom3: an extra max-pool after this conv
    freeze: str = "none"
    pretrained: str = "auto"  # required | auto | none
    weights_path: str | None = None  # explicit local ImageNet state dict
    # training
    lr: float = 1e-3
    # fine-tuning a pretrained backbone (rows whose backbone trains, freeze != head; training/finetune.py). The
    # defaults are the reports' recipe: every layer at `lr` from the first step, BatchNorm statistics updated.
    head_epochs: int = 0  # first train the new head alone on the frozen backbone's cached features, this many epochs
    head_lr: float | None = None  # ... at this learning rate (None: lr)
    backbone_lr_scale: float = 1.0  # then the backbone at lr * this, the head at lr
    warmup_epochs: float = 0.0  # learning rates rise linearly from 0 over this many epochs ...
    schedule: str = "constant"  # ... then stay (constant) or fall to 0 by the last epoch (cosine)
    bn_frozen: bool = False  # the backbone's BatchNorm layers keep their pretrained statistics (eval mode)
    batch_size: int = 32
    epochs: int = 25
    patience: int = 5
    augment: str = "none"
    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])  # the batch runs each row once per seed
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True  # mixed precision where the device supports it (CUDA)
    channels_last: bool = True  # channels_last memory format where it pays (streams.channels_last_pays)
    feature_cache: bool = True  # frozen backbone + deterministic augmentation: train the head on cached features
    checkpoint_every_s: float = 300.0  # last.pt at most this often (seconds of training); 0: after every epoch
    # data
    data_root: str = "data/food-101"
    classes: list[str] | None = None  # None: the first `num_classes` lines of classes.txt
    num_classes: int = 20
    val_fraction: float = 0.2
    split_seed: int = 0  # validation split and sub-sampling; fixed across training seeds
    max_train_per_class: int | None = None
    max_test_per_class: int | None = None
    image_size: int | str = 224  # px, or "smallest": the smallest input the row's architecture accepts
    image_size_by_model: dict[str, int | str] = field(default_factory=dict)  # per model, the same
    bad_images: str = "skip"  # skip | fail
    cache_dir: str = ".cache/foodcnn"
    # execution
    num_workers: int = 0
    progress: bool = True
    profile: str = ""
    runs_dir: str = "runs"

    @property
    def resolved_image_size(self) -> int:
        """Return the input size this run's model uses (a profile may set it per model, or by rule: "smallest")."""
        size = self.image_size_by_model.get(self.model, self.image_size)
        if size == SMALLEST:
            from .models import registry

            return registry.smallest_input(self)
        return int(size)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a plain mapping (YAML/JSON-safe)."""
        return dataclasses.asdict(self)

    def fingerprint(self, without: frozenset[str] = frozenset()) -> str:
        """Return a short hash of the fields that determine a run's results (but those `without`)."""
        d = {k: v for k, v in self.to_dict().items() if k not in NON_RESULT_FIELDS | without}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def recipe_fingerprint(self) -> str:
        """Return fingerprint() without the row's id: two rows with equal recipes train the same network."""
        return self.fingerprint(frozenset({"id"}))

    def replace(self, **changes: Any) -> "Params":
        """Return a copy with `changes` applied and validated."""
        merged = {**self.to_dict(), **changes}
        return from_mapping(merged, source="<replace>")


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Params)}
_HINTS = typing.get_type_hints(Params)


def _choice(source: str, key: str, value: Any, choices: typing.Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ParamsError(f"{source}: key '{key}': unknown value {value!r}.{hint} Valid choices: {', '.join(choices)}")


def _check(source: str, p: Params) -> None:
    """Validate values that types alone do not catch."""
    from .models import registry  # the registry is the list of model names

    _choice(source, "model", p.model, registry.names())
    _choice(source, "augment", p.augment, AUGMENTS)
    _choice(source, "activation", p.activation, ACTIVATIONS)
    _choice(source, "init", p.init, INITS)
    _choice(source, "pretrained", p.pretrained, PRETRAINED_MODES)
    _choice(source, "bad_images", p.bad_images, BAD_IMAGE_MODES)
    _choice(source, "device", p.device, DEVICES)
    _choice(source, "schedule", p.schedule, SCHEDULES)
    if not FREEZE_RE.match(p.freeze):
        raise ParamsError(f"{source}: key 'freeze': unknown policy {p.freeze!r}. Valid choices: {FREEZE_CHOICES}")
    for key, size in [("image_size", p.image_size), *((f"image_size_by_model.{m}", v)
                                                      for m, v in p.image_size_by_model.items())]:
        if isinstance(size, str) and size != SMALLEST:
            raise ParamsError(f"{source}: key '{key}': a size in px or '{SMALLEST}', got {size!r}")
    positive = {"lr": p.lr, "batch_size": p.batch_size, "epochs": p.epochs, "patience": p.patience,
                "num_classes": p.num_classes, "backbone_lr_scale": p.backbone_lr_scale,
                **({} if p.image_size == SMALLEST else {"image_size": p.image_size}),
                **({} if p.head_lr is None else {"head_lr": p.head_lr})}
    for key, value in positive.items():
        if not value > 0:
            raise ParamsError(f"{source}: key '{key}': must be > 0, got {value!r}")
    if not 0.0 <= p.dropout < 1.0:
        raise ParamsError(f"{source}: key 'dropout': must be in [0, 1), got {p.dropout!r}")
    if not 0.0 < p.val_fraction < 1.0:
        raise ParamsError(f"{source}: key 'val_fraction': must be in (0, 1), got {p.val_fraction!r}")
    if not p.checkpoint_every_s >= 0:  # NaN fails too; .inf means only when interrupted
        raise ParamsError(f"{source}: key 'checkpoint_every_s': must be >= 0 seconds, got {p.checkpoint_every_s!r}")
    for key, value in {"extra_convs": p.extra_convs, "head_epochs": p.head_epochs,
                       "warmup_epochs": p.warmup_epochs}.items():
        if value < 0:
            raise ParamsError(f"{source}: key '{key}': must be >= 0, got {value!r}")
    for key in ("max_train_per_class", "max_test_per_class"):
        v = getattr(p, key)
        if v is not None and v < 1:
            raise ParamsError(f"{source}: key '{key}': must be >= 1 or null, got {v!r}")
    if not p.seeds:
        raise ParamsError(f"{source}: key 'seeds': needs at least one seed")
    for key, seed in [("seed", p.seed), ("split_seed", p.split_seed), *(("seeds", s) for s in p.seeds)]:
        if not 0 <= seed <= MAX_SEED:  # what torch, NumPy and the report's int64 columns all take
            raise ParamsError(f"{source}: key '{key}': a seed must be an integer from 0 to 2**63 - 1 "
                              f"({MAX_SEED}), got {seed}")
    for name, size in p.image_size_by_model.items():
        _choice(source, f"image_size_by_model.{name}", name, registry.names())
        if size != SMALLEST and size <= 0:
            raise ParamsError(f"{source}: key 'image_size_by_model.{name}': must be > 0, got {size!r}")
    if p.classes is not None and len(p.classes) != len(set(p.classes)):
        raise ParamsError(f"{source}: key 'classes': lists a class twice")
    try:
        registry.check_options(p)
    except ValueError as e:
        raise ParamsError(f"{source}: {e}") from None


def from_mapping(mapping: Mapping[str, Any], source: str = "<params>") -> Params:
    """Return validated Params from a flat mapping; errors name `source`, the key and the choices."""
    if not isinstance(mapping, Mapping):
        raise ParamsError(f"{source}: expected a mapping of key: value, got {type(mapping).__name__}")
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ParamsError(f"{source}: unknown key '{key}'.{hint} Valid keys: {', '.join(sorted(FIELDS))}")
        if key == "seeds" and isinstance(value, int) and not isinstance(value, bool):
            value = list(range(value))  # a count of seeds means seeds 0..n-1
        ok, coerced = type_ok(value, _HINTS[key])
        if not ok:
            raise ParamsError(
                f"{source}: key '{key}': expected {type_name(_HINTS[key])}, got {value!r} ({type(value).__name__})"
            )
        values[key] = coerced
    p = Params(**values)
    _check(source, p)
    return p


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Return the mapping in a YAML file, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameter file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")  # a byte-order mark is fine: YAML skips it
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ParamsError(f"{path}, line {line}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file again as UTF-8"
                          ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of key: value at the top level")
    return data


def project_dir(start: str | Path | None = None) -> Path:
    """Return the nearest of `start` (default: the working directory) and its parents that holds params/profiles/.

    The parameters' relative paths (data, runs, params/published.csv) start there. JupyterLab starts a notebook's
    kernel in notebooks/, while `batch`, papermill and the CLI run from the project directory itself.
    """
    start = Path.cwd() if start is None else Path(start).resolve()
    for base in (start, *start.parents):
        if (base / "params" / "profiles").is_dir():
            return base
    return start


def profile_path(profile: str, params_dir: str | Path = "params") -> Path:
    """Return the YAML file of a named profile (or `profile` itself when it is a path)."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        return p
    path = Path(params_dir) / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(q.stem for q in path.parent.glob("*.yaml"))
        raise ParamsError(f"unknown profile {profile!r}: no {path}. Known profiles: {', '.join(known) or 'none'}")
    return path


# A profile may scale each model family on its own (a CPU budget is spent where the arithmetic is):
# `by_model: {custom_b: {max_train_per_class: 60, epochs: 3}}` applies to every row of that model, after the
# profile's own keys. And one catalogue row on its own: `by_row: {a_custom: {seeds: [0, 1, 2]}}` applies to the
# row with that id, after by_model and before command-line overrides (the rows behind a headline finding get
# several seeds).
BY_MODEL, BY_ROW = "by_model", "by_row"


def _overlays(section: Any, kind: str, source: str) -> dict[str, dict[str, Any]]:
    """Return a profile's per-model (kind BY_MODEL) or per-row (BY_ROW) overlays, checked key by key."""
    from .models import registry

    if section is None:
        return {}
    what = "model" if kind == BY_MODEL else "row id"
    if not isinstance(section, Mapping):
        raise ParamsError(f"{source}: key '{kind}': expected a mapping of {what}: {{key: value}}, got {section!r}")
    for name, keys in section.items():
        if kind == BY_MODEL:
            _choice(source, f"{kind}.{name}", name, registry.names())
        if not isinstance(keys, Mapping):
            raise ParamsError(f"{source}: key '{kind}.{name}': expected a mapping of key: value, got {keys!r}")
        for fixed in ("id", "model"):
            if fixed in keys:
                raise ParamsError(f"{source}: key '{kind}.{name}.{fixed}': a per-{what.split()[0]} overlay cannot "
                                  f"change the {fixed}")
        model = {"model": name} if kind == BY_MODEL else {}
        for key, value in keys.items():  # unknown keys, bad values
            from_mapping({key: value, **model}, source=f"{source} ({kind}.{name})")
    return {str(k): dict(v) for k, v in section.items()}


def load(
    path: str | Path,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    params_dir: str | Path | None = None,
) -> Params:
    """Return the resolved Params of an experiment file: defaults < experiment < profile < overrides.

    Within the profile: its own keys < its by_model overlay for the row's model < its by_row overlay for the row.
    """
    path = Path(path)
    merged: dict[str, Any] = {}
    exp = read_yaml(path)
    from_mapping(exp, source=str(path))  # validate the file on its own, so errors name it
    merged.update(exp)
    merged.setdefault("id", path.stem)
    if profile:
        ppath = profile_path(profile, params_dir or path.parent)
        prof = read_yaml(ppath)
        by_model = _overlays(prof.pop(BY_MODEL, None), BY_MODEL, source=str(ppath))
        by_row = _overlays(prof.pop(BY_ROW, None), BY_ROW, source=str(ppath))
        for key in prof:
            if key not in FIELDS:
                from_mapping({key: prof[key]}, source=str(ppath))  # raises with did-you-mean
        merged.update(prof)
        merged.update(by_model.get(merged.get("model", FIELDS["model"].default), {}))
        merged.update(by_row.get(str(merged["id"]), {}))
        merged["profile"] = Path(profile).stem
    if overrides:
        for key, value in overrides.items():  # errors name --set, not the file the value never came from
            if key not in FIELDS or not type_ok(value, _HINTS[key])[0]:
                from_mapping({key: value}, source="--set")  # raises with did-you-mean or the expected type
        merged.update(overrides)
    return from_mapping(merged, source=f"{path}" + (f" + profile {profile}" if profile else ""))


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Return the mapping of command-line `KEY=VALUE` pairs (each value read as YAML)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set epochs=3 or --set 'classes=[pizza, sushi]'")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ParamsError(f"--set {pair!r}: the value is not valid YAML ({problem}); quote a string "
                              f"(--set '{key}=\"...\"') or close the brackets of a list ([a, b])") from None
    return out


def dump(p: Params) -> str:
    """Return the parameters as YAML text."""
    return yaml.safe_dump(p.to_dict(), sort_keys=False)
