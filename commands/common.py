"""What several commands share: argparse value types, the cascade options, output helpers."""

from __future__ import annotations

import argparse
import sys

from cascade_explorer.core.criteria import CRITERIA


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def csv_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def float_list(text: str) -> list[float]:
    try:
        return [float(item) for item in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def int_at_least(minimum: int):
    """argparse type: an integer >= minimum (named in the error, e.g. 'expected an integer >= 0, got -1')."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {value}")
    return value


def add_cascade_args(parser: argparse.ArgumentParser, *, models_required: bool) -> None:
    """--bank --models --criterion --thresholds --temperature --ensemble (evaluate, predict)."""
    parser.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    parser.add_argument("--models", type=csv_list, required=models_required,
                        help="comma-separated model ids, cheapest first, e.g. M1,M2[,M3]")
    add_criterion_arg(parser)
    parser.add_argument("--thresholds", type=float_list,
                        help="one threshold per non-final stage, comma-separated")
    parser.add_argument("--temperature", choices=["none", "fit"], default="none",
                        help="per-model temperature scaling: none, or fitted by NLL on the calibration part")
    parser.add_argument("--ensemble", action="store_true",
                        help="stage i decides on the mean softmax of stages 1..i")


def add_criterion_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--criterion", default="max_softmax", choices=list(CRITERIA),
                        help="confidence criterion (higher = more confident)")


def say(text: str = "", *, err: bool = False, end: str = "\n", flush: bool = False) -> None:
    """Print a line of the command's output (stdout, or stderr with err=True): the one way commands
    write text. Control, bidi and zero-width characters (from bank, config or file names) are written
    as visible \\uXXXX escapes (core.text.terminal_text), so output cannot drive the terminal; the
    escape is valid JSON too, so --json output still parses to the original strings."""
    from cascade_explorer.core.text import terminal_text

    print(terminal_text(text), end=end, file=sys.stderr if err else sys.stdout, flush=flush)
