"""Parameters: YAML + profile overlay resolution and clear errors before any training starts."""

from __future__ import annotations

import pytest

from foodcnn import params


def write(path, text):
    path.write_text(text)
    return path


def test_profile_overlays_experiment(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles" / "small.yaml", "epochs: 3\nimage_size: 32\nimage_size_by_model: {custom_b: 104}\n")
    exp = write(tmp_path / "b_custom7.yaml", "model: custom_b\nlr: 5.0e-4\nparent: b_custom5\n")
    p = params.load(exp, profile="small")
    assert (p.id, p.model, p.lr, p.epochs, p.profile) == ("b_custom7", "custom_b", 5e-4, 3, "small")
    assert p.resolved_image_size == 104
    assert params.load(exp, profile="small", overrides={"epochs": 1}).epochs == 1


def test_yaml_string_floats_and_seed_count(tmp_path):
    exp = write(tmp_path / "x.yaml", "lr: 1e-4\nseeds: 3\n")  # YAML 1.1 reads 1e-4 as a string
    p = params.load(exp)
    assert p.lr == 1e-4 and p.seeds == [0, 1, 2]


def test_unknown_key_has_did_you_mean_and_names_file(tmp_path):
    exp = write(tmp_path / "bad.yaml", "learning_rate: 0.1\nlr_: 1\n")
    with pytest.raises(params.ParamsError) as e:
        params.load(exp)
    assert "bad.yaml" in str(e.value) and "'learning_rate'" in str(e.value)
    exp = write(tmp_path / "bad2.yaml", "pateince: 3\n")
    with pytest.raises(params.ParamsError, match="Did you mean 'patience'"):
        params.load(exp)


@pytest.mark.parametrize("text,key", [
    ("lr: fast\n", "lr"),
    ("epochs: 2.5\n", "epochs"),
    ("model: resnet50\n", "model"),
    ("freeze: layer2\n", "freeze"),
    ("augment: flip\n", "augment"),
    ("lr: 0\n", "lr"),
    ("lr: -1e-3\n", "lr"),
    ("patience: 0\n", "patience"),
    ("dropout: 1.5\n", "dropout"),
    ("checkpoint_every_s: -1\n", "checkpoint_every_s"),
    ("checkpoint_every_s: .nan\n", "checkpoint_every_s"),
    ("classes: pizza\n", "classes"),
    ("model: custom_b\nimage_size: 64\n", "image_size"),
])
def test_bad_values_name_file_and_key(tmp_path, text, key):
    exp = write(tmp_path / "row.yaml", text)
    with pytest.raises(params.ParamsError) as e:
        params.load(exp)
    assert "row.yaml" in str(e.value) and f"'{key}'" in str(e.value)


def test_bad_choice_lists_valid_choices(tmp_path):
    exp = write(tmp_path / "row.yaml", "augment: hflp\n")
    with pytest.raises(params.ParamsError) as e:
        params.load(exp)
    assert "Did you mean 'hflip'" in str(e.value) and "none, hflip, wide" in str(e.value)


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(params.ParamsError, match="not valid YAML"):
        params.load(write(tmp_path / "broken.yaml", "lr: [1, 2\n"))
    with pytest.raises(params.ParamsError, match="no such parameter file"):
        params.load(tmp_path / "nope.yaml")
    with pytest.raises(params.ParamsError, match="Known profiles"):
        params.load(write(tmp_path / "ok.yaml", "lr: 0.001\n"), profile="nope")


def test_unknown_key_in_profile_names_profile(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles" / "p.yaml", "epocs: 3\n")
    with pytest.raises(params.ParamsError) as e:
        params.load(write(tmp_path / "ok.yaml", "lr: 0.001\n"), profile="p")
    assert "p.yaml" in str(e.value) and "Did you mean 'epochs'" in str(e.value)


def test_fingerprint_ignores_where_but_not_what():
    a = params.from_mapping({"id": "x"})
    assert a.fingerprint() == a.replace(runs_dir="/elsewhere", progress=False, checkpoint_every_s=0).fingerprint()
    assert a.fingerprint() != a.replace(lr=2e-3).fingerprint()
    assert a.fingerprint() != a.replace(seed=1).fingerprint()


def test_profile_by_model_scales_one_family(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles" / "cpu.yaml",
          "epochs: 6\nmax_train_per_class: 100\nby_model: {custom_b: {epochs: 3, max_train_per_class: 40}}\n")
    b = write(tmp_path / "b_custom5.yaml", "model: custom_b\n")
    a = write(tmp_path / "a_baseline.yaml", "model: baseline\n")
    p = params.load(b, profile="cpu")
    assert (p.epochs, p.max_train_per_class) == (3, 40)
    assert (params.load(a, profile="cpu").epochs, params.load(a, profile="cpu").max_train_per_class) == (6, 100)
    assert params.load(b, profile="cpu", overrides={"epochs": 1}).epochs == 1  # the command line still wins


@pytest.mark.parametrize("section, message", [
    ("{custom_c: {epochs: 3}}", "Did you mean 'custom_b'"),
    ("{custom_b: {epoch: 3}}", "Did you mean 'epochs'"),
    ("{custom_b: {epochs: 0}}", "'epochs': must be > 0"),
    ("{custom_b: 3}", "by_model.custom_b"),
    ("{custom_b: {model: baseline}}", "cannot change the model"),
])
def test_profile_by_model_errors_name_file_and_key(tmp_path, section, message):
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles" / "cpu.yaml", f"by_model: {section}\n")
    exp = write(tmp_path / "b_custom5.yaml", "model: custom_b\n")
    with pytest.raises(params.ParamsError, match=message) as e:
        params.load(exp, profile="cpu")
    assert "cpu.yaml" in str(e.value)


def test_project_dir_is_where_the_catalogue_is(tmp_path, monkeypatch):
    (tmp_path / "params" / "profiles").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where JupyterLab starts an experiment notebook's kernel
    assert params.project_dir() == tmp_path
    assert params.project_dir(tmp_path) == tmp_path  # batch and papermill already run from there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "params" / "profiles").rmdir()
    assert params.project_dir(elsewhere) == elsewhere  # no catalogue above: the paths stay as they are
