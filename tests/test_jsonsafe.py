import json
import math

import numpy as np

from cascade_explorer.core.jsonsafe import json_float, jsonable


def test_json_float_maps_non_finite_values_to_strict_json():
    assert json_float(None) is None
    assert json_float(float("nan")) is None
    assert json_float(math.inf) == "inf" and json_float(-math.inf) == "-inf"
    assert json_float(np.float32(0.5)) == 0.5 and type(json_float(np.float32(0.5))) is float


def test_jsonable_converts_nested_numpy_values():
    value = {"a": np.array([1.0, np.inf]), 3: (np.int64(2), np.bool_(True), np.nan)}
    out = jsonable(value)
    assert out == {"a": [1.0, "inf"], "3": [2, True, None]}
    json.dumps(out, allow_nan=False)   # strict JSON: raises on NaN/inf
