"""Command output of bank and config strings: no terminal control sequences, no spreadsheet formulas,
and thresholds printed so that typed back in they give the same cascade (issue 12)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.commands import cli
from cascade_explorer.core.analysis import BankAnalysis, CascadeSpec
from cascade_explorer.core.bank import DEFAULT_BANK_PATH, BankWriter

from live_support import MOBILENET_SPEC, encode, photo_like

# window title, OSC 52 clipboard write, clear screen, a one-byte CSI, a bidi override
EVIL = "\x1b]0;pwned\x07\x1b]52;c;aGVsbG8=\x07\x1b[2J\x9b31m\u202eevil"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_terminal_safe(output: str) -> None:
    bad = [c for c in output if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f or c == "\u202e"]
    assert not bad, f"control characters reach the terminal: {bad!r}"


@pytest.fixture(scope="module")
def evil_bank(tmp_path_factory) -> Path:
    """A bank whose class names and display names carry escape sequences, names that are formulas."""
    path = tmp_path_factory.mktemp("banks") / "evil"
    rng = np.random.default_rng(0)
    n, classes = 40, 1000
    writer = BankWriter(path, create={"dataset": {"name": "evil" + EVIL},
                                      "class_names": [f"class{i}{EVIL}" for i in range(classes)]})
    labels = rng.integers(0, classes, n)
    writer.add_split("val", [f"s{i}" for i in range(n)], [f"img{i}.png" for i in range(n)], labels,
                     image_source={"url_base": None})
    for model_id, name, gmacs, spec in (("small", "=HYPERLINK(\"http://evil\",\"x\")" + EVIL, 0.1, MOBILENET_SPEC),
                                        ("big", "@SUM(1)", 1.0, None)):
        writer.add_model(model_id, display_name=name, backend="tflite" if spec else "external",
                         source={"kind": "user"}, gmacs=gmacs, spec=spec)
        logits = rng.normal(0, 1, (n, classes)).astype(np.float32)
        logits[np.arange(n), labels] += 3 * gmacs + 1
        writer.add_logits(model_id, "val", logits.astype(np.float16))
    return path


@pytest.mark.skipif(not os.environ.get("CASCADE_EXPLORER_MODELS"), reason="needs the TFLite files of ../shared")
def test_predict_prints_class_names_without_escape_sequences(capsys, evil_bank, tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(encode(photo_like(seed=3), "JPEG"))
    code, out, err = run_cli(capsys, "predict", "--bank", evil_bank, "--models", "small", image)
    assert code == 0, err
    assert "class" in out and "\\u001b]52;c;" in out, out    # shown, as visible escapes
    assert_terminal_safe(out + err)
    code, out, err = run_cli(capsys, "predict", "--bank", evil_bank, "--models", "small", image, "--json")
    assert code == 0, err
    assert_terminal_safe(out + err)
    assert json.loads(out)[0]["class_name"].endswith(EVIL)   # --json still gives the exact string


def test_error_messages_with_bank_strings_are_terminal_safe(capsys, evil_bank):
    code, out, err = run_cli(capsys, "evaluate", "--bank", evil_bank, "--models", "small,big",
                             "--thresholds", "0.5", "--split", "nope" + EVIL)
    assert code == 2 and "nope" in err
    assert_terminal_safe(out + err)


def test_pareto_csv_cells_are_not_formulas(capsys, evil_bank):
    code, out, err = run_cli(capsys, "pareto", "--bank", evil_bank, "--csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) > 1
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)   # only plain numbers may start like a formula


def frontier_from_text(out: str) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
    rows = []
    for line in out.splitlines()[1:]:
        match = re.match(r"\s+(.+?)  thresholds (\S+)  accuracy", line)
        assert match, line
        rows.append((tuple(match.group(1).split(" -> ")), tuple(float(t) for t in match.group(2).split(","))))
    return rows


@pytest.mark.skipif(not (DEFAULT_BANK_PATH / "manifest.json").is_file(), reason="no default bank")
def test_pareto_thresholds_typed_back_in_give_every_row_exactly(capsys):
    """Old output (4 significant digits): 211 of the default bank's 386 frontier rows changed."""
    code, out, err = run_cli(capsys, "pareto")
    assert code == 0, err
    typed = frontier_from_text(out)
    analysis = BankAnalysis(DEFAULT_BANK_PATH)
    frame = analysis.frontier()
    assert len(typed) == len(frame) > 100
    for (models, thresholds), (_, row) in zip(typed, frame.iterrows()):
        assert models == tuple(row["models"]) and thresholds == tuple(float(t) for t in row["thresholds"])
        ev = analysis.evaluate(CascadeSpec(models=models, thresholds=thresholds), on="all", n_bootstrap=0)
        assert ev["accuracy"] == row["accuracy"] and ev["avg_gmacs"] == pytest.approx(row["avg_gmacs"], rel=1e-12)
        # one image of 1,300 moves a fraction by 7.7e-4; 1e-12 only allows float summation order
        assert list(ev["exit_fractions"]) == pytest.approx(list(row["exit_fractions"]), abs=1e-12)


@pytest.mark.skipif(not (DEFAULT_BANK_PATH / "manifest.json").is_file(), reason="no default bank")
def test_evaluate_text_thresholds_round_trip(capsys):
    frame = BankAnalysis(DEFAULT_BANK_PATH).frontier()
    for _, row in frame.iloc[::25].iterrows():
        given = ",".join(repr(float(t)) for t in row["thresholds"])
        argv = ["evaluate", "--models", ",".join(row["models"]), "--thresholds", given, "--on", "all"]
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        printed = re.search(r"thresholds (.+?), temperature", out).group(1).replace(" ", "")
        code, again, err = run_cli(capsys, *argv[:-4], "--thresholds", printed, "--on", "all", "--json")
        assert code == 0, err
        assert json.loads(again)["accuracy"] == row["accuracy"]
        assert json.loads(again)["exit_fractions"] == pytest.approx(list(row["exit_fractions"]), abs=1e-12)
