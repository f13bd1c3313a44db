"""pareto's --csv / --json writers (commands/output.py) against slow references: the CSV is byte for
byte what csv.writer writes for the values themselves, the JSON parses to the values (NaN/None as
null, an infinite threshold as "inf"), on awkward values and names."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pandas as pd

from cascade_explorer.commands import output
from cascade_explorer.core.text import spreadsheet_cell

COLUMNS = ["models", "thresholds", "accuracy", "avg_gmacs", "avg_ms", "escalated_fraction", "exit_fractions",
           "speedup", "apgr"]


def _frame(n: int = 9000) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    awkward = [0.0, -0.0, 1e-05, 9.99e-05, 1e-4, 1e-07, 1e16, 1.5e20, 9999999999999998.0, 5e-324, 0.1, 2.0,
               float("nan"), float("inf"), 1 / 3]
    numbers = np.concatenate([np.array(awkward), rng.random(n) * 10.0 ** rng.integers(-9, 18, n)])[:n]
    names = ["resnet50", "=cmd", 'quote"d', "comma,name", "line\nbreak", "vit_base_patch16_224.augreg2_in21k_ft_in1k"]
    chains = [(names[i % 6], names[(i * 5 + 1) % 6]) for i in range(n)]
    thresholds = [(float(numbers[i]),) if i % 7 else (float("inf"),) if i % 2 else (0.5, float("-inf")) for i in range(n)]
    return pd.DataFrame({
        "models": chains, "thresholds": thresholds, "accuracy": rng.random(n), "avg_gmacs": numbers,
        "avg_ms": [None if i % 3 else float(numbers[i]) for i in range(n)], "escalated_fraction": rng.random(n),
        "exit_fractions": [(float(a), 1 - float(a)) for a in rng.random(n)], "speedup": np.roll(numbers, 5),
        "apgr": np.where(np.arange(n) % 4 == 0, np.nan, rng.normal(size=n))})


def _reference_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in frame[COLUMNS].itertuples(index=False):
        cells = []
        for name, value in zip(COLUMNS, row):
            if name == "models":
                cells.append(spreadsheet_cell("+".join(value)))
            elif name in ("thresholds", "exit_fractions"):
                cells.append(";".join(str(float(v)) for v in value))
            else:
                cells.append("" if value is None or (isinstance(value, float) and math.isnan(value)) else value)
        writer.writerow(cells)
    return buffer.getvalue()


def test_csv_is_what_csv_writer_writes_for_the_values():
    frame = _frame()
    got = io.StringIO()
    output.frontier_csv(frame, COLUMNS, got)
    assert got.getvalue() == _reference_csv(frame)
    assert len(list(csv.reader(io.StringIO(got.getvalue())))) == len(frame) + 1   # quoting keeps rows whole


def test_json_parses_to_the_values():
    frame = _frame(3000)
    got = io.StringIO()
    output.frontier_json(frame, COLUMNS, got)
    rows = json.loads(got.getvalue())    # strict JSON: no NaN/Infinity literals
    assert len(rows) == len(frame)
    for row, want in zip(rows, frame[COLUMNS].itertuples(index=False)):
        want = dict(zip(COLUMNS, want))
        assert row["models"] == list(want["models"])
        assert row["thresholds"] == [None if math.isnan(t) else t if math.isfinite(t) else "inf" if t > 0 else "-inf"
                                     for t in want["thresholds"]]
        assert row["exit_fractions"] == list(want["exit_fractions"])
        for name in ("accuracy", "avg_gmacs", "avg_ms", "escalated_fraction", "speedup", "apgr"):
            value = want[name]
            expected = None if value is None or not math.isfinite(value) else float(value)
            assert row[name] == expected, (name, row[name], value)


def test_an_empty_frontier_writes_a_header_or_an_empty_array():
    empty = _frame().iloc[:0]
    text, array = io.StringIO(), io.StringIO()
    output.frontier_csv(empty, COLUMNS, text)
    output.frontier_json(empty, COLUMNS, array)
    assert text.getvalue() == ",".join(COLUMNS) + "\n" and json.loads(array.getvalue()) == []
