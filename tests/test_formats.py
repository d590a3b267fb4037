"""Tests for foodcnn.results.formats: one rule writes every report table's cells as a person would."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from foodcnn.results import formats


def test_each_unit_is_written_for_reading():
    cell = formats.cell
    assert cell("wall time (s)", 15.8) == "15.8" and cell("wall time (s)", 1234.56) == "1,234.6"
    assert cell("trainable params", 390804) == "390,804"
    assert cell("total params", 134_309_204.0) == "134,309,204"  # a count stored as a float (NaN elsewhere)
    assert cell("best epoch", 2.0) == "2" and cell("seeds", np.int64(3)) == "3"
    assert cell("train images/s", 53.4) == "53"
    assert cell("test %", 46.2234) == "46.22" and cell("test loss", 1.7781) == "1.778"
    assert cell("Δ test (pp)", 3.456) == "+3.46" and cell("95% CI low", -1.0) == "-1.00"
    assert cell("McNemar p", 0.000123456) == "0.000123"
    assert cell("cached features", False) == "no" and cell("cached features", np.bool_(True)) == "yes"
    assert cell("test %", float("nan")) == cell("weights", None) == "—"
    assert cell("scale", "15/class · 37 px · 2/25 ep") == "15/class · 37 px · 2/25 ep"


def test_a_column_of_counts_stays_whole_and_one_mean_makes_it_decimal():
    assert formats.number_format("best epoch", [2.0, 3.0, float("nan")]) == formats.COUNT
    assert formats.number_format("best epoch", [2.0, 2.5]) == formats.OTHER


def test_readable_puts_the_row_id_first_without_an_index_header():
    df = pd.DataFrame({"wall time (s)": [15.8, 53.0], "trainable params": [390804, 2],
                       "cached features": [False, True]}, index=pd.Index(["a_baseline", "b_vgg2"], name="id"))
    html = formats.readable(df).to_html()
    headers = re.findall(r"<th[^>]*>(.*?)</th>", html)
    assert headers == ["id", "wall time (s)", "trainable params", "cached features"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html)
    assert cells == ["a_baseline", "15.8", "390,804", "no", "b_vgg2", "53.0", "2", "yes"]
    plain = formats.readable(df.reset_index(drop=True)).to_html()  # 0, 1, 2 … is no id: it is not shown
    assert ">0<" not in plain and "index" not in plain
