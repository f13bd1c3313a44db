"""Costs counted by the tool itself: GMACs (torch and TFLite graphs), parameters, latency.

torch: `torch.utils.flop_counter.FlopCounterMode` FLOPs / 2 on one image (matmuls, convolutions
and scaled-dot-product attention are all counted). TFLite: multiply-accumulates of CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED from the graph's tensor shapes (other ops are cheap and
are ignored, as in the published MobileNet figures).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


# Normalisation and activation ops: one MAC per element (FLOPs = 2 x elements). Counting them
# is what timm's published GMACs do (its deepspeed-based benchmark): without them EfficientNet-Lite0
# reads 0.385 instead of the published 0.40; with them 0.398 (resnet50: 4.11, as published).
_ELEMENTWISE_OPS = ("native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
                    "native_layer_norm", "native_group_norm", "relu", "relu_", "hardtanh", "hardtanh_",
                    "gelu", "gelu_", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid",
                    "hardsigmoid_", "sigmoid", "sigmoid_")


def _elementwise_flops(*arg_shapes, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(arg_shapes[0])


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_flop_mapping() -> dict:
    import torch

    aten = torch.ops.aten
    mapping = {}
    for name in _ELEMENTWISE_OPS:
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _elementwise_flops
    # torch counts flash/efficient attention (CUDA) but not the CPU kernel: add it so attention
    # is counted on every device (vit_base_patch16_224: 17.58 GMACs, as published).
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    return mapping


def torch_gmacs(model, input_size, *, device="cpu") -> float:
    """GMACs of one forward pass of `model` on a (1, *input_size) input.

    FlopCounterMode FLOPs / 2: convolutions, matmuls and attention, plus one MAC per element of
    normalisation and activation ops (timm's convention).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_size), device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_custom_flop_mapping()) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def torch_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def tflite_graph(path):
    """(ops, tensors by index) of a TFLite file, read without delegates so every op is listed."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return interpreter._get_ops_details(), tensors, interpreter


def tflite_macs_by_op(path) -> dict[str, int]:
    """MACs per op type (batch 1) of a TFLite graph."""
    ops, tensors, _ = tflite_graph(path)
    totals = {name: 0 for name in MAC_OPS}
    for op in ops:
        name = op["op_name"]
        if name not in MAC_OPS:
            continue
        weight_shape = [int(d) for d in tensors[int(op["inputs"][1])]["shape"]]
        out_shape = [int(d) for d in tensors[int(op["outputs"][0])]["shape"]]
        out_elements = int(np.prod(out_shape[1:]))  # per image
        if name == "CONV_2D":           # weights (Cout, kh, kw, Cin)
            macs = out_elements * weight_shape[1] * weight_shape[2] * weight_shape[3]
        elif name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, Cout): one input channel each
            macs = out_elements * weight_shape[1] * weight_shape[2]
        else:                           # FULLY_CONNECTED weights (units, in_features)
            rows = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
            batch = int(out_shape[0]) if len(out_shape) > 1 else 1
            macs = (rows // max(batch, 1)) * weight_shape[0] * weight_shape[1]
        totals[name] += macs
    return totals


def tflite_gmacs(path) -> float:
    return sum(tflite_macs_by_op(path).values()) / 1e9


def tflite_params(path) -> int:
    """Elements of constant tensors (weights, biases) feeding the graph's ops."""
    ops, tensors, interpreter = tflite_graph(path)
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    constants = {int(i) for op in ops for i in op["inputs"]
                 if int(i) >= 0 and int(i) not in produced and int(i) not in graph_inputs}
    # Includes a few tiny int32 shape operands (e.g. of RESHAPE): a handful of elements.
    return int(sum(int(np.prod(tensors[i]["shape"])) for i in constants))


def cpu_name() -> str:
    """e.g. 'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (2 cores)'."""
    model = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({cores} cores)"


def device_name(device: str = "cpu") -> str:
    """Latency key recorded in the manifest: '<CPU model> (N cores), cpu' or '<GPU name>, cuda'."""
    if str(device).startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))}, cuda"
    return f"{cpu_name()}, cpu"


def measure_latency(adapter, *, batch_sizes=(1, 32), warmup: int = 1, repeats: int | None = None,
                    budget_s: float = 3.0) -> dict[str, float]:
    """Median ms per image of adapter.forward at each batch size, after warm-up.

    Inputs are random arrays of the adapter's input shape/dtype (preprocessing excluded).
    Repeats default to as many as fit in `budget_s` per batch size (3 to 30).
    """
    config = adapter.data_config
    channels, height, width = config["input_size"]
    shape = (height, width, channels) if config.get("layout") == "NHWC" else (channels, height, width)
    rng = np.random.default_rng(0)
    result = {}
    for batch in batch_sizes:
        if config.get("dtype") == "uint8":
            x = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
        else:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
        for _ in range(warmup):
            adapter.forward(x)
        times = []
        start = time.perf_counter()
        while True:
            _sync(adapter)
            t0 = time.perf_counter()
            adapter.forward(x)
            _sync(adapter)
            times.append(time.perf_counter() - t0)
            n = len(times)
            if repeats is not None:
                if n >= repeats:
                    break
            elif n >= 30 or (n >= 3 and time.perf_counter() - start > budget_s):
                break
        result[f"batch_{batch}"] = round(statistics.median(times) / batch * 1000.0, 4)
    return result


def _sync(adapter) -> None:
    device = str(getattr(adapter, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
