"""Run real models over labelled images and store their logits in a bank (`cascade-explorer precompute`).

Pipeline: list samples + labels -> build every adapter (a bad spec fails before any work) ->
check the output bank -> plan work units (one model x one shard of images, core/units.py) ->
an engine computes the units not yet staged: "local" (core/precompute_local.py: one pass per
preprocessing group with a DataLoader, workers decode + preprocess, this process runs the models)
or "ray" (core/precompute_ray.py: CPU tasks decode + preprocess, model-holding actors run the
models, on a local or remote Ray cluster) -> each finished unit is staged atomically; each model
x split whose units are all staged is assembled into logits/<model>.npy (BankWriter.add_logits)
and `on_logits_assembled` is called.

The local engine decodes each image once per run: the first pass keeps the decoded (and, for a
corrupted split, corrupted) RGB pixels in memory for the later passes while they fit in
`cache_bytes`; beyond that the later passes decode again. Images that cannot be decoded are
skipped and listed in the split's "skipped" entry of the manifest (never silently dropped).
A killed run keeps every finished unit and model x split; re-running computes only the rest,
unless force=True.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError, require_dir, require_file
from .validate import check_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_CACHE_BYTES = 3 * 1024**3


@dataclass
class SampleList:
    """Samples of one split: absolute files, paths relative to `root`, ids and int labels."""

    root: Path
    files: list[Path]
    rel_paths: list[str]
    sample_ids: list[str]
    labels: np.ndarray
    class_names: list[str] | None = None   # None: decided later (ImageNet names for int labels)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, keep: list[int]) -> "SampleList":
        return SampleList(self.root, [self.files[i] for i in keep], [self.rel_paths[i] for i in keep],
                          [self.sample_ids[i] for i in keep], self.labels[keep], self.class_names)


@dataclass
class ModelTiming:
    model_id: str
    n_images: int
    forward_s: float
    end_to_end_s: float
    top1: float
    shared_with: list[str] = field(default_factory=list)

    @property
    def forward_images_per_s(self) -> float:
        return self.n_images / self.forward_s if self.forward_s > 0 else float("inf")

    @property
    def end_to_end_images_per_s(self) -> float:
        return self.n_images / self.end_to_end_s if self.end_to_end_s > 0 else float("inf")


@dataclass
class PrecomputeReport:
    bank_path: Path
    split: str
    done: list[ModelTiming]
    skipped_models: list[str]         # already finished, not redone
    skipped_images: list[dict]
    wall_s: float
    passes_s: float                   # time in the image passes (decode + preprocess + forward)
    latency_s: float
    engine: str = "local"
    units_total: int = 0              # work units (model x shard) of the pending models
    units_resumed: int = 0            # already staged by an earlier (killed) run, not recomputed
    units_computed: int = 0           # computed in this run
    units_retried: int = 0            # computed again after a worker process died
    units_by_node: dict = field(default_factory=dict)   # Ray node id -> units computed there

    @property
    def forward_s(self) -> float:
        return sum(t.forward_s for t in self.done)

    def lines(self) -> list[str]:
        out = [f"bank {self.bank_path} split {self.split!r}: {len(self.done)} model(s) computed, "
               f"{len(self.skipped_models)} already finished, {len(self.skipped_images)} image(s) skipped"]
        if self.units_total:
            out.append(f"  {self.engine} engine: {self.units_computed} work unit(s) computed, {self.units_resumed} "
                       f"resumed from an earlier run, of {self.units_total}"
                       + (f"; {self.units_retried} retried after a worker died" if self.units_retried else "")
                       + (f"; units per node: {self.units_by_node}" if self.units_by_node else ""))
        for t in self.done:
            shared = f" (pass shared with {', '.join(t.shared_with)})" if t.shared_with else ""
            out.append(f"  {t.model_id:<24} top-1 {t.top1:6.1%}  forward-only {t.forward_images_per_s:8.1f} img/s  "
                       f"end-to-end {t.end_to_end_images_per_s:8.1f} img/s{shared}")
        if self.done:
            ratio = self.passes_s / self.forward_s if self.forward_s else float("nan")
            out.append(f"  image passes {self.passes_s:.1f} s = {ratio:.2f} x the sum of forward-only times "
                       f"({self.forward_s:.1f} s); latency measurement {self.latency_s:.1f} s; "
                       f"wall {self.wall_s:.1f} s")
        for s in self.skipped_images:
            out.append(f"  skipped image {s['image_path']}: {s['reason']}")
        return out


# ------------------------------------------------------------------------------------ labels

def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _sample_ids(rel_paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in rel_paths]
    if len(set(stems)) == len(stems):
        return stems
    return [Path(p).with_suffix("").as_posix() for p in rel_paths]


def _imagenet_synsets() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (first WordNet lemma), in the standard timm/torchvision order."""
    from timm.data import ImageNetInfo

    return [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]


def _parse_label_tokens(tokens: list[str], *, source: str) -> tuple[np.ndarray, list[str] | None]:
    """Int labels as given; ImageNet synset ids (n01440764) mapped to their index; other names sorted."""
    if all(re.fullmatch(r"-?\d+", t) for t in tokens):
        labels = np.array([int(t) for t in tokens], dtype=np.int64)
        if labels.size and labels.min() < 0:
            raise UsageError(f"{source}: negative label {labels.min()}; labels are class indices 0..C-1")
        return labels, None
    synsets = _imagenet_synsets()
    index = {s: i for i, s in enumerate(synsets)}
    if all(t in index for t in tokens):
        return np.array([index[t] for t in tokens], dtype=np.int64), None
    names = sorted(set(tokens), key=_natural_key)
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[t] for t in tokens], dtype=np.int64), names


def _is_devkit_ground_truth(path: Path) -> bool:
    """ILSVRC2012_validation_ground_truth.txt: nothing but one positive integer per line."""
    with open(path, encoding="utf-8-sig") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return bool(lines) and all(line.isdigit() for line in lines)


def read_devkit_ground_truth(path: Path, meta_path: Path | None = None) -> list[tuple[str, str]]:
    """(file, WordNet id) pairs from the ILSVRC2012 devkit's validation ground truth.

    Line i holds the ILSVRC2012_ID of ILSVRC2012_val_{i:08d}.JPEG, in the devkit's own class order;
    the devkit's data/meta.mat (beside the list) maps those ids to WordNet ids, which
    `_parse_label_tokens` maps to the standard timm/torchvision index. meta.mat is a MATLAB file
    read with scipy (no pickle).
    """
    meta_path = Path(meta_path) if meta_path is not None else path.parent / "meta.mat"
    if not meta_path.is_file():
        raise UsageError(f"{path} is the ILSVRC devkit ground truth (one ILSVRC2012_ID per line, in the "
                         f"devkit's own class order); its class mapping {meta_path} is missing. Put the devkit's "
                         "data/meta.mat beside it, or give 'FILE, LABEL' lines with 0-based timm/torchvision "
                         "indices or WordNet ids (n01440764), e.g. Kaggle's LOC_val_solution.csv")
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(meta_path), squeeze_me=True)["synsets"]
        wnid_of = {int(entry["ILSVRC2012_ID"]): str(entry["WNID"]) for entry in synsets
                   if int(entry["num_children"]) == 0}     # the 1000 leaf classes
    except (KeyError, ValueError, TypeError, IndexError, OSError) as error:
        raise UsageError(f"{meta_path}: not an ILSVRC devkit meta.mat with a 'synsets' table "
                         f"(ILSVRC2012_ID, WNID, num_children): {error}") from None
    with open(path, encoding="utf-8-sig") as handle:
        ids = [int(line) for line in handle if line.strip()]
    unknown = sorted({i for i in ids if i not in wnid_of})
    if unknown:
        raise UsageError(f"{path}: ILSVRC2012_ID(s) {unknown[:5]} are not leaf classes in {meta_path}")
    return [(f"ILSVRC2012_val_{number:08d}.JPEG", wnid_of[class_id]) for number, class_id in enumerate(ids, 1)]


def read_label_file(path: Path) -> list[tuple[str, str]]:
    """(file, label) pairs from 'FILE, LABEL' / 'FILE LABEL' lines or a Kaggle LOC_val_solution.csv."""
    path = require_file(path, "labels file")
    pairs = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if number == 1 and line.lower().replace(" ", "") in ("imageid,predictionstring", "file,label",
                                                                  "path,label", "filename,label", "image,label"):
                continue
            parts = [p.strip() for p in (line.split(",") if "," in line else line.split())]
            if len(parts) == 1 and parts[0].isdigit():
                raise UsageError(f"{path}, line {number}: a bare number; this looks like the ILSVRC devkit "
                                 "ground truth (one ILSVRC2012_ID per line, in the devkit's own class order). "
                                 "Give 'FILE, LABEL' lines with 0-based timm/torchvision indices or WordNet ids "
                                 "(n01440764), e.g. Kaggle's LOC_val_solution.csv")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise UsageError(f"{path}, line {number}: expected 'FILE, LABEL', got {line!r}")
            label = parts[1].split()[0]   # LOC_val_solution: "n01751748 x y x y ..." -> the synset
            pairs.append((parts[0], label))
    if not pairs:
        raise UsageError(f"labels file {path} has no 'FILE, LABEL' lines")
    return pairs


def samples_from_list(list_path) -> SampleList:
    """A 'PATH, LABEL' list; paths are relative to the list's folder."""
    list_path = require_file(Path(list_path).expanduser(), "list_path")
    root = list_path.parent.resolve()
    pairs = read_label_file(list_path)
    files, rel = [], []
    missing = []
    for name, _ in pairs:
        file = (root / name).resolve()
        if not file.is_file():
            missing.append(name)
        files.append(file)
        try:
            rel.append(file.relative_to(root).as_posix())
        except ValueError:
            rel.append(file.as_posix())
    if missing:
        raise UsageError(f"{list_path}: {len(missing)} listed image(s) do not exist, e.g. {missing[:3]} "
                         f"(paths are relative to {root})")
    labels, names = _parse_label_tokens([label for _, label in pairs], source=str(list_path))
    return SampleList(root, files, rel, _sample_ids(rel), labels, names)


def samples_from_folder(folder, labels_file=None) -> SampleList:
    """ImageFolder (one sub-folder per class) or a flat folder + labels file."""
    folder = require_dir(Path(folder).expanduser(), "folder").resolve()
    if labels_file is not None:
        labels_path = require_file(Path(labels_file).expanduser(), "labels_file")
        pairs = (read_devkit_ground_truth(labels_path) if _is_devkit_ground_truth(labels_path)
                 else read_label_file(labels_path))
        images = {p.name: p for p in folder.iterdir() if _is_image(p)}
        if not images:
            raise UsageError(f"folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})", parameter="folder")
        by_stem = {Path(n).stem: n for n in images}
        by_name = {}
        for name, label in pairs:
            name = Path(name).name
            # Kaggle's LOC_val_solution.csv names images without their extension.
            if name not in images and not Path(name).suffix and name in by_stem:
                name = by_stem[name]
            by_name[name] = label
        no_label = sorted(set(images) - set(by_name), key=_natural_key)
        no_file = sorted(set(by_name) - set(images), key=_natural_key)
        if no_label or no_file:
            parts = []
            if no_label:
                parts.append(f"{len(no_label)} image(s) have no label (e.g. {no_label[:3]})")
            if no_file:
                parts.append(f"{len(no_file)} label line(s) name files not in the folder (e.g. {no_file[:3]})")
            raise UsageError(f"labels {labels_file} do not match the images in {folder}: " + "; ".join(parts)
                             + ". Every image needs exactly one label line")
        names = sorted(images, key=_natural_key)
        labels, class_names = _parse_label_tokens([by_name[n] for n in names], source=str(labels_file))
        return SampleList(folder, [images[n] for n in names], names, _sample_ids(names), labels, class_names)
    class_dirs = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                        key=lambda d: _natural_key(d.name))
    loose = [p for p in folder.iterdir() if _is_image(p)]
    if not class_dirs:
        if loose:
            raise UsageError(f"folder {folder} is a flat folder of {len(loose)} images: give their labels "
                             "with `labels_file` ('FILE, LABEL' lines), or use class sub-folders", parameter="folder")
        raise UsageError(f"folder {folder} is empty: no class sub-folders and no images", parameter="folder")
    files, rel, tokens = [], [], []
    for class_dir in class_dirs:
        for path in sorted((p for p in class_dir.rglob("*") if _is_image(p)), key=lambda p: _natural_key(p.name)):
            files.append(path)
            rel.append(path.relative_to(folder).as_posix())
            tokens.append(class_dir.name)
    if not files:
        raise UsageError(f"folder {folder}: its {len(class_dirs)} class folder(s) hold no image files", parameter="folder")
    labels, class_names = _parse_label_tokens(tokens, source=str(folder))
    if class_names is None and all(re.fullmatch(r"\d+", d.name) for d in class_dirs):
        class_names = None  # numbered folders: their numbers are the class indices
    return SampleList(folder, files, rel, _sample_ids(rel), labels, class_names)


# ------------------------------------------------------------------------------- data loading

class _ImageDataset:
    """Decode (or take from the cache), optionally corrupt, preprocess for each key of the group."""

    def __init__(self, files, sample_ids, preprocessors: dict, *, cache: dict | None, corruption: dict | None,
                 keep_decoded: bool):
        self.files, self.sample_ids = files, sample_ids
        self.preprocessors = preprocessors  # key -> adapter.preprocess
        self.cache = cache
        self.corruption = corruption
        self.keep_decoded = keep_decoded

    def __len__(self) -> int:
        return len(self.files)

    def decoded(self, index: int):
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        from .images import load_image

        image = np.asarray(load_image(self.files[index]))
        if self.corruption:
            from .corruptions import apply_transform

            image = apply_transform(image, self.corruption, sample_id=self.sample_ids[index])
        return image

    def __getitem__(self, index: int):
        from PIL import Image

        from .images import ImageError

        try:
            pixels = self.decoded(index)
            pil = Image.fromarray(pixels)
            arrays = {key: fn(pil) for key, fn in self.preprocessors.items()}   # resize limits: ImageError too
        except ImageError as error:
            return index, None, str(error), None
        return index, arrays, None, (pixels if self.keep_decoded else None)


def _collate(items):
    indices = [item[0] for item in items]
    errors = {item[0]: item[2] for item in items if item[2] is not None}
    good = [item for item in items if item[1] is not None]
    keys = good[0][1].keys() if good else ()
    arrays = {key: np.stack([item[1][key] for item in good]) for key in keys}
    decoded = {item[0]: item[3] for item in good if item[3] is not None}
    return indices, [item[0] for item in good], arrays, errors, decoded


# ------------------------------------------------------------------------------------ pipeline

def _class_names_for(samples: SampleList, num_outputs: int, given) -> list[str]:
    if given is not None:
        names = [str(n) for n in given]
    elif samples.class_names is not None:
        names = samples.class_names
    elif num_outputs == 1000:
        names = imagenet_class_names()
    else:
        names = [f"class_{i}" for i in range(num_outputs)]
    if len(names) != num_outputs:
        raise UsageError(f"the labels define {len(names)} classes but the models output {num_outputs} scores; "
                         "the class list must match the model's outputs (same classes, same order)")
    if len(samples) and samples.labels.max() >= len(names):
        raise UsageError(f"label {int(samples.labels.max())} is out of range for {len(names)} classes "
                         "(labels are 0-based class indices in the model's output order)")
    return names


def _output_width(adapter) -> int:
    """Number of scores the adapter outputs, from one forward pass on a blank image."""
    from PIL import Image

    c, h, w = adapter.data_config["input_size"]
    blank = Image.new("RGB", (w, h), (128, 128, 128))
    return int(adapter.forward(adapter.preprocess(blank)[None]).shape[1])


def precompute(*, samples: SampleList, specs: list[str], out, split: str = "val", device: str = "auto",
               batch_size: int = 32, workers: int | None = None, amp: bool | str = False, force: bool = False,
               corruption: dict | None = None, latency: bool = True, dataset: dict | None = None,
               class_names=None, split_description: str = "", image_source: dict | None = None,
               progress: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES, adapters=None,
               signals: bool = True, log=None, engine: str = "local", shard_size: int | None = None,
               ray_address: str | None = None, model_workers: int | None = None, gpus_per_worker: float = 0,
               ray_results: str = "driver", on_unit=None) -> PrecomputeReport:
    """Compute logits of every model spec on `samples` into the bank at `out` (see module docstring).

    samples: a SampleList (samples_from_folder / samples_from_list). specs: model specs such as
    'timm:resnet50.a1_in1k' or 'tflite:FILE.tflite' (core.adapters). out: bank folder, created or
    extended (same classes; an existing split must have the same samples). Logits are stored as
    float16 (N, C); GMACs per image are counted from each model, latency (ms per image, batch 1
    and 32) measured unless latency=False. A model x split already in the bank is skipped unless
    force. corruption: {"types": [...], "severity": 3, "seed": 0} applies ImageNet-C style
    corruptions (Hendrycks & Dietterich 2019). adapters: already-built adapters (same order as
    specs), e.g. shared across splits. signals: fill the bank's signal store (core.store) for the
    default criterion for the models computed. log: called with each progress line (default: this
    module's logger at INFO).

    Work is cut into units (one model x `shard_size` images, core/units.py), each staged atomically
    as it finishes, so a killed run loses at most the units in flight. engine: "local" (this
    process, a DataLoader's `workers` decode) or "ray" (core/precompute_ray.py: `model_workers`
    model-holding actors with `gpus_per_worker` GPUs each on the cluster at `ray_address`, None for
    a local one; `ray_results` "driver" or "workers" says who writes the units). amp: False, True
    or "fp16", or "bf16" (CUDA autocast). on_unit(record) is called after each staged unit.

    Raises UsageError for bad options (naming the parameter), no images, no models, models with
    different class counts; BankError when `out` holds a different bank. Returns a PrecomputeReport
    (per-model timings, skipped images).
    """
    if log is None:
        log = logging.getLogger(__name__).info
    from .adapters import create_adapter
    from .bank import BankError, BankWriter
    from .macs import device_name, measure_latency

    started = time.perf_counter()
    check_run_options(split, batch_size, workers)
    from .units import DEFAULT_SHARD_SIZE, check_shard_size

    shard_size = DEFAULT_SHARD_SIZE if shard_size is None else check_shard_size(shard_size)
    check_engine_options(engine, model_workers, gpus_per_worker, ray_results)
    if engine == "ray" and str(device).startswith("cuda") and not gpus_per_worker:
        raise UsageError(f"device {device!r} with the Ray engine needs GPUs for its model workers: pass "
                         "`gpus_per_worker` (e.g. 1), or device='auto'", parameter="device")
    from .adapters import autocast_dtype

    autocast_dtype("cpu", amp)     # checks the value before any model loads
    if not len(samples):
        raise UsageError("no images to process")
    if not specs:
        raise UsageError("specs: no models given (one model spec per model)", parameter="specs")
    # 1. Every model loads before any image work (bad spec -> error now).
    if adapters is None:
        # With Ray the driver's copies only give ids, metadata and latency; the actors use `device`.
        adapters = [create_adapter(spec, device="cpu" if engine == "ray" else device, amp=amp) for spec in specs]
    ids = [a.id for a in adapters]
    if len(set(ids)) != len(ids):
        raise UsageError(f"two model specs give the same model id: {ids}")
    widths = {a.id: _output_width(a) for a in adapters}
    if len(set(widths.values())) != 1:
        raise UsageError(f"models output different numbers of classes: {widths}; a bank needs one class list")
    names = _class_names_for(samples, next(iter(widths.values())), class_names)

    # 2. The output bank: new, or the same classes and (for an existing split) the same samples.
    out = Path(out).expanduser()
    dataset = dict(dataset or {"name": out.name})
    # BankWriter decides whether `out` is a bank before touching it, writes under the bank's writer
    # lock, and removes only its own temp files left by a killed run.
    writer = BankWriter(out, create={"dataset": dataset, "class_names": names})
    for path in writer.removed_leftovers:
        log(f"removed a temp file left by an interrupted run: {path}")
    transform = None
    if corruption:
        from .corruptions import transform_entry

        transform = transform_entry(corruption["types"], corruption["severity"], corruption["seed"])
    split_entry = writer.split_entry(split)
    if split_entry is not None:
        old_ids = writer.sample_ids(split)
        previously_skipped = {s["image_path"] for s in split_entry.get("skipped", [])}
        planned = [sid for sid, rel in zip(samples.sample_ids, samples.rel_paths) if rel not in previously_skipped]
        if list(old_ids) != planned or (split_entry.get("transform") or None) != (transform or None):
            raise BankError(f"split {split!r} already exists with different samples"
                            + (" or a different corruption" if list(old_ids) == planned else ""),
                            path=out, split=split,
                            fix="use another `split` name or another `out` folder (or delete the old bank)")
        keep = [i for i, rel in enumerate(samples.rel_paths) if rel not in previously_skipped]
        old_labels = writer.labels(split)
        if not np.array_equal(old_labels, samples.labels[keep]):
            raise BankError(f"split {split!r} already exists with different labels", path=out, split=split,
                            fix="use another `split` name or another `out` folder")

    pending = [a for a in adapters if force or not writer.has_logits(a.id, split)]
    finished = [a.id for a in adapters if a not in pending]
    for adapter in adapters:
        if adapter in pending or not writer.has_model(adapter.id):
            _add_model(writer, adapter)
    if finished:
        log(f"already in the bank, skipped (force redoes them): {', '.join(finished)}")
    timings: list[ModelTiming] = []
    passes_s = 0.0
    plan = None
    stats = None
    if pending:
        from .units import clear_staging, plan_units

        if force:
            for adapter in pending:
                clear_staging(out, split, adapter.id)
        plan = plan_units(out, split, samples, pending, shard_size=shard_size, transform=transform, log=log)
        plan.signals = signals
        if plan.resumed:
            log(f"resuming: {plan.resumed} of {plan.total} work unit(s) already staged by an earlier run")
        split_meta = {"description": split_description, "image_source": image_source, "transform": transform}
        t_passes = time.perf_counter()
        if engine == "ray":
            from .precompute_ray import run_ray

            stats = run_ray(writer, plan, pending, samples, batch_size=batch_size, corruption=corruption,
                            progress=progress, split_meta=split_meta, log=log, address=ray_address,
                            model_workers=model_workers, gpus_per_worker=gpus_per_worker, results=ray_results,
                            device=device, amp=amp, on_unit=on_unit)
        else:
            from .precompute_local import run_local

            stats = run_local(writer, plan, pending, samples, batch_size=batch_size,
                              workers=(os.cpu_count() or 1) if workers is None else workers,
                              corruption=corruption, progress=progress, cache_bytes=cache_bytes,
                              split_meta=split_meta, log=log, on_unit=on_unit)
        passes_s = time.perf_counter() - t_passes
        unassembled = [a.id for a in pending if a.id not in stats.top1]
        if unassembled:
            raise BankError(f"model(s) {unassembled} were not assembled: a staged work unit was damaged or "
                            "removed during the run", path=out, split=split,
                            fix="run the same command again; the damaged units are recomputed")
        groups = {}
        for adapter in pending:
            groups.setdefault(adapter.preprocess_key, []).append(adapter.id)
        for adapter in pending:
            timings.append(ModelTiming(adapter.id, stats.images.get(adapter.id, 0), stats.forward_s.get(adapter.id, 0.0),
                                       stats.group_s.get(adapter.id, 0.0), stats.top1[adapter.id],
                                       [m for m in groups[adapter.preprocess_key] if m != adapter.id]))
    split_entry = writer.split_entry(split)
    skipped_images = list(split_entry.get("skipped", [])) if split_entry else []

    if pending and signals:
        from .store import SignalStore

        SignalStore().fill(writer.open(validate=False, allow_incomplete=True), model_ids=[a.id for a in pending],
                           splits=[split], progress=progress, log=log)

    # 3. Latency once per model and device (kept across runs unless force).
    latency_s = 0.0
    if latency:
        t0 = time.perf_counter()
        for adapter in adapters:
            key = device_name(getattr(adapter, "device", "cpu"))
            if force or key not in writer.model_entry(adapter.id).get("latency_ms", {}):
                writer.set_latency(adapter.id, key, measure_latency(adapter))
        latency_s = time.perf_counter() - t0
    report = PrecomputeReport(out, split, timings, finished, skipped_images, time.perf_counter() - started,
                              passes_s, latency_s, engine=engine,
                              units_total=plan.total if plan else 0, units_resumed=plan.resumed_at_start if plan else 0,
                              units_computed=stats.computed if stats else 0, units_retried=stats.retried if stats else 0,
                              units_by_node=dict(stats.by_node) if stats else {})
    for line in report.lines():
        log(line)
    return report


def _add_model(writer, adapter) -> None:
    from .paths import portable_spec

    config = adapter.data_config
    writer.add_model(adapter.id, display_name=adapter.display_name, backend=adapter.backend,
                     source=adapter.source, gmacs=round(adapter.gmacs(), 6), params=adapter.params(),
                     spec=portable_spec(adapter.spec),   # no /home/<user>/ in a bank people share input_size=list(config["input_size"]),
                     preprocessing={k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
                                    if k != "input_size"})


# ------------------------------------------------------------------------------------- option checks

DEFAULT_SEVERITY = 3   # ImageNet-C's middle level, what a corruption without a severity applies


def check_split_id(split) -> str:
    """The split id, or a UsageError naming `split` (the rule core/bank.py applies to every split id)."""
    from .bank import BankError, check_id

    try:
        return check_id("split", split)
    except BankError as error:
        raise UsageError(f"split {split!r}: {error.problem}", parameter="split") from None


ENGINES = ("local", "ray")
RAY_RESULTS = ("driver", "workers")


def check_engine_options(engine, model_workers=None, gpus_per_worker=0, ray_results="driver") -> None:
    """The engine options of precompute(), checked before any model loads."""
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", parameter="engine")
    if model_workers is not None:
        check_int(model_workers, "model_workers", minimum=1)
    if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) or not gpus_per_worker >= 0:
        raise UsageError(f"gpus_per_worker must be a number >= 0 (fractions share a GPU), got {gpus_per_worker!r}",
                         parameter="gpus_per_worker")
    if ray_results not in RAY_RESULTS:
        raise UsageError(f"ray_results must be one of {', '.join(RAY_RESULTS)}, got {ray_results!r}",
                         parameter="ray_results")
    if engine == "ray":
        from .precompute_ray import require_ray

        require_ray()


def on_logits_assembled(bank_path, model_id: str, split: str) -> None:
    """Called by both engines right after a model x split's logits are assembled into the bank (when
    precompute was asked to fill the signal store): the store's default-criterion entry of that model
    is computed now, while its logits are still in the page cache. bank_path: the bank folder."""
    from .bank import Bank
    from .store import SignalStore

    SignalStore().fill(Bank.open(bank_path, validate=False, allow_incomplete=True), model_ids=[model_id],
                       splits=[split])


def check_run_options(split, batch_size, workers) -> None:
    """The options precompute() takes that are checked before any image is read (the CLI calls it first)."""
    check_split_id(split)
    check_int(batch_size, "batch_size", minimum=1)
    if workers is not None:
        check_int(workers, "workers", minimum=0)
