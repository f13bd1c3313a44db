"""Banks: folders of precomputed model outputs (logits) on labelled samples, plus their costs.

One public module over three jobs:

- `format`: the file layout, paths, manifest schema and the checks of each file;
- `reader`: `Bank`, a validated, lazily loaded, read-only view (logits memory-mapped);
- `writer`: `BankWriter`, which creates or extends a bank with atomic writes;
- `lock`: `bank_lock`, the one-writer-at-a-time lock every writer of a bank holds.

Derived results (signals, curves, frontiers) live in `core.analysis.BankAnalysis`, not here.
"""

from ..errors import BankError
from .format import (BACKENDS, DEFAULT_BANK_PATH, ID_PATTERN, LABELS, LOCK, LOGITS_DIR, LOGITS_DTYPES, MANIFEST,
                     MAX_COST, PRECOMPUTED_DIR, SAMPLES, SAMPLES_HEADER, SCAN_CHUNK_ROWS, SCHEMA_VERSION, SPLITS_DIR,
                     UNFINISHED, check_bank_file, check_finite_file, check_id, check_labels, find_banks,
                     first_non_finite_row, is_bank, is_valid_id, labels_path, load_manifest, logits_path,
                     manifest_path, manifest_stamp, narrow_logits, non_finite_problem, read_npy_header,
                     read_samples, samples_path, split_dir, validate_manifest)
from .lock import bank_folder_state, bank_lock
from .reader import Bank, ModelInfo
from .writer import BankWriter, remove_leftover_temp_files, undo_on_failure

__all__ = [
    "BACKENDS", "DEFAULT_BANK_PATH", "ID_PATTERN", "LABELS", "LOGITS_DIR", "LOGITS_DTYPES", "MANIFEST",
    "LOCK", "MAX_COST", "PRECOMPUTED_DIR", "SAMPLES", "UNFINISHED", "bank_folder_state", "bank_lock", "check_bank_file",
    "is_valid_id", "narrow_logits", "non_finite_problem", "SAMPLES_HEADER", "SCAN_CHUNK_ROWS", "SCHEMA_VERSION", "SPLITS_DIR",
    "Bank", "BankError", "BankWriter", "ModelInfo", "check_finite_file", "check_id", "check_labels", "find_banks",
    "first_non_finite_row", "is_bank", "labels_path", "load_manifest", "logits_path", "manifest_path",
    "manifest_stamp", "read_npy_header", "read_samples", "remove_leftover_temp_files", "samples_path", "split_dir",
    "undo_on_failure", "validate_manifest",
]
