"""The run store: the only code that reads or writes runs, through fsspec (a local folder,
memory:// in tests, s3:// or any other fsspec URL).

    <runs>/<run id>/run.json            what the run is: settings, layers, architecture (written once)
    <runs>/<run id>/labels.json         the display name, notes and tags (rewritten when edited)
    <runs>/<run id>/status.json         status, message, progress and a heartbeat (small, overwritten)
    <runs>/<run id>/control.json        what the page asks of the writer (stop); written by the page
    <runs>/<run id>/shapes.json         a script's layers' output shapes, seen in its first batch (written once)
    <runs>/<run id>/chunks/NNNNNNNN.piece  history written since the previous piece (immutable; .npz before 2026-12-07)
    <runs>/<run id>/chunks/full-N.piece    pieces 0..N in one, written when the run ends
    <runs>/<run id>/weights/NNNNNNNNNN.pt  weight snapshots by step (bounded), final.pt at the end

Nothing is ever appended (object stores cannot append): a writer adds whole pieces with
increasing numbers and a reader tails by reading only the numbers it has not seen. A writer
killed at any moment leaves whole pieces and, at worst, a missing last one. Every value read
is validated against the run's own description; a bad run is skipped or shown with a message
for that run only. Folder names are generated ids checked by a pattern; names are display
text and never become paths.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import fsspec
import numpy as np

from live_training_dashboard.history import (
    BATCH_COLUMNS,
    DEFAULT_HISTOGRAM_BINS,
    EPOCH_COLUMNS,
    LAYER_STATS,
    SYSTEM_COLUMNS,
    History,
    HistorySnapshot,
    Status,
)

RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")
META_FILE, LABELS_FILE, STATUS_FILE, CONTROL_FILE = "run.json", "labels.json", "status.json", "control.json"
SHAPES_FILE = "shapes.json"
# What control.json may ask. stop: end after the current batch. paused: hold between batches.
# advance: {"id": n, "unit": "batch" | "epoch"}, each new id trains one more batch (or to the
# epoch's end) while paused. pace: "watchable" or "fast". at: when stop was asked.
CONTROLS = ("stop", "at", "paused", "advance", "pace")
CHUNKS, WEIGHTS = "chunks", "weights"
FINAL_WEIGHTS = "final.pt"
MAX_NAME_LENGTH = 80
FORMAT = 2

# A piece per this many seconds while training (the first one at once, so the page shows data
# quickly): ~2 files a second keeps a 20-minute run near 2,400 pieces until it is compacted.
PIECE_SECONDS = 0.5
HEARTBEAT_SECONDS = 2.0
# A running run whose heartbeat is older than this lost its writer (killed, out of memory, host down).
HEARTBEAT_TIMEOUT_SECONDS = 10.0
CONTROL_POLL_SECONDS = 0.25
# Weight snapshots for replay and predictions: at most this many per run, thinned evenly, and
# only for models whose weights take at most this many bytes (a 128x3 MLP takes 140 KB).
MAX_WEIGHT_SNAPSHOTS = 200
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
# What a reader accepts: bounds that no real run reaches and every hostile file does.
MAX_LAYERS = 1000
MAX_BINS = 512
MAX_STEP = 10**12
MAX_TEXT = 2000
EARLIEST, LATEST = 946_684_800.0, 4_102_444_800.0  # 2000-01-01 .. 2100-01-01


class StoreError(ValueError):
    """A runs folder that cannot be used, or a run that cannot be read; the message says why."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def clean_name(name: str) -> str:
    """A run name safe to show anywhere: printable, one line, at most MAX_NAME_LENGTH characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    if not text:
        raise ValueError("A run name cannot be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise ValueError(f"A run name can have at most {MAX_NAME_LENGTH} characters")
    return text


MAX_NOTES_LENGTH = 2000
MAX_TAGS, MAX_TAG_LENGTH = 20, 40


def clean_notes(notes: str) -> str:
    """Free text about a run: printable characters and line breaks, at most MAX_NOTES_LENGTH."""
    text = "".join(ch for ch in str(notes) if ch.isprintable() or ch == "\n").strip()
    if len(text) > MAX_NOTES_LENGTH:
        raise ValueError(f"Notes can have at most {MAX_NOTES_LENGTH:,} characters (these have {len(text):,})")
    return text


def clean_tags(tags) -> tuple[str, ...]:
    """Short one-line labels, in the order given, without repeats or empty ones."""
    cleaned = []
    for tag in tags:
        text = " ".join("".join(ch for ch in str(tag) if ch.isprintable()).split())
        if len(text) > MAX_TAG_LENGTH:
            raise ValueError(f"A tag can have at most {MAX_TAG_LENGTH} characters: {text[:MAX_TAG_LENGTH]}…")
        if text and text not in cleaned:
            cleaned.append(text)
    if len(cleaned) > MAX_TAGS:
        raise ValueError(f"A run can have at most {MAX_TAGS} tags")
    return tuple(cleaned)


@dataclass(frozen=True)
class Labels:
    """What a person wrote about a run: its name, notes and tags (labels.json)."""

    name: str
    notes: str = ""
    tags: tuple[str, ...] = ()


def check_run_id(run_id) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"Not a run id: {run_id!r}")
    return run_id


# --------------------------------------------------------------------------- validation of what is read


def _text(value, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} is not text")
    return "".join(ch for ch in value[:limit] if ch.isprintable() or ch == "\n")


def _whole(value, what: str, low: int = 0, high: int = MAX_STEP) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not low <= value <= high:
        raise StoreError(f"{what} is not a whole number in [{low}, {high}]")
    return int(value)


def _seconds(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10**7:
        raise StoreError(f"{what} is not a number of seconds in [0, 1e7]")
    return float(value)


def _time(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not EARLIEST <= value <= LATEST:
        raise StoreError(f"{what} is not a time between 2000 and 2100")
    return float(value)


def _validate_meta(meta, run_id: str) -> dict:
    if not isinstance(meta, dict):
        raise StoreError("run.json is not an object")
    if meta.get("run_id") != run_id:
        raise StoreError("run.json describes another run")
    names = meta.get("layer_names")
    if not isinstance(names, list) or not 0 < len(names) <= MAX_LAYERS or not all(isinstance(n, str) for n in names):
        raise StoreError("run.json has no valid layer names")
    config = meta.get("config", {})
    architecture = meta.get("architecture", [])
    return {
        "format": _whole(meta.get("format", FORMAT), "format", 1, 100),
        "run_id": run_id,
        "name": clean_name(_text(meta.get("name", run_id), "name", MAX_NAME_LENGTH * 4) or run_id),
        "created_at": _time(meta.get("created_at"), "created_at"),
        "source": _text(meta.get("source", "script"), "source", 40),
        "device": _text(meta["device"], "device", 120) if isinstance(meta.get("device"), str) else "",
        "config": config if isinstance(config, dict) else {},
        "layer_names": [_text(n, "layer name", 200) for n in names],
        "histogram_bins": _whole(meta.get("histogram_bins", DEFAULT_HISTOGRAM_BINS), "histogram_bins", 2, MAX_BINS),
        "architecture": architecture if isinstance(architecture, list) else [],
    }


@dataclass(frozen=True)
class RunState:
    """status.json, validated: how the writer last said the run stands."""

    status: Status = Status.IDLE
    message: str = ""
    planned_epochs: int = 0
    batches_per_epoch: int = 0
    step: int = 0
    heartbeat: float = 0.0
    pid: int = 0
    rank_speeds: tuple[float, ...] = ()  # batches/s of each rank of a torchrun job, rank 0 first
    pausable: bool = False  # the writer obeys pause/step in control.json (one process, not torchrun)
    paused_at: int = -1  # the batch count training is held at; -1 while it trains
    pace_seconds: float = 0.0  # the run is stretched to last at least this long (0: as fast as it goes)

    @classmethod
    def parse(cls, payload) -> RunState:
        if not isinstance(payload, dict):
            raise StoreError("status.json is not an object")
        try:
            status = Status(payload.get("status"))
        except ValueError:
            raise StoreError("status.json names an unknown status") from None
        return cls(
            status=status,
            message=_text(payload.get("message", ""), "message"),
            planned_epochs=_whole(payload.get("planned_epochs", 0), "planned_epochs", 0, 10**7),
            batches_per_epoch=_whole(payload.get("batches_per_epoch", 0), "batches_per_epoch", 0, 10**9),
            step=_whole(payload.get("step", 0), "step"),
            heartbeat=_time(payload.get("heartbeat"), "heartbeat"),
            pid=_whole(payload.get("pid", 0), "pid", 0, 2**31),
            rank_speeds=_speeds(payload.get("rank_speeds", [])),
            pausable=payload.get("pausable", False) is True,
            paused_at=_whole(payload.get("paused_at", -1), "paused_at", -1),
            pace_seconds=_seconds(payload.get("pace_seconds", 0.0), "pace_seconds"),
        )

    def to_json(self) -> dict:
        return {"status": self.status.value, "message": self.message, "planned_epochs": self.planned_epochs,
                "batches_per_epoch": self.batches_per_epoch, "step": self.step, "heartbeat": self.heartbeat,
                "pid": self.pid, "rank_speeds": list(self.rank_speeds), "pausable": self.pausable,
                "paused_at": self.paused_at, "pace_seconds": self.pace_seconds}

    @property
    def paused(self) -> bool:
        return self.paused_at >= 0


def _speeds(value) -> tuple[float, ...]:
    """Per-rank batches/s: a short list of finite non-negative numbers, else nothing (not an error)."""
    if not isinstance(value, list) or len(value) > 4096:
        return ()
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1e9
               for v in value):
        return ()
    return tuple(float(v) for v in value)


# --------------------------------------------------------------------------- pieces


PIECE_MAGIC = b"LTDPIECE1\n"
# The arrays a piece may hold, stored little-endian. Runs written before 2026-12-07 have .npz pieces,
# still read (decode_piece tells them by their first bytes).
_PIECE_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4"}
_PIECE_MAX_ARRAYS = 64


def encode_piece(arrays: dict[str, np.ndarray]) -> bytes:
    """A history piece: named arrays as raw bytes behind a JSON header (magic, header length,
    header, then each array at an 8-byte-aligned offset). Reading one is a json.loads and a view
    per array: np.load of an .npz parsed each array's header with ast, 0.7-1.3 s of opening a
    killed 1M-batch run's 1,000 pieces; np.savez's zipfile cost the writer thread ~0.75 ms a piece."""
    entries, blobs, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.name not in _PIECE_DTYPES:
            raise ValueError(f"a history piece holds numbers only, got {name} of {array.dtype}")
        array = np.ascontiguousarray(array, dtype=_PIECE_DTYPES[array.dtype.name])
        padding = -offset % 8
        if padding:
            blobs.append(bytes(padding))
            offset += padding
        entries.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "offset": offset,
                        "nbytes": array.nbytes})
        blobs.append(memoryview(array.reshape(-1)).cast("B") if array.size else b"")
        offset += array.nbytes
    return _framed(PIECE_MAGIC, entries, blobs, align=8)


def _framed(magic: bytes, entries: list, blobs: list, align: int = 1) -> bytes:
    """magic, header length, JSON header (padded so the body starts `align`-aligned), the body:
    the layout _framed_entries reads back."""
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-(len(magic) + 8 + len(header)) % align)
    return b"".join([magic, len(header).to_bytes(8, "little"), header, *blobs])


TENSORS_MAGIC = b"LTDTENSORS1\n"
_TENSOR_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


def encode_tensors(state: dict) -> bytes:
    """A state_dict of CPU tensors as one file: magic, header length, JSON header, raw bytes."""
    import torch

    entries, blobs, offset = [], [], 0
    for name, tensor in state.items():
        tensor = tensor.detach()
        try:  # a view of the bytes (a strided tensor: reshape copies), joined once below: 2 calls, not 6
            data = memoryview(tensor.numpy().reshape(-1)).cast("B")
        except (TypeError, RuntimeError):  # bfloat16: no numpy dtype
            data = memoryview(tensor.reshape(-1).contiguous().view(torch.uint8).numpy())
        entries.append({"name": name, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape),
                        "offset": offset, "nbytes": len(data)})
        blobs.append(data)
        offset += len(data)
    return _framed(TENSORS_MAGIC, entries, blobs)


def _framed_entries(data: bytes, magic: bytes, what: str, max_entries: int) -> tuple[list, int]:
    """(the header's entries, where the body starts) of a file written as magic, header length,
    JSON header, raw bytes (encode_tensors, encode_piece). StoreError for anything else."""
    start = len(magic) + 8
    if not data.startswith(magic) or len(data) < start:
        raise StoreError(f"truncated or not a {what}")
    size = int.from_bytes(data[len(magic):start], "little")
    if size > len(data) - start:
        raise StoreError(f"{what} header longer than the file")
    try:
        entries = json.loads(data[start:start + size])
    except ValueError:
        raise StoreError(f"unreadable {what} header") from None
    if not isinstance(entries, list) or len(entries) > max_entries:
        raise StoreError(f"{what} header is not a list of arrays")
    return entries, start + size


def _checked_entry(entry, dtypes, itemsize, body_size: int, seen, what: str, max_dims: int) -> tuple[list, int, int]:
    """(shape, offset, elements) of one header entry whose name, dtype (one of `dtypes`; itemsize
    gives its bytes), shape and extent within the body are checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry["name"] in seen \
            or entry.get("dtype") not in dtypes:
        raise StoreError(f"{what} entry is malformed")
    shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
    if not isinstance(shape, list) or len(shape) > max_dims or not all(type(d) is int and 0 <= d for d in shape) \
            or type(offset) is not int or type(nbytes) is not int or not 0 <= offset <= offset + nbytes <= body_size:
        raise StoreError(f"{what} entry {entry['name']!r} has a bad shape or extent")
    count = math.prod(shape)
    if count * itemsize(entry["dtype"]) != nbytes:
        raise StoreError(f"{what} entry {entry['name']!r}: shape {shape} does not match its {nbytes} bytes")
    return shape, offset, count


def decode_tensors(data: bytes) -> dict:
    """encode_tensors' inverse. Every field is checked: a corrupt or hostile file raises
    StoreError, never allocates more than the file holds."""
    import torch

    entries, start = _framed_entries(data, TENSORS_MAGIC, "weights file", 1 << 16)
    body = bytearray(data[start:])  # writable: tensors made from it own their memory
    state = {}
    for entry in entries:
        shape, offset, count = _checked_entry(entry, _TENSOR_DTYPES, lambda name: getattr(torch, name).itemsize,
                                              len(body), state, "weights", 8)
        dtype = getattr(torch, entry["dtype"])
        state[entry["name"]] = torch.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape) \
            if count else torch.empty(shape, dtype=dtype)
    return state


def decode_piece(data: bytes) -> dict[str, np.ndarray]:
    """encode_piece's inverse (or an .npz piece of an older run). Every field is checked: a corrupt
    or hostile piece raises StoreError and never allocates more than the file holds."""
    if data.startswith(PIECE_MAGIC):
        return _decode_raw_piece(data)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as error:
        raise StoreError(f"unreadable history piece ({type(error).__name__})") from None


def _decode_raw_piece(data: bytes) -> dict[str, np.ndarray]:
    entries, start = _framed_entries(data, PIECE_MAGIC, "history piece", _PIECE_MAX_ARRAYS)
    body = memoryview(data)[start:]
    arrays = {}
    for entry in entries:
        shape, offset, count = _checked_entry(entry, _PIECE_DTYPES, lambda name: np.dtype(_PIECE_DTYPES[name]).itemsize,
                                              len(body), arrays, "history piece", 4)
        arrays[entry["name"]] = np.frombuffer(body, dtype=_PIECE_DTYPES[entry["dtype"]], count=count,
                                              offset=offset).reshape(shape)
    return arrays


def _numeric(arrays: dict, name: str, shape_tail: tuple, dtype) -> np.ndarray | None:
    if name not in arrays:
        return None
    array = arrays[name]
    if array.dtype.kind not in "fiu" or array.ndim != len(shape_tail) + 1 or array.shape[1:] != shape_tail:
        raise StoreError(f"{name} has shape {array.shape}, expected (n, {', '.join(map(str, shape_tail))})")
    return array.astype(dtype, copy=False)


def _steps(arrays: dict, name: str) -> np.ndarray | None:
    steps = _numeric(arrays, name, (), np.float64)
    if steps is None:
        return None
    if not (np.isfinite(steps).all() and (steps >= 0).all() and (steps <= MAX_STEP).all() and (steps == np.floor(steps)).all()):
        raise StoreError(f"{name} holds steps that are not whole numbers in [0, 1e12]")
    return steps.astype(np.int64)


def apply_piece(history: History, arrays: dict[str, np.ndarray]) -> None:
    """Validate a piece against the history's layers and bins, then append it (all or nothing)."""
    layers, bins = len(history.layer_names), history.histogram_bins
    batches = _numeric(arrays, "batches", (len(BATCH_COLUMNS),), np.float32)
    norms = _numeric(arrays, "layer_grad_norms", (layers,), np.float32)
    if (batches is None) != (norms is None) or (batches is not None and len(batches) != len(norms)):
        raise StoreError("batch rows and layer gradient norms disagree")
    epochs = _numeric(arrays, "epochs", (len(EPOCH_COLUMNS),), np.float64)
    stats_steps = _steps(arrays, "stats_steps")
    stats = _numeric(arrays, "layer_stats", (layers, len(LAYER_STATS)), np.float32)
    if (stats_steps is None) != (stats is None) or (stats is not None and len(stats) != len(stats_steps)):
        raise StoreError("layer statistics and their steps disagree")
    hist_steps = _steps(arrays, "histogram_steps")
    histograms = [_numeric(arrays, name, tail, np.float32) for name, tail in (
        ("weight_counts", (layers, bins)), ("weight_ranges", (layers, 2)),
        ("grad_counts", (layers, bins)), ("grad_ranges", (layers, 2)))]
    if hist_steps is not None and any(h is None or len(h) != len(hist_steps) for h in histograms):
        raise StoreError("histograms and their steps disagree")
    # Each histogram's stats row (a step a piece holds twice keeps its last row).
    row_of_step = {step: row for row, step in enumerate(stats_steps.tolist())} \
        if hist_steps is not None and len(hist_steps) and stats_steps is not None else {}
    if hist_steps is not None and not all(step in row_of_step for step in hist_steps.tolist()):
        raise StoreError("a histogram has no layer statistics at its step")
    if epochs is not None and len(epochs) and not (np.isfinite(epochs[:, 0]).all() and (np.abs(epochs[:, 0]) <= 10**7).all()):
        raise StoreError("epoch numbers are not finite")
    system = _numeric(arrays, "system", (len(SYSTEM_COLUMNS),), np.float64)

    if batches is not None:
        history.append_batches(batches, norms)
    if epochs is not None and len(epochs):
        history.append_epochs(epochs)
    if stats_steps is not None:
        histogram_rows = {row_of_step[step]: ((histograms[0][h], histograms[1][h]), (histograms[2][h], histograms[3][h]))
                          for h, step in enumerate(hist_steps.tolist())} if row_of_step else {}
        history.append_layer_stats_rows(stats_steps, stats, histogram_rows)
    for row in system if system is not None else ():
        history.append_system(row)


def snapshot_arrays(snapshot: HistorySnapshot) -> dict[str, np.ndarray]:
    """A whole history as one piece (the compacted form a finished run is read from)."""
    weights, grads = snapshot.weight_histograms, snapshot.grad_histograms
    return {
        "batches": snapshot.batches, "layer_grad_norms": snapshot.layer_grad_norms, "epochs": snapshot.epochs,
        "stats_steps": snapshot.stats_steps, "layer_stats": snapshot.layer_stats,
        "histogram_steps": weights.steps, "weight_counts": weights.counts, "weight_ranges": weights.ranges,
        "grad_counts": grads.counts, "grad_ranges": grads.ranges, "system": snapshot.system,
    }


PIECE_SUFFIX = ".piece"
_PIECE = re.compile(r"^(full-)?(\d{8})\.(piece|npz)$")  # (.npz: runs written before 2026-12-07)
# Weight snapshots: "<step>.tensors" (raw bytes behind a JSON header: ~20x cheaper to write than
# torch.save, which runs on the writer thread while it holds the GIL the training thread needs);
# "<step>.pt" in runs written before.
SNAPSHOT_SUFFIX = ".tensors"
_SNAPSHOT = re.compile(r"^(\d{10})\.(tensors|pt)$")


# --------------------------------------------------------------------------- the store


class RunStore:
    """A runs folder: a local path or any fsspec URL (memory://runs, s3://bucket/runs, ...)."""

    def __init__(self, url: str | Path):
        if not isinstance(url, (str, os.PathLike)):  # watch(5) made a folder named "5" in the working directory
            raise TypeError(f"the runs folder must be a path or an fsspec URL, got {type(url).__name__}")
        text = str(url).strip()
        if not text:
            raise StoreError("The runs folder cannot be empty; type e.g. ./runs")
        if len(text) > 1024:
            raise StoreError("The runs folder is over 1024 characters long; type a shorter path")
        if control := next((c for c in text if ord(c) < 32 or ord(c) == 127), None):
            # No file system takes a NUL (os.stat raises ValueError), and a pasted tab or newline is a typo.
            raise StoreError(f"The runs folder contains the control character {control!r}; type a plain path")
        if "://" not in text:
            text = str(Path(text).expanduser().absolute())
        try:
            self.fs, self.root = fsspec.core.url_to_fs(text)
        except (ValueError, ImportError) as error:
            raise StoreError(f"Cannot use the runs folder {text}: {error}") from None
        self.url = text
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    # -- paths and raw I/O ----------------------------------------------------------
    def path(self, run_id: str, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), check_run_id(run_id), *parts])

    def check_usable(self) -> None:
        """Raises StoreError unless runs can be written here (creates nothing)."""
        if not self.is_local:
            return
        path = Path(self.root)
        try:
            if path.exists() and not path.is_dir():
                raise StoreError(f"{path} is a file, not a folder")
            existing = next((p for p in [path, *path.parents] if p.exists()), None)
        except OSError as error:
            raise StoreError(f"Cannot use the runs folder {path}: {error.strerror}") from None
        if existing is None or not os.access(existing, os.W_OK):
            raise StoreError(f"The runs folder {path} is not writable")

    def _refuse_link(self, path: str) -> None:
        if self.is_local and os.path.islink(path):
            raise StoreError(f"{os.path.basename(path)} is a symbolic link; the store reads only real files")

    def read_bytes(self, path: str, limit: int = 1 << 31) -> bytes:
        self._refuse_link(path)
        if self.is_local and os.path.getsize(path) > limit:
            raise StoreError(f"{os.path.basename(path)} is larger than {limit} bytes")
        return self.fs.cat_file(path)

    def read_json(self, path: str, limit: int = 4 << 20):
        try:
            return json.loads(self.read_bytes(path, limit))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise StoreError(f"{path.rsplit('/', 1)[-1]} is not valid JSON") from None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file so readers never see half of it (object stores: one PUT)."""
        if self.is_local:
            temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        else:
            self.fs.pipe_file(path, data)

    def write_json(self, path: str, payload: dict) -> None:
        self.write_bytes(path, json.dumps(payload, separators=(",", ":")).encode())

    def _fresh(self, path: str) -> None:
        """Object-store filesystems (s3fs, gcsfs) cache listings; a tail must see new pieces."""
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def exists(self, path: str) -> bool:
        self._fresh(path)
        return self.fs.exists(path)

    def list_names(self, path: str) -> list[str]:
        self._fresh(path)
        try:
            return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(path, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    # -- runs -------------------------------------------------------------------------
    def create_run(self, *, name: str, config: dict, layer_names, source: str, architecture: list | None = None,
                   histogram_bins: int = DEFAULT_HISTOGRAM_BINS, run_id: str | None = None,
                   planned_epochs: int = 0, batches_per_epoch: int = 0, device: str = "") -> RunWriter:
        self.check_usable()
        run_id = check_run_id(run_id or new_run_id())
        meta = {
            "format": FORMAT, "run_id": run_id, "name": clean_name(name), "created_at": time.time(),
            "source": source, "config": config, "layer_names": list(layer_names),
            "histogram_bins": histogram_bins, "architecture": architecture or [], "device": device,
        }
        for folder in (self.path(run_id), self.path(run_id, CHUNKS), self.path(run_id, WEIGHTS)):
            self.fs.makedirs(folder, exist_ok=True)
        if self.exists(self.path(run_id, META_FILE)):
            raise StoreError(f"Run {run_id} already exists")
        self.write_json(self.path(run_id, META_FILE), meta)
        return RunWriter(self, run_id, meta, planned_epochs, batches_per_epoch)

    def read_meta(self, run_id: str) -> dict:
        try:
            return _validate_meta(self.read_json(self.path(run_id, META_FILE)), run_id)
        except (OSError, ValueError) as error:
            raise StoreError(f"unreadable run.json ({error})") from None

    def read_labels(self, run_id: str, meta: dict) -> Labels:
        """The run's name, notes and tags; each part that is missing or unreadable falls back on its
        own (the name to the one it was created with)."""
        try:
            stored = self.read_json(self.path(run_id, LABELS_FILE), 64 << 10)
        except (OSError, ValueError):
            stored = {}
        stored = stored if isinstance(stored, dict) else {}
        parts = {"name": meta["name"], "notes": "", "tags": ()}
        readers = {"name": lambda v: clean_name(_text(v, "name", MAX_NAME_LENGTH * 4)),
                   "notes": lambda v: clean_notes(_text(v, "notes", MAX_NOTES_LENGTH * 2)),
                   "tags": lambda v: clean_tags(_text(t, "tag", MAX_TAG_LENGTH * 2) for t in v[: MAX_TAGS * 2])
                   if isinstance(v, list) else (),}
        for key, read in readers.items():
            if key in stored:
                try:
                    parts[key] = read(stored[key])
                except ValueError:
                    pass
        return Labels(**parts)

    def read_name(self, run_id: str, meta: dict) -> str:
        return self.read_labels(run_id, meta).name

    def write_labels(self, run_id: str, meta: dict, *, name: str | None = None, notes: str | None = None,
                     tags=None) -> Labels:
        """Change some of the run's labels, keeping the others; returns them all as stored."""
        labels = self.read_labels(run_id, meta)
        labels = Labels(clean_name(name) if name is not None else labels.name,
                        clean_notes(notes) if notes is not None else labels.notes,
                        clean_tags(tags) if tags is not None else labels.tags)
        self.write_json(self.path(run_id, LABELS_FILE),
                        {"name": labels.name, "notes": labels.notes, "tags": list(labels.tags)})
        return labels

    def rename(self, run_id: str, name: str) -> str:
        return self.write_labels(run_id, self.read_meta(run_id), name=name).name

    def read_shapes(self, run_id: str) -> dict[str, tuple[int, ...]]:
        """Each layer's output shape for one sample, as a script's first batch showed them
        (shapes.json); {} while there is none, or for a malformed one (no shapes are shown)."""
        try:
            payload = self.read_json(self.path(run_id, SHAPES_FILE), limit=1 << 20)
        except (StoreError, OSError):
            return {}
        shapes = payload.get("output_shapes") if isinstance(payload, dict) else None
        if not isinstance(shapes, dict) or len(shapes) > MAX_LAYERS:
            return {}
        valid = {}
        for name, shape in shapes.items():
            if not (isinstance(name, str) and len(name) <= MAX_TEXT and isinstance(shape, list) and len(shape) <= 8
                    and all(type(size) is int and 0 <= size <= 1 << 31 for size in shape)):
                return {}
            valid[name] = tuple(shape)
        return valid

    def read_state(self, run_id: str) -> RunState:
        try:
            return RunState.parse(self.read_json(self.path(run_id, STATUS_FILE), 64 << 10))
        except FileNotFoundError:
            return RunState()
        except (OSError, ValueError) as error:
            return RunState(Status.FAILED, f"Unreadable status.json: {error}")

    def request_stop(self, run_id: str) -> None:
        """Ask whoever trains this run (a worker, a user's script) to stop after its current batch."""
        self.update_control(run_id, stop=True, at=time.time())

    def update_control(self, run_id: str, **changes) -> dict:
        """Change what the page asks of this run's writer (see CONTROLS); returns the whole request.
        Read, changed and written whole: the page is control.json's only writer."""
        unknown = set(changes) - set(CONTROLS)
        if unknown:
            raise ValueError(f"unknown control {sorted(unknown)}: use {', '.join(CONTROLS)}")
        control = {**self.read_control(run_id), **changes}
        self.write_json(self.path(run_id, CONTROL_FILE), control)
        return control

    def read_control(self, run_id: str) -> dict:
        try:
            control = self.read_json(self.path(run_id, CONTROL_FILE), 64 << 10)
        except (OSError, ValueError):
            return {}
        return control if isinstance(control, dict) else {}

    def scan(self) -> tuple[list[tuple[float, str]], list[str]]:
        """(created_at, run id) of every run here, oldest first, and a warning for each entry skipped."""
        runs, warnings = [], []
        self._fresh(self.root)
        try:
            entries = self.fs.ls(self.root, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        except OSError as error:
            return [], [f"Cannot list the runs folder: {error}"]
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("."):
                continue
            if entry.get("type") != "directory" or not RUN_ID_PATTERN.match(name):
                warnings.append(f"Skipped {name}: not a run folder")
                continue
            if self.is_local and os.path.islink(entry["name"]):
                warnings.append(f"Skipped {name}: the folder is a symbolic link")
                continue
            try:
                meta = self.read_meta(name)
            except StoreError as error:
                warnings.append(f"Skipped {name}: {error}")
                continue
            runs.append((meta["created_at"], name))
        return sorted(runs), warnings

    def delete(self, run_id: str) -> None:
        path = self.path(run_id)
        if self.is_local and os.path.islink(path):
            os.unlink(path)  # a link to elsewhere: remove the link, never what it points to
            return
        self.fs.rm(path, recursive=True)

    def stamp(self):
        """Something that changes when runs are added or removed (local: the folder's mtime)."""
        if self.is_local:
            try:
                return os.stat(self.root).st_mtime_ns
            except OSError:
                return None
        return int(time.monotonic() // 5)  # remote listings are cheap enough every 5 s

    # -- weights ----------------------------------------------------------------------
    def weight_steps(self, run_id: str) -> list[int]:
        names = self.list_names(self.path(run_id, WEIGHTS))
        steps = sorted(int(m.group(1)) for n in names if (m := _SNAPSHOT.match(n)))
        return steps + ([-1] if FINAL_WEIGHTS in names else [])

    def load_weights(self, run_id: str, step: int | None = None) -> tuple[int, dict]:
        """(step, state_dict) of the snapshot at or before `step` (None: the newest; -1: final).

        Tensors only: torch.load(weights_only=True) refuses pickled code.
        """
        import torch

        steps = self.weight_steps(run_id)
        if not steps:
            raise StoreError("this run has no saved weights yet")
        chosen = snapshot_at(steps, step)
        names = self.list_names(self.path(run_id, WEIGHTS))
        name = FINAL_WEIGHTS if chosen == -1 else next(
            (n for n in (f"{chosen:010d}{SNAPSHOT_SUFFIX}", f"{chosen:010d}.pt") if n in names), f"{chosen:010d}.pt")
        try:
            data = self.read_bytes(self.path(run_id, WEIGHTS, name), 4 << 30)
            state = decode_tensors(data) if name.endswith(SNAPSHOT_SUFFIX) else \
                torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except StoreError as error:
            raise StoreError(f"unreadable weights {name}: {error}") from None
        except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile, Exception) as error:
            raise StoreError(f"unreadable weights {name}: {type(error).__name__}: {error}") from None
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise StoreError(f"weights {name} are not a state_dict of tensors")
        return chosen, state

    def weights_path(self, run_id: str) -> str | None:
        """The final weights file of a run (local, not a link), for a download; None otherwise."""
        path = self.path(run_id, WEIGHTS, FINAL_WEIGHTS)
        if not self.is_local or not os.path.isfile(path) or os.path.islink(path):
            return None
        return path


def snapshot_at(steps: list[int], step: int | None) -> int:
    """Of a run's weight_steps (-1: the final weights), the one load_weights(step) loads: the newest
    for None, else the last snapshot at or before `step` (the first one before any)."""
    if step is None:
        return -1 if -1 in steps else steps[-1]
    earlier = [s for s in steps if 0 <= s <= step]
    return earlier[-1] if earlier else steps[0]


# --------------------------------------------------------------------------- writing


def error_reason(error: BaseException) -> str:
    """An exception as the end of a sentence: 'no space left on device'."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


class RunWriter:
    """A History sink that writes the run into the store from its own thread.

    The training thread only hands over arrays (no I/O, no encoding on its clock). The writer
    thread writes a piece every PIECE_SECONDS, a heartbeat every HEARTBEAT_SECONDS, reads the
    page's control file every CONTROL_POLL_SECONDS, and stores weight snapshots. The first
    failed write (a full disk, a lost bucket) is kept in `error`; the monitor ends the run
    with it, and nothing more is written.
    """

    def __init__(self, store: RunStore, run_id: str, meta: dict, planned_epochs: int = 0, batches_per_epoch: int = 0):
        self.store, self.run_id, self.meta = store, run_id, meta
        self.error: str | None = None
        self.on_stop_requested = None  # set by the monitor: called once when the page asks to stop
        self.on_control = None  # set by the monitor: called with control.json each time it changes
        self._control_seen: dict = {}
        self._piece_now = False  # training holds: what it recorded goes out before the held state
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, list] = {}
        self._pending_weights: dict[int, tuple] = {}  # step -> (state_dict, wait for its copy), not written yet
        self._pending_shapes: dict | None = None  # the layers' output shapes, until written
        self._dropped_weights: list[int] = []  # written snapshots that thinning dropped
        self._state = RunState(Status.RUNNING, "", planned_epochs, batches_per_epoch, 0, time.time(), os.getpid())
        self._state_dirty = True
        self._next_piece = 0
        self._last_piece = 0.0
        self._last_heartbeat = 0.0
        self._last_control = 0.0
        self._stop_seen = False
        self._snapshot_steps: list[int] = []
        self._snapshot_stride = 1
        self._stats_seen = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"run-writer-{run_id}", daemon=True)
        self._thread.start()

    @property
    def folder(self) -> str:
        return self.store.path(self.run_id)

    # -- called by the History / monitor on the training thread --------------------------
    def _add(self, **arrays: np.ndarray) -> None:
        with self._lock:
            for name, array in arrays.items():
                self._pending.setdefault(name, []).append(array)

    def on_batches(self, rows: np.ndarray, layer_norms: np.ndarray) -> None:
        self._add(batches=rows, layer_grad_norms=layer_norms)
        with self._lock:
            self._state = replace(self._state, step=self._state.step + len(rows))
        if self._next_piece == 0:
            self._wake.set()  # the first piece goes out at once: it is what the page waits for

    def on_epoch(self, row: np.ndarray) -> None:
        # No piece of its own: with small epochs (75 ms on the spiral) a piece per epoch was the
        # writer's largest cost; the row goes out with the next piece, within PIECE_SECONDS.
        self._add(epochs=row[None, :])

    def on_layer_stats(self, step, stats, weight_histograms, grad_histograms) -> None:
        step_row = np.array([step], dtype=np.int64)
        arrays = {"stats_steps": step_row, "layer_stats": stats[None]}
        if weight_histograms is not None:
            arrays["histogram_steps"] = step_row
            for name, array in zip(("weight_counts", "weight_ranges", "grad_counts", "grad_ranges"),
                                   (*weight_histograms, *grad_histograms)):
                arrays[name] = array[None]
        self._add(**arrays)  # one lock: a piece never holds stats without their histograms

    def on_system(self, row: np.ndarray) -> None:
        self._add(system=row[None])

    def on_status(self, status, message: str, planned_epochs: int, batches_per_epoch: int) -> None:
        with self._lock:
            self._state = replace(self._state, status=Status(status), message=message,
                                   planned_epochs=planned_epochs, batches_per_epoch=batches_per_epoch)
            self._state_dirty = True
        self._wake.set()

    def on_rank_speeds(self, speeds) -> None:
        with self._lock:
            self._state = replace(self._state, rank_speeds=tuple(float(v) for v in speeds))
            self._state_dirty = True

    def on_pause_state(self, pausable: bool, paused_at: int, pace_seconds: float | None) -> None:
        """Whether training can be held, the step it is held at (-1: training), its pace."""
        with self._lock:
            self._state = replace(self._state, pausable=pausable, paused_at=paused_at, pace_seconds=pace_seconds or 0.0)
            self._state_dirty = True
            self._piece_now = True
        self._wake.set()

    def on_shapes(self, shapes: dict) -> None:
        """The layers' output shapes (name -> sizes of one sample), seen in the first batch."""
        with self._lock:
            self._pending_shapes = {str(name): [int(size) for size in shape] for name, shape in shapes.items()}
        self._wake.set()

    def wants_weights(self, parameter_bytes: int, planned_stats_batches: int = 0) -> bool:
        """Whether the next stats batch should hand over a weight snapshot (bounded and thinned).

        planned_stats_batches: how many stats batches the run plans (0: unknown). A run planned
        for more than the bound starts with the spacing thinning would reach, a power of two: a
        300-stats-batch run writes 150 snapshots, not 250 of which thinning then deletes 100.
        """
        if parameter_bytes > MAX_SNAPSHOT_BYTES or self.error:
            return False
        if self._stats_seen == 0 and planned_stats_batches >= MAX_WEIGHT_SNAPSHOTS:
            self._snapshot_stride = 1 << math.ceil(math.log2(planned_stats_batches / (MAX_WEIGHT_SNAPSHOTS - 1)))
        due = self._stats_seen % self._snapshot_stride == 0
        self._stats_seen += 1
        return due

    def on_weights(self, step: int, state: dict, ready=None) -> None:
        """`state`: a CPU copy of the model's state_dict, taken on the training thread; `ready`, if
        given, waits until the copy is complete (an asynchronous copy from a GPU).

        Thinning is decided here, as snapshots arrive, so the kept steps stay evenly spaced
        however late the writer thread gets to them."""
        with self._lock:
            self._pending_weights[step] = (state, ready)
            self._snapshot_steps.append(step)
            if len(self._snapshot_steps) >= MAX_WEIGHT_SNAPSHOTS:  # thin evenly: drop every other one
                dropped, self._snapshot_steps = self._snapshot_steps[1::2], self._snapshot_steps[::2]
                self._snapshot_stride *= 2
                for old in dropped:
                    if self._pending_weights.pop(old, None) is None:
                        self._dropped_weights.append(old)  # written already: the writer removes it

    # -- the writer thread ------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(CONTROL_POLL_SECONDS)
            self._wake.clear()
            if self._closed:
                break
            self._work()

    def _work(self) -> None:
        now = time.time()
        try:
            if self.error is None:
                if self._next_piece == 0 or self._piece_now or now - self._last_piece >= PIECE_SECONDS:
                    self._piece_now = False
                    self._write_piece()
                self._write_shapes()
                self._write_weights()
                if self._state_dirty and self._state.status.ended:
                    pass  # an ended status is written by close(), after the last piece
                elif self._state_dirty or now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                    self._write_state()
        except Exception as error:  # a full disk, a lost connection: keep the first reason
            self.error = error_reason(error)
        if now - self._last_control >= CONTROL_POLL_SECONDS and not self._stop_seen:
            self._last_control = now
            control = self.store.read_control(self.run_id)
            if control.get("stop") is True:
                self._stop_seen = True
                if self.on_stop_requested is not None:
                    self.on_stop_requested()
            elif control != self._control_seen:
                self._control_seen = control
                if self.on_control is not None:
                    self.on_control(control)

    def _write_piece(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        arrays = {name: np.concatenate(parts) for name, parts in pending.items()}
        self.store.write_bytes(self.store.path(self.run_id, CHUNKS, f"{self._next_piece:08d}{PIECE_SUFFIX}"),
                               encode_piece(arrays))
        self._next_piece += 1
        self._last_piece = time.time()

    def _write_weights(self) -> None:
        with self._lock:
            pending, self._pending_weights = self._pending_weights, {}
            dropped, self._dropped_weights = self._dropped_weights, []
        for step, (state, ready) in pending.items():
            if ready is not None:
                ready()
            self.store.write_bytes(self.store.path(self.run_id, WEIGHTS, f"{step:010d}{SNAPSHOT_SUFFIX}"),
                                   encode_tensors(state))
        for old in dropped:
            self.store.fs.rm(self.store.path(self.run_id, WEIGHTS, f"{old:010d}{SNAPSHOT_SUFFIX}"))

    def _write_shapes(self) -> None:
        with self._lock:
            shapes, self._pending_shapes = self._pending_shapes, None
        if shapes is not None:
            self.store.write_json(self.store.path(self.run_id, SHAPES_FILE), {"output_shapes": shapes})

    def _write_state(self) -> None:
        with self._lock:
            self._state = replace(self._state, heartbeat=time.time())
            state, self._state_dirty = self._state, False
        self.store.write_json(self.store.path(self.run_id, STATUS_FILE), state.to_json())
        self._last_heartbeat = time.time()

    # -- the end ------------------------------------------------------------------------
    def close(self, snapshot: HistorySnapshot | None = None, final_weights: dict | None = None) -> None:
        """Write what is pending, the final weights, the history compacted into one piece, then the
        final status, last: a reader that sees an ended status can trust every piece is there."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        if self.error is not None:
            return
        try:
            self._write_piece()
            self._write_shapes()
            self._write_weights()
            if final_weights is not None:
                import torch

                buffer = io.BytesIO()
                torch.save(final_weights, buffer)
                self.store.write_bytes(self.store.path(self.run_id, WEIGHTS, FINAL_WEIGHTS), buffer.getvalue())
            if snapshot is not None and self._next_piece > 1:
                self._compact(snapshot)
            self._write_state()
        except Exception as error:
            self.error = error_reason(error)

    def _compact(self, snapshot: HistorySnapshot) -> None:
        """One piece for the whole run, so opening it later reads one file, then drop the small ones."""
        last = self._next_piece - 1
        self.store.write_bytes(self.store.path(self.run_id, CHUNKS, f"full-{last:08d}{PIECE_SUFFIX}"),
                               encode_piece(snapshot_arrays(snapshot)))
        for index in range(self._next_piece):
            try:
                self.store.fs.rm(self.store.path(self.run_id, CHUNKS, f"{index:08d}{PIECE_SUFFIX}"))
            except FileNotFoundError:
                pass



# --------------------------------------------------------------------------- reading


class RunReader:
    """Reads a run into a History and keeps reading the pieces written since (tail -f).

    Several page sessions may poll one reader: a lock makes each piece apply once.
    """

    def __init__(self, store: RunStore, run_id: str, meta: dict):
        self.store, self.run_id, self.meta = store, run_id, meta
        self.history = History(meta["layer_names"], meta["histogram_bins"])
        self.state = RunState()
        self.skipped_pieces = 0
        self.problems: list[str] = []
        self._next_piece = 0
        self._lock = threading.Lock()
        # True once everything an ended run wrote has been read: polling stops there.
        self.complete = False

    @classmethod
    def open(cls, store: RunStore, run_id: str) -> RunReader:
        return cls(store, run_id, store.read_meta(run_id))

    def poll(self) -> int:
        """Apply every new piece and re-read the status; returns how many pieces were applied."""
        with self._lock:
            # Status first: a writer writes its last piece before its final status, so pieces
            # listed after an ended status are all there is.
            if self.complete:
                return 0
            state = self.store.read_state(self.run_id)
            self.state = state
            applied, gap = self._read_pieces()
            self.complete = state.status.ended and not gap
            history = self.history
            history.planned_epochs, history.batches_per_epoch = self.state.planned_epochs, self.state.batches_per_epoch
            history.status, history.message = self.state.status, self.state.message
            return applied

    def _read_pieces(self) -> tuple[int, bool]:
        """(pieces applied, whether a piece was missing: listed but gone, or a gap in the numbers)."""
        names = self.store.list_names(self.store.path(self.run_id, CHUNKS))
        small, full = {}, {}  # piece number -> file name (a .piece before an older run's .npz)
        for name in sorted(names, key=lambda name: name.endswith(".npz")):
            match = _PIECE.match(name)
            if match:
                (full if match.group(1) else small).setdefault(int(match.group(2)), name)
        applied = 0
        if full and max(full) >= self._next_piece:
            # The run was compacted past what this reader has read: start over from the one piece.
            last = max(full)
            history, self.history = self.history, History(self.meta["layer_names"], self.meta["histogram_bins"])
            try:
                applied += self._apply(full[last])
            except FileNotFoundError:  # deleted meanwhile: keep what was read
                self.history = history
                return applied, True
            self._next_piece = last + 1
        for index in sorted(small):
            if index < self._next_piece:
                continue
            if index != self._next_piece:
                return applied, True  # a gap: the piece before it is not listed yet
            try:
                applied += self._apply(small[index])
            except FileNotFoundError:
                return applied, True  # compacted away while listed: the full piece is read next time
            self._next_piece = index + 1
        return applied, False

    def _apply(self, name: str) -> int:
        try:
            data = self.store.read_bytes(self.store.path(self.run_id, CHUNKS, name), 1 << 30)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as error:
            return self._skip(name, error)
        try:
            apply_piece(self.history, decode_piece(data))
            return 1
        except ValueError as error:
            return self._skip(name, error)

    def _skip(self, name: str, error: Exception) -> int:
        self.skipped_pieces += 1
        if len(self.problems) < 20:
            self.problems.append(f"Skipped history piece {name}: {error}")
        return 0

    @property
    def heartbeat_age(self) -> float:
        return time.time() - self.state.heartbeat if self.state.heartbeat else math.inf

    @property
    def writer_lost(self) -> bool:
        """The status says running but the writer has not been heard from for too long."""
        return self.state.status == Status.RUNNING and self.heartbeat_age > HEARTBEAT_TIMEOUT_SECONDS


# --------------------------------------------------------------------------- export


def _csv(frame) -> str:
    return frame.to_csv(index=False, na_rep="")


def export_csv_zip(snapshot: HistorySnapshot, name: str) -> bytes:
    """batches.csv, epochs.csv and layer_stats.csv of a run, zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("batches.csv", _csv(snapshot.batch_frame()))
        archive.writestr("epochs.csv", _csv(snapshot.epoch_frame()))
        archive.writestr("layer_stats.csv", _csv(snapshot.layer_stats_frame()))
        archive.writestr("README.txt", f"Run: {name}\nOne row per batch, per epoch, and per layer per stats snapshot.\n")
    return buffer.getvalue()


def export_json(snapshot: HistorySnapshot, meta: dict) -> bytes:
    """The whole history as one JSON document (NaN written as null)."""

    def clean(values):
        return [[None if isinstance(v, float) and not math.isfinite(v) else v for v in row] for row in values]

    document = {
        "run": {k: meta.get(k) for k in ("run_id", "name", "created_at", "source", "config")},
        "status": str(snapshot.status), "message": snapshot.message,
        "layer_names": list(snapshot.layer_names),
        "batch_columns": ["step", *BATCH_COLUMNS],
        "batches": clean(snapshot.batch_frame().values.tolist()),
        "epoch_columns": list(EPOCH_COLUMNS),
        "epochs": clean(snapshot.epochs.tolist()),
        "layer_stats_columns": ["step", "layer", *LAYER_STATS],
        "layer_stats": clean(snapshot.layer_stats_frame().values.tolist()),
    }
    return json.dumps(document).encode()
