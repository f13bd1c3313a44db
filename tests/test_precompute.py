"""precompute: label sources, bad inputs, resume/kill, different-bank errors, reproducibility.

Fast tests use timm's tiny `test_*` architectures with local random weights (real timm code,
real preprocessing); the reproduction tests use real images and models from ../shared.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade_explorer.core import precompute as pc
from cascade_explorer.core.bank import LOCK, Bank, BankError
from cascade_explorer.commands.cli import main as cli_main
from cascade_explorer.core.errors import UsageError

SYNSETS = ["n01440764", "n01443537", "n01484850"]  # ImageNet classes 0, 1, 2


def _photo(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _image_folder(root: Path, per_class: int = 3) -> Path:
    for c, synset in enumerate(SYNSETS):
        (root / synset).mkdir(parents=True)
        for i in range(per_class):
            _photo(10 * c + i).save(root / synset / f"img_{c}_{i}.jpg")
    return root


def _flat_folder(root: Path, n: int = 6) -> tuple[Path, Path]:
    root.mkdir(parents=True)
    lines = []
    for i in range(n):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        _photo(i).save(root / name, format="JPEG")
        lines.append(f"{name}, {i % 3}")
    labels = root.parent / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return root, labels


def _run(samples, specs, out, batch_size=4, **kwargs):
    """precompute() quietly in this process (no latency, no progress bar, no workers, no log)."""
    kwargs.setdefault("latency", False)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("log", lambda *a: None)
    return pc.precompute(samples=samples, specs=specs, out=out, batch_size=batch_size, **kwargs)


# ------------------------------------------------------------------------------ label sources

def test_image_folder_with_synset_names_maps_to_imagenet_indices(tmp_path):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs"))
    assert len(samples) == 9
    assert samples.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert samples.rel_paths[0] == "n01440764/img_0_0.jpg"
    assert samples.class_names is None  # ImageNet indices: names come from ImageNet


def test_image_folder_with_own_class_names_sorted(tmp_path):
    for name in ("dog", "cat"):
        (tmp_path / name).mkdir()
        _photo(1).save(tmp_path / name / "a.png")
    samples = pc.samples_from_folder(tmp_path)
    assert samples.class_names == ["cat", "dog"]
    assert samples.labels.tolist() == [0, 1]
    assert samples.sample_ids == ["cat/a", "dog/a"]  # same file names: ids keep the folder


def test_flat_folder_with_labels_and_list_file(tmp_path):
    folder, labels = _flat_folder(tmp_path / "val")
    samples = pc.samples_from_folder(folder, labels)
    assert samples.sample_ids[0] == "ILSVRC2012_val_00000001"
    assert samples.labels.tolist() == [0, 1, 2, 0, 1, 2]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"./val/{p.name},{i % 3}\n" for i, p in enumerate(sorted(folder.iterdir()))))
    from_list = pc.samples_from_list(listing)
    assert from_list.rel_paths[0] == "val/ILSVRC2012_val_00000001.JPEG"
    assert from_list.labels.tolist() == samples.labels.tolist()


def test_kaggle_solution_csv_synsets(tmp_path):
    folder, _ = _flat_folder(tmp_path / "val", n=2)
    solution = tmp_path / "LOC_val_solution.csv"
    solution.write_text("ImageId,PredictionString\n"
                        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\nILSVRC2012_val_00000002,n01484850 5 6 7 8\n")
    # Kaggle ids carry no extension: match on the stem.
    samples = pc.samples_from_folder(folder, solution)
    assert samples.labels.tolist() == [1, 2]


@pytest.mark.parametrize("case", ["empty", "flat_without_labels", "labels_missing_file", "image_without_label",
                                  "list_missing_file", "empty_classes", "devkit_ground_truth"])
def test_bad_label_inputs_are_clear_errors(tmp_path, case):
    if case == "empty":
        (tmp_path / "e").mkdir()
        with pytest.raises(UsageError, match="is empty"):
            pc.samples_from_folder(tmp_path / "e")
    elif case == "flat_without_labels":
        folder, _ = _flat_folder(tmp_path / "val")
        with pytest.raises(UsageError, match="`labels_file`"):
            pc.samples_from_folder(folder)
    elif case == "labels_missing_file":
        folder, labels = _flat_folder(tmp_path / "val")
        labels.write_text(labels.read_text() + "ILSVRC2012_val_99999999.JPEG, 1\n")
        with pytest.raises(UsageError, match=r"1 label line\(s\) name files not in the folder.*99999999"):
            pc.samples_from_folder(folder, labels)
    elif case == "image_without_label":
        folder, labels = _flat_folder(tmp_path / "val")
        labels.write_text("\n".join(labels.read_text().splitlines()[1:]))
        with pytest.raises(UsageError, match=r"1 image\(s\) have no label.*00000001"):
            pc.samples_from_folder(folder, labels)
    elif case == "list_missing_file":
        listing = tmp_path / "list.txt"
        listing.write_text("nothere.jpg, 3\n")
        with pytest.raises(UsageError, match="do not exist.*nothere.jpg"):
            pc.samples_from_list(listing)
    elif case == "devkit_ground_truth":
        folder, labels = _flat_folder(tmp_path / "val", n=2)
        labels.write_text("490\n361\n")
        with pytest.raises(UsageError, match="ILSVRC devkit ground truth"):
            pc.samples_from_folder(folder, labels)
    else:
        (tmp_path / "imgs" / "n01440764").mkdir(parents=True)
        with pytest.raises(UsageError, match="hold no image files"):
            pc.samples_from_folder(tmp_path / "imgs")


# ------------------------------------------------------------------------------ the pipeline

def test_two_models_two_groups_then_resume_and_force(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs"))
    out = tmp_path / "bank"
    report = _run(samples, tiny_specs, out)
    assert sorted(t.model_id for t in report.done) == ["test_efficientnet", "test_vit"]
    bank = Bank.open(out)
    assert bank.num_classes == 1000 and bank.class_names[0] == "tench"
    assert bank.labels("val").tolist() == samples.labels.tolist()
    assert list(bank.sample_ids("val")) == samples.sample_ids
    logits = np.asarray(bank.logits("test_vit", "val"))
    assert logits.dtype == np.float16 and logits.shape == (9, 1000)
    info = bank.model("test_vit")
    assert info.spec == tiny_specs[1] and info.gmacs > 0 and info.params == 371240
    assert info.source["kind"] == "user" and len(info.source["sha256"]) == 64
    # Same logits as running the adapter directly on the decoded images.
    from cascade_explorer.core.adapters import create_adapter
    from cascade_explorer.core.images import load_image

    adapter = create_adapter(tiny_specs[1])
    direct = adapter.forward(np.stack([adapter.preprocess(load_image(f)) for f in samples.files]))
    # stored row-shifted by each row's maximum before the float16 cast (criteria ignore the shift)
    np.testing.assert_allclose(logits.astype(np.float32), direct - direct.max(axis=1, keepdims=True),
                               rtol=2e-3, atol=2e-3)
    assert (logits.max(axis=1) == 0).all()

    files = {p.name: p.stat().st_mtime_ns for p in (out / "splits" / "val" / "logits").iterdir()}
    again = _run(samples, tiny_specs, out)
    assert again.done == [] and sorted(again.skipped_models) == ["test_efficientnet", "test_vit"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "splits" / "val" / "logits").iterdir()} == files
    forced = _run(samples, tiny_specs[:1], out, force=True)
    assert [t.model_id for t in forced.done] == ["test_efficientnet"]


@pytest.mark.parametrize("also_a_regular_file", [True, False])
def test_out_at_a_non_bank_folder_deletes_nothing(tmp_path, tiny_specs, also_a_regular_file):
    """Issue 12: precompute --out at an existing non-bank folder deleted the user's hidden *.tmp-*
    files anywhere below it (then refused the folder, or, with only such files, made a bank there)."""
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs"))
    out = tmp_path / "mine"
    (out / "deep" / "er").mkdir(parents=True)
    theirs = [out / ".notes.txt.tmp-abcdefgh", out / "deep" / "er" / ".draft.md.tmp-12345678"]
    if also_a_regular_file:
        theirs.append(out / "photo.jpg")
    for path in theirs:
        path.write_text("the user's")
    with pytest.raises(BankError, match="not empty") as info:
        _run(samples, tiny_specs, out)
    assert all(p.is_file() and p.read_text() == "the user's" for p in theirs)
    assert "nothing was changed" in str(info.value)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == sorted(p.relative_to(out)
                                                                                       for p in theirs)


def test_interrupted_run_keeps_finished_models_and_resumes(tmp_path, tiny_specs, monkeypatch):
    from cascade_explorer.core.adapters import TimmAdapter

    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs"))
    out = tmp_path / "bank"
    real_forward = TimmAdapter.forward

    seen = []

    def dies_on_second_model(self, batch):
        if len(batch) == 4:  # a real batch, not the 1-image output-width probe
            if self.id not in seen:
                seen.append(self.id)
            if len(seen) == 2:
                raise KeyboardInterrupt  # like Ctrl-C (or a kill) during the second model's pass
        return real_forward(self, batch)

    monkeypatch.setattr(TimmAdapter, "forward", dies_on_second_model)
    with pytest.raises(KeyboardInterrupt):
        _run(samples, tiny_specs, out)
    monkeypatch.setattr(TimmAdapter, "forward", real_forward)
    finished, killed = seen
    partial = Bank.open(out, allow_incomplete=True)
    assert "val" in partial.model(finished).top1
    assert "val" not in partial.model(killed).top1
    # no half-written file anywhere (the writer lock's file is not data: it stays, like any lock file;
    # the signal store's folder and its per-model lock files are derived data, written atomically too)
    from cascade_explorer.core.atomic import is_temp_name
    from cascade_explorer.core.store import STORE_DIRNAME

    assert not any(is_temp_name(p.name) for p in out.rglob("*"))
    assert not any(p.name.startswith(".") and p.name != LOCK and STORE_DIRNAME not in p.parts for p in out.rglob("*"))
    first = (out / f"splits/val/logits/{finished}.npy").stat().st_mtime_ns
    resumed = _run(samples, tiny_specs, out)
    assert [t.model_id for t in resumed.done] == [killed]
    assert (out / f"splits/val/logits/{finished}.npy").stat().st_mtime_ns == first
    Bank.open(out)  # complete now


def test_bad_and_odd_images(tmp_path, tiny_specs):
    folder = tmp_path / "imgs" / "n01440764"
    folder.mkdir(parents=True)
    _photo(0).save(folder / "ok.jpg")
    _photo(1).convert("L").save(folder / "gray.png")
    _photo(2).convert("CMYK").save(folder / "cmyk.jpg")
    rgba = _photo(3).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    Image.fromarray((np.arange(48 * 40, dtype=np.uint16).reshape(40, 48) * 30)).save(folder / "deep16.png")
    buffer = io.BytesIO()
    _photo(5, size=(200, 200)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:2000])
    (folder / "zero.jpg").write_bytes(b"")
    samples = pc.samples_from_folder(tmp_path / "imgs")
    report = _run(samples, tiny_specs[:1], tmp_path / "bank")
    bank = Bank.open(tmp_path / "bank")
    kept = set(bank.image_paths("val"))
    assert kept == {f"n01440764/{n}" for n in ("ok.jpg", "gray.png", "cmyk.jpg", "rgba.png", "deep16.png")}
    skipped = bank.manifest["splits"]["val"]["skipped"]
    assert {s["image_path"] for s in skipped} == {"n01440764/truncated.jpg", "n01440764/zero.jpg"}
    assert all("truncated" in s["reason"] or "empty" in s["reason"] for s in skipped)
    assert len(report.skipped_images) == 2
    # A second run knows the skipped images and does not mistake them for a different split.
    assert _run(samples, tiny_specs[:1], tmp_path / "bank").done == []


def test_out_holding_a_different_bank_is_refused_before_work(tmp_path, tiny_specs, monkeypatch):
    from cascade_explorer.core.adapters import TimmAdapter

    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs"))
    out = tmp_path / "bank"
    _run(samples, tiny_specs[:1], out)
    calls = []
    real_forward = TimmAdapter.forward
    monkeypatch.setattr(TimmAdapter, "forward", lambda self, b: calls.append(len(b)) or real_forward(self, b))
    fewer = samples.subset([0, 1, 2, 3])
    with pytest.raises(BankError, match="already exists with different samples"):
        _run(fewer, tiny_specs, out)
    assert calls == [1, 1]  # only the one-image output-width probes ran
    relabelled = pc.SampleList(samples.root, samples.files, samples.rel_paths, samples.sample_ids,
                               samples.labels[::-1].copy())
    with pytest.raises(BankError, match="different labels"):
        _run(relabelled, tiny_specs[:1], out)
    # Different classes: a bank built for other class names.
    with pytest.raises(BankError, match="different class names"):
        _run(samples, tiny_specs[:1], out, class_names=[f"c{i}" for i in range(1000)])
    # A folder that is not a bank at all.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    with pytest.raises(BankError, match="not empty"):
        _run(samples, tiny_specs[:1], junk)


def test_class_count_mismatch_and_bad_spec_fail_before_work(tmp_path, tiny_specs):
    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        _photo(1).save(tmp_path / "imgs" / name / "a.png")
    samples = pc.samples_from_folder(tmp_path / "imgs")
    with pytest.raises(UsageError, match="2 classes but the models output 1000"):
        _run(samples, tiny_specs[:1], tmp_path / "bank")
    with pytest.raises(UsageError, match="unknown backend"):
        _run(samples, ["onnx:model.onnx"], tmp_path / "bank")
    assert not (tmp_path / "bank").exists()


def test_corrupted_split_is_deterministic_and_recorded(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs", per_class=2))
    corruption = {"types": ["contrast", "gaussian_noise"], "severity": 3, "seed": 0}
    out = tmp_path / "bank"
    _run(samples, tiny_specs[:1], out)
    _run(samples, tiny_specs[:1], out, split="shifted", corruption=corruption)
    bank = Bank.open(out)
    transform = bank.manifest["splits"]["shifted"]["transform"]
    assert transform["kind"] == "corruption" and transform["types"] == ["contrast", "gaussian_noise"]
    assert "Hendrycks" in transform["implementation"]
    clean = np.asarray(bank.logits("test_efficientnet", "val"), dtype=np.float32)
    shifted = np.asarray(bank.logits("test_efficientnet", "shifted"), dtype=np.float32)
    assert not np.allclose(clean, shifted)
    second = tmp_path / "bank2"
    _run(samples, tiny_specs[:1], second, split="shifted", corruption=corruption)
    np.testing.assert_array_equal(np.asarray(Bank.open(second).logits("test_efficientnet", "shifted")), shifted)
    # Same split name with another corruption is a different split.
    with pytest.raises(BankError, match="different corruption"):
        _run(samples, tiny_specs[:1], out, split="shifted", corruption={**corruption, "severity": 5})


def test_cli_precompute_end_to_end_and_errors(tmp_path, tiny_specs, capsys):
    folder, labels = _flat_folder(tmp_path / "val", n=5)
    out = tmp_path / "bank"
    code = cli_main(["precompute", "--images", str(folder), "--labels", str(labels), "--models", tiny_specs[0],
                     "--out", str(out), "--workers", "0", "--batch-size", "2", "--no-latency",
                     "--dataset-name", "tiny"])
    assert code == 0
    err = capsys.readouterr()
    assert "forward-only" in err.out and "end-to-end" in err.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "tiny"
    assert Bank.open(out).n_samples("val") == 5
    assert cli_main(["precompute", "--images", str(tmp_path / "nope"), "--models", tiny_specs[0],
                     "--out", str(out)]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert cli_main(["precompute", "--images", str(folder), "--labels", str(labels), "--models", "timm:not_a_net",
                     "--out", str(out)]) == 2
    assert "timm has no architecture 'not_a_net'" in capsys.readouterr().err
    assert cli_main(["precompute", "--images", str(folder), "--labels", str(labels), "--models", tiny_specs[0],
                     "--out", str(out), "--corruptions", "fog"]) == 2
    assert "unknown corruption type(s) ['fog']" in capsys.readouterr().err
    assert cli_main(["precompute", "--images", str(folder), "--labels", str(labels), "--models", tiny_specs[0],
                     "--out", str(out), "--split", "noisy", "--corruptions", "gaussian_noise", "--workers", "0",
                     "--no-latency"]) == 0
    assert Bank.open(out).manifest["splits"]["noisy"]["transform"]["types"] == ["gaussian_noise"]


def test_latency_recorded_with_device_name(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs", per_class=1))
    _run(samples, tiny_specs[:1], tmp_path / "bank", latency=True)
    info = Bank.open(tmp_path / "bank").model("test_efficientnet")
    (device, values), = info.latency_ms.items()
    assert device.endswith(", cpu") and "cores" in device
    assert set(values) == {"batch_1", "batch_32"} and all(v > 0 for v in values.values())


# ------------------------------------------------------------------------ real images and models

def _default_bank():
    from cascade_explorer.core.bank import DEFAULT_BANK_PATH

    if not (DEFAULT_BANK_PATH / "manifest.json").is_file():
        pytest.skip("default bank not built yet")
    return Bank.open(DEFAULT_BANK_PATH)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["mobilenet_v1_025_128", "mobilenet_v3_small_224", "efficientnet_lite0"])
def test_rerunning_a_model_reproduces_the_default_bank(shared_dir, model_id, monkeypatch):
    """A few real images through the same adapter give the stored float16 logits back."""
    from cascade_explorer.core.adapters import create_adapter
    from cascade_explorer.core.corruptions import corrupt_image
    from cascade_explorer.core.images import load_image

    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    bank = _default_bank()
    info = bank.model(model_id)
    adapter = create_adapter(info.spec)
    root = shared_dir / "data" / "imagenet-val-1300"
    rows = [0, 7, 500, 1299]
    for split in bank.splits:
        paths = bank.image_paths(split)
        ids = bank.sample_ids(split)
        transform = bank.manifest["splits"][split]["transform"]
        batch = []
        for row in rows:
            pixels = np.asarray(load_image(root / paths[row]))
            if transform:
                pixels = corrupt_image(pixels, transform["types"], severity=transform["severity"],
                                       seed=transform["seed"], sample_id=ids[row])
            batch.append(adapter.preprocess(Image.fromarray(pixels)))
        fresh = adapter.forward(np.stack(batch)).astype(np.float32)
        stored = np.asarray(bank.logits(model_id, split))[rows].astype(np.float32)
        # banks built before the row shift store raw logits, later ones each row minus its maximum:
        # compare both shifted (every criterion is invariant to a per-row shift)
        fresh = (fresh - fresh.max(axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
        stored = stored - stored.max(axis=1, keepdims=True)
        # float16 keeps ~3 significant digits; torch CPU kernels may differ in the last bits.
        np.testing.assert_allclose(fresh, stored, rtol=0, atol=0.02 * max(1.0, float(np.abs(stored).max()) / 16))
        assert (fresh.argmax(1) == stored.argmax(1)).all()


@pytest.mark.slow
def test_default_bank_contents(shared_dir):
    bank = _default_bank()
    assert bank.splits == ["val", "val-corrupted"]
    assert len(bank.models) == 8 and bank.num_classes == 1000
    assert bank.n_samples("val") == 1300
    top1 = [m.top1["val"] for m in bank.models]
    # Sanity range from ../shared (a simple pipeline): about 53, 71, 76, 78, 80, 83, 83, 83 %.
    assert 0.45 < min(top1) < 0.60 and 0.78 < max(top1) < 0.90
    for m in bank.models:
        assert m.top1["val-corrupted"] < m.top1["val"]
        assert m.latency_ms and m.params
        assert m.source["kind"] in ("url", "package")
    source = bank.manifest["splits"]["val"]["image_source"]
    assert source["url_base"].startswith("https://raw.githubusercontent.com/VeriSilicon/acuity-dataset/")
    assert len(source["sha256"]) == 1300
    from cascade_explorer.core.fetch import sha256_file

    first = bank.image_paths("val")[0]
    assert sha256_file(shared_dir / "data" / "imagenet-val-1300" / first) == source["sha256"][first]
    assert any("random" in c for c in bank.caveats) and any("227" in c for c in bank.caveats)


# ------------------------------------------------------------------------------ corruptions

def test_corruptions_follow_the_definitions():
    import colorsys

    from cascade_explorer.core import corruptions as c

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    x = image / 255.0
    # contrast: (x - mean) * c + mean per channel, c = 0.2 at severity 3.
    means = x.mean(axis=(0, 1))
    np.testing.assert_array_equal(c.contrast(image, 3, None),
                                  np.rint(np.clip((x - means) * 0.2 + means, 0, 1) * 255).astype(np.uint8))
    # brightness: V + 0.3 in HSV, checked pixel by pixel with the standard library's colorsys.
    out = c.brightness(image, 3, None)
    for (i, j) in [(0, 0), (5, 7), (11, 9)]:
        h, s, v = colorsys.rgb_to_hsv(*x[i, j])
        expected = np.array(colorsys.hsv_to_rgb(h, s, min(v + 0.3, 1.0)))
        np.testing.assert_allclose(out[i, j] / 255.0, expected, atol=0.5 / 255 + 1e-9)
    # defocus blur keeps a flat image flat (normalised kernel, reflecting border).
    flat = np.full((30, 30, 3), 77, np.uint8)
    assert (c.defocus_blur(flat, 3, None) == 77).all() and (c.motion_blur(flat, 3, rng) == 77).all()
    # gaussian noise: sd 0.18 * 255 at severity 3 (away from clipping).
    grey = np.full((200, 200, 3), 128, np.uint8)
    assert c.gaussian_noise(grey, 3, np.random.default_rng(1)).std() == pytest.approx(0.18 * 255, rel=0.05)


def test_corruption_is_seeded_per_image_id():
    from cascade_explorer.core.corruptions import corrupt_image, corruption_for

    image = np.asarray(_photo(3, size=(64, 64)))
    types = ["gaussian_noise", "motion_blur", "jpeg_compression"]
    a = corrupt_image(image, types, severity=3, seed=0, sample_id="img_1")
    assert np.array_equal(a, corrupt_image(image, types, severity=3, seed=0, sample_id="img_1"))
    ids = [f"img_{i}" for i in range(300)]
    chosen = [corruption_for(i, types, 0) for i in ids]
    assert {t: chosen.count(t) for t in types} == pytest.approx({t: 100 for t in types}, abs=30)
    assert chosen != [corruption_for(i, types, 1) for i in ids]
    with pytest.raises(UsageError, match="unknown corruption"):
        corrupt_image(image, ["fog"], severity=3, seed=0, sample_id="x")
    with pytest.raises(UsageError, match="severity must be 1..5"):
        corrupt_image(image, types, severity=6, seed=0, sample_id="x")


def test_each_image_decoded_once_per_run_across_groups(tmp_path, tiny_specs, monkeypatch):
    from cascade_explorer.core import images

    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs", per_class=2))
    decoded = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda path, **kw: decoded.append(Path(path).name) or real(path, **kw))
    report = _run(samples, tiny_specs, tmp_path / "bank")  # two preprocessing groups -> two passes
    assert len(report.done) == 2
    assert sorted(decoded) == sorted(Path(f).name for f in samples.files)


def test_worker_processes_give_the_same_logits(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs", per_class=2))
    _run(samples, tiny_specs[:1], tmp_path / "a", workers=0)
    _run(samples, tiny_specs[:1], tmp_path / "b", workers=2)
    a = np.asarray(Bank.open(tmp_path / "a").logits("test_efficientnet", "val"))
    b = np.asarray(Bank.open(tmp_path / "b").logits("test_efficientnet", "val"))
    np.testing.assert_array_equal(a, b)


def test_default_bank_command_errors_and_readme(tmp_path, capsys):
    from cascade_explorer.commands import default_bank as default_bank_command
    from cascade_explorer.core import default_bank

    assert default_bank_command.main(["--shared", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "dataset.txt not found" in capsys.readouterr().err
    bank = _default_bank()
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bank.path, copy)
    text = default_bank.write_readme(copy).read_text()
    assert "python -m cascade_explorer.commands.default_bank" in text
    assert all(f"`{m}`" in text for m in bank.model_ids) and "not a random sample" in text.lower()


def test_sigkill_mid_run_keeps_finished_models(tmp_path, tiny_specs):
    """A real `kill -9` of the CLI: finished model x split pairs survive, a re-run completes the rest."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "imgs" / "n01440764"
    folder.mkdir(parents=True)
    for i in range(40):
        _photo(i).save(folder / f"{i}.png")
    out = tmp_path / "bank"
    # A leftover temp file from an earlier killed write is cleaned up, never read as data.
    command = [sys.executable, "-m", "cascade_explorer.commands.cli", "precompute", "--images", str(tmp_path / "imgs"),
               "--models", *tiny_specs, "--out", str(out), "--batch-size", "1", "--workers", "0", "--no-latency"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    logits = out / "splits" / "val" / "logits"

    def finished_models() -> set:
        try:
            models = json.loads((out / "manifest.json").read_text())["models"]
        except (FileNotFoundError, KeyError):
            return set()
        return {m for m, info in models.items() if "val" in info["top1"]}

    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and not finished_models():
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    finished = finished_models()
    assert len(finished) == 1, "exactly the first model should have finished before the kill"
    unfinished = ({"test_efficientnet", "test_vit"} - finished).pop()
    (logits / f".{unfinished}.npy.tmp-leftover").write_bytes(b"half")
    # Killed between saving the logits and recording them: an unrecorded file gets recomputed.
    np.save(logits / f"{unfinished}.npy", np.zeros((3, 3), np.float16))
    stamps = {m: (logits / f"{m}.npy").stat().st_mtime_ns for m in finished}
    report = _run(pc.samples_from_folder(tmp_path / "imgs"), tiny_specs, out)
    assert {t.model_id for t in report.done} == {"test_efficientnet", "test_vit"} - finished
    assert {m: (logits / f"{m}.npy").stat().st_mtime_ns for m in finished} == stamps
    bank = Bank.open(out)  # complete and valid: no temp file left
    assert bank.n_samples("val") == 40


def _devkit_meta(path: Path, entries) -> None:
    """A devkit-style meta.mat: a 'synsets' struct array (ILSVRC2012_ID, WNID, num_children)."""
    from scipy.io import savemat

    table = np.zeros(len(entries), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for row, (class_id, wnid, children) in enumerate(entries):
        table[row] = (class_id, wnid, children)
    savemat(str(path), {"synsets": table})


def test_devkit_ground_truth_maps_ilsvrc_ids_to_standard_indices(tmp_path):
    folder, labels = _flat_folder(tmp_path / "val", n=3)
    # The devkit's ids are in its own class order: id 7 is tench (standard index 0), id 5 goldfish (1),
    # id 2 great white shark (2); id 1001 is a non-leaf synset and must be ignored.
    _devkit_meta(labels.parent / "meta.mat", [(7, "n01440764", 0), (5, "n01443537", 0),
                                              (2, "n01484850", 0), (1001, "n00001740", 3)])
    labels.write_text("5\n2\n7\n")
    samples = pc.samples_from_folder(folder, labels)
    assert samples.rel_paths == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert samples.labels.tolist() == [1, 2, 0]

    labels.write_text("5\n1001\n7\n")
    with pytest.raises(UsageError, match="not leaf classes"):
        pc.samples_from_folder(folder, labels)


# ------------------------------------------------------------------------- user-given options

def test_cli_paths_of_the_wrong_kind_say_so(tmp_path, tiny_specs, capsys):
    folder, labels = _flat_folder(tmp_path / "val", n=2)
    out = tmp_path / "bank"
    cases = [(["--images", str(folder), "--labels", str(tmp_path)], "--labels", "is a folder, expected a file"),
             (["--image-list", str(tmp_path)], "--image-list", "is a folder, expected a file"),
             (["--images", str(labels)], "--images", "is a file, expected a folder"),
             (["--images", str(tmp_path / ("x" * 300))], "--images", "name too long")]
    for source, option, expected in cases:
        assert cli_main(["precompute", *source, "--models", tiny_specs[0], "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and option in err and expected in err.lower(), err
    assert not out.exists()


@pytest.mark.parametrize("overrides, expected", [
    ({"split": "../x"}, "--split '../x': invalid split id"),
    ({"seed": -1, "corruptions": "contrast"}, "--seed must be >= 0"),
    ({"severity": 0, "corruptions": "contrast"}, "--severity must be 1..5"),
    ({"severity": 6, "corruptions": "contrast"}, "--severity must be 1..5"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"workers": -1}, "--workers must be >= 0"),
    ({"severity": 5}, "--severity only applies with --corruptions"),
], ids=["split", "seed", "severity-0", "severity-6", "batch-size", "workers", "severity-without-corruptions"])
def test_bad_options_fail_before_any_work(tmp_path, tiny_specs, capsys, monkeypatch, overrides, expected):
    """The precompute command checks its options itself (whatever the argument parser lets through); the
    library's message, written with the command's flags, names the option."""
    from cascade_explorer.commands import cli
    from cascade_explorer.commands import precompute as precompute_command
    from cascade_explorer.core import adapters

    folder, labels = _flat_folder(tmp_path / "val", n=2)
    built = []
    real_create = adapters.create_adapter
    monkeypatch.setattr(adapters, "create_adapter", lambda *a, **k: built.append(a) or real_create(*a, **k))
    out = tmp_path / "bank"
    parser = cli.build_parser()
    args = parser.parse_args(["precompute", "--images", str(folder), "--labels", str(labels), "--models",
                                      tiny_specs[0], "--out", str(out), "--workers", "0", "--no-latency"])
    for key, value in overrides.items():
        setattr(args, key, value)
    with pytest.raises(UsageError) as error:
        precompute_command.run(args)
    assert expected in cli.user_message(error.value, cli.parameter_flags(parser, "precompute"))
    assert built == [] and not out.exists()


@pytest.mark.parametrize("extra, expected", [
    (["--split", "../x"], "--split '../x': invalid split id"),
    (["--severity", "5"], "--severity only applies with --corruptions"),
    (["--severity", "3"], "--severity only applies with --corruptions"),   # the default level, said explicitly
])
def test_cli_bad_options_are_one_line_before_any_work(tmp_path, tiny_specs, capsys, extra, expected):
    folder, labels = _flat_folder(tmp_path / "val", n=2)
    out = tmp_path / "bank"
    code = cli_main(["precompute", "--images", str(folder), "--labels", str(labels), "--models", tiny_specs[0],
                     "--out", str(out), "--workers", "0", "--no-latency", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and expected in err, err
    assert not out.exists()


def test_library_rejects_a_bad_split_before_models_load(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_image_folder(tmp_path / "imgs", per_class=1))
    with pytest.raises(UsageError, match="^split '../x'"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", split="../x")
    with pytest.raises(UsageError, match="^workers must be >= 0"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", workers=-2)
    assert not (tmp_path / "bank").exists()


def test_a_bank_records_weights_under_home_as_tilde_and_they_still_load(tmp_path, tiny_specs, monkeypatch):
    """Issue 12: the bank recorded the weights' absolute path (/home/<user>/...) in each model's spec."""
    from cascade_explorer.core.adapters import create_adapter

    weights = Path(tiny_specs[1].split("=", 1)[1])
    home = weights.parent.parent
    monkeypatch.setenv("HOME", str(home))
    out = tmp_path / "bank"
    _run(pc.samples_from_folder(_image_folder(tmp_path / "imgs")), tiny_specs[1:], out)
    text = (out / "manifest.json").read_text()
    assert str(home) not in text
    spec = Bank.open(out).model("test_vit").spec
    assert spec == f"timm:test_vit=~/{weights.parent.name}/{weights.name}"
    assert create_adapter(spec).id == "test_vit"      # the author's machine still finds the file
