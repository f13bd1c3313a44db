"""Writing frontier tables fast and streamed: JSON (orjson) and CSV, chunk by chunk, so a 30,000-row
frontier is written in well under a second and memory does not grow with the number of rows."""

from __future__ import annotations

import csv
import math
from typing import TYPE_CHECKING, TextIO

import orjson

if TYPE_CHECKING:   # only for annotations: the CLI's start-up imports every command module
    import pandas as pd

from cascade_explorer.core.text import spreadsheet_cell

CHUNK_ROWS = 4096


def _threshold(value: float):
    """Strict JSON for a threshold: +-inf (never / always exit) as the strings "inf" / "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _number(value):
    """None or NaN (e.g. no latency) -> None; anything else a plain float."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _chunks(frame: pd.DataFrame, columns: list[str]):
    for start in range(0, len(frame), CHUNK_ROWS):
        part = frame.iloc[start:start + CHUNK_ROWS]
        yield {c: part[c].tolist() for c in columns}, len(part)


def frontier_json(frame: pd.DataFrame, columns: list[str], stream: TextIO) -> None:
    """The frontier as one JSON array of row objects (models/thresholds/exit_fractions as lists)."""
    stream.write("[")
    first = True
    for data, n in _chunks(frame, columns):
        rows = []
        for i in range(n):
            row = {}
            for c in columns:
                value = data[c][i]
                if c == "models":
                    row[c] = list(value)
                elif c == "thresholds":
                    row[c] = [_threshold(t) for t in value]
                elif c == "exit_fractions":
                    row[c] = [float(f) for f in value]
                else:
                    row[c] = _number(value)
            rows.append(row)
        if rows:
            text = orjson.dumps(rows).decode()[1:-1]
            stream.write(text if first else "," + text)
            first = False
    stream.write("]\n")


def frontier_csv(frame: pd.DataFrame, columns: list[str], stream: TextIO) -> None:
    """The frontier as CSV: models joined by '+', other lists by ';', missing values empty; a text cell a
    spreadsheet would run as a formula (a model id starting with =, +, -, @) stays text."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    for data, n in _chunks(frame, columns):
        writer.writerows(
            [spreadsheet_cell("+".join(data[c][i])) if c == "models" else
             ";".join(str(float(v)) for v in data[c][i]) if c in ("thresholds", "exit_fractions") else
             "" if data[c][i] is None or (isinstance(data[c][i], float) and math.isnan(data[c][i])) else data[c][i]
             for c in columns]
            for i in range(n))
