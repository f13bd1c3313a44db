"""The persistent signal store: bit-identical to recomputation, invalidated by a rewritten logits file,
never trusting a damaged entry, safe with two processes filling it at once."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import store as store_module
from cascade_explorer.core.analysis import BankAnalysis, CascadeSpec
from cascade_explorer.core.bank import Bank, BankError, BankWriter, logits_path
from cascade_explorer.core.criteria import CRITERIA
from cascade_explorer.core.store import SignalStore

from test_analysis import MODELS, build_random_bank

CHAIN = ("tiny", "small", "large")


@pytest.fixture()
def bank_path(tmp_path) -> Path:
    return build_random_bank(tmp_path / "bank", n=300)


def _stage_arrays(analysis: BankAnalysis, spec: CascadeSpec, on="all"):
    return [(s.confidence, s.prediction, s.correct) for s in analysis.stage_signals(spec, on=on)]


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("temperature", ["none", "fit"])
@pytest.mark.parametrize("ensemble", [False, True])
def test_stored_signals_are_bit_identical_to_recomputation(bank_path, criterion, temperature, ensemble):
    spec = CascadeSpec(models=CHAIN, criterion=criterion, thresholds=(0.6, 0.7), temperature=temperature,
                       ensemble=ensemble)
    fresh = BankAnalysis(bank_path, store=False)
    cold_store = SignalStore()
    cold = BankAnalysis(bank_path, signal_source=cold_store)
    warm_store = SignalStore()
    warm = BankAnalysis(bank_path, signal_source=warm_store)   # a new process's view: everything from disk
    for analysis in (cold, warm):
        for got, want in zip(_stage_arrays(analysis, spec), _stage_arrays(fresh, spec)):
            for a, b in zip(got, want):
                assert a.dtype == b.dtype and np.array_equal(a, b)
        assert analysis.evaluate(spec, on="eval", n_bootstrap=0) == fresh.evaluate(spec, on="eval", n_bootstrap=0)
    assert cold_store.computed > 0
    assert warm_store.computed == 0 and warm_store.loaded > 0


def test_a_rewritten_logits_file_invalidates_its_entries(bank_path):
    SignalStore().fill(Bank.open(bank_path, allow_incomplete=True))
    folder = store_module.default_root(bank_path) / "splits" / "val" / "small"
    (old_version,) = [p.name for p in folder.iterdir() if p.is_dir()]
    rng = np.random.default_rng(7)
    writer = BankWriter(bank_path)
    new_logits = rng.normal(size=(300, 6)).astype(np.float32)
    writer.add_logits("small", "val", new_logits)
    bank = Bank.open(bank_path, allow_incomplete=True)
    store = SignalStore()
    got = store.model_signals(bank, "small", "val", "max_softmax")
    assert store.computed == 1
    assert np.array_equal(got.prediction, new_logits.argmax(axis=1))
    versions = [p.name for p in folder.iterdir() if p.is_dir()]
    assert versions != [old_version] and len(versions) == 1   # the stale version is gone


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _damage_values(path: Path) -> None:
    """A valid .npz whose confidence no longer matches its checksum."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    arrays["confidence"][0] += 0.25
    np.savez(path, **arrays)


def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"not a zip file at all")


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_values, _damage_garbage])
def test_a_damaged_entry_is_recomputed_not_trusted(bank_path, damage):
    bank = Bank.open(bank_path, allow_incomplete=True)
    want = SignalStore().model_signals(bank, "tiny", "val", "max_softmax")
    (entry,) = store_module.default_root(bank_path).rglob("signals-max_softmax-*.npz")
    assert "tiny" in entry.parts
    damage(entry)
    store = SignalStore()
    got = store.model_signals(bank, "tiny", "val", "max_softmax")
    assert store.computed == 1 and np.array_equal(got.confidence, want.confidence)
    assert zipfile.is_zipfile(entry) and SignalStore()._load_signals(entry, 300) is not None   # repaired


def test_temperatures_are_stored_per_calibration_part(bank_path):
    spec = CascadeSpec(models=("tiny", "large"), temperature="fit")
    first = SignalStore()
    want = BankAnalysis(bank_path, signal_source=first).temperatures(spec, calibration_fraction=0.4, seed=3)
    assert first.computed >= 2
    again = SignalStore()
    assert BankAnalysis(bank_path, signal_source=again).temperatures(spec, calibration_fraction=0.4, seed=3) == want
    assert again.computed == 0
    other = SignalStore()
    BankAnalysis(bank_path, signal_source=other).temperatures(spec, calibration_fraction=0.6, seed=3)
    assert other.computed == 2   # another calibration part is another fit


def test_one_evaluate_reads_only_its_models_logits(bank_path, monkeypatch):
    SignalStore().fill(Bank.open(bank_path, allow_incomplete=True))   # what import/precompute leave behind
    read = []
    real = Bank.logits

    def recording(self, model_id, split, **kwargs):
        read.append(model_id)
        return real(self, model_id, split, **kwargs)

    monkeypatch.setattr(Bank, "logits", recording)
    report = BankAnalysis(bank_path).evaluate(CascadeSpec(models=("tiny", "large"), thresholds=(0.5,),
                                                          criterion="entropy"))
    assert report["speedup"] is None or report["speedup"] > 0   # the hull of every model was built
    assert set(read) == {"tiny", "large"}   # the others came from their stored correctness bits


def test_the_non_finite_scan_is_done_by_the_stores_own_pass(bank_path):
    logits = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    logits[17, 1] = -np.inf
    np.save(logits_path(bank_path, "medium", "val"), logits)
    bank = Bank.open(bank_path, allow_incomplete=True)
    with pytest.raises(BankError, match="row 17"):
        SignalStore().model_signals(bank, "medium", "val", "max_softmax")
    assert not list(store_module.default_root(bank_path).rglob("medium/*/signals-*.npz"))


FILL = """
import sys
from cascade_explorer.core.bank import Bank
from cascade_explorer.core.criteria import CRITERIA
from cascade_explorer.core.store import SignalStore
store = SignalStore(workers=1)
store.fill(Bank.open(sys.argv[1], allow_incomplete=True), criteria=CRITERIA)
print(store.computed)
"""


def test_two_processes_filling_at_once_never_corrupt_it(bank_path):
    # plain subprocesses, not multiprocessing's spawn: spawn re-runs the parent's __main__, which an
    # earlier AppTest in the same worker may have left pointing at the dashboard script
    workers = [subprocess.Popen([sys.executable, "-c", FILL, str(bank_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    computed = []
    for process in workers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        computed.append(int(out.split()[-1]))
    bank = Bank.open(bank_path, allow_incomplete=True)
    jobs = sum(len(bank.models_for(s)) for s in bank.splits) * len(CRITERIA)
    assert sum(computed) == jobs   # each entry computed by exactly one of them (the lock), none twice
    check = SignalStore()
    fresh = BankAnalysis(bank, store=False)
    for split in bank.splits:
        for model in bank.models_for(split):
            for criterion in CRITERIA:
                got = check.model_signals(bank, model, split, criterion)
                assert np.array_equal(got.confidence, fresh.model_signals(model, split, criterion).confidence)
    assert check.computed == 0


def test_a_read_only_bank_keeps_its_store_in_the_user_cache(bank_path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(store_module.os, "access", lambda path, mode: False)   # root ignores chmod, so ask
    root = store_module.default_root(bank_path)
    assert root.is_relative_to(tmp_path / "cache") and bank_path.name in root.name
    SignalStore().fill(Bank.open(bank_path, allow_incomplete=True))
    assert not (bank_path / store_module.STORE_DIRNAME).exists() and list(root.rglob("*.npz"))


def test_clear_deletes_only_a_store(bank_path):
    bank = Bank.open(bank_path, allow_incomplete=True)
    store = SignalStore()
    store.fill(bank)
    info = store.info(bank)
    assert info["signals"] == sum(len(bank.models_for(s)) for s in bank.splits) and info["bytes"] > 0
    assert sorted(info["models"]["val"]) == sorted(MODELS)
    assert store.clear(bank) == info["bytes"]
    assert not store_module.default_root(bank_path).exists()
    impostor = store_module.default_root(bank_path)
    impostor.mkdir()
    (impostor / "precious.txt").write_text("mine")
    with pytest.raises(Exception, match="does not look like a signal store"):
        store.clear(bank)
    assert (impostor / "precious.txt").exists()


def _import_inputs(folder: Path, n_models: int, n: int = 20_000, c: int = 200) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, c, n)
    np.save(folder / "labels.npy", labels)
    rows = ["model,gmacs"]
    argv = ["import", "--labels", str(folder / "labels.npy"), "--costs", str(folder / "costs.csv")]
    for m in range(n_models):
        logits = rng.normal(size=(n, c)).astype(np.float32)
        logits[np.arange(n), labels] += 1.0 + m / n_models
        np.save(folder / f"m{m}.npy", logits)
        rows.append(f"m{m},{m + 1}")
        argv += ["--logits", f"m{m}={folder / f'm{m}.npy'}"]
    (folder / "costs.csv").write_text("\n".join(rows) + "\n")
    return argv


def test_import_fills_the_store_with_what_recomputation_gives(tmp_path, capsys):
    from cascade_explorer.commands.cli import main

    argv = _import_inputs(tmp_path / "in", 3, n=500, c=10)
    assert main(argv + ["--out", str(tmp_path / "bank")]) == 0
    bank = Bank.open(tmp_path / "bank")
    store = SignalStore()
    fresh = BankAnalysis(bank, store=False)
    for model in bank.model_ids:
        got = store.model_signals(bank, model, "val", "max_softmax")
        want = fresh.model_signals(model, "val", "max_softmax")
        assert np.array_equal(got.confidence, want.confidence) and np.array_equal(got.correct, want.correct)
    assert store.computed == 0 and store.loaded == 3   # all three were filled by the import
    assert main(argv + ["--out", str(tmp_path / "bare"), "--no-signals"]) == 0
    assert not (tmp_path / "bare" / store_module.STORE_DIRNAME).exists()


def _peak_rss_mb(argv: list[str]) -> float:
    import os
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "cascade_explorer.commands.cli", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read().decode()
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_import_memory_does_not_grow_with_the_number_of_models(tmp_path):
    """Every source file used to stay mapped until the end (2.4 GB for 25 paper-size models)."""
    few = _peak_rss_mb(_import_inputs(tmp_path / "few", 2) + ["--out", str(tmp_path / "b2")])
    many = _peak_rss_mb(_import_inputs(tmp_path / "many", 12) + ["--out", str(tmp_path / "b12")])
    file_mb = 20_000 * 200 * 4 / 1e6   # 16 MB per source file
    assert many - few < 3 * file_mb, (few, many)   # 10 more files would add 160 MB if they stayed mapped


def test_the_hull_comes_from_one_stored_summary_kept_per_file_version(bank_path, monkeypatch):
    """The single models' accuracies (what the speed-up's hull needs of every model) are one summary
    file per split and part: a new process reads no model's correctness, a rewritten logits file is
    counted again, a damaged summary is rebuilt, and every figure equals recomputation."""
    fresh = BankAnalysis(bank_path, store=False)
    want = {on: fresh.single_models(on=on)["accuracy"].tolist() for on in ("all", "eval", "calibration")}
    first = SignalStore()
    for on, accuracies in want.items():
        assert BankAnalysis(bank_path, signal_source=first).single_models(on=on)["accuracy"].tolist() == accuracies
    summaries = sorted((store_module.default_root(bank_path) / "splits" / "val").glob("accuracy-*.json"))
    assert len(summaries) == 3

    reads = []
    real_correct = SignalStore.correct
    monkeypatch.setattr(SignalStore, "correct", lambda self, bank, model_id, split: reads.append(model_id)
                        or real_correct(self, bank, model_id, split))
    spec = CascadeSpec(models=("tiny", "large"), thresholds=(0.6,), temperature="fit")
    evaluation = BankAnalysis(bank_path, signal_source=SignalStore()).evaluate(spec, on="eval")
    assert evaluation["speedup"] == fresh.evaluate(spec, on="eval")["speedup"]
    assert reads == []                                  # the hull came from the summary alone

    BankWriter(bank_path).add_logits("small", "val", np.random.default_rng(3).normal(size=(300, 6)).astype(np.float32))
    fresh = BankAnalysis(bank_path, store=False)
    got = BankAnalysis(bank_path, signal_source=SignalStore()).single_models(on="eval")["accuracy"].tolist()
    assert got == fresh.single_models(on="eval")["accuracy"].tolist()
    assert reads == ["small"]                           # only the rewritten model was counted again

    for path in summaries:
        path.write_text('{"format": 1, "n_rows": 300, "models": {"tiny": ["x", 999999]}}')
    assert BankAnalysis(bank_path, signal_source=SignalStore()).single_models()["accuracy"].tolist() == \
        fresh.single_models()["accuracy"].tolist()
