"""Text from banks, configs and URLs made safe to show: one set of pure functions for every display.

A bank is data someone else wrote. Its dataset description, caveats, class names, model names and
ids, split names (and URL parameter values echoed back) must reach the reader as the characters they
are, never as markup, terminal commands or spreadsheet formulas:

- ``plain_text``: bidi overrides and zero-width characters removed (they make text read differently
  from what it is: "Trojan Source", CVE-2021-42574), other control characters replaced by U+FFFD,
  length capped (a 100 MB caveat freezes the browser tab); ``split_text`` gives the rest on request.
- ``markdown_text``: plain text with every ASCII punctuation character backslash-escaped, so
  Streamlit's Markdown (st.markdown, st.caption, st.error, st.toast, metric and widget labels,
  tooltips) shows it literally: no image fetched from another host, no link, no ``:red[...]``
  directive, no LaTeX (CommonMark: any ASCII punctuation may be backslash-escaped).
- ``html_text``: plain text with ``& < >`` escaped, for Plotly labels, legends and hover text
  (Plotly renders a subset of HTML there, ``<a href>`` included).
- ``terminal_text``: every control, bidi and zero-width character written as a visible ``\\uXXXX``
  escape, so command output cannot move the cursor, clear the screen, set the window title or write
  the clipboard (OSC 52) of the terminal it is printed on. The escape is also valid inside a JSON
  string, so JSON output stays parseable.
- ``spreadsheet_cell``: a CSV cell that a spreadsheet would run as a formula (OWASP "CSV
  injection": a text cell starting with ``= + - @``, tab or CR) gets a leading ``'``.
"""

from __future__ import annotations

import html
import re

# Bidi embeddings/overrides/isolates and marks, zero-width and invisible joiners/separators, BOM.
BIDI_AND_INVISIBLE = frozenset(
    "\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_STRIP = {ord(c): None for c in BIDI_AND_INVISIBLE}
# C0 controls except tab and newline, DEL, C1 controls (U+009B is a one-byte CSI on some terminals),
# and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
                              + "".join(sorted(BIDI_AND_INVISIBLE)) + "]")
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")   # every ASCII punctuation character
_WHITESPACE_RUN = re.compile(r"\s+")
# GitHub-flavoured Markdown turns bare "http://...", "www.x" and "a@b.c" into links after escapes are
# resolved (remark-gfm works on the parsed text), so escaping alone cannot stop it: a WORD JOINER
# (U+2060, invisible, no line break) between a word and ':' / '@' / "www" and '.' breaks the pattern.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(?=[:@])|(?<=www)(?=\.)")
WORD_JOINER = "\u2060"

#: Default cap of characters shown inline (a caveat or description longer than this is cut).
DISPLAY_MAX_CHARS = 2000
#: Cap for text shown on request (an expander): beyond this the page says how much was left out.
EXPANDED_MAX_CHARS = 100_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _check_max(max_chars) -> int | None:
    if max_chars is None:
        return None
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        from .errors import UsageError

        raise UsageError(f"max_chars must be an integer >= 1 or None, got {max_chars!r}")
    return max_chars


def _clean(value) -> str:
    """str(value) without bidi/zero-width characters, other controls as U+FFFD (tab, newline kept)."""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub("\ufffd", text.translate(_STRIP))


def split_text(value, max_chars: int | None = DISPLAY_MAX_CHARS) -> tuple[str, str]:
    """(head, rest) of ``plain_text`` of value: head at most ``max_chars`` characters (cut at the
    last space in its final tenth when there is one), rest what follows ('' when all fits).
    UsageError for a max_chars that is not an integer >= 1 (None: no cap)."""
    max_chars = _check_max(max_chars)
    text = _clean(value)
    if max_chars is None or len(text) <= max_chars:
        return text, ""
    cut = text.rfind(" ", max_chars - max_chars // 10, max_chars)
    cut = cut if cut > 0 else max_chars
    return text[:cut], text[cut:]


def plain_text(value, max_chars: int | None = DISPLAY_MAX_CHARS) -> str:
    """Text for display as plain characters: value as str, bidi-override and zero-width characters
    removed, other control characters (except tab and newline) replaced by U+FFFD, and at most
    ``max_chars`` characters, a cut marked "… (N more characters)". Pure; None gives ''."""
    if value is None:
        return ""
    head, rest = split_text(value, max_chars)
    return head + (f"… ({len(rest):,} more characters)" if rest else "")


def one_line(value, max_chars: int | None = DISPLAY_MAX_CHARS) -> str:
    """``plain_text`` with every run of whitespace (newlines, tabs) as one space: names in a line."""
    return plain_text(_WHITESPACE_RUN.sub(" ", _clean("" if value is None else value)), max_chars)


def markdown_text(value, max_chars: int | None = DISPLAY_MAX_CHARS) -> str:
    """``one_line`` text escaped for Markdown: every ASCII punctuation character backslash-escaped,
    so Streamlit shows it literally (no links, images, emphasis, directives, LaTeX, HTML), and an
    invisible WORD JOINER before ':' / '@' after a letter or digit (and in "www.") so GFM finds no
    bare URL or e-mail address to turn into a link."""
    joined = _AUTOLINK.sub(WORD_JOINER, one_line(value, max_chars))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", joined)


def html_text(value, max_chars: int | None = DISPLAY_MAX_CHARS) -> str:
    """``one_line`` text escaped for Plotly's HTML subset (labels, legend names, hover text)."""
    return html.escape(one_line(value, max_chars), quote=False)


def terminal_text(value) -> str:
    """Text safe to print on a terminal: each control character other than tab and newline, each
    bidi and zero-width character written as a visible ``\\uXXXX`` escape. Not length-capped
    (output may be piped into a file)."""
    text = value if isinstance(value, str) else str(value)
    return _TERMINAL_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def spreadsheet_cell(value):
    """A CSV cell a spreadsheet will not run as a formula: a text cell starting with ``= + - @``,
    tab or CR gets a leading ``'`` (OWASP CSV injection advice), unless the whole cell is a number
    (``-0.5``, ``-inf``) which spreadsheets read as a number. Other values are returned unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value



def exact_number(value) -> str:
    """A float as the shortest text that reads back as the same float (Python's repr: '0.7123456789',
    'inf', '-inf'): thresholds a user may copy into a command or a URL must give the same result."""
    return repr(float(value))


def spreadsheet_frame(frame):
    """A copy of a pandas DataFrame with every text cell through ``spreadsheet_cell`` (for to_csv)."""
    from pandas.api.types import is_numeric_dtype

    out = frame.copy()
    for column in out.columns:
        if not is_numeric_dtype(out[column]):   # object or pandas' string dtype: text cells
            out[column] = out[column].map(spreadsheet_cell)
    return out
