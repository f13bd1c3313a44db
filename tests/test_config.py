"""Cascade config JSON: round trip, and errors naming the bad field."""

import json
import math

import pytest

from cascade_explorer.core.config import CONFIG_FORMAT, CascadeConfig, ConfigError


def _valid():
    return {
        "format": CONFIG_FORMAT, "version": 1,
        "bank": {"name": "imagenet-val-1300", "path": "/banks/imagenet-val-1300"},
        "models": [
            {"id": "mobilenet_v1_025_128", "spec": "tflite:mobilenet_v1_0.25_128_quant.tflite",
             "source": {"kind": "url", "url": "https://example.org/m.tflite", "sha256": "ab" * 32}, "gmacs": 0.014,
             "temperature": 1.0},
            {"id": "resnet50", "spec": "timm:resnet50.a1_in1k", "source": {"kind": "timm-hub"}, "gmacs": 4.1,
             "temperature": 1.3},
        ],
        "criterion": "softmax_margin", "thresholds": [0.7], "ensemble": True,
        "class_names_from": "bank",
        "expected": {"split": "val", "accuracy": 0.8, "avg_gmacs": 0.9, "exit_fractions": [0.7, 0.3]},
    }


def test_round_trip_through_file(tmp_path):
    config = CascadeConfig.from_dict(_valid())
    path = config.save(tmp_path / "cascade.json")
    loaded = CascadeConfig.load(path)
    assert loaded == config
    assert loaded.to_dict() == _valid()
    assert loaded.model_ids == ["mobilenet_v1_025_128", "resnet50"] and loaded.temperatures == [1.0, 1.3]
    assert json.loads(path.read_text())["format"] == CONFIG_FORMAT


def test_defaults_and_infinite_thresholds(tmp_path):
    config = CascadeConfig(models=[{"id": "a"}, {"id": "b"}, {"id": "c"}], thresholds=[math.inf, -math.inf])
    data = config.to_dict()
    assert data["thresholds"] == ["inf", "-inf"]             # JSON has no infinity
    assert data["criterion"] == "max_softmax" and data["models"][0]["temperature"] == 1.0
    config.save(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())   # strict JSON
    assert CascadeConfig.load(tmp_path / "c.json").thresholds == [math.inf, -math.inf]


def test_unknown_top_level_keys_are_kept():
    data = _valid()
    data["notes"] = "exported from the dashboard"
    assert CascadeConfig.from_dict(data).to_dict()["notes"] == "exported from the dashboard"


def _set(path, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return edit


_DELETE = object()


@pytest.mark.parametrize("edit, field_name", [
    (_set(["format"], "something-else"), "format"),
    (_set(["version"], 2), "version"),
    (_set(["models"], _DELETE), "models"),
    (_set(["models"], []), "models"),
    (_set(["models", 0], "resnet"), "models[0]"),
    (_set(["models", 1, "id"], ""), "models[1].id"),
    (_set(["models", 1, "id"], "mobilenet_v1_025_128"), "models"),
    (_set(["models", 0, "spec"], 5), "models[0].spec"),
    (_set(["models", 0, "source"], "url"), "models[0].source"),
    (_set(["models", 1, "gmacs"], -1), "models[1].gmacs"),
    (_set(["models", 1, "gmacs"], "big"), "models[1].gmacs"),
    (_set(["models", 0, "temperature"], 0), "models[0].temperature"),
    (_set(["models", 0, "temperature"], True), "models[0].temperature"),
    (_set(["criterion"], "confidence"), "criterion"),
    (_set(["thresholds"], [0.5, 0.6]), "thresholds"),
    (_set(["thresholds"], "0.5"), "thresholds"),
    (_set(["thresholds"], ["high"]), "thresholds[0]"),
    (_set(["thresholds"], [float("nan")]), "thresholds[0]"),
    (_set(["ensemble"], "yes"), "ensemble"),
    (_set(["bank"], "imagenet"), "bank"),
    (_set(["bank", "path"], 3), "bank.path"),
    (_set(["class_names_from"], "file"), "class_names_from"),
    (_set(["class_names_from"], "config"), "class_names"),
    (_set(["expected", "accuracy"], 1.5), "expected.accuracy"),
    (_set(["expected", "avg_gmacs"], -0.1), "expected.avg_gmacs"),
    (_set(["expected", "exit_fractions"], [0.7]), "expected.exit_fractions"),
    (_set(["expected", "exit_fractions"], [0.7, 0.7]), "expected.exit_fractions"),
    (_set(["expected", "split"], 1), "expected.split"),
])
def test_bad_field_is_named(tmp_path, edit, field_name):
    data = _valid()
    edit(data)
    path = tmp_path / "cascade.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        CascadeConfig.load(path)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field_name
    assert f"field {field_name!r}" in str(info.value) and str(path) in str(info.value)


def test_malformed_json_and_missing_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"format": "cascade-explorer/cascade",\n "version": 1,,}')
    with pytest.raises(ConfigError, match="line 2, column"):
        CascadeConfig.load(path)
    with pytest.raises(ConfigError, match="not found"):
        CascadeConfig.load(tmp_path / "missing.json")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        CascadeConfig.load(path)


def test_single_model_config_has_no_thresholds():
    assert CascadeConfig(models=[{"id": "only"}]).thresholds == []
    with pytest.raises(ConfigError, match="thresholds"):
        CascadeConfig(models=[{"id": "only"}], thresholds=[0.5])
