"""Work units of precompute (core/units.py) with the local engine: unit-level resume after a kill,
damaged staged units recomputed, shard layout independent results, the no-Ray message, AMP choice.

Tiny timm architectures with local random weights (real timm code and preprocessing), as in
test_precompute.py.
"""

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade_explorer.core import precompute as pc
from cascade_explorer.core import units
from cascade_explorer.core.bank import Bank
from cascade_explorer.core.errors import UsageError

from test_precompute import _run as run_quietly


def _images(root: Path, n: int = 20, broken: tuple = ()) -> Path:
    folder = root / "n01440764"
    folder.mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        path = folder / f"img_{i:03d}.png"
        if i in broken:
            path.write_bytes(b"\x89PNG not really")
        else:
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return root


def _run(samples, specs, out, **kwargs):
    return run_quietly(samples, specs, out, batch_size=3, **kwargs)


def _logits(out, model):
    return np.asarray(Bank.open(out).logits(model, "val"))


def test_plan_shards_cover_every_row_once():
    assert units.plan_shards(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert units.plan_shards(4, 4) == [(0, 4)]
    with pytest.raises(UsageError, match="^shard_size must be >= 1"):
        units.plan_shards(10, 0)


def test_killed_mid_model_resumes_from_finished_units(tmp_path, tiny_specs):
    """Interrupted inside a model's pass: the next run computes only that model's missing units."""
    samples = pc.samples_from_folder(_images(tmp_path / "imgs", broken=(7,)))
    reference = tmp_path / "reference"
    _run(samples, tiny_specs, reference, shard_size=100)          # one unit per model

    out = tmp_path / "bank"
    seen = []

    def interrupt_after_five(record):
        seen.append((record["model"], record["start"]))
        if len(seen) == 5:
            raise KeyboardInterrupt          # like Ctrl-C between two units of the second model

    with pytest.raises(KeyboardInterrupt):
        _run(samples, tiny_specs, out, shard_size=6, on_unit=interrupt_after_five)   # 4 shards x 2 models
    first, second = seen[0][0], seen[4][0]
    assert first != second and [m for m, _ in seen].count(first) == 4
    partial = Bank.open(out, allow_incomplete=True)
    assert "val" in partial.model(first).top1 and "val" not in partial.model(second).top1
    staged = sorted((out / "staging" / "val" / second).glob("*.json"))
    assert [p.stem for p in staged] == ["000000000-000000006"]
    record = json.loads(staged[0].read_text())
    assert record["model"] == second and record["start"] == 0 and record["stop"] == 6
    assert record["dtype"] == "float16" and len(record["sha256"]) == 64 and record["shape"][0] == 6

    computed = []
    report = _run(samples, tiny_specs, out, shard_size=6, on_unit=computed.append)
    assert [(r["model"], r["start"]) for r in computed] == [(second, 6), (second, 12), (second, 18)]
    assert report.units_resumed == 1 and report.units_computed == 3 and report.units_total == 4
    assert not (out / "staging").exists()
    bank = Bank.open(out)
    assert [s["image_path"] for s in bank.manifest["splits"]["val"]["skipped"]] == ["n01440764/img_007.png"]
    for model in (first, second):
        # Shards of 6 and batches of 3 cut the same batches as one unit of 20: identical bytes.
        assert _logits(out, model).tobytes() == _logits(reference, model).tobytes()


def test_damaged_or_stale_staged_units_are_recomputed(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_images(tmp_path / "imgs", n=9))
    out = tmp_path / "bank"
    spec = tiny_specs[:1]

    def stop_after_two(record):
        if record["start"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(samples, spec, out, shard_size=3, on_unit=stop_after_two)
    folder = out / "staging" / "val" / "test_efficientnet"
    np.save(folder / "000000003-000000006.npy", np.zeros((3, 1000), np.float16))   # no longer its checksum
    lines = []
    computed = []
    report = _run(samples, spec, out, shard_size=3, on_unit=computed.append, log=lines.append)
    assert [r["start"] for r in computed] == [3, 6] and report.units_resumed == 1
    assert any("does not match its checksum" in line for line in lines)
    _run(samples, spec, tmp_path / "reference", shard_size=9)
    assert _logits(out, "test_efficientnet").tobytes() == _logits(tmp_path / "reference", "test_efficientnet").tobytes()


def test_force_and_other_corruption_do_not_reuse_staged_units(tmp_path, tiny_specs):
    samples = pc.samples_from_folder(_images(tmp_path / "imgs", n=6))
    out = tmp_path / "bank"
    plan_a = units.plan_units(out, "val", samples, [type("A", (), {"id": "m", "spec": "timm:x"})()], shard_size=3,
                              transform=None)
    plan_b = units.plan_units(out, "val", samples, [type("A", (), {"id": "m", "spec": "timm:x"})()], shard_size=3,
                              transform={"types": ["contrast"], "severity": 3, "seed": 0})
    assert plan_a.fingerprints["m"][0] != plan_b.fingerprints["m"][0]
    result = units.UnitResult("m", "val", 0, 3, [0, 1, 2], samples.sample_ids[:3], [], np.ones((3, 5), np.float32))
    units.write_unit(out, result, plan_a.fingerprints["m"][0])
    assert units.plan_units(out, "val", samples, [type("A", (), {"id": "m", "spec": "timm:x"})()], shard_size=3,
                            transform=None).resumed == 1
    assert units.plan_units(out, "val", samples, [type("A", (), {"id": "m", "spec": "timm:x"})()], shard_size=3,
                            transform={"types": ["contrast"], "severity": 3, "seed": 0}).resumed == 0
    assert units.plan_units(out, "val", samples, [type("A", (), {"id": "m", "spec": "timm:y"})()], shard_size=3,
                            transform=None).resumed == 0


def test_sigkill_mid_model_loses_only_the_unit_in_flight(tmp_path, tiny_specs):
    """A real `kill -9` of the CLI while one model's units are being computed."""
    samples_root = _images(tmp_path / "imgs", n=40)
    out = tmp_path / "bank"
    command = [sys.executable, "-m", "cascade_explorer.commands.cli", "precompute", "--images", str(samples_root),
               "--models", tiny_specs[0], "--out", str(out), "--batch-size", "1", "--workers", "0", "--no-latency",
               "--shard-size", "4"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = out / "staging" / "val" / "test_efficientnet"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and len(list(folder.glob("*.json"))) < 3:
        time.sleep(0.01)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    staged = len(list(folder.glob("*.json")))
    assert 3 <= staged < 10
    computed = []
    report = _run(pc.samples_from_folder(samples_root), tiny_specs[:1], out, shard_size=4, on_unit=computed.append)
    assert report.units_resumed == staged and len(computed) == 10 - staged
    assert Bank.open(out).n_samples("val") == 40


def test_engine_options_are_checked_before_models_load(tmp_path, tiny_specs, monkeypatch):
    samples = pc.samples_from_folder(_images(tmp_path / "imgs", n=2))
    with pytest.raises(UsageError, match="^engine must be one of local, ray"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", engine="spark")
    with pytest.raises(UsageError, match="^model_workers must be >= 1"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", engine="local", model_workers=0)
    with pytest.raises(UsageError, match="^ray_results must be one of driver, workers"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", ray_results="nfs")
    with pytest.raises(UsageError, match="^amp must be"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", amp="fp8")
    if importlib.util.find_spec("ray") is not None:
        with pytest.raises(UsageError, match="^device 'cuda' with the Ray engine needs GPUs.*`gpus_per_worker`"):
            _run(samples, ["timm:not_a_net"], tmp_path / "bank", engine="ray", device="cuda")
    monkeypatch.setitem(sys.modules, "ray", None)          # as if Ray were not installed
    with pytest.raises(UsageError, match=r"^engine 'ray' needs Ray.*pip install 'cascade-explorer\[ray\]'"):
        _run(samples, ["timm:not_a_net"], tmp_path / "bank", engine="ray")
    assert not (tmp_path / "bank").exists()


def test_cli_engine_flags(tmp_path, tiny_specs, capsys, monkeypatch):
    from cascade_explorer.commands.cli import main

    root = _images(tmp_path / "imgs", n=2)
    base = ["precompute", "--images", str(root), "--models", tiny_specs[0], "--out", str(tmp_path / "bank"),
            "--workers", "0", "--no-latency"]
    assert main(base + ["--ray-address", "auto"]) == 2
    assert "only apply with --engine ray" in capsys.readouterr().err
    assert main(base + ["--shard-size", "0"]) == 2
    assert "--shard-size must be >= 1" in capsys.readouterr().err
    assert main(base + ["--engine", "ray", "--model-workers", "0"]) == 2
    assert "--model-workers must be >= 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(base + ["--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--engine 'ray' needs Ray" in err and "pip install 'cascade-explorer[ray]'" in err
    assert not (tmp_path / "bank").exists()


def test_amp_is_a_cuda_path_and_pinned_memory_only_with_cuda(tiny_specs):
    import torch

    from cascade_explorer.core.adapters import autocast_dtype, create_adapter

    assert autocast_dtype("cuda", True) is torch.float16 and autocast_dtype("cuda:1", "fp16") is torch.float16
    assert autocast_dtype("cuda", "bf16") is torch.bfloat16
    assert autocast_dtype("cpu", "bf16") is None and autocast_dtype("cuda", False) is None
    with pytest.raises(UsageError, match="^amp must be"):
        autocast_dtype("cuda", "int8")
    adapter = create_adapter(tiny_specs[0], device="cpu", amp="bf16")
    assert adapter.amp is False and adapter.amp_dtype is None


def test_a_batch_too_big_for_the_gpu_is_halved_until_it_fits():
    import torch

    from cascade_explorer.core.precompute_local import forward_fitting

    class SmallCard:
        """forward() of an adapter on a card that holds at most 3 images (CUDA's own error type)."""
        calls = []

        def forward(self, batch):
            self.calls.append(len(batch))
            if len(batch) > 3:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return np.asarray(batch, np.float32)[:, :2] * 2

    batch = np.arange(20, dtype=np.float32).reshape(10, 2)
    out = forward_fitting(SmallCard(), batch)
    np.testing.assert_array_equal(out, batch * 2)
    assert SmallCard.calls == [10, 5, 2, 3, 5, 2, 3]

    class NoCard:
        def forward(self, batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        forward_fitting(NoCard(), batch)
