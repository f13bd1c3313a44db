"""The docs match the code (datasette's tests/test_docs.py idea): the README's command tables name
real subcommands and flags, and precomputed/README.md documents exactly the manifest fields the
bank validator checks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cascade_explorer.commands import cli
from cascade_explorer.core import bank
from cascade_explorer.core.bank import format as bank_format

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BANK_README = (REPO / "precomputed" / "README.md").read_text(encoding="utf-8")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append(line)
    return rows


COMMAND_ROWS = [row for row in _table_rows(README, "## Command line") if "`cascade-explorer " in row]


def test_the_command_table_lists_every_subcommand():
    documented = {re.search(r"`cascade-explorer (\w+)", row).group(1) for row in COMMAND_ROWS}
    assert documented == set(_subparsers())


@pytest.mark.parametrize("row", COMMAND_ROWS, ids=lambda r: re.search(r"`cascade-explorer ([^`]*)`", r).group(1)[:50])
def test_every_flag_in_the_command_table_exists(row):
    command_line = re.search(r"`cascade-explorer ([^`]*)`", row).group(1)
    command = command_line.split()[0]
    used = set(re.findall(r"(--[a-z][a-z0-9-]*)", command_line))
    unknown = used - _flags(_subparsers()[command])
    assert not unknown, f"README shows {sorted(unknown)} for `{command}`, which has no such flag"


def test_every_documented_module_command_runs_as_documented():
    """`python -m cascade_explorer.X` lines in the README name modules that exist and have a main()."""
    import importlib

    modules = set(re.findall(r"python -m (cascade_explorer\.[\w.]+)", README))
    assert modules
    for name in modules:
        module = importlib.import_module(name)
        assert callable(getattr(module, "main", None)), f"{name} has no main()"


def _documented_fields() -> set[str]:
    """Field names of the manifest table, expanded (`a.b`, `c` after `a.b` is `a.c`)."""
    fields = set()
    for row in _table_rows(BANK_README, "| field | meaning |"):
        cell = row.split("|")[1]
        prefix = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "." in name:
                prefix, _, leaf = name.rpartition(".")
            else:
                leaf = name
            fields.add(f"{prefix}.{leaf}" if prefix else leaf)
    return fields


def _known_fields() -> set[str]:
    known = set(bank_format.MANIFEST_FIELDS) - {"dataset", "splits", "models"}
    known |= {f"dataset.{f}" for f in bank_format.DATASET_FIELDS}
    known |= {f"splits.<s>.{f}" for f in bank_format.SPLIT_FIELDS}
    known |= {f"models.<id>.{f}" for f in bank_format.MODEL_FIELDS}
    return known


def test_the_manifest_table_documents_exactly_the_fields_the_validator_knows():
    assert _documented_fields() == _known_fields()


# one wrong value per known field: the validator must refuse each (so it really knows them all)
WRONG = {"schema_version": 2, "class_names": "abc", "dataset.name": "", "dataset.description": 3,
         "dataset.licence": 3, "dataset.caveats": "x", "dataset.task": 3,
         "splits.<s>.description": 3, "splits.<s>.image_source": "http://x", "splits.<s>.transform": "blur",
         "splits.<s>.skipped": ["a"], "models.<id>.display_name": "", "models.<id>.backend": 3,
         "models.<id>.source": "x", "models.<id>.spec": 3, "models.<id>.input_size": [0],
         "models.<id>.preprocessing": "x", "models.<id>.gmacs": -1, "models.<id>.params": -1,
         "models.<id>.latency_ms": {"cpu": {"batch_1": -1}}, "models.<id>.top1": {"val": 2.0},
         "unfinished": "import"}


def _manifest() -> dict:
    return {"schema_version": 1, "dataset": {"name": "d"}, "class_names": ["a", "b"],
            "splits": {"val": {"description": "", "image_source": None, "transform": None, "skipped": []}},
            "models": {"m": {"display_name": "M", "backend": "external", "source": {}, "spec": None,
                             "input_size": None, "preprocessing": {}, "gmacs": 1.0, "params": None,
                             "latency_ms": {}, "top1": {"val": 0.5}}}}


def test_the_reference_manifest_is_valid():
    bank.validate_manifest(_manifest(), "manifest.json")


@pytest.mark.parametrize("field", sorted(_known_fields()))
def test_the_validator_checks_every_known_field(field):
    assert field in WRONG, f"add a wrong value for {field} to WRONG"
    manifest = _manifest()
    parts = field.replace("<s>", "val").replace("<id>", "m").split(".")
    target = manifest
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = WRONG[field]
    with pytest.raises(bank.BankError):
        bank.validate_manifest(manifest, "manifest.json")
