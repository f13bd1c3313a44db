"""Dashboard (Streamlit AppTest) on crafted banks: CSV exports hold no live formulas, malformed split
metadata gives a message instead of a traceback (issue 12)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cascade_explorer.core.bank import BankWriter
from cascade_explorer.dashboard import data

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
FORMULAS = ("=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3+cmd", "@SUM(1+1)")


def write_bank(path: Path, names, *, split_info: dict | None = None) -> Path:
    rng = np.random.default_rng(1)
    n, classes = 200, 5
    writer = BankWriter(path, create={"dataset": {"name": "crafted"},
                                      "class_names": [f"c{i}" for i in range(classes)]})
    labels = rng.integers(0, classes, n)
    writer.add_split("val", [f"s{i}" for i in range(n)], [f"img{i}.png" for i in range(n)], labels,
                     image_source={"url_base": None})
    for i, name in enumerate(names):
        writer.add_model(f"m{i}", display_name=name, backend="external", source={"kind": "user"}, gmacs=0.1 * 3 ** i)
        logits = rng.normal(0, 1, (n, classes)).astype(np.float32)
        logits[np.arange(n), labels] += 1.0 + i
        writer.add_logits(f"m{i}", "val", logits.astype(np.float16))
    if split_info:
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["splits"]["val"].update(split_info)
        (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def start(bank: Path, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(bank))
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_leaderboard_csv_cells_are_never_formulas(tmp_path, monkeypatch, downloads):
    bank = write_bank(tmp_path / "formulas", FORMULAS)
    captured = downloads
    at = start(bank, monkeypatch, "leaderboard")
    at.toggle(key="w_per_pair").set_value(False).run()
    rows = list(csv.reader(io.StringIO(captured["leaderboard_csv"])))
    header, body = rows[0], rows[1:]
    assert body, "the CSV has rows"
    cascades = [row[header.index("cascade")] for row in body]
    assert any(c.startswith("'=HYPERLINK") for c in cascades)   # the name is there, as text
    for row in body:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)   # only a plain number may start like a formula


@pytest.mark.parametrize("split_info, problem", [
    ({"image_source": {"url_base": 5}}, "url_base is not a string"),
    ({"transform": {"kind": "corruption", "types": "gaussian_noise", "severity": 3, "seed": 0}}, "types must be a list"),
    ({"transform": {"kind": "corruption", "types": ["no_such"], "severity": 3, "seed": 0}}, "unknown corruption"),
    ({"transform": {"kind": "corruption", "types": ["gaussian_noise"], "severity": 9, "seed": 0}}, "severity"),
    ({"transform": {"kind": "corruption", "types": ["gaussian_noise"], "severity": 2}}, "seed must be an integer"),
])
def test_gallery_with_malformed_split_metadata_says_so(tmp_path, monkeypatch, split_info, problem):
    bank = write_bank(tmp_path / "meta", ["small", "big"], split_info=split_info)
    at = start(bank, monkeypatch, "gallery")
    warnings = " ".join(w.value for w in at.warning).replace("\\", "")
    assert problem in warnings and "text only" in warnings



def test_gallery_image_metadata_checks_what_the_validator_leaves():
    ok = data.gallery_image_metadata({"image_source": {"url_base": None}, "transform": None})
    assert ok == ({"url_base": None}, None, None)
    for info, problem in (({"image_source": "x"}, "image_source is a str"), ({"transform": [1]}, "transform is a list"),
                          ({"image_source": {"sha256": ["a"]}}, "sha256 is not an object")):
        assert data.gallery_image_metadata(info)[:2] == (None, None) and problem in data.gallery_image_metadata(info)[2]
