"""benchmarks/schedule.py: the paper catalogue's wall time on N GPUs under longest-first scheduling."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import REPO


def _schedule():
    spec = importlib.util.spec_from_file_location("schedule", REPO / "benchmarks" / "schedule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_longest_first_fills_the_gpu_free_soonest():
    s = _schedule()
    # 7, 5, 4, 3, 3 on two GPUs: 7 | 5, then 4 -> the 5 (9), 3 -> the 7 (10), 3 -> the 9 (12)
    assert s.longest_first([3, 7, 3, 5, 4], 2) == [10, 12]
    assert s.makespan([3, 7, 3, 5, 4], 2) == 12
    assert s.makespan([3, 7, 3, 5, 4], 1) == 22  # one GPU: the sum
    assert s.makespan([3, 7, 3, 5, 4], 8) == 7  # more GPUs than runs: the longest run


def test_projection_never_beats_its_lower_bound():
    s = _schedule()
    costs = [60.0] * 3 + [25.0] * 20 + [1.0] * 40
    rows = s.projection(costs)
    assert [r[0] for r in rows] == [1, 2, 4, 8]
    assert rows[0][1] == pytest.approx(sum(costs)) and rows[0][3] == pytest.approx(1.0)
    for _, wall, bound, eff in rows:
        assert bound <= wall + 1e-9 and 0 < eff <= 1 + 1e-9
    assert rows[-1][1] >= 60.0  # never shorter than the longest run
    with pytest.raises(ValueError):
        s.makespan(costs, 0)


def test_gpu_bench_prints_the_catalogue_on_1_to_8_gpus(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # gpu.py imports its neighbours (measure, schedule, ...) by name
    spec = importlib.util.spec_from_file_location("gpu", REPO / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu", gpu)  # its dataclasses look their module up there
    spec.loader.exec_module(gpu)
    rows = [gpu.Row("a", "resnet18", "head", "none", {}, seeds=3),  # features once, by the first seed's run
            gpu.Row("c", "resnet18", "none", "none", {}, epochs=2, seeds=3)]
    counts = {"train": 6000, "val": 1200, "test": 1200}
    costs = gpu.Costs(train={gpu.train_key(rows[1]): 50.0}, eval={gpu.eval_key(rows[1]): 10.0},
                      features={("resnet18", 224): 10.0}, checkpoint_s={"resnet18": 0.0})  # no fixed costs here
    rc = gpu.row_costs(rows, costs, counts)
    total = sum(r.seconds for r in rc)
    gpu.print_gpu_projection(rc)
    last = dict(kv.split("=") for kv in capsys.readouterr().out.split("\n")[-2].split())
    # features: 8,400 images at 10 img/s = 14 min; a full run: 2 x (6000/50 + 1200/10) + 1200/10 s = 10 min
    assert total / 60 == pytest.approx(44.0)
    assert float(last["projected_minutes_1gpu"]) == 44.0
    assert float(last["projected_minutes_2gpu"]) == 24.0  # 14 + 10 | 10 + 10
    # 4 or 8 GPUs: the features run beside the three full runs; the row's other seeds read the features
    assert float(last["projected_minutes_4gpu"]) == float(last["projected_minutes_8gpu"]) == 14.0
