"""Bank format: round trip, lazy memory-mapped reads, atomic writes, and every bad-bank case."""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_explorer.core import bank as bank_module
from cascade_explorer.core.bank import format as bank_format
from cascade_explorer.core.bank import (DEFAULT_BANK_PATH, SCHEMA_VERSION, Bank, BankError, BankWriter, find_banks,
                                        logits_path, read_npy_header)

N, C = 40, 5
CLASS_NAMES = [f"class {i}" for i in range(C)]
MODELS = {"small": 0.1, "medium": 1.5, "large": 4.0}   # id -> gmacs


def _logits(seed, n=N, c=C, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n, c)).astype(dtype)


def _labels(seed=0, n=N):
    return np.random.default_rng(seed).integers(0, C, n)


def make_bank(path, *, splits=("val", "val-corrupted"), dtype=np.float32):
    writer = BankWriter(path, create={"dataset": {"name": "toy", "description": "a toy bank", "licence": "CC0",
                                                  "caveats": ["random logits"]},
                                      "class_names": CLASS_NAMES})
    for s_index, split in enumerate(splits):
        writer.add_split(split, [f"{split}-{i:03d}" for i in range(N)], [f"img/{i}.JPEG" for i in range(N)],
                         _labels(s_index), description=f"{split} images",
                         image_source={"url_base": "https://example.org/", "env": "CASCADE_EXPLORER_IMAGES"})
    for m_index, (model_id, gmacs) in enumerate(reversed(list(MODELS.items()))):
        writer.add_model(model_id, display_name=model_id.title(), backend="timm",
                         source={"kind": "timm-hub", "name": model_id}, gmacs=gmacs, params=1000 * (m_index + 1),
                         spec=f"timm:{model_id}", input_size=(3, 224, 224),
                         preprocessing={"crop_pct": 0.875, "interpolation": "bicubic"},
                         latency_ms={"cpu": {"batch_1": gmacs * 10, "batch_32": gmacs}})
        for s_index, split in enumerate(splits):
            writer.add_logits(model_id, split, _logits(10 * m_index + s_index, dtype=dtype))
    return writer


@pytest.fixture
def bank_path(tmp_path):
    path = tmp_path / "bank"
    make_bank(path)
    return path


def _edit_manifest(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _expect_error(path, *, mentions, fix_mentions=None, open_kwargs=None):
    with pytest.raises(BankError) as info:
        Bank.open(path, **(open_kwargs or {}))
    message = str(info.value)
    assert mentions in message, message
    assert "Fix:" in message and info.value.fix, message
    if fix_mentions:
        assert fix_mentions in info.value.fix, message
    assert "\n" not in message
    return info.value


# ----------------------------------------------------------------------------- round trip and API

def test_round_trip(bank_path):
    bank = Bank.open(bank_path)
    assert bank.name == "toy" and bank.description == "a toy bank" and bank.licence == "CC0"
    assert bank.caveats == ["random logits"]
    assert bank.class_names == CLASS_NAMES and bank.num_classes == C
    assert bank.splits == ["val", "val-corrupted"] and bank.default_split == "val"
    assert bank.model_ids == ["small", "medium", "large"]            # sorted by gmacs, not insertion order
    assert [m.gmacs for m in bank.models] == sorted(MODELS.values())
    assert bank.labels("val").dtype == np.int64 and np.array_equal(bank.labels("val"), _labels(0))
    assert list(bank.sample_ids("val")[:2]) == ["val-000", "val-001"]
    assert bank.image_paths("val")[3] == "img/3.JPEG"
    # writer order: large (m_index 0), medium (1), small (2)
    assert np.array_equal(bank.logits("large", "val-corrupted"), _logits(1))
    assert np.array_equal(bank.logits("small", "val"), _logits(20))
    info = bank.model("medium")
    assert info.display_name == "Medium" and info.backend == "timm" and info.spec == "timm:medium"
    assert info.input_size == (3, 224, 224) and info.params == 2000
    assert info.preprocessing["interpolation"] == "bicubic"
    assert info.ms() == pytest.approx(15.0) and info.ms("cpu", "batch_32") == pytest.approx(1.5)
    assert info.ms("gpu") is None
    assert bank.latency_devices() == ["cpu"]
    assert bank.split_info("val")["image_source"]["env"] == "CASCADE_EXPLORER_IMAGES"


def test_top1_recorded_matches_reference(bank_path):
    bank = Bank.open(bank_path)
    for model in bank.models:
        assert set(model.top1) == {"val", "val-corrupted"}
        for split in bank.splits:
            logits, labels = np.asarray(bank.logits(model.id, split)), bank.labels(split)
            reference = sum(int(np.argmax(row) == y) for row, y in zip(logits, labels)) / len(labels)
            assert model.top1[split] == pytest.approx(reference)


def test_unknown_model_and_split_name_the_choices(bank_path):
    bank = Bank.open(bank_path)
    with pytest.raises(BankError, match="small, medium, large"):
        bank.model("tiny")
    with pytest.raises(BankError, match="val, val-corrupted"):
        bank.labels("test")


def test_logits_are_memory_mapped_read_only(bank_path):
    logits = Bank.open(bank_path).logits("small", "val")
    assert isinstance(logits, np.memmap)
    assert not logits.flags.writeable


def test_open_reads_no_logits(bank_path, monkeypatch):
    loaded = []
    real_load = np.load

    def recording_load(file, *args, **kwargs):
        loaded.append(str(file))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", recording_load)
    Bank.open(bank_path)
    assert loaded and not any("/logits/" in path for path in loaded), loaded   # labels only


def test_open_is_fast_on_a_realistic_bank(tmp_path, capsys):
    # 8 models x 1300 x 1000 (the default bank's shape): open() reads headers only.
    path = tmp_path / "big"
    writer = BankWriter(path, create={"dataset": {"name": "big"}, "class_names": [str(i) for i in range(1000)]})
    writer.add_split("val", [str(i) for i in range(1300)], [""] * 1300, np.arange(1300) % 1000)
    block = np.random.default_rng(0).normal(size=(1300, 1000)).astype(np.float16)
    for m in range(8):
        writer.add_model(f"m{m}", display_name=f"m{m}", backend="external", source={"kind": "user"}, gmacs=m + 1.0)
        writer.add_logits(f"m{m}", "val", block)
    bank_format._FINITE_CHECKED.clear()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        Bank.open(path)
        timings.append(time.perf_counter() - start)
    start = time.perf_counter()
    Bank.open(path).validate(values=True)    # full NaN/inf scan of all 8 files, cold cache
    full = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[bank] open() of 8 x 1300 x 1000: median {sorted(timings)[1] * 1000:.1f} ms; "
              f"open + full finite scan: {full * 1000:.1f} ms")
    assert sorted(timings)[1] < 0.5


def test_signals_are_memoised_and_match_engine(bank_path):
    signals_module = pytest.importorskip("cascade_explorer.core.signals")
    from cascade_explorer.core.analysis import BankAnalysis

    bank = Bank.open(bank_path)
    analysis = BankAnalysis(bank)
    first = analysis.model_signals("medium", "val", "max_softmax")
    assert analysis.model_signals("medium", "val", "max_softmax", 1.0) is first
    assert analysis.model_signals("medium", "val", "max_softmax", 2.0) is not first
    direct = signals_module.model_signals(np.asarray(bank.logits("medium", "val")), bank.labels("val"),
                                          "max_softmax")
    assert np.array_equal(first.confidence, direct.confidence)
    assert np.array_equal(first.correct, np.argmax(bank.logits("medium", "val"), axis=1) == bank.labels("val"))
    assert first.accuracy == pytest.approx(bank.model("medium").top1["val"])


def test_float16_bank(tmp_path):
    make_bank(tmp_path / "b16", dtype=np.float16)
    logits = Bank.open(tmp_path / "b16").logits("small", "val")
    assert logits.dtype == np.float16


def test_float64_logits_are_stored_as_float32(tmp_path):
    writer = make_bank(tmp_path / "b", splits=("val",))
    writer.add_logits("small", "val", _logits(5).astype(np.float64))
    assert Bank.open(tmp_path / "b").logits("small", "val").dtype == np.float32


def test_default_bank_path_and_find_banks(tmp_path, bank_path):
    assert DEFAULT_BANK_PATH.parts[-2:] == ("precomputed", "imagenet-val-1300")
    make_bank(tmp_path / "group" / "second", splits=("val",))
    (tmp_path / ".hidden" / "x").mkdir(parents=True)
    (tmp_path / ".hidden" / "x" / "manifest.json").write_text("{}")
    found = find_banks(tmp_path)
    assert bank_path.resolve() in found and (tmp_path / "group" / "second").resolve() in found
    assert not any(".hidden" in str(p) for p in found)
    assert bank_path.resolve() in find_banks(bank_path)          # a root that is itself a bank
    assert not any("splits" in p.parts for p in found)


# ----------------------------------------------------------------------------- writer behaviour

def _snapshot(path):
    return {p.relative_to(path): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in path.rglob("*") if p.is_file()}


def test_adding_a_model_rewrites_only_its_file_and_the_manifest(bank_path):
    before = _snapshot(bank_path)
    writer = BankWriter(bank_path)
    writer.add_model("huge", display_name="Huge", backend="external", source={"kind": "user"}, gmacs=9.0)
    writer.add_logits("huge", "val", _logits(99))
    writer.add_logits("huge", "val-corrupted", _logits(98))
    after = _snapshot(bank_path)
    changed = {p for p in after if p not in before or after[p] != before[p]}
    assert {str(p) for p in changed} == {"manifest.json", "splits/val/logits/huge.npy",
                                         "splits/val-corrupted/logits/huge.npy"}
    assert Bank.open(bank_path).model_ids[-1] == "huge"


def test_adding_a_split_rewrites_only_its_files_and_the_manifest(bank_path):
    before = _snapshot(bank_path)
    BankWriter(bank_path).add_split("test", ["t0", "t1"], ["a.jpg", "b.jpg"], [0, 4])
    after = _snapshot(bank_path)
    changed = {str(p) for p in after if p not in before or after[p] != before[p]}
    assert changed == {"manifest.json", "splits/test/samples.csv", "splits/test/labels.npy"}
    assert Bank.open(bank_path, allow_incomplete=True).n_samples("test") == 2


def test_writer_rejects_bad_logits_and_writes_nothing(bank_path):
    writer = BankWriter(bank_path)
    writer.add_model("new", display_name="New", backend="external", source={"kind": "user"}, gmacs=1.0)
    cases = [(_logits(1, n=N - 1), "shape"), (_logits(1, c=C + 1), "shape"),
             (np.ones((N, C), dtype=np.int32), "dtype")]
    nan = _logits(2)
    nan[7, 1] = np.nan
    cases.append((nan, "row 7"))
    for array, expected in cases:
        with pytest.raises(BankError, match=expected):
            writer.add_logits("new", "val", array)
    assert not logits_path(bank_path, "new", "val").exists()
    assert not writer.has_logits("new", "val")


def test_writer_split_rules(bank_path):
    writer = BankWriter(bank_path)
    ids = [f"val-{i:03d}" for i in range(N)]
    writer.add_split("val", ids, [f"img/{i}.JPEG" for i in range(N)], _labels(0), description="same samples")
    with pytest.raises(BankError, match="different samples"):
        writer.add_split("val", ids, [""] * N, _labels(5))
    with pytest.raises(BankError, match="duplicate sample id"):
        writer.add_split("other", ["a", "a"], ["", ""], [0, 1])
    with pytest.raises(BankError, match="outside 0..4"):
        writer.add_split("other", ["a", "b"], ["", ""], [0, 5])
    with pytest.raises(BankError, match="invalid split id"):
        writer.add_split("../escape", ["a"], [""], [0])


def test_writer_on_existing_bank_with_other_classes_fails(bank_path):
    with pytest.raises(BankError, match="different class names") as info:
        BankWriter(bank_path, create={"dataset": {"name": "x"}, "class_names": ["a", "b"]})
    assert "manifest.json" in str(info.value) and info.value.fix


def test_writer_refuses_non_bank_folder(tmp_path):
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(BankError, match="not empty"):
        BankWriter(tmp_path, create={"dataset": {"name": "x"}, "class_names": ["a"]})
    with pytest.raises(BankError, match="manifest.json missing"):
        BankWriter(tmp_path / "nothing")


def test_set_latency_and_model_update_keep_top1(bank_path):
    writer = BankWriter(bank_path)
    writer.set_latency("small", "gpu", {"batch_1": 0.5})
    writer.add_model("small", display_name="Small v2", backend="timm", source={"kind": "user"}, gmacs=0.1)
    info = Bank.open(bank_path).model("small")
    assert info.display_name == "Small v2" and set(info.top1) == {"val", "val-corrupted"}
    assert info.ms("gpu") == 0.5
    with pytest.raises(BankError, match="number >= 0"):
        writer.set_latency("small", "gpu", {"batch_1": -1})


# ----------------------------------------------------------------------------- atomicity / crashes

def test_leftover_temp_file_is_rejected_with_fix(bank_path):
    leftover = bank_path / "splits" / "val" / "logits" / ".small.npy.tmp-x1y2z3"
    leftover.write_bytes(b"\x93NUMPY partial")
    error = _expect_error(bank_path, mentions=".small.npy.tmp-x1y2z3", fix_mentions="delete")
    assert "interrupted write" in error.problem
    leftover.unlink()
    Bank.open(bank_path)


def test_truncated_logits_file_is_rejected(bank_path):
    path = logits_path(bank_path, "medium", "val")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(bank_path, mentions="medium.npy", fix_mentions="re-run")
    with pytest.raises(BankError, match="truncated"):
        Bank.open(bank_path)


def test_truncated_labels_file_is_rejected(bank_path):
    path = bank_path / "splits" / "val" / "labels.npy"
    path.write_bytes(path.read_bytes()[:100])
    _expect_error(bank_path, mentions="labels.npy")


def test_writer_killed_before_manifest_update_is_detected(bank_path):
    # Crash between saving the logits file and recording it in manifest.json.
    script = textwrap.dedent(f"""
        import os, numpy as np
        from cascade_explorer.core import bank
        writer = bank.BankWriter({str(bank_path)!r})
        writer.add_model("late", display_name="Late", backend="external", source={{"kind": "user"}}, gmacs=2.0)
        writer._write_manifest = lambda: os._exit(9)
        writer.add_logits("late", "val", np.zeros(({N}, {C}), dtype=np.float32))
    """)
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 9
    assert logits_path(bank_path, "late", "val").exists()
    error = _expect_error(bank_path, mentions="late.npy", fix_mentions="re-run",
                          open_kwargs={"allow_incomplete": True})
    assert "not recorded" in error.problem
    # Resuming with the writer overwrites and records it.
    writer = BankWriter(bank_path)
    assert not writer.has_logits("late", "val")
    writer.add_logits("late", "val", _logits(3))
    writer.add_logits("late", "val-corrupted", _logits(4))
    assert "late" in Bank.open(bank_path).model_ids


def test_writer_killed_mid_logits_write_keeps_old_data(bank_path):
    old = np.array(Bank.open(bank_path).logits("small", "val"))
    script = textwrap.dedent(f"""
        import os, numpy as np
        from cascade_explorer.core import atomic, bank
        writer = bank.BankWriter({str(bank_path)!r})
        atomic.os.replace = lambda *a: os._exit(9)
        writer.add_logits("small", "val", np.zeros(({N}, {C}), dtype=np.float32))
    """)
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 9
    leftovers = list((bank_path / "splits" / "val" / "logits").glob(".small.npy.tmp-*"))
    assert len(leftovers) == 1
    _expect_error(bank_path, mentions=leftovers[0].name, fix_mentions="delete")
    leftovers[0].unlink()
    assert np.array_equal(Bank.open(bank_path).logits("small", "val"), old)


# ----------------------------------------------------------------------------- bad banks, one case each

def test_missing_manifest(bank_path):
    (bank_path / "manifest.json").unlink()
    _expect_error(bank_path, mentions="manifest.json", fix_mentions="import")


@pytest.mark.parametrize("relative, problem", [
    ("manifest.json", "manifest.json is a folder, not a file"),
    ("splits/val/labels.npy", "labels.npy is a folder, not a file"),
    ("splits/val-corrupted/samples.csv", "samples.csv is a folder, not a file"),
    ("splits/val/logits/large.npy", "Is a directory"),
])
def test_a_folder_where_a_bank_file_belongs_says_so(bank_path, relative, problem):
    target = bank_path / relative
    target.unlink()
    target.mkdir()
    _expect_error(bank_path, mentions=problem)


def test_a_file_given_as_the_bank_says_so(bank_path):
    _expect_error(bank_path / "splits" / "val" / "labels.npy", mentions="is a file, not a bank folder")


def test_missing_folder(tmp_path):
    _expect_error(tmp_path / "nope", mentions="does not exist")


def test_malformed_json_names_line_and_column(bank_path):
    (bank_path / "manifest.json").write_text('{\n  "schema_version": 1,\n  "dataset": {"name": "x",}\n}')
    error = _expect_error(bank_path, mentions="manifest.json", fix_mentions="JSON")
    assert "line 3, column" in str(error)


def test_unknown_schema_version(bank_path):
    _edit_manifest(bank_path, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    _expect_error(bank_path, mentions="schema_version 2", fix_mentions="upgrade")


def test_missing_schema_version(bank_path):
    _edit_manifest(bank_path, lambda m: m.pop("schema_version"))
    _expect_error(bank_path, mentions="schema_version", fix_mentions='"schema_version": 1')


@pytest.mark.parametrize("gmacs, expected", [(-0.5, "negative"), ("fast", "finite number"), (None, "finite number"),
                                             (float("nan"), "finite number"), (True, "finite number")])
def test_bad_gmacs(bank_path, gmacs, expected):
    _edit_manifest(bank_path, lambda m: m["models"]["medium"].update(gmacs=gmacs))
    error = _expect_error(bank_path, mentions=expected, fix_mentions="gmacs")
    assert error.model == "medium" and "manifest.json" in str(error)


def test_missing_gmacs(bank_path):
    _edit_manifest(bank_path, lambda m: m["models"]["large"].pop("gmacs"))
    error = _expect_error(bank_path, mentions="'gmacs'", fix_mentions="GMACs")
    assert "model 'large'" in str(error)


def test_missing_labels_file(bank_path):
    (bank_path / "splits" / "val" / "labels.npy").unlink()
    error = _expect_error(bank_path, mentions="labels.npy", fix_mentions="re-run")
    assert error.split == "val"


def test_missing_samples_file(bank_path):
    (bank_path / "splits" / "val-corrupted" / "samples.csv").unlink()
    error = _expect_error(bank_path, mentions="samples.csv", fix_mentions="re-run")
    assert error.split == "val-corrupted"


def test_missing_logits_file(bank_path):
    logits_path(bank_path, "large", "val").unlink()
    error = _expect_error(bank_path, mentions="large.npy", fix_mentions="re-run")
    assert error.model == "large" and error.split == "val"


def test_extra_logits_file_for_unknown_model(bank_path):
    np.save(logits_path(bank_path, "stranger", "val"), _logits(0))
    error = _expect_error(bank_path, mentions="stranger.npy", fix_mentions="delete it")
    assert "small, medium, large" in error.fix


def test_extra_non_npy_file_in_logits(bank_path):
    (bank_path / "splits" / "val" / "logits" / "notes.txt").write_text("x")
    _expect_error(bank_path, mentions="notes.txt", fix_mentions="delete")


def test_extra_file_in_split_folder(bank_path):
    (bank_path / "splits" / "val" / "labels_old.npy").write_bytes(b"x")
    _expect_error(bank_path, mentions="labels_old.npy", fix_mentions="delete")


def test_extra_split_folder(bank_path):
    (bank_path / "splits" / "ghost").mkdir()
    _expect_error(bank_path, mentions="ghost", fix_mentions="delete")


def test_missing_split_folder(bank_path):
    import shutil

    shutil.rmtree(bank_path / "splits" / "val-corrupted")
    _expect_error(bank_path, mentions="val-corrupted", fix_mentions="re-run")


def test_wrong_logits_shape_1d(bank_path):
    np.save(logits_path(bank_path, "small", "val"), np.zeros(N * C, dtype=np.float32))
    _expect_error(bank_path, mentions="2-D", fix_mentions="one row")


def test_logits_row_count_mismatch(bank_path):
    np.save(logits_path(bank_path, "small", "val"), _logits(0, n=N + 3))
    error = _expect_error(bank_path, mentions=f"{N + 3} rows", fix_mentions="samples.csv order")
    assert "small.npy" in str(error)


def test_logits_class_count_mismatch(bank_path):
    np.save(logits_path(bank_path, "medium", "val-corrupted"), _logits(0, c=C + 1))
    error = _expect_error(bank_path, mentions=f"{C + 1} columns", fix_mentions="class")
    assert "medium.npy" in str(error)


def test_class_names_mismatch_with_logits(bank_path):
    _edit_manifest(bank_path, lambda m: m["class_names"].append("extra"))
    _expect_error(bank_path, mentions=f"{C} columns but the bank has {C + 1} class names")


def test_logits_wrong_dtype(bank_path):
    np.save(logits_path(bank_path, "small", "val"), _logits(0).astype(np.float64))
    _expect_error(bank_path, mentions="float64", fix_mentions="float32")


def test_labels_samples_count_mismatch(bank_path):
    np.save(bank_path / "splits" / "val" / "labels.npy", _labels(0, n=N - 1))
    _expect_error(bank_path, mentions="labels.npy", fix_mentions="same samples")


@pytest.mark.parametrize("bad, expected", [(-1, "label -1"), (C, f"label {C}")])
def test_labels_out_of_range(bank_path, bad, expected):
    labels = _labels(0)
    labels[11] = bad
    np.save(bank_path / "splits" / "val" / "labels.npy", labels)
    error = _expect_error(bank_path, mentions=expected, fix_mentions="class_names")
    assert "row 11" in str(error) and "labels.npy" in str(error)


def test_labels_non_integer(bank_path):
    np.save(bank_path / "splits" / "val" / "labels.npy", _labels(0).astype(np.float32) + 0.5)
    _expect_error(bank_path, mentions="must be integers", fix_mentions="integer")


def test_labels_pickled_object_array_is_never_unpickled(bank_path):
    np.save(bank_path / "splits" / "val" / "labels.npy", np.array([1] * N, dtype=object), allow_pickle=True)
    _expect_error(bank_path, mentions="Python objects", fix_mentions="allow_pickle=False")


def test_duplicate_sample_ids(bank_path):
    path = bank_path / "splits" / "val" / "samples.csv"
    lines = path.read_text().splitlines()
    lines[5] = lines[2]
    path.write_text("\n".join(lines) + "\n")
    error = _expect_error(bank_path, mentions="duplicate sample_id 'val-001'", fix_mentions="unique")
    assert "samples.csv" in str(error)


def test_bad_samples_header(bank_path):
    path = bank_path / "splits" / "val" / "samples.csv"
    path.write_text("id,path\n" + "\n".join(path.read_text().splitlines()[1:]) + "\n")
    _expect_error(bank_path, mentions="header", fix_mentions="sample_id,image_path")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_logits(bank_path, value):
    logits = _logits(0)
    logits[13, 2] = value
    np.save(logits_path(bank_path, "medium", "val"), logits)
    bank = Bank.open(bank_path)   # open() does not read logits ...
    with pytest.raises(BankError) as info:
        bank.logits("medium", "val")   # ... the first read scans them
    message = str(info.value)
    assert "not all finite" in message and "row 13, column 2" in message and "medium.npy" in message
    assert "Fix:" in message
    # the value itself is named; -inf comes with the fix (a large negative finite logit)
    named = {"nan": "NaN at row 13", "inf": "+inf at row 13", "-inf": "-inf at row 13"}[str(value)]
    assert named in message
    assert ("large negative" in message) == (value == -np.inf)
    with pytest.raises(BankError, match="row 13"):
        Bank.open(bank_path).validate(values=True)
    from cascade_explorer.core.analysis import BankAnalysis

    with pytest.raises(BankError, match="row 13"):
        BankAnalysis(bank).model_signals("medium", "val", "max_softmax")


def test_finite_scan_is_cached_per_file_version(bank_path, monkeypatch):
    bank = Bank.open(bank_path)
    bank.logits("small", "val")
    calls = []
    real = bank_format.first_non_finite_row
    monkeypatch.setattr(bank_format, "first_non_finite_row", lambda a, *k: calls.append(1) or real(a, *k))
    Bank.open(bank_path).logits("small", "val")
    assert calls == []
    logits = _logits(0)
    logits[0, 0] = np.inf
    np.save(logits_path(bank_path, "small", "val"), logits)   # new file version: scanned again
    with pytest.raises(BankError, match="not all finite"):
        Bank.open(bank_path).logits("small", "val")
    assert calls == [1]


def test_incomplete_bank_needs_allow_incomplete(bank_path):
    writer = BankWriter(bank_path)
    writer.add_model("partial", display_name="Partial", backend="external", source={"kind": "user"}, gmacs=2.0)
    writer.add_logits("partial", "val", _logits(7))
    error = _expect_error(bank_path, mentions="no logits for this split", fix_mentions="allow_incomplete")
    assert error.model == "partial" and error.split == "val-corrupted"
    bank = Bank.open(bank_path, allow_incomplete=True)
    assert bank.has_logits("partial", "val") and not bank.has_logits("partial", "val-corrupted")
    assert "partial" not in bank.models_for("val-corrupted")
    with pytest.raises(BankError, match="no logits for this split"):
        bank.logits("partial", "val-corrupted")


def test_top1_for_unknown_split(bank_path):
    _edit_manifest(bank_path, lambda m: m["models"]["small"]["top1"].update(test=0.5))
    _expect_error(bank_path, mentions="'test'", fix_mentions="remove")


def test_invalid_model_id_cannot_escape_the_bank(bank_path):
    _edit_manifest(bank_path, lambda m: m["models"].update({"../../etc": m["models"]["small"]}))
    _expect_error(bank_path, mentions="invalid model id", fix_mentions="rename")


def test_validate_false_skips_file_checks(bank_path):
    np.save(bank_path / "splits" / "val" / "labels.npy", _labels(0, n=N - 1))
    Bank.open(bank_path, validate=False)   # manifest still parsed and checked
    with pytest.raises(BankError):
        Bank.open(bank_path)


def test_read_npy_header_matches_numpy(bank_path):
    shape, dtype, fortran, offset = read_npy_header(logits_path(bank_path, "small", "val"))
    assert shape == (N, C) and dtype == np.float32 and not fortran and offset % 64 == 0


def test_readable_with_numpy_json_csv_alone(bank_path):
    # The README snippet: no cascade_explorer import needed.
    import csv as csv_module

    manifest = json.loads((bank_path / "manifest.json").read_text())
    split = next(iter(manifest["splits"]))
    folder = bank_path / "splits" / split
    labels = np.load(folder / "labels.npy", allow_pickle=False)
    with open(folder / "samples.csv", newline="") as handle:
        samples = list(csv_module.DictReader(handle))
    for model_id, info in manifest["models"].items():
        logits = np.load(folder / "logits" / f"{model_id}.npy", mmap_mode="r", allow_pickle=False)
        assert (logits.argmax(1) == labels).mean() == pytest.approx(info["top1"][split])
    assert len(samples) == len(labels) and os.path.basename(samples[0]["image_path"]) == "0.JPEG"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 30), c=st.integers(2, 8), half=st.booleans(), seed=st.integers(0, 2**16),
       data=st.data())
def test_property_round_trip_and_top1(tmp_path_factory, n, c, half, seed, data):
    rng = np.random.default_rng(seed)
    dtype = np.float16 if half else np.float32
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    logits = (rng.normal(size=(n, c)) * 5).astype(dtype)
    logits[rng.random(n) < 0.3] = 0.0                       # all-tie rows: argmax picks the first class
    path = tmp_path_factory.mktemp("prop") / "bank"
    writer = BankWriter(path, create={"dataset": {"name": "p"}, "class_names": [f"c{i}" for i in range(c)]})
    writer.add_split("s", [f"id,{i}" for i in range(n)], [f'dir/"{i}".png' for i in range(n)], labels)
    writer.add_model("m", display_name="M", backend="external", source={"kind": "user"}, gmacs=1.0)
    top1 = writer.add_logits("m", "s", logits)
    bank = Bank.open(path)
    assert np.array_equal(bank.labels("s"), labels)
    assert bank.logits("m", "s").dtype == dtype and np.array_equal(bank.logits("m", "s"), logits)
    assert list(bank.sample_ids("s")) == [f"id,{i}" for i in range(n)]      # csv quoting survives
    assert bank.image_paths("s") == [f'dir/"{i}".png' for i in range(n)]
    reference = sum(max(range(c), key=lambda k: (float(row[k]), -k)) == y for row, y in zip(logits, labels)) / n
    assert top1 == pytest.approx(reference) and bank.model("m").top1["s"] == pytest.approx(reference)


def test_chunks_checked_on_several_threads_give_the_one_thread_file_and_error(tmp_path, monkeypatch):
    """add_logits checks and counts row chunks on worker threads while it writes: the file, top1 and
    each chunk's on_chunk call are those of one thread, and with bad values in two chunks the error
    names the first bad row in row order; nothing is written then."""
    monkeypatch.setattr(bank_format, "SCAN_CHUNK_ROWS", 7)
    monkeypatch.setattr("cascade_explorer.core.bank.writer.SCAN_CHUNK_ROWS", 7)
    n = 60
    labels = np.random.default_rng(1).integers(0, C, n)
    logits = np.random.default_rng(2).normal(size=(n, C)).astype(np.float16)
    written = {}
    for workers in (1, 4):
        path = tmp_path / f"bank{workers}"
        writer = BankWriter(path, create={"dataset": {"name": "t"}, "class_names": CLASS_NAMES}, workers=workers)
        writer.add_split("val", [f"s{i}" for i in range(n)], [""] * n, labels)
        writer.add_model("m", display_name="M", backend="external", source={"kind": "user"}, gmacs=1.0)
        seen = []
        top1 = writer.add_logits("m", "val", logits, on_chunk=lambda start, chunk: seen.append((start, chunk.copy())))
        written[workers] = (logits_path(path, "m", "val").read_bytes(), top1, sorted(seen, key=lambda s: s[0]))
        bad = logits.copy()
        bad[40, 2], bad[23, 1] = np.inf, np.nan              # chunks 5 and 3: the error names row 23
        writer.add_model("bad", display_name="Bad", backend="external", source={"kind": "user"}, gmacs=1.0)
        with pytest.raises(BankError, match="row 23"):
            writer.add_logits("bad", "val", bad)
        assert not logits_path(path, "bad", "val").exists()
    one, many = written[1], written[4]
    assert one[0] == many[0] and one[1] == many[1]
    assert [s for s, _ in one[2]] == [s for s, _ in many[2]] == list(range(0, n, 7))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(one[2], many[2]))
    assert np.array_equal(np.load(logits_path(tmp_path / "bank4", "m", "val")), logits)


def test_logits_stored_as_they_are_are_copied_by_the_kernel_and_still_checked(tmp_path, monkeypatch):
    """A source .npy already in the stored dtype is copied with os.sendfile (as cp does) while its chunks
    are checked from the memory map: same file as the chunked write; NaN still refused; a source that
    changes meanwhile is refused; nothing is written either time."""
    from cascade_explorer.core.bank import writer as writer_module

    n = 50
    labels = np.random.default_rng(1).integers(0, C, n)
    logits = np.random.default_rng(2).normal(size=(n, C)).astype(np.float16)
    np.save(tmp_path / "src.npy", logits)
    writer = BankWriter(tmp_path / "bank", create={"dataset": {"name": "t"}, "class_names": CLASS_NAMES})
    writer.add_split("val", [f"s{i}" for i in range(n)], [""] * n, labels)
    for model in ("copied", "written", "nan", "changed"):
        writer.add_model(model, display_name=model, backend="external", source={"kind": "user"}, gmacs=1.0)
    sent = []
    real_sendfile = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *args: sent.append(args[3]) or real_sendfile(*args))
    top1 = writer.add_logits("copied", "val", np.load(tmp_path / "src.npy", mmap_mode="r"),
                             source_file=tmp_path / "src.npy")
    assert sum(sent) == logits.nbytes
    assert top1 == writer.add_logits("written", "val", logits)     # no source file: chunks written from memory
    assert logits_path(tmp_path / "bank", "copied", "val").read_bytes() == \
        logits_path(tmp_path / "bank", "written", "val").read_bytes()

    bad = logits.copy()
    bad[31, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(BankError, match="row 31"):
        writer.add_logits("nan", "val", np.load(tmp_path / "bad.npy", mmap_mode="r"), source_file=tmp_path / "bad.npy")
    real_copy = writer_module._copy_data

    def copy_then_touch(source, out_fd):
        real_copy(source, out_fd)
        os.utime(source[0], ns=(1, 1))   # another program rewrote the file meanwhile

    monkeypatch.setattr(writer_module, "_copy_data", copy_then_touch)
    with pytest.raises(BankError, match="changed while it was imported"):
        writer.add_logits("changed", "val", np.load(tmp_path / "src.npy", mmap_mode="r"),
                          source_file=tmp_path / "src.npy")
    for model in ("nan", "changed"):
        assert not logits_path(tmp_path / "bank", model, "val").exists()
