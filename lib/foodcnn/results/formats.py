"""How every table of the report writes its cells: one rule, chosen by what the column's header says it holds.

A person writes seconds to one decimal, counts as whole numbers with thousands separators, flags as yes/no and
leaves a missing value as a dash; `readable` gives every table that look, and `cell` writes one value by the same
rule where a table mixes units row by row (a run's card).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

MISSING = "—"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _whole(values: Iterable[Any]) -> bool:
    """Return True when every number among `values` is a whole number (a count, however it was stored)."""
    nums = [float(v) for v in values if _number(v) and not _missing(v)]
    return all(math.isfinite(v) and v.is_integer() for v in nums)


# (what the header says, how a number under it is written), first match wins: the header names the unit.
UNITS: list[tuple[str, str]] = [
    (r"(^|\s)p$", "{:.3g}"),          # a p-value: McNemar p, binomial p, Holm p
    (r"^MDE", "{:.1f}"),              # a minimum detectable effect (pp), unsigned
    (r"\bpp\b|\bCI\b", "{:+.2f}"),    # percentage points: a change, signed
    (r"%", "{:.2f}"),                 # accuracy in percent
    (r"\bloss\b", "{:.3f}"),          # cross-entropy (the reports give three decimals)
    (r"\(s\)", "{:,.1f}"),            # seconds
    (r"/s\b", "{:,.0f}"),             # a rate: images per second
]
COUNT = "{:,.0f}"  # a column of whole numbers: parameters, seeds, epochs, images
OTHER = "{:,.2f}"


def number_format(header: str, values: Iterable[Any] = ()) -> str:
    """Return the format string for the numbers of a column headed `header` that holds `values`."""
    for pattern, fmt in UNITS:
        if re.search(pattern, header):
            return fmt
    return COUNT if _whole(values) else OTHER


def formatter(header: str, values: Iterable[Any] = ()) -> Callable[[Any], str]:
    """Return the function that writes one cell of the column `header`: flags yes/no, missing "—", numbers by unit."""
    fmt = number_format(header, list(values))

    def write(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if _missing(v):
            return MISSING
        if _number(v):
            return fmt.format(v)
        return str(v)

    return write


def cell(header: str, value: Any) -> str:
    """Return `value` written as it would be in a column headed `header`."""
    return formatter(header, [value])(value)


def with_id_column(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` with a meaningful index moved into its first column (a plain 0, 1, 2 … index is dropped)."""
    if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
        return df
    return df.rename_axis(df.index.name or "").reset_index()


def readable(df: pd.DataFrame) -> "pd.io.formats.style.Styler":
    """Return `df` as a table for reading: every column written by `formatter`, the row id first, no index."""
    df = with_id_column(df)
    return df.style.format({c: formatter(str(c), df[c]) for c in df.columns}).hide(axis="index")
