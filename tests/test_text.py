"""core/text.py: bank, config and URL text shown as plain characters (dashboard, terminal, CSV)."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from cascade_explorer.core import text
from cascade_explorer.core.errors import UsageError

BIDI = "\u202e\u2066\u200f"
ZERO_WIDTH = "\u200b\u200d\ufeff"
HOSTILE = ("![pixel](http://127.0.0.1:9/pixel.png) [click](http://evil.example) <img src=x> "
           ":red[alert] $x^2$ **bold** # head `code` \u202egnp.exe" "\x1b]52;c;aGk=\x07\x1b[2J")


def test_plain_text_strips_bidi_and_zero_width_and_replaces_controls():
    out = text.plain_text(f"a{BIDI}b{ZERO_WIDTH}c\x1b[2Jd\x00e\x9bf\tg\nh")
    assert out == "abc\ufffd[2Jd\ufffde\ufffdf\tg\nh"
    assert not set(out) & set(BIDI + ZERO_WIDTH)


def test_plain_text_caps_length_and_split_text_keeps_the_rest():
    value = "word " * 10_000                     # 50,000 characters
    shown = text.plain_text(value, max_chars=100)
    assert len(shown) < 140 and shown.endswith("more characters)")
    head, rest = text.split_text(value, 100)
    assert head + rest == value and len(head) <= 100
    assert text.split_text("short", 100) == ("short", "")
    assert text.plain_text(None) == "" and text.plain_text(3) == "3"
    with pytest.raises(UsageError, match="^max_chars must be"):
        text.plain_text("x", max_chars=0)


def test_markdown_text_escapes_every_markdown_punctuation():
    out = text.markdown_text(HOSTILE)
    # every ASCII punctuation character is preceded by a backslash (CommonMark: a literal character)
    i = 0
    while i < len(out):
        if out[i] == text.WORD_JOINER:
            i += 1
            continue
        if out[i] == "\\":
            assert out[i + 1] in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", out[i:i + 5]
            i += 2
            continue
        assert not (out[i].isascii() and not out[i].isalnum() and out[i] != " "), (out[i], out[max(0, i - 5):i + 5])
        i += 1
    assert "\u202e" not in out and "\x1b" not in out and "\n" not in out
    # un-escaping gives the plain text back: nothing was lost but the invisible characters
    assert out.replace("\\", "").replace(text.WORD_JOINER, "") == text.one_line(HOSTILE).replace("\\", "")
    # nothing GFM would autolink once the escapes are resolved: no bare http:, www. or a@b
    resolved = out.replace("\\", "")
    assert "http:" not in resolved and "www." not in text.markdown_text("www.evil.example").replace("\\", "")
    assert "x@evil" not in text.markdown_text("x@evil.example").replace("\\", "")


def test_html_text_escapes_plotly_markup():
    assert text.html_text('<a href="http://evil">x</a> & <b>') == '&lt;a href="http://evil"&gt;x&lt;/a&gt; &amp; &lt;b&gt;'


def test_terminal_text_leaves_no_control_sequence_and_keeps_json_valid():
    out = text.terminal_text(HOSTILE + "\r\n\u2028end")
    assert not any(ord(c) < 32 and c not in "\n" for c in out)
    assert "\u202e" not in out and "\\u001b" in out and "\\u202e" in out and "\\u000d" in out
    original = {"class_name": "\x1b]0;title\x07\u202eevil\x9b2J"}
    assert json.loads(text.terminal_text(json.dumps(original, ensure_ascii=False))) == original


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1", "=1;-0.5"])
def test_spreadsheet_cell_neutralises_formulas(cell):
    safe = text.spreadsheet_cell(cell)
    assert safe == "'" + cell
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe])
    (read,), = csv.reader(io.StringIO(buffer.getvalue()))
    assert read[0] == "'"


@pytest.mark.parametrize("cell", ["-0.5", "-inf", "+1e-3", "model", "", "0.5;0.7", 3.5, None])
def test_spreadsheet_cell_keeps_numbers_and_plain_text(cell):
    assert text.spreadsheet_cell(cell) == cell


def test_spreadsheet_frame_touches_only_text_cells():
    frame = pd.DataFrame({"name": ["=cmd", "ok"], "value": [-1.0, 2.0]})
    out = text.spreadsheet_frame(frame)
    assert out["name"].tolist() == ["'=cmd", "ok"] and out["value"].tolist() == [-1.0, 2.0]
    assert frame["name"].tolist() == ["=cmd", "ok"]   # the input is not changed


@pytest.mark.parametrize("value", [0.1, 0.7123456789012345, 1 / 3, 5e-324, 1.0 - 2 ** -53, float("inf"), -float("inf")])
def test_exact_number_round_trips(value):
    assert float(text.exact_number(value)) == value
