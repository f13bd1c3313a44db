"""Cost counting: exact small cases by hand, real models against published figures."""

import csv
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cascade_explorer.core import macs


class _ConvFc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class _Attention(torch.nn.Module):
    def forward(self, x):
        q = x.reshape(1, 2, 16, 8)  # batch 1, 2 heads, 16 tokens, head dim 8
        return F.scaled_dot_product_attention(q, q, q)


def test_conv_and_linear_macs_by_hand():
    # conv: 16*16 positions * 8 out channels * (3*3*3) MACs; linear: 8*10.
    expected = 16 * 16 * 8 * 27 + 8 * 10
    assert macs.torch_gmacs(_ConvFc(), (3, 16, 16)) * 1e9 == pytest.approx(expected)
    assert macs.torch_params(_ConvFc()) == 8 * 27 + 8 * 10 + 10


def test_attention_is_counted_on_cpu():
    # QK^T and AV: 2 * heads * L * S * d MACs = 2 * 2 * 16 * 16 * 8.
    assert macs.torch_gmacs(_Attention(), (256,)) * 1e9 == pytest.approx(2 * 2 * 16 * 16 * 8)


def test_norm_and_activation_count_one_mac_per_element():
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.ReLU6())
    assert macs.torch_gmacs(model, (4, 5, 5)) * 1e9 == pytest.approx(2 * 4 * 5 * 5)


def _published_gmacs(shared_dir) -> dict:
    """model@img_size -> infer_gmacs from timm's benchmark table (../shared/reference)."""
    path = shared_dir / "reference" / "timm-results" / "benchmark-infer-amp-nchw-pt291-cu130-5090.csv"
    with open(path, newline="") as handle:
        return {f"{row['model']}@{row['infer_img_size']}": float(row["infer_gmacs"]) for row in csv.DictReader(handle)}


@pytest.mark.slow
@pytest.mark.parametrize("arch,size,tolerance", [("tf_efficientnet_lite0", 224, 0.03), ("tf_efficientnet_lite1", 240, 0.03),
                                                 ("tf_efficientnet_lite2", 260, 0.03), ("resnet50", 224, 0.03),
                                                 ("vit_base_patch16_224", 224, 0.03)])
def test_torch_gmacs_match_timm_published(shared_dir, arch, size, tolerance):
    import timm

    published = _published_gmacs(shared_dir)[f"{arch}@{size}"]
    counted = macs.torch_gmacs(timm.create_model(arch), (3, size, size))
    assert counted == pytest.approx(published, rel=tolerance)


def _published_tflite_macs(shared_dir) -> dict:
    """file -> published MACs (in GMACs) from the table in ../shared/models/SOURCE.md."""
    out = {}
    for line in (shared_dir / "models" / "SOURCE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].split()[0].endswith(".tflite"):
            match = re.fullmatch(r"(\d+)\s*M", cells[2])
            if match:
                out[cells[0].split()[0]] = int(match.group(1)) / 1000.0
    return out


def test_tflite_macs_within_5_percent_of_published(shared_dir):
    published = _published_tflite_macs(shared_dir)
    assert len(published) == 5
    for name, expected in published.items():
        counted = macs.tflite_gmacs(shared_dir / "models" / "tflite" / name)
        assert counted == pytest.approx(expected, rel=0.05), name


def test_tflite_macs_by_op_and_params(shared_dir):
    path = shared_dir / "models" / "tflite" / "mobilenet_v1_0.25_128_quant.tflite"
    by_op = macs.tflite_macs_by_op(path)
    # MobileNet V1: the 1x1 (pointwise) convolutions carry most of the MACs.
    assert by_op["CONV_2D"] > 5 * by_op["DEPTHWISE_CONV_2D"] > 0
    # First layer by hand: 3x3 stride-2 conv, 3 -> 8 channels, 64x64 output.
    assert by_op["CONV_2D"] >= 64 * 64 * 8 * 3 * 3 * 3
    # Published: 0.47 M parameters.
    assert macs.tflite_params(path) == pytest.approx(0.47e6, rel=0.02)


class _FakeAdapter:
    data_config = {"input_size": (3, 8, 8), "layout": "NCHW", "dtype": "float32"}
    device = "cpu"

    def __init__(self):
        self.batches = []

    def forward(self, batch):
        self.batches.append(batch.shape[0])
        return np.zeros((batch.shape[0], 10), np.float32)


def test_measure_latency_per_image_after_warmup():
    fake = _FakeAdapter()
    result = macs.measure_latency(fake, repeats=5)
    assert set(result) == {"batch_1", "batch_32"} and all(v >= 0 for v in result.values())
    assert fake.batches == [1] * 6 + [32] * 6  # 1 warm-up + 5 timed each


def test_device_name_names_cpu_and_cores():
    name = macs.device_name("cpu")
    assert re.search(r"\(\d+ cores\), cpu$", name)
