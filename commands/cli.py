"""`cascade-explorer` command line: subcommands mirror the library (datasette style).

Each subcommand lives in its own module here (`add_parser` + `run`); the work is the library's.
A `CascadeExplorerError` (a mistake the user can fix) prints as one line naming the flag, exit 2;
anything else is a bug: its traceback is printed with a request to report it, exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback
from collections.abc import Sequence

from cascade_explorer.core.errors import CascadeExplorerError

from .common import Parser, say

# subcommand -> module of this package (each has add_parser(subparsers) and run(args))
COMMANDS = {
    "import": "import_bank",
    "evaluate": "evaluate",
    "pareto": "pareto",
    "bench": "bench",
    "precompute": "precompute",
    "predict": "predict",
    "dashboard": "dashboard",
    "cache": "cache",
}


def _module(command: str):
    return importlib.import_module(f".{COMMANDS[command]}", __package__)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cascade-explorer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        _module(command).add_parser(sub)
    return parser


def _version() -> str:
    from cascade_explorer.core import __version__

    return f"cascade-explorer {__version__}"


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--thresholds -inf` / `--thresholds -0.5,1` -> `--thresholds=...`: argparse would read
    a value starting with '-' (other than a plain negative number) as an option name."""
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--thresholds" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            joined.append(f"--thresholds={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def parameter_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Library parameter name -> flag of `command`: each option's dest (`batch_size` -> `--batch-size`),
    plus the command module's own FLAGS for parameters named differently (`labels_path` -> `--labels`)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {action.dest: action.option_strings[-1] for action in subparsers.choices[command]._actions
             if action.option_strings and action.dest not in ("help",)}
    flags.update(getattr(_module(command), "FLAGS", {}))
    return flags


def user_message(error: CascadeExplorerError, flags: dict[str, str]) -> str:
    """The error's message with a leading library parameter name written as the command's flag.

    Library messages start with the parameter they are about (`batch_size must be >= 1`,
    `split: unknown split`) and name other parameters in backticks (`` `force=True` ``); only those
    are rewritten, never plain words of the text."""
    message = str(error)
    for name in sorted(flags, key=len, reverse=True):
        leading = re.match(rf"{re.escape(name)}(?=:|\[|=| must\b)", message)
        if leading or (name == error.parameter and message.startswith(name)):
            message = flags[name] + message[len(name):]
            break
    # other parameters named inside the text, in backticks: `labels_path`, `force=True`
    return re.sub(r"`([A-Za-z_][\w\[\]']*)(=True)?`", lambda m: flags.get(m.group(1), m.group(0)), message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    prefix = f"cascade-explorer {args.command}"
    try:
        return int(_module(args.command).run(args) or 0)
    except CascadeExplorerError as error:
        say(f"{prefix}: error: {user_message(error, parameter_flags(parser, args.command))}", err=True)
        return 2
    except ModuleNotFoundError as error:
        say(f"{prefix}: error: missing optional dependency {error.name!r}: "
            f"pip install 'cascade-explorer[test]' installs every backend", err=True)
        return 2
    except BrokenPipeError:
        # `cascade-explorer pareto --csv | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # a path the user gave that the system refuses (a file used as a folder, a name too long,
        # a full disk): one line naming the path, not a traceback
        where = f"{error.filename}: " if error.filename else ""
        say(f"{prefix}: error: {where}{error.strerror or error}", err=True)
        return 2
    except KeyboardInterrupt:
        say(f"{prefix}: interrupted (finished work is kept)", err=True)
        return 130
    except Exception:   # noqa: BLE001 - a bug: show it in full and ask for a report
        traceback.print_exc()
        say(f"{prefix}: internal error: this is a bug in Cascade Explorer, not in your input; please report "
            "it to the project's issue tracker with the command line and the traceback above", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
