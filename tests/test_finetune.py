"""Fine-tuning at small scale (training/finetune.py), per-row profile overlays, and rows that are one experiment."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from foodcnn import checkpoints, params
from foodcnn.models import registry
from foodcnn.results import runs
from foodcnn.training import epochs, finetune, train


def test_staged_fine_tune_trains_the_head_first_then_the_backbone(tiny_params, monkeypatch):
    snaps = {}
    real = finetune.warm_head

    def spy(p, model, loaded, device):
        snaps["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        out = real(p, model, loaded, device)
        snaps["head_done"] = {k: v.clone() for k, v in model.state_dict().items()}
        assert all(q.requires_grad for q in model.parameters())  # the row's freeze policy (none) is back
        return out

    monkeypatch.setattr(finetune, "warm_head", spy)
    p = tiny_params(model="resnet18", freeze="none", image_size=32, lr=1e-2, head_epochs=2, head_lr=1e-2,
                    backbone_lr_scale=0.1, warmup_epochs=0.5, schedule="cosine", bn_frozen=True)
    result = train.run(p)
    start, head_done = snaps["start"], snaps["head_done"]
    changed = [k for k in start if not torch.equal(start[k], head_done[k])]
    assert changed and all(k.startswith("fc.") for k in changed)  # phase 1 moves the head alone
    best = checkpoints.load(runs.run_dir(p) / runs.BEST)["model"]
    moved = [k for k in best if not k.startswith("fc.") and k.endswith("weight")
             and not torch.equal(best[k], head_done[k])]
    assert moved  # phase 2 trains the backbone
    stats = [k for k in best if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(best[k], start[k]) for k in stats)  # bn_frozen: statistics as pretrained
    assert result["recipe"]["name"] == "staged" and result["recipe"]["head_phase"]["epochs"] == 2
    assert result["recipe"]["backbone_lr_scale"] == 0.1


def test_the_reports_recipe_is_the_default_and_small_cnns_have_none(tiny_params):
    p = tiny_params(model="resnet18", freeze="none", image_size=32)
    assert finetune.recipe(p, registry.build_from_params(p)).describe()["name"] == "reports"
    q = tiny_params(head_epochs=3, bn_frozen=True)  # the baseline: nothing pretrained to fine-tune
    assert finetune.recipe(q, registry.build_from_params(q)).describe() is None
    frozen = tiny_params(model="resnet18", freeze="head", image_size=32, head_epochs=3)
    assert finetune.recipe(frozen, registry.build_from_params(frozen)).describe() is None


def test_optimizer_puts_the_backbone_at_its_own_rate(tiny_params):
    model = registry.build_from_params(tiny_params(model="resnet18", freeze="none", image_size=32))
    opt = epochs.make_optimizer(model, 1e-3, torch.device("cpu"), backbone_lr_scale=0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-3])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert len(opt.param_groups[1]["params"]) == len(list(model.fc.parameters()))
    assert len(epochs.make_optimizer(model, 1e-3, torch.device("cpu")).param_groups) == 1  # the reports' recipe


def test_learning_rate_warms_up_then_falls_by_cosine():
    assert epochs.lr_factor("constant", 0.0, 5) is None
    f = epochs.lr_factor("cosine", 1.0, 5)
    assert f(0.0) < 0.01 and f(0.5) == pytest.approx(0.5, abs=0.01) and f(1.0) == pytest.approx(1.0)
    assert f(3.0) == pytest.approx(0.5) and f(4.999) < 0.001
    g = epochs.lr_factor("constant", 2.0, 5)
    assert g(1.0) == pytest.approx(0.5, abs=0.01) and g(4.0) == 1.0


def test_profile_by_row_overlay_applies_to_its_row_last(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "a.yaml").write_text("model: baseline\n")
    (tmp_path / "b.yaml").write_text("model: baseline\n")
    (tmp_path / "profiles" / "p.yaml").write_text(yaml.safe_dump(
        {"epochs": 2, "by_model": {"baseline": {"epochs": 3}}, "by_row": {"a": {"epochs": 4, "seeds": [0, 1, 2]}}}))
    a = params.load(tmp_path / "a.yaml", profile="p")
    b = params.load(tmp_path / "b.yaml", profile="p")
    assert (a.epochs, a.seeds, b.epochs, b.seeds) == (4, [0, 1, 2], 3, [0])
    assert params.load(tmp_path / "a.yaml", profile="p", overrides={"epochs": 9}).epochs == 9
    for bad, words in [({"a": {"epoch": 4}}, "Did you mean 'epochs'"), ({"a": {"model": "custom_a"}}, "cannot change"),
                       ({"a": 3}, "expected a mapping")]:
        (tmp_path / "profiles" / "p.yaml").write_text(yaml.safe_dump({"by_row": bad}))
        with pytest.raises(params.ParamsError, match=words):
            params.load(tmp_path / "a.yaml", profile="p")


def test_a_row_equal_to_a_finished_one_adopts_its_run(tiny_params, monkeypatch):
    first = train.run(tiny_params(id="a_baseline", profile="x"))
    monkeypatch.setattr(train, "set_up_device", lambda p: pytest.fail("trained again"))
    twin = train.run(tiny_params(id="b_baseline", profile="x"), resume=True)  # as the batch's notebooks call it
    assert twin["same_run_as"] == "a_baseline" and twin["id"] == "b_baseline"
    assert twin["test_acc"] == first["test_acc"] and twin["recipe_fingerprint"] == first["recipe_fingerprint"]
    rdir = runs.run_dir(tiny_params(id="b_baseline", profile="x"))
    a, b = runs.Run(runs.run_dir(tiny_params(id="a_baseline", profile="x"))), runs.Run(rdir)
    assert runs.is_finished(rdir, tiny_params(id="b_baseline", profile="x"))
    assert (rdir / runs.PREDICTIONS).read_bytes() == (a.path / runs.PREDICTIONS).read_bytes()
    assert yaml.safe_load((b.path / runs.PARAMS).read_text())["id"] == "b_baseline"
    assert runs.find_twin(rdir, tiny_params(id="b_baseline", profile="x", lr=2e-3)) is None  # another recipe
    assert not math.isnan(twin["test_acc"])
