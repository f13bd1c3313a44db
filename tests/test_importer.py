"""`cascade-explorer import`: end to end through the CLI, and one clear line per input mistake."""

import json
import warnings

import numpy as np
import pytest

from cascade_explorer.core.bank import Bank
from cascade_explorer.commands.cli import main
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.importer import import_bank, parse_logits_args, read_costs

N = 60


@pytest.fixture
def inputs(tmp_path):
    """An NLP-like task: 2 classes (negative/positive), two models' logits, costs.csv."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N)
    small = rng.normal(size=(N, 2)).astype(np.float32)
    large = rng.normal(size=(N, 2))                      # float64: stored as float32
    large[np.arange(N), labels] += 3.0                   # the large model is mostly right
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "distilbert.npy", small)
    np.save(tmp_path / "roberta-large.npy", large)
    (tmp_path / "costs.csv").write_text("model,gmacs,params,latency_ms\n"
                                        "distilbert,11.2,66000000,4.5\nroberta-large,78.1,355000000,\n")
    (tmp_path / "classes.txt").write_text("negative\npositive\n")
    (tmp_path / "ids.txt").write_text("\n".join(f"sst2-{i}" for i in range(N)) + "\n")
    return tmp_path


def _argv(d, out="bank", extra=(), logits=("distilbert", "roberta-large")):
    argv = ["import", "--labels", str(d / "labels.npy"), "--costs", str(d / "costs.csv"), "--out", str(d / out)]
    for name in logits:
        argv += ["--logits", f"{name}={d / (name + '.npy')}"]
    return argv + list(extra)


def _run_error(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    line = captured.err.strip()
    assert "\n" not in line and "Traceback" not in line and line.startswith("cascade-explorer import: error:")
    return line


def test_cli_import_nlp_bank_end_to_end(inputs, capsys):
    code = main(_argv(inputs, extra=["--class-names", str(inputs / "classes.txt"), "--sample-ids",
                                     str(inputs / "ids.txt"), "--name", "SST-2 dev", "--description",
                                     "sentiment", "--licence", "CC-BY-4.0"]))
    out = capsys.readouterr().out
    assert code == 0 and "imported split 'val': 60 samples x 2 classes, 2 model(s)" in out
    bank = Bank.open(inputs / "bank")
    assert bank.name == "SST-2 dev" and bank.description == "sentiment" and bank.licence == "CC-BY-4.0"
    assert bank.task == "classification"
    assert bank.class_names == ["negative", "positive"]
    assert bank.model_ids == ["distilbert", "roberta-large"]
    assert list(bank.sample_ids("val")[:2]) == ["sst2-0", "sst2-1"]
    labels = np.load(inputs / "labels.npy")
    assert np.array_equal(bank.labels("val"), labels)
    assert np.array_equal(bank.logits("distilbert", "val"), np.load(inputs / "distilbert.npy"))
    large = bank.logits("roberta-large", "val")
    given = np.load(inputs / "roberta-large.npy")     # float64: stored as float32, each row shifted by its max
    assert large.dtype == np.float32 and np.allclose(large, given - given.max(axis=1, keepdims=True), atol=1e-6)
    distil, roberta = bank.model("distilbert"), bank.model("roberta-large")
    assert distil.gmacs == 11.2 and distil.params == 66_000_000 and distil.ms() == 4.5
    assert distil.latency_ms == {"user-supplied": {"batch_1": 4.5}}
    assert roberta.latency_ms == {} and roberta.ms() is None
    assert distil.backend == "external" and distil.source == {"kind": "user"}
    assert roberta.top1["val"] == pytest.approx(float((np.argmax(np.load(inputs / "roberta-large.npy"), 1)
                                                       == labels).mean()))
    assert roberta.top1["val"] > 0.9
    assert bank.image_paths("val") == [""] * N


def test_defaults_class_names_and_sample_ids(inputs):
    bank = import_bank(inputs / "labels.npy", {"distilbert": inputs / "distilbert.npy",
                                               "roberta-large": inputs / "roberta-large.npy"},
                       inputs / "costs.csv", inputs / "bank")
    assert bank.class_names == ["class_0", "class_1"]
    assert list(bank.sample_ids("val")[:3]) == ["0", "1", "2"]
    assert bank.name == "bank" and bank.licence == "unknown"


def test_import_second_split_and_force(inputs, capsys):
    assert main(_argv(inputs)) == 0
    rng = np.random.default_rng(1)
    np.save(inputs / "labels.npy", rng.integers(0, 2, 30))
    np.save(inputs / "distilbert.npy", rng.normal(size=(30, 2)).astype(np.float32))
    np.save(inputs / "roberta-large.npy", rng.normal(size=(30, 2)).astype(np.float32))
    assert main(_argv(inputs, extra=["--split", "test"])) == 0
    bank = Bank.open(inputs / "bank")
    assert bank.splits == ["val", "test"] and bank.n_samples("test") == 30 and bank.n_samples("val") == N
    # the same import again finishes without changing anything (a re-run of an interrupted import)
    before = {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()}
    assert main(_argv(inputs, extra=["--split", "test"])) == 0
    assert {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()} == before
    # other logits for the same model x split: refused without --force, replaced with it
    np.save(inputs / "distilbert.npy", np.zeros((30, 2), dtype=np.float32))
    line = _run_error(_argv(inputs, extra=["--split", "test"]), capsys)
    assert "--force" in line
    assert main(_argv(inputs, extra=["--split", "test", "--force"])) == 0
    assert not Bank.open(inputs / "bank").logits("distilbert", "test").any()


def test_adding_one_model_leaves_a_note_about_incompleteness(inputs, capsys):
    assert main(_argv(inputs)) == 0
    capsys.readouterr()
    np.save(inputs / "bert.npy", np.random.default_rng(3).normal(size=(N, 2)).astype(np.float32))
    (inputs / "costs.csv").write_text("model,gmacs\nbert,22\n")
    assert main(_argv(inputs, logits=("bert",))) == 0
    assert Bank.open(inputs / "bank").model_ids == ["distilbert", "bert", "roberta-large"]
    # a second split without bert: the bank is incomplete, and the import says so
    capsys.readouterr()
    (inputs / "costs.csv").write_text("model,gmacs\ndistilbert,11.2\nroberta-large,78.1\n")
    assert main(_argv(inputs, extra=["--split", "test"])) == 0
    assert "note: the bank is incomplete (no logits for bert@test)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="allow_incomplete"):
        Bank.open(inputs / "bank")
    assert Bank.open(inputs / "bank", allow_incomplete=True).models_for("test") == ["distilbert", "roberta-large"]


def test_costs_change_needs_force(inputs, capsys):
    assert main(_argv(inputs)) == 0
    (inputs / "costs.csv").write_text("model,gmacs\ndistilbert,12\nroberta-large,78.1\n")
    line = _run_error(_argv(inputs, extra=["--split", "other"]), capsys)
    assert "gmacs" in line and "--force" in line


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: (d / "labels.npy").unlink(), "--labels"),
    (lambda d: (d / "distilbert.npy").unlink(), "--logits distilbert="),
    (lambda d: (d / "costs.csv").unlink(), "--costs"),
    (lambda d: np.save(d / "labels.npy", np.zeros(N + 1, dtype=np.int64)), "N mismatch"),
    (lambda d: np.save(d / "distilbert.npy", np.zeros((N, 3), dtype=np.float32)), "C mismatch"),
    (lambda d: np.save(d / "distilbert.npy", np.zeros(N, dtype=np.float32)), "shape (N, C)"),
    (lambda d: np.save(d / "distilbert.npy", np.zeros((N, 2), dtype=np.int64)), "dtype int64"),
    (lambda d: np.save(d / "labels.npy", np.full(N, 2)), "labels must be in 0..1"),
    (lambda d: np.save(d / "labels.npy", np.zeros(N, dtype=np.float32)), "integer class indices"),
    (lambda d: np.save(d / "labels.npy", np.zeros(N, dtype=object), allow_pickle=True), "Python objects"),
    (lambda d: (d / "labels.npy").write_text("0\n1\n"), "--labels"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,1\n"), "roberta-large given in --logits"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,1\nroberta-large,2\nbert,3\n"),
     "bert have costs but no --logits"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,fast\nroberta-large,2\n"), "not a number"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,-1\nroberta-large,2\n"), ">= 0"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,\nroberta-large,2\n"), "missing"),
    (lambda d: (d / "costs.csv").write_text("model,cost\ndistilbert,1\n"), "'model' and 'gmacs'"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs,flops\ndistilbert,1,2\n"), "unknown column"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs\ndistilbert,1\ndistilbert,2\n"), "listed twice"),
    (lambda d: (d / "costs.csv").write_text("model,gmacs,params\ndistilbert,1,1.5\nroberta-large,2,\n"),
     "whole number"),
], ids=["no-labels", "no-logits", "no-costs", "n-mismatch", "c-mismatch", "1d-logits", "int-logits",
        "label-range", "float-labels", "pickled-labels", "text-labels", "model-without-cost",
        "cost-without-model", "gmacs-nan", "gmacs-negative", "gmacs-empty", "costs-header", "costs-unknown-col",
        "costs-duplicate", "params-fraction"])
def test_input_errors_exit_2_with_one_line_and_write_nothing(inputs, capsys, mutate, expected):
    mutate(inputs)
    line = _run_error(_argv(inputs), capsys)
    assert expected in line, line
    assert not (inputs / "bank").exists()


def test_nan_logits_rejected_before_writing(inputs, capsys):
    logits = np.load(inputs / "roberta-large.npy")
    logits[9, 1] = np.nan
    np.save(inputs / "roberta-large.npy", logits)
    line = _run_error(_argv(inputs), capsys)
    assert "--logits roberta-large=" in line and "row 9" in line
    assert not (inputs / "bank").exists()


def test_malformed_logits_argument(inputs, capsys):
    line = _run_error(_argv(inputs, logits=()) + ["--logits", str(inputs / "distilbert.npy")], capsys)
    assert "NAME=PATH" in line
    line = _run_error(_argv(inputs, logits=("distilbert", "distilbert")), capsys)
    assert "given twice" in line
    line = _run_error(_argv(inputs, logits=()) + ["--logits", "a/b=" + str(inputs / "distilbert.npy")], capsys)
    assert "model name" in line


def test_class_names_and_sample_ids_files_checked(inputs, capsys):
    (inputs / "classes.txt").write_text("negative\npositive\nneutral\n")
    line = _run_error(_argv(inputs, extra=["--class-names", str(inputs / "classes.txt")]), capsys)
    assert "--class-names" in line and "3 class names" in line
    (inputs / "ids.txt").write_text("a\n" * N)
    line = _run_error(_argv(inputs, extra=["--sample-ids", str(inputs / "ids.txt")]), capsys)
    assert "--sample-ids" in line and "duplicate" in line
    line = _run_error(_argv(inputs, extra=["--sample-ids", str(inputs / "missing.txt")]), capsys)
    assert "--sample-ids" in line and "not found" in line
    line = _run_error(_argv(inputs, extra=["--split", "bad/split"]), capsys)
    assert "--split" in line


def test_existing_bank_with_other_classes_is_a_clear_error(inputs, capsys):
    assert main(_argv(inputs)) == 0
    line = _run_error(_argv(inputs, extra=["--class-names", str(inputs / "classes.txt"), "--split", "x"]), capsys)
    assert "different class names" in line and "--out" in line


def test_existing_split_with_other_samples_is_an_error(inputs, capsys):
    assert main(_argv(inputs)) == 0
    np.save(inputs / "labels.npy", 1 - np.load(inputs / "labels.npy"))
    line = _run_error(_argv(inputs, extra=["--force"]), capsys)
    assert "--split val" in line and "different samples" in line


def test_out_is_a_non_bank_folder(inputs, capsys):
    (inputs / "bank").mkdir()
    (inputs / "bank" / "notes.txt").write_text("x")
    line = _run_error(_argv(inputs), capsys)
    assert "--out" in line and "not a bank" in line


def test_broken_existing_bank_is_reported(inputs, capsys):
    assert main(_argv(inputs)) == 0
    (inputs / "bank" / "manifest.json").write_text("{broken")
    line = _run_error(_argv(inputs, extra=["--split", "x"]), capsys)
    assert "--out" in line and "line 1, column 2" in line


def test_helpers():
    assert parse_logits_args(["a=x.npy", " b = y.npy "]) == {"a": __import__("pathlib").Path("x.npy"),
                                                           "b": __import__("pathlib").Path("y.npy")}
    with pytest.raises(UsageError):
        parse_logits_args([])


def test_read_costs_accepts_bom_and_blank_lines(tmp_path):
    (tmp_path / "c.csv").write_bytes("\ufeffmodel,gmacs,display_name\na,1.5,Model A\n\n".encode())
    assert read_costs(tmp_path / "c.csv") == {"a": {"gmacs": 1.5, "params": None, "latency_ms": None,
                                                    "display_name": "Model A"}}


def test_manifest_is_plain_json(inputs):
    assert main(_argv(inputs)) == 0
    manifest = json.loads((inputs / "bank" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and set(manifest["models"]) == {"distilbert", "roberta-large"}


# ------------------------------------------------------------------ audit: paths, costs rows, ranges

@pytest.mark.parametrize("option", ["--labels", "--logits", "--costs", "--class-names", "--sample-ids"])
def test_a_folder_given_for_a_file_says_so(inputs, capsys, option):
    folder = inputs / "adir"
    folder.mkdir()
    argv = _argv(inputs)
    if option == "--logits":
        argv[argv.index(f"distilbert={inputs / 'distilbert.npy'}")] = f"distilbert={folder}"
    elif option in ("--labels", "--costs"):
        argv[argv.index(option) + 1] = str(folder)
    else:
        argv += [option, str(folder)]
    line = _run_error(argv, capsys)
    assert "is a folder, expected a file" in line and option in line, line
    assert not (inputs / "bank").exists()


def test_too_long_a_path_is_one_line(inputs, capsys):
    line = _run_error(_argv(inputs, extra=["--sample-ids", str(inputs / ("x" * 300))]), capsys)
    assert "--sample-ids" in line and "too long" in line.lower()


def test_costs_row_with_extra_field_is_a_decimal_comma_error(inputs, capsys):
    (inputs / "costs.csv").write_text("model,gmacs\ndistilbert,0,1\nroberta-large,2\n")
    line = _run_error(_argv(inputs), capsys)
    assert f"--costs {inputs / 'costs.csv'}: line 2 has 3 fields, the header has 2" in line
    assert "decimal comma? use '.'" in line
    assert not (inputs / "bank").exists()


def test_costs_row_too_short_for_required_columns(tmp_path):
    (tmp_path / "c.csv").write_text("model,params,gmacs\na,5,1\nb,5\n")
    with pytest.raises(UsageError, match=r"c.csv: line 3 has 2 field\(s\), the header has 3"):
        read_costs(tmp_path / "c.csv")
    # optional trailing columns may be left out
    (tmp_path / "c.csv").write_text("model,gmacs,params\na,1\n")
    assert read_costs(tmp_path / "c.csv")["a"]["gmacs"] == 1.0


def test_logits_beyond_float32_range_are_stored_shifted_not_refused(inputs, capsys):
    # Values past float32's range are fine once each row's maximum is subtracted (every criterion
    # ignores a per-row shift); the old code refused them (or, before that, stored inf).
    big = np.load(inputs / "roberta-large.npy")
    big[5] = [1e40, 3.0]
    big[6] = [2.0, -1e40]
    np.save(inputs / "roberta-large.npy", big)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no numpy overflow RuntimeWarning
        assert main(_argv(inputs)) == 0
    stored = np.asarray(Bank.open(inputs / "bank").logits("roberta-large", "val"))
    assert np.isfinite(stored).all() and stored.dtype == np.float32
    assert np.array_equal(stored.argmax(axis=1), big.argmax(axis=1))
    assert stored[5, 0] == 0 and stored[5, 1] == -np.finfo(np.float32).max
    assert np.allclose(stored[7:], (big - big.max(axis=1, keepdims=True))[7:], atol=1e-6)


def test_differences_below_float32_resolution_are_refused_and_leave_an_existing_bank_unchanged(inputs, capsys):
    assert main(_argv(inputs)) == 0
    before = {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()}
    rng = np.random.default_rng(2)
    np.save(inputs / "labels.npy", rng.integers(0, 2, 10))
    np.save(inputs / "distilbert.npy", rng.normal(size=(10, 2)).astype(np.float32))
    tiny = rng.normal(size=(10, 2))
    tiny[4] = [0.0, 1e-50]     # class 1 wins by 1e-50: float32 cannot tell the two apart even shifted
    np.save(inputs / "roberta-large.npy", tiny)
    line = _run_error(_argv(inputs, extra=["--split", "test"]), capsys)
    assert "--logits roberta-large=" in line and "float32" in line and "row 4" in line, line
    assert {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()} == before


def test_a_failed_write_removes_a_new_bank_and_restores_an_old_one(inputs, capsys, monkeypatch):
    from cascade_explorer.core.bank import BankWriter

    real = BankWriter.add_logits

    def fails_on_second(self, model_id, split, logits, **kwargs):
        if model_id == "roberta-large":
            raise OSError(28, "No space left on device")
        return real(self, model_id, split, logits, **kwargs)

    monkeypatch.setattr(BankWriter, "add_logits", fails_on_second)
    with pytest.raises(OSError):
        import_bank(inputs / "labels.npy", {"distilbert": inputs / "distilbert.npy",
                                            "roberta-large": inputs / "roberta-large.npy"},
                    inputs / "costs.csv", inputs / "bank")
    assert not (inputs / "bank").exists()
    monkeypatch.setattr(BankWriter, "add_logits", real)
    assert main(_argv(inputs)) == 0
    before = {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()}
    monkeypatch.setattr(BankWriter, "add_logits", fails_on_second)
    with pytest.raises(OSError):
        import_bank(inputs / "labels.npy", {"distilbert": inputs / "distilbert.npy",
                                            "roberta-large": inputs / "roberta-large.npy"},
                    inputs / "costs.csv", inputs / "bank", split="test")
    assert {p: p.read_bytes() for p in (inputs / "bank").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (inputs / "bank" / "splits").iterdir()) == ["val"]


def test_empty_name_names_the_option(inputs, capsys):
    line = _run_error(_argv(inputs, extra=["--name", ""]), capsys)
    assert "--name: must not be empty" in line and "manifest.json" not in line
    assert not (inputs / "bank").exists()
