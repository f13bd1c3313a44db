"""Issue 12, the bank / file / import side: special files, interrupted and concurrent writers,
deleting only our own files, lossless import, probabilities given as logits, and the cheap Low items.

Every test here failed on the code before the fix (named in each docstring). Commands that hung on
the old code run in a subprocess with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import atomic
from cascade_explorer.core.bank import Bank, BankError, BankWriter, check_id, load_manifest, logits_path
from cascade_explorer.core.bank import remove_leftover_temp_files, validate_manifest
from cascade_explorer.core.errors import (ConfigError, LockedError, UsageError, require_file, special_file_kind,
                                          special_file_problem)

SHARED = Path(os.environ.get("CASCADE_EXPLORER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CASES = SHARED / "cases"
N, C = 40, 3
HANG_S = 60   # far above any of these commands' run time; only a hang reaches it


# ----------------------------------------------------------------------------- helpers

def _cli(*args, timeout=HANG_S, env=None):
    """The real CLI in a subprocess; a hang fails the test instead of blocking the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "cascade_explorer.commands.cli", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cascade-explorer {' '.join(map(str, args))} hung for {timeout} s")


def _python(code: str, timeout=HANG_S):
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s:\n{code}")


def _one_error_line(result, command="import") -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and line.startswith(f"cascade-explorer {command}: error:")
    return line


def _bank(path: Path, models=("small", "big")) -> Path:
    rng = np.random.default_rng(0)
    with BankWriter(path, create={"dataset": {"name": "t"}, "class_names": ["a", "b", "c"]}) as writer:
        writer.add_split("val", [f"s{i}" for i in range(N)], [""] * N, rng.integers(0, C, N))
        for k, model in enumerate(models):
            writer.add_model(model, display_name=model, backend="external", source={"kind": "user"}, gmacs=k + 1.0)
            writer.add_logits(model, "val", rng.normal(size=(N, C)).astype(np.float32))
    return path


@pytest.fixture
def inputs(tmp_path):
    """Two models' logits, labels and costs, as a user exports them."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "labels.npy", rng.integers(0, C, N))
    for name in ("small", "big"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(N, C)).astype(np.float32))
    (tmp_path / "costs.csv").write_text("model,gmacs\nsmall,0.1\nbig,1.0\n")
    return tmp_path


def _import_args(d: Path, out: Path, models=("small", "big")) -> list:
    args = ["import", "--labels", d / "labels.npy", "--costs", d / "costs.csv", "--out", out]
    for name in models:
        args += ["--logits", f"{name}={d / (name + '.npy')}"]
    return args


# ----------------------------------------------------------------------------- special files

def test_special_file_kind_names_each_kind_without_opening(tmp_path):
    """New reusable check (stat only). The old code had none: require_file accepted a FIFO."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        assert special_file_kind(fifo) == "a named pipe (FIFO)"
        assert special_file_kind(sock_path) == "a socket"
        assert special_file_kind("/dev/null") == "a character device"
        regular = tmp_path / "f.txt"
        regular.write_text("x")
        assert special_file_kind(regular) is None and special_file_kind(tmp_path) is None
        assert special_file_kind(tmp_path / "missing") is None
        assert "not a regular file" in special_file_problem(fifo)
        # require_file (used for every user-given input file) refuses it, naming the parameter
        with pytest.raises(UsageError, match=r"^labels_path .*pipe: is a named pipe \(FIFO\), not a regular file"):
            require_file(fifo, "labels_path")
        with pytest.raises(UsageError, match="character device"):
            require_file("/dev/zero", "costs_csv")
    finally:
        sock.close()


@pytest.mark.parametrize("which", ["manifest", "samples", "labels", "logits"])
def test_a_fifo_in_place_of_a_bank_file_is_refused_not_waited_on(tmp_path, which):
    """Old code: Bank.open hung on a FIFO logits/labels file (and called a FIFO manifest 'missing')."""
    bank = _bank(tmp_path / "bank")
    target = {"manifest": bank / "manifest.json", "samples": bank / "splits" / "val" / "samples.csv",
              "labels": bank / "splits" / "val" / "labels.npy",
              "logits": logits_path(bank, "big", "val")}[which]
    target.unlink()
    os.mkfifo(target)
    result = _python(f"""
        from cascade_explorer.core.bank import Bank, BankError
        try:
            Bank.open({str(bank)!r})
        except BankError as error:
            print(error)
    """)
    assert result.returncode == 0, result.stderr
    assert "named pipe (FIFO)" in result.stdout and target.name in result.stdout, result.stdout
    # and the commands say so in one line (evaluate hung here)
    line = _one_error_line(_cli("evaluate", "--bank", bank, "--models", "small,big", "--thresholds", "0.5"),
                           "evaluate")
    assert "named pipe" in line and target.name in line


@pytest.mark.parametrize("option", ["--labels", "--logits", "--costs", "--class-names", "--sample-ids"])
def test_import_refuses_a_fifo_input_in_one_line(inputs, option):
    """Old code: `import` hung reading a FIFO given for any of its input files."""
    fifo = inputs / "pipe"
    os.mkfifo(fifo)
    args = _import_args(inputs, inputs / "bank")
    if option == "--logits":
        args[args.index(f"big={inputs / 'big.npy'}")] = f"big={fifo}"
    elif option in ("--labels", "--costs"):
        args[args.index(option) + 1] = fifo
    else:
        args += [option, fifo]
    line = _one_error_line(_cli(*args))
    assert option in line and "named pipe (FIFO)" in line, line
    assert not (inputs / "bank").exists()


def test_precompute_label_file_and_config_fifo_are_refused(tmp_path):
    """Old code: read_label_file hung on a FIFO; CascadeConfig.load called a FIFO 'not found'."""
    fifo = tmp_path / "labels.txt"
    os.mkfifo(fifo)
    result = _python(f"""
        from pathlib import Path
        from cascade_explorer.core.precompute import read_label_file
        from cascade_explorer.core.errors import UsageError
        try:
            read_label_file(Path({str(fifo)!r}))
        except UsageError as error:
            print(error)
    """)
    assert "named pipe (FIFO)" in result.stdout, (result.stdout, result.stderr)
    from cascade_explorer.core.config import CascadeConfig

    with pytest.raises(ConfigError, match="named pipe"):
        CascadeConfig.load(fifo)


# ----------------------------------------------------------------------------- writers: lock, kill, re-run

_SLOW_IMPORT = """
import sys, time
from cascade_explorer.core.bank import writer
real = writer.BankWriter.add_logits
def slow(self, model_id, split, logits, **kwargs):
    time.sleep({delay})          # a big model's write takes a while; the real write follows
    return real(self, model_id, split, logits, **kwargs)
writer.BankWriter.add_logits = slow
from cascade_explorer.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _slow_import(args, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT.format(delay=delay), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_for(predicate, process, timeout=HANG_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail(f"process ended early: {process.stderr.read()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("condition not reached")


def test_two_concurrent_imports_into_one_out_keep_both_models(inputs):
    """Old code: the slower import rewrote manifest.json from its stale copy; the other one's model
    was lost although both reported success."""
    out = inputs / "bank"
    args = {}
    for name, gmacs in (("small", 0.1), ("big", 1.0)):
        (inputs / f"costs_{name}.csv").write_text(f"model,gmacs\n{name},{gmacs}\n")
        args[name] = _import_args(inputs, out, models=(name,))
        args[name][args[name].index("--costs") + 1] = inputs / f"costs_{name}.csv"
    first = _slow_import(args["small"], delay=3.0)
    try:
        _wait_for(lambda: "small" in _manifest(out).get("models", {}), first)   # first is mid-write
        second = _cli(*args["big"])                # a second real process, while the first holds the bank
        assert second.returncode == 0, second.stderr
    finally:
        first_out, first_err = first.communicate(timeout=HANG_S)
    assert first.returncode == 0, first_err
    bank = Bank.open(out)                          # complete: both imports finished
    assert bank.model_ids == ["small", "big"]
    labels = np.load(inputs / "labels.npy")
    for name in ("small", "big"):                  # independent reference: top-1 from the given arrays
        assert bank.model(name).top1["val"] == pytest.approx(float((np.load(inputs / f"{name}.npy").argmax(1)
                                                                     == labels).mean()))


def test_another_writer_holding_the_lock_gives_a_clear_error(tmp_path):
    """Old code: no lock at all (and no lock_timeout): two writers interleaved silently."""
    bank = _bank(tmp_path / "bank")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from cascade_explorer.core.bank import bank_lock
        with bank_lock({str(bank)!r}):            # a writer in the middle of an import
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with pytest.raises(LockedError, match="another process is writing this bank") as info:
            BankWriter(bank, lock_timeout=0.5)
        assert time.perf_counter() - started < 10 and "wait for that import or precompute" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    BankWriter(bank, lock_timeout=5).set_latency("big", "cpu", {"batch_1": 1.0})   # the OS released the lock


def test_kill_9_during_a_multi_model_import_leaves_an_incomplete_bank_and_a_rerun_finishes(inputs):
    """Old code: the killed import left a bank that opened as complete with one model, and the
    re-run failed ('already has logits ... --force'; with --force, on the leftover temp file)."""
    out = inputs / "bank"
    args = _import_args(inputs, out)
    process = _slow_import(args, delay=2.0)
    _wait_for(lambda: "val" in _manifest(out).get("models", {}).get("small", {}).get("top1", {}), process)
    process.send_signal(signal.SIGKILL)            # a real kill -9, between the two models' writes
    process.wait(timeout=HANG_S)
    with pytest.raises(BankError, match="did not finish") as info:
        Bank.open(out)
    assert "run the same import again" in str(info.value)
    # a temp file exactly as a write killed inside atomic.py leaves it
    leftover = out / "splits" / "val" / "logits" / ".big.npy.tmp-k1ll3d00"
    leftover.write_bytes(b"\x93NUMPY partial")
    result = _cli(*args)                           # the same command, no --force
    assert result.returncode == 0, result.stderr
    assert not leftover.exists()
    bank = Bank.open(out)
    assert bank.model_ids == ["small", "big"] and bank.unfinished is None
    assert np.array_equal(bank.logits("big", "val"), np.load(inputs / "big.npy"))
    # and with --force after another kill: also finishes
    process = _slow_import(args + ["--force"], delay=2.0)
    _wait_for(lambda: "unfinished" in _manifest(out), process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=HANG_S)
    with pytest.raises(BankError, match="did not finish"):
        Bank.open(out)
    leftover.write_bytes(b"\x93NUMPY partial")
    assert _cli(*args, "--force").returncode == 0
    assert Bank.open(out).model_ids == ["small", "big"]


# ----------------------------------------------------------------------------- deleting only our files

def test_writers_never_delete_a_users_hidden_tmp_files(tmp_path):
    """Old code: remove_leftover_temp_files deleted every '.*.tmp-*' file anywhere below a folder,
    bank or not, before the writer refused the folder."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    theirs = [folder / ".draft.txt.tmp-abcdefgh", folder / "sub" / ".notes.md.tmp-12345678",
              folder / ".manifest.json.tmp-zzzzzzzz"]
    for path in theirs:
        path.write_text("the user's")
    with pytest.raises(BankError, match="not empty"):
        remove_leftover_temp_files(folder)
    with pytest.raises(BankError, match="not empty"):
        BankWriter(folder, create={"dataset": {"name": "x"}, "class_names": ["a", "b"]})
    assert all(p.read_text() == "the user's" for p in theirs)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in theirs[::2]) + ["sub"]
    # inside a bank, only the bank's own temp names in the bank's own folders go
    bank = _bank(tmp_path / "bank")
    ours = [bank / ".manifest.json.tmp-a1b2c3d4", bank / "splits" / "val" / ".labels.npy.tmp-a1b2c3d4",
            logits_path(bank, "big", "val").parent / ".big.npy.tmp-a1b2c3d4"]
    not_ours = [bank / ".my.txt.tmp-a1b2c3d4", bank / "notes" / ".big.npy.tmp-a1b2c3d4",
                bank / "splits" / "val" / ".x.csv.tmp-a1b2c3d4"]
    for path in ours + not_ours:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = remove_leftover_temp_files(bank)
    assert sorted(removed) == sorted(ours) and not any(p.exists() for p in ours)
    assert all(p.exists() for p in not_ours)


# ----------------------------------------------------------------------------- lossless import

@pytest.mark.skipif(not (CASES / "import-offset-logits").is_dir(), reason="needs ../shared/cases")
def test_offset_float64_logits_keep_their_class_differences(tmp_path):
    """Old code: cast to float32 first, the +1e8 offset swallowed the differences (top-1 0.2725 and
    0.3125 instead of 0.525 and 0.915)."""
    case = CASES / "import-offset-logits"
    out = tmp_path / "bank"
    result = _cli("import", "--labels", case / "labels.npy", "--costs", case / "costs.csv", "--out", out,
                  "--logits", f"small={case / 'small.npy'}", "--logits", f"big={case / 'big.npy'}")
    assert result.returncode == 0, result.stderr
    assert "top1=0.5250" in result.stdout and "top1=0.9150" in result.stdout, result.stdout
    bank = Bank.open(out)
    labels = np.load(case / "labels.npy")
    for name in ("small", "big"):
        given = np.load(case / f"{name}.npy")       # float64 reference: slow exact computation
        reference = [float(np.argmax(row) == label) for row, label in zip(given, labels)]
        assert bank.model(name).top1["val"] == pytest.approx(np.mean(reference))
        stored = np.asarray(bank.logits(name, "val"), dtype=np.float64)
        shifted = given - given.max(axis=1, keepdims=True)
        assert np.allclose(stored, shifted, rtol=1e-6, atol=1e-6)
        # every criterion is computed from the stored rows as from the exact ones
        from cascade_explorer.core.criteria import confidence

        for criterion in ("max_softmax", "softmax_margin", "logit_margin", "entropy"):
            assert np.allclose(confidence(stored, criterion), confidence(shifted, criterion), atol=1e-5)


@pytest.mark.skipif(not (CASES / "import-probabilities").is_dir(), reason="needs ../shared/cases")
def test_probabilities_given_as_logits_are_refused_and_imported_when_declared(tmp_path):
    """Old code: imported silently; confidences never exceeded ~0.027, nothing exited early."""
    case = CASES / "import-probabilities"
    args = ["import", "--labels", case / "labels.npy", "--costs", case / "costs.csv",
            "--logits", f"small={case / 'small_probs.npy'}", "--logits", f"big={case / 'big_probs.npy'}"]
    line = _one_error_line(_cli(*args, "--out", tmp_path / "refused"))
    assert "look like probabilities" in line and "--inputs" in line and "small_probs.npy" in line, line
    assert not (tmp_path / "refused").exists()
    assert _cli(*args, "--out", tmp_path / "bank", "--inputs", "probabilities").returncode == 0
    bank = Bank.open(tmp_path / "bank")
    probs = np.load(case / "small_probs.npy").astype(np.float64)
    stored = np.asarray(bank.logits("small", "val"), dtype=np.float64)
    softmax = np.exp(stored - stored.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.allclose(softmax, probs / probs.sum(1, keepdims=True), atol=1e-6)
    assert softmax.max() > 0.3                     # confidences are the real ones again
    # log_softmax outputs, declared as such, give the same bank values
    np.save(tmp_path / "small_logp.npy", np.log(probs))
    result = _cli("import", "--labels", case / "labels.npy", "--out", tmp_path / "logp", "--inputs",
                  "log-probabilities", "--logits", f"small={tmp_path / 'small_logp.npy'}",
                  "--costs", case / "costs.csv", "--logits", f"big={case / 'big_probs.npy'}")
    assert "row 0 is not a log-probability vector" in _one_error_line(result)   # big is probabilities
    # and the wrong declaration is caught the other way round
    bad = _one_error_line(_cli("import", "--labels", case / "labels.npy", "--costs", case / "costs.csv",
                               "--out", tmp_path / "x", "--inputs", "probabilities",
                               "--logits", f"small={tmp_path / 'small_logp.npy'}",
                               "--logits", f"big={case / 'big_probs.npy'}"))
    assert "is not a probability vector" in bad and "--inputs" in bad


def test_minus_inf_logits_are_named_with_the_fix(inputs):
    """Old code: 'NaN or inf at row 5' without saying the value was -inf or what to use instead."""
    small = np.load(inputs / "small.npy")
    small[5, 1] = -np.inf
    np.save(inputs / "small.npy", small)
    line = _one_error_line(_cli(*_import_args(inputs, inputs / "bank")))
    assert "-inf at row 5, column 1" in line and "large negative" in line, line


# ----------------------------------------------------------------------------- Low items

def test_a_huge_samples_csv_field_or_deep_json_is_a_bank_error(tmp_path):
    """Old code: csv.Error (field over 128 KiB) and RecursionError escaped as tracebacks."""
    bank = _bank(tmp_path / "bank")
    samples = bank / "splits" / "val" / "samples.csv"
    good = samples.read_text()
    samples.write_text(good.replace("s0,", "s0" + "x" * 200_000 + ",", 1))
    with pytest.raises(BankError, match="malformed CSV"):
        Bank.open(bank)
    samples.write_text(good)
    manifest = json.loads((bank / "manifest.json").read_text())
    (bank / "manifest.json").write_text(json.dumps(manifest)[:-1] + ', "extra": ' + "[" * 100_000
                                        + "]" * 100_000 + "}")
    with pytest.raises(BankError, match="nested too deeply"):
        Bank.open(bank)


def test_duplicate_json_keys_are_refused(tmp_path):
    """Old code: the last of two 'gmacs' keys won silently."""
    bank = _bank(tmp_path / "bank")
    text = (bank / "manifest.json").read_text()
    (bank / "manifest.json").write_text(text.replace('"gmacs": 1.0', '"gmacs": 1.0, "gmacs": 0.001', 1))
    with pytest.raises(BankError, match="key 'gmacs' appears twice"):
        load_manifest(bank)
    config = tmp_path / "c.json"
    config.write_text('{"format": "cascade-explorer/cascade", "thresholds": [0.5], "thresholds": [0.9]}')
    from cascade_explorer.core.config import CascadeConfig

    with pytest.raises(ConfigError, match="key 'thresholds' appears twice"):
        CascadeConfig.load(config)


def test_ids_with_a_trailing_newline_are_refused(inputs):
    """Old code: ID_PATTERN used `$`, which also matches before a trailing newline."""
    with pytest.raises(BankError, match="invalid split id"):
        check_id("split", "val\n")
    with pytest.raises(BankError, match="invalid model id"):
        check_id("model", "small\n")
    line = _one_error_line(_cli(*_import_args(inputs, inputs / "bank"), "--split", "val\n"))
    assert line.startswith("cascade-explorer import: error: --split")


def test_huge_finite_costs_are_refused(inputs, tmp_path):
    """Old code: gmacs 1e308 was accepted and cost sums overflowed to inf."""
    (inputs / "costs.csv").write_text("model,gmacs\nsmall,1e308\nbig,1e308\n")
    line = _one_error_line(_cli(*_import_args(inputs, inputs / "bank")))
    assert "--costs" in line and "1e+12" in line
    bank = _bank(tmp_path / "bank")
    manifest = load_manifest(bank)
    manifest["models"]["big"]["gmacs"] = 1e300
    with pytest.raises(BankError, match="largest accepted cost"):
        validate_manifest(manifest, bank / "manifest.json")


def test_import_into_a_folder_with_an_unrelated_manifest_is_one_line(inputs):
    """Old code: KeyError 'class_names' traceback (exit 1)."""
    out = inputs / "webapp"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    line = _one_error_line(_cli(*_import_args(inputs, inputs / "webapp")))
    assert line.startswith("cascade-explorer import: error: --out") and "schema_version" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    """Old code: OSError(ENOSPC) from fsync carried no file name ('No space left on device')."""
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    target = tmp_path / "labels.npy"
    with pytest.raises(OSError) as info:
        atomic.atomic_save_npy(target, np.zeros(3))
    assert info.value.filename == str(target) and info.value.errno == 28
    assert list(tmp_path.iterdir()) == []          # no temp file left


def test_one_class_and_zero_sample_banks_do_not_open(tmp_path, inputs):
    """Old code: both opened, and failed later (division by zero, an empty curve)."""
    bank = _bank(tmp_path / "bank")
    manifest = load_manifest(bank)
    manifest["class_names"] = ["only"]
    with pytest.raises(BankError, match="at least 2"):
        validate_manifest(manifest, bank / "manifest.json")
    (bank / "splits" / "val" / "samples.csv").write_text("sample_id,image_path\n")
    with pytest.raises(BankError, match="no samples"):
        Bank.open(bank)
    np.save(inputs / "small.npy", np.zeros((N, 1), np.float32))
    np.save(inputs / "big.npy", np.zeros((N, 1), np.float32))
    np.save(inputs / "labels.npy", np.zeros(N, np.int64))
    assert "at least 2 classes" in _one_error_line(_cli(*_import_args(inputs, inputs / "one")))


def test_paths_under_home_are_written_as_tilde_in_configs(tmp_path, monkeypatch):
    """Old code: an exported config carried the bank's absolute path (/home/<user>/...)."""
    home = tmp_path / "home" / "alice"
    monkeypatch.setenv("HOME", str(home))
    bank = Bank.open(_bank(home / "banks" / "b"))
    from cascade_explorer.core.config import CascadeConfig
    from cascade_explorer.core.live import _find_config_bank
    from cascade_explorer.core.paths import portable_path

    report = {"models": ["small", "big"], "criterion": "max_softmax", "thresholds": [0.5], "split": "val",
              "accuracy": 0.5, "avg_gmacs": 1.0, "exit_fractions": [0.5, 0.5]}
    config = CascadeConfig.from_report(bank, report)
    assert config.bank["path"] == str(Path("~") / "banks" / "b")
    saved = tmp_path / "cascade.json"
    config.save(saved)
    assert "alice" not in saved.read_text()
    found = _find_config_bank(CascadeConfig.load(saved).bank)    # still found by its author
    assert found is not None and found.path == bank.path
    assert portable_path("/srv/banks/b") == "/srv/banks/b" and portable_path("rel/b") == "rel/b"


def test_a_config_with_a_huge_cost_is_refused(tmp_path):
    """Old code: gmacs 1e308 in a cascade config was accepted (its sums overflow to inf)."""
    from cascade_explorer.core.config import CascadeConfig

    with pytest.raises(ConfigError, match=r"models\[1\].gmacs.*1e\+12"):
        CascadeConfig(models=[{"id": "a", "gmacs": 1.0}, {"id": "b", "gmacs": 1e308}], thresholds=[0.5])
