"""One resolved cascade per run (issue 10): (bank, view) -> the cascade in view, which the Explorer,
the Exit gallery, Distribution shift and Live pages all render from (the only place that works it out).

`resolve` works out, once, what the Explorer used to work out four times in a run: the image set,
the chain (the view's models on that set, else the headline cascade, else the first model), the
hand-set thresholds (the view's, else the headline's, else each stage's median confidence), each
slider's range and the thresholds clamped into it (a clamp never changes a result: nothing lies
outside the stage's confidences), and for target mode the target and the thresholds fitted for it on
the calibration half (certified, with its certificate, when the view asks for a guarantee; metrics then
on the held-out half) or why no thresholds meet it. It writes no
state: widgets change the view only in their callbacks, and the page renders from this object.
Every number comes from the bank's BankAnalysis through dashboard/data.py (memoised there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade_explorer.core.errors import UsageError
from cascade_explorer.dashboard import data, state, ui


@dataclass(frozen=True)
class SliderRange:
    """One threshold slider: lowest confidence, one step above the highest (the stage never answers), step."""

    low: float
    top: float
    step: float


@dataclass(frozen=True)
class Resolved:
    split: str
    models: tuple[str, ...]
    hand_thresholds: tuple[float, ...]        # the sliders' values (clamped into their ranges)
    sliders: tuple[SliderRange, ...]          # one per non-final stage in manual mode, else ()
    thresholds: tuple[float, ...]             # what is evaluated: hand-set, or fitted for the target
    on: str                                   # "all" or "eval" (fitted thresholds: always "eval")
    fitted: bool
    target_value: float | None
    fit_error: str | None
    certificate: object = None                # core.certify.Certificate when a guarantee (delta) was asked for

    def as_dict(self) -> dict:
        """The dict ui.evaluate_current and the page code read (split, models, thresholds, on, ...)."""
        return {"split": self.split, "models": self.models, "thresholds": self.thresholds, "on": self.on,
                "fitted": self.fitted, "target_value": self.target_value, "fit_error": self.fit_error,
                "certificate": self.certificate}


def slider_range(confidence) -> SliderRange:
    """The slider of one stage from its confidences (N,): [min, max + step], step = range / 1000."""
    conf = np.asarray(confidence, dtype=float)
    low, high = float(np.min(conf)), float(np.max(conf))
    step = max((high - low) / 1000.0, 1e-6)
    return SliderRange(low, high + step, step)


def view_chain(bank, view: state.ViewState, split: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The chain in view and its hand-set thresholds: the view's models, else the headline cascade of
    `split` (with its thresholds when the view uses plain max softmax, the headline's setting), else
    the split's first model; models without outputs on `split` are left out (the first model stands in
    when none is left). Thresholds whose count does not fit the chain become each non-final stage's
    median confidence (half the images exit)."""
    available = bank.models_for(split)
    models, thresholds = view.models, view.thresholds
    if not models:
        head = data.headline(data.key(bank), split)
        if head is not None:
            models = tuple(head["models"])
            plain = view.criterion == "max_softmax" and view.temperature == "none" and not view.ensemble
            thresholds = tuple(float(t) for t in head["thresholds"]) if plain else ()
    models = tuple(m for m in models if m in available) or tuple(available[:1])
    if len(thresholds) != len(models) - 1:
        thresholds = tuple(data.default_thresholds(data.key(bank), split, models, view.criterion))
    return models, tuple(thresholds)


def resolve(bank, view: state.ViewState) -> Resolved:
    """The cascade in view (see the module docstring). Raises what core raises for a damaged bank."""
    split = ui.split_of(bank, view)
    key = data.key(bank)
    models, thresholds = view_chain(bank, view, split)
    sliders: tuple[SliderRange, ...] = ()
    if len(models) >= 2 and view.mode == "manual":
        stages = data.stage_signals(key, split, models, view.criterion, view.temperature, view.ensemble)
        sliders = tuple(slider_range(stages[i].confidence) for i in range(len(models) - 1))
        thresholds = tuple(float(min(max(t, r.low), r.top)) for t, r in zip(thresholds, sliders))
    evaluated, on, fitted, target_value, fit_error, certificate = tuple(thresholds), view.on, False, None, None, None
    if view.mode == "target" and len(models) >= 2:
        target_value = (view.target_value if view.target_value is not None
                        else ui.default_target(bank, split, view.target_kind, view, models))
        try:
            if view.delta is not None:
                # certified: the certificate's thresholds (when not certified, the most conservative
                # candidate, shown with the certificate saying it carries no guarantee)
                certificate = data.certify(key, split, models, view.criterion, view.temperature, view.ensemble,
                                           view.target_kind, float(target_value), view.delta)
                evaluated = certificate.thresholds
            else:
                evaluated = data.fit_for_target(key, split, models, view.criterion, view.temperature,
                                                view.ensemble, view.target_kind, float(target_value))
            fitted, on = True, "eval"
        except UsageError as exc:   # out of reach: the page says so and shows the hand-set thresholds
            fit_error = str(exc)
    return Resolved(split=split, models=tuple(models), hand_thresholds=tuple(thresholds), sliders=sliders,
                    thresholds=tuple(float(t) for t in evaluated), on=on, fitted=fitted,
                    target_value=None if target_value is None else float(target_value), fit_error=fit_error,
                    certificate=certificate)
