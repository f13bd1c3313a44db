"""Cascade config JSON: the cascade the dashboard exports and `predict` / live inference load.

{"format": "cascade-explorer/cascade", "version": 1,
 "bank": {"name": ..., "path": ...},
 "models": [{"id", "spec", "source", "gmacs", "temperature"}, ...],   # cheapest first
 "criterion": "max_softmax", "thresholds": [0.7], "ensemble": false,
 "class_names_from": "bank", "expected": {"split", "accuracy", "avg_gmacs", "exit_fractions"},
 "certificate": null or core.certify.Certificate.to_dict() of the thresholds (optional)}

A certificate (from `evaluate --certify`) says with what probability the target holds on new data;
on load it must name a known target, a delta in (0, 1), and, when certified, the config's own
thresholds (a certificate of other thresholds would be a false claim).

Thresholds may be +/-inf (never / always exit); JSON has no infinity, so they are written as
the strings "inf" / "-inf".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_json
from .bank.format import MAX_COST
from .criteria import CRITERIA
from .errors import ConfigError, JSONFormatError, special_file_problem
from .jsonsafe import json_float
from .jsonsafe import loads as loads_json
from .paths import portable_path

CONFIG_FORMAT = "cascade-explorer/cascade"
CONFIG_VERSION = 1
_KNOWN_KEYS = {"format", "version", "bank", "models", "criterion", "thresholds", "ensemble",
               "class_names_from", "class_names", "expected", "certificate"}


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _number(value, name: str, *, minimum=None, exclusive_min=False, maximum=None, allow_inf=False) -> float:
    if isinstance(value, str) and allow_inf and value.strip().lower() in ("inf", "+inf", "infinity", "-inf",
                                                                          "-infinity"):
        value = float(value.strip().lower().replace("infinity", "inf"))
    if not _is_real(value):
        raise ConfigError(name, f"must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (exclusive_min and value == minimum)):
        raise ConfigError(name, f"must be {'>' if exclusive_min else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value!r}")
    return value


@dataclass
class CascadeConfig:
    """A cascade: models (cheapest first), criterion, one threshold per non-final stage."""

    models: list[dict]
    criterion: str = "max_softmax"
    thresholds: list[float] = field(default_factory=list)
    ensemble: bool = False
    bank: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    class_names_from: str = "bank"
    class_names: list[str] | None = None
    certificate: dict | None = None
    extra: dict = field(default_factory=dict)   # unknown top-level keys, kept on save

    def __post_init__(self):
        self.validate()

    # -- validation

    def validate(self) -> None:
        if not isinstance(self.models, (list, tuple)) or not self.models:
            raise ConfigError("models", "must be a non-empty list of {id, spec, gmacs, ...}, cheapest first")
        models = []
        for index, model in enumerate(self.models):
            name = f"models[{index}]"
            if not isinstance(model, dict):
                raise ConfigError(name, f"must be an object, got {type(model).__name__}")
            model = dict(model)
            if not isinstance(model.get("id"), str) or not model["id"]:
                raise ConfigError(f"{name}.id", "must be a non-empty string (the bank's model id)")
            if model.get("spec") is not None and not isinstance(model["spec"], str):
                raise ConfigError(f"{name}.spec", f"must be a string or null, got {model['spec']!r}")
            if model.get("source") is not None and not isinstance(model["source"], dict):
                raise ConfigError(f"{name}.source", "must be an object or null")
            if "gmacs" in model and model["gmacs"] is not None:
                model["gmacs"] = _number(model["gmacs"], f"{name}.gmacs", minimum=0)
                if model["gmacs"] > MAX_COST:   # sums of such costs overflow to inf
                    raise ConfigError(f"{name}.gmacs", f"must be <= {MAX_COST:g} (GMACs per input), "
                                                       f"got {model['gmacs']:g}")
            model["temperature"] = _number(model.get("temperature", 1.0), f"{name}.temperature", minimum=0,
                                           exclusive_min=True)
            models.append(model)
        ids = [m["id"] for m in models]
        if len(set(ids)) != len(ids):
            raise ConfigError("models", f"a model appears twice: {ids}")
        costs = [m.get("gmacs") for m in models]
        if None not in costs and any(b < a for a, b in zip(costs, costs[1:])):
            listing = ", ".join(f"{m['id']} ({m['gmacs']:.4g} GMACs)" for m in models)
            raise ConfigError("models", f"must run cheapest first, got {listing}; reorder them by gmacs")
        self.models = models
        if self.criterion not in CRITERIA:
            raise ConfigError("criterion", f"must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if not isinstance(self.thresholds, (list, tuple)):
            raise ConfigError("thresholds", f"must be a list of numbers, got {self.thresholds!r}")
        self.thresholds = [_number(t, f"thresholds[{i}]", allow_inf=True) for i, t in enumerate(self.thresholds)]
        if len(self.thresholds) != len(models) - 1:
            raise ConfigError("thresholds", f"needs one threshold per non-final stage: {len(models) - 1} for "
                                            f"{len(models)} models, got {len(self.thresholds)}")
        if not isinstance(self.ensemble, bool):
            raise ConfigError("ensemble", f"must be true or false, got {self.ensemble!r}")
        if not isinstance(self.bank, dict):
            raise ConfigError("bank", "must be an object {name, path}")
        for key in ("name", "path"):
            if self.bank.get(key) is not None and not isinstance(self.bank[key], str):
                raise ConfigError(f"bank.{key}", f"must be a string, got {self.bank[key]!r}")
        if self.class_names_from not in ("bank", "config"):
            raise ConfigError("class_names_from", f"must be 'bank' or 'config', got {self.class_names_from!r}")
        if self.class_names is not None and (not isinstance(self.class_names, list)
                                             or not all(isinstance(c, str) for c in self.class_names)):
            raise ConfigError("class_names", "must be a list of strings or null")
        if self.class_names_from == "config" and not self.class_names:
            raise ConfigError("class_names", "is required when class_names_from is 'config'")
        self._validate_expected(len(models))
        self._validate_certificate()

    def _validate_certificate(self) -> None:
        if self.certificate is None:
            return
        from .certify import TARGETS

        c = self.certificate
        if not isinstance(c, dict):
            raise ConfigError("certificate", f"must be an object (from `evaluate --certify`) or null, got "
                                             f"{type(c).__name__}")
        c = dict(c)
        if not isinstance(c.get("certified"), bool):
            raise ConfigError("certificate.certified", f"must be true or false, got {c.get('certified')!r}")
        if c.get("target") not in TARGETS:
            raise ConfigError("certificate.target", f"must be one of {', '.join(TARGETS)}, got {c.get('target')!r}")
        c["target_value"] = _number(c.get("target_value"), "certificate.target_value", minimum=0)
        c["delta"] = _number(c.get("delta"), "certificate.delta", minimum=0, exclusive_min=True)
        if not c["delta"] < 1:
            raise ConfigError("certificate.delta", f"must be < 1, got {c['delta']!r}")
        if c.get("p_value") is not None:
            c["p_value"] = _number(c["p_value"], "certificate.p_value", minimum=0, maximum=1)
        if not isinstance(c.get("thresholds"), (list, tuple)):
            raise ConfigError("certificate.thresholds", "must be a list of numbers")
        thresholds = [_number(t, f"certificate.thresholds[{i}]", allow_inf=True) for i, t in enumerate(c["thresholds"])]
        if c["certified"] and thresholds != list(self.thresholds):
            raise ConfigError("certificate.thresholds", f"certifies {thresholds}, not this cascade's thresholds "
                                                        f"{list(self.thresholds)}; re-run `evaluate --certify` "
                                                        "or remove the certificate")
        c["thresholds"] = [json_float(t) for t in thresholds]
        if c.get("n_calibration") is not None:
            c["n_calibration"] = int(_number(c["n_calibration"], "certificate.n_calibration", minimum=1))
        for key in ("method", "message", "loss"):
            if c.get(key) is not None and not isinstance(c[key], str):
                raise ConfigError(f"certificate.{key}", f"must be text, got {c[key]!r}")
        self.certificate = c

    def _validate_expected(self, n_models: int) -> None:
        if not isinstance(self.expected, dict):
            raise ConfigError("expected", "must be an object {split, accuracy, avg_gmacs, exit_fractions}")
        expected = dict(self.expected)
        if expected.get("split") is not None and not isinstance(expected["split"], str):
            raise ConfigError("expected.split", f"must be a string, got {expected['split']!r}")
        if expected.get("accuracy") is not None:
            expected["accuracy"] = _number(expected["accuracy"], "expected.accuracy", minimum=0, maximum=1)
        if expected.get("avg_gmacs") is not None:
            expected["avg_gmacs"] = _number(expected["avg_gmacs"], "expected.avg_gmacs", minimum=0)
        fractions = expected.get("exit_fractions")
        if fractions is not None:
            if not isinstance(fractions, (list, tuple)) or len(fractions) != n_models:
                raise ConfigError("expected.exit_fractions", f"must be a list of {n_models} fractions (one per stage)")
            fractions = [_number(f, f"expected.exit_fractions[{i}]", minimum=0, maximum=1)
                         for i, f in enumerate(fractions)]
            if abs(sum(fractions) - 1.0) > 1e-6:
                raise ConfigError("expected.exit_fractions", f"must sum to 1, got {sum(fractions):.6g}")
            expected["exit_fractions"] = fractions
        self.expected = expected

    # -- conversion

    @property
    def model_ids(self) -> list[str]:
        return [m["id"] for m in self.models]

    @property
    def temperatures(self) -> list[float]:
        return [m["temperature"] for m in self.models]

    def to_dict(self) -> dict:
        data = {
            "format": CONFIG_FORMAT, "version": CONFIG_VERSION,
            "bank": dict(self.bank),
            "models": [dict(m) for m in self.models],
            "criterion": self.criterion,
            "thresholds": [json_float(t) for t in self.thresholds],
            "ensemble": self.ensemble,
            "class_names_from": self.class_names_from,
            "expected": dict(self.expected),
        }
        if self.class_names is not None:
            data["class_names"] = list(self.class_names)
        if self.certificate is not None:
            data["certificate"] = dict(self.certificate)
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_dict(cls, data: dict, *, path=None) -> "CascadeConfig":
        try:
            if not isinstance(data, dict):
                raise ConfigError("(top level)", f"must be a JSON object, got {type(data).__name__}")
            if data.get("format") != CONFIG_FORMAT:
                raise ConfigError("format", f"must be {CONFIG_FORMAT!r}, got {data.get('format')!r} "
                                            "(is this a cascade exported by cascade-explorer?)")
            if data.get("version") != CONFIG_VERSION or isinstance(data.get("version"), bool):
                raise ConfigError("version", f"unsupported version {data.get('version')!r} (this version reads "
                                             f"{CONFIG_VERSION}); upgrade cascade-explorer")
            if "models" not in data:
                raise ConfigError("models", "is missing")
            return cls(
                models=data["models"],
                criterion=data.get("criterion", "max_softmax"),
                thresholds=data.get("thresholds", []),
                ensemble=data.get("ensemble", False),
                bank=data.get("bank") or {},
                expected=data.get("expected") or {},
                class_names_from=data.get("class_names_from", "bank"),
                class_names=data.get("class_names"),
                certificate=data.get("certificate"),
                extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
            )
        except ConfigError as error:
            if path is not None and error.path is None:
                raise ConfigError(error.field, error.problem, path=path) from None
            raise

    @classmethod
    def from_report(cls, bank, report: dict, certificate: dict | None = None) -> "CascadeConfig":
        """The deployable config of an evaluated cascade: `report` is analysis.evaluate's (models,
        criterion, thresholds, ensemble, temperatures, split, on and the metrics); each model brings
        its adapter spec, weight source and cost from the bank. certificate: Certificate.to_dict() of
        these thresholds (certified fitting), or None."""
        temperatures = report.get("temperatures") or {}
        entries = []
        for model_id in report["models"]:
            info = bank.model(model_id)
            entries.append({"id": model_id, "spec": info.spec, "source": info.source, "gmacs": info.gmacs,
                            "temperature": float(temperatures.get(model_id, 1.0))})
        return cls(
            models=entries, criterion=report["criterion"], thresholds=[float(t) for t in report["thresholds"]],
            ensemble=bool(report.get("ensemble", False)), bank={"name": bank.name, "path": portable_path(bank.path)},
            expected={"split": report["split"], "on": report.get("on"), "accuracy": report["accuracy"],
                      "avg_gmacs": report["avg_gmacs"], "exit_fractions": list(report["exit_fractions"])},
            certificate=None if certificate is None else dict(certificate),
        )

    @classmethod
    def load(cls, path) -> "CascadeConfig":
        path = Path(path).expanduser()
        if path.is_dir():
            raise ConfigError("(file)", "is a folder, expected a cascade config JSON file", path=path)
        problem = special_file_problem(path)
        if problem:
            raise ConfigError("(file)", problem, path=path)
        if not path.is_file():
            raise ConfigError("(file)", "cascade config file not found; export one from the dashboard "
                                        "(or `cascade-explorer evaluate ... --save-config FILE`) "
                                        "or pass the right path", path=path)
        try:
            data = loads_json(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("(file)", "not UTF-8 JSON text", path=path) from None
        except JSONFormatError as error:
            raise ConfigError("(file)", str(error), path=path) from None
        return cls.from_dict(data, path=path)

    def save(self, path) -> Path:
        self.validate()
        return atomic_write_json(Path(path).expanduser(), self.to_dict())
