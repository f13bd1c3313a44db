"""The code base's layout rules: the library never parses flags or prints, every deliberate error
derives from one base, the CLI shows those as one line and anything else as a reportable bug."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from cascade_explorer.commands import cli
from cascade_explorer.core import analysis, errors

REPO = Path(__file__).resolve().parents[1]
LIBRARY_DIRS = [REPO / "core", REPO / "dashboard"]


def _modules():
    for folder in LIBRARY_DIRS:
        yield from sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_argparse_and_no_print_outside_the_commands_package(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(alias.name != "argparse" for alias in node.names), f"{path}:{node.lineno} imports argparse"
        if isinstance(node, ast.ImportFrom):
            assert node.module != "argparse", f"{path}:{node.lineno} imports argparse"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print", f"{path}:{node.lineno} prints (output belongs to commands/)"


def test_every_library_exception_derives_from_the_one_base():
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, Exception)]
    assert len(classes) >= 7
    for cls in classes:
        assert issubclass(cls, errors.CascadeExplorerError) and issubclass(cls, ValueError), cls
    # no exception class is defined anywhere else in the library
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and path.name != "errors.py":
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & {"Exception", "ValueError", "RuntimeError"}, f"{path}: class {node.name}"


EVALUATE = ["evaluate", "--models", "mobilenet_v3_small_224,efficientnet_lite0", "--thresholds", "0.5"]


def test_an_injected_bug_reaches_the_user_as_a_traceback(monkeypatch, capsys):
    def broken(self, *args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(analysis.BankAnalysis, "evaluate", broken)
    code = cli.main(EVALUATE)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert "this is a bug in Cascade Explorer" in err and "report" in err


def test_a_plain_value_error_is_a_bug_too(monkeypatch, capsys):
    monkeypatch.setattr(analysis.BankAnalysis, "evaluate", lambda *a, **k: int("not a number"))
    assert cli.main(EVALUATE) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("error", [
    errors.UsageError("thresholds must be numbers"),
    errors.BankError("logits contain NaN", path="/b/x.npy", model="m", split="val", fix="re-export"),
    errors.ConfigError("thresholds", "must be a list"),
    errors.ImageError("photo.jpg: not an image"),
    errors.FetchError("no copy of x.tflite"),
    errors.AdapterError("model spec 'x' has no backend prefix"),
    errors.ModelLoadError("timm is not installed"),
], ids=lambda e: type(e).__name__)
def test_every_library_error_is_one_line_exit_2(monkeypatch, capsys, error):
    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(analysis.BankAnalysis, "evaluate", fail)
    code = cli.main(EVALUATE)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cascade-explorer evaluate: error: ") and "Traceback" not in err
    assert str(error) in err


def test_library_errors_name_parameters_and_the_cli_names_flags(tmp_path):
    from cascade_explorer.core.precompute import check_run_options

    with pytest.raises(errors.UsageError) as info:
        check_run_options("val", 0, None)
    assert str(info.value) == "batch_size must be >= 1, got 0"
    parser = cli.build_parser()
    flags = cli.parameter_flags(parser, "precompute")
    assert cli.user_message(info.value, flags) == "--batch-size must be >= 1, got 0"
    # parameters named differently from their flag, and parameters named inside the text
    error = errors.UsageError("folder /x is a flat folder: give their labels with `labels_file`", parameter="folder")
    assert cli.user_message(error, flags) == "--images /x is a flat folder: give their labels with --labels"
    # a leading word that merely equals an option's name is left alone
    assert cli.user_message(errors.UsageError("split 'val' has 1 model"), flags) == "split 'val' has 1 model"


def test_the_layout_has_the_planned_rooms():
    assert not (REPO / "core" / "cli.py").exists() and not (REPO / "core" / "bench.py").exists()
    for name in ("format.py", "reader.py", "writer.py"):
        assert (REPO / "core" / "bank" / name).is_file()
    for name in cli.COMMANDS.values():
        assert (REPO / "commands" / f"{name}.py").is_file()
