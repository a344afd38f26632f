"""Runs on disk: one folder per run, written while it trains, read back or tailed live.

    runs/<run id>/run.json        what the run is: name, config, layers, architecture (atomic rewrite)
    runs/<run id>/history.jsonl   one JSON object per line, appended at every monitor flush
    runs/<run id>/model.pt        the trained weights (state_dict), when saved

Only whole lines are appended and each is flushed to the OS, so a writer killed at any
moment leaves at most one torn last line, which readers skip. Folder names are generated
run ids checked against a pattern; run names are display text stored inside run.json and
never become paths.
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training_monitor import BATCH_COLUMNS, EPOCH_COLUMNS, IDLE, LAYER_STATS, RUNNING, STOPPED, History

RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")
META_FILE, HISTORY_FILE, WEIGHTS_FILE = "run.json", "history.jsonl", "model.pt"
MAX_NAME_LENGTH = 80
# A "running" run whose history has not grown for this long lost its writer (killed, crashed).
STALE_SECONDS = 60.0


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


def run_folder(runs_dir: str | Path, run_id: str) -> Path:
    """The folder of a run id; refuses anything that is not a generated id (no paths)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"Not a run id: {run_id!r}")
    return Path(runs_dir) / run_id


def check_runs_dir(runs_dir: str | Path) -> Path:
    """The runs folder as a Path, created if missing; a clear error if it cannot be used."""
    text = str(runs_dir).strip()
    if not text:
        raise ValueError("The runs folder cannot be empty; type e.g. ./runs")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"Cannot create the runs folder {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"The runs folder {path} is not writable")
    return path


def _write_json_atomic(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


def _rows(array: np.ndarray) -> list:
    return np.asarray(array, dtype=np.float64).tolist()


class RunWriter:
    """A History sink that appends every record to the run's history.jsonl as it happens."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self.meta = meta
        self._file = open(folder / HISTORY_FILE, "a", encoding="utf-8")

    @classmethod
    def create(cls, runs_dir: str | Path, *, name: str, config: dict, layer_names, source: str = "dashboard",
               architecture: list | None = None, run_id: str | None = None) -> "RunWriter":
        folder = run_folder(check_runs_dir(runs_dir), run_id or new_run_id())
        folder.mkdir(parents=False, exist_ok=False)
        meta = {
            "format": 1, "run_id": folder.name, "name": clean_name(name), "created_at": time.time(),
            "source": source, "config": config, "layer_names": list(layer_names),
            "architecture": architecture or [],
        }
        _write_json_atomic(folder / META_FILE, meta)
        return cls(folder, meta)

    def _append(self, record: dict) -> None:
        if self._file.closed:
            return
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def on_batches(self, rows: np.ndarray, layer_norms: np.ndarray) -> None:
        self._append({"t": "batches", "rows": _rows(rows), "layers": _rows(layer_norms)})

    def on_epoch(self, row: np.ndarray) -> None:
        self._append({"t": "epoch", "row": _rows(row)})

    def on_layer_stats(self, step, stats, weight_histograms, grad_histograms) -> None:
        record = {"t": "stats", "step": int(step), "stats": _rows(stats)}
        if weight_histograms is not None:
            record["weight"] = [_rows(weight_histograms[0]), _rows(weight_histograms[1])]
            record["grad"] = [_rows(grad_histograms[0]), _rows(grad_histograms[1])]
        self._append(record)

    def on_status(self, status: str, message: str, planned_epochs: int, batches_per_epoch: int) -> None:
        self._append({"t": "status", "status": status, "message": message, "planned_epochs": planned_epochs,
                      "batches_per_epoch": batches_per_epoch})

    def close(self) -> None:
        self._file.close()


def read_meta(folder: Path) -> dict:
    meta = json.loads((folder / META_FILE).read_text())
    if not isinstance(meta, dict) or meta.get("run_id") != folder.name or not isinstance(meta.get("layer_names"), list):
        raise ValueError("run.json does not describe this run")
    return meta


def rename_run(folder: Path, name: str) -> dict:
    meta = read_meta(folder)
    meta["name"] = clean_name(name)
    _write_json_atomic(folder / META_FILE, meta)
    return meta


@dataclass
class RunTail:
    """Reads a run folder into a History, and keeps reading what is appended (tail -f)."""

    folder: Path
    meta: dict
    history: History = field(init=False)
    skipped_lines: int = 0
    _offset: int = 0
    _last_growth: float = field(default_factory=time.time)

    _polled: bool = False
    # Several browser sessions may poll the same run at once: each line must be applied once.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        # Nothing is read until someone asks: listing a runs folder must not parse every history.
        self.history = History(self.meta["layer_names"])
        self.history.status = IDLE

    @classmethod
    def open(cls, folder: Path) -> "RunTail":
        return cls(folder, read_meta(folder))

    def poll(self) -> int:
        """Apply every complete new line; returns how many records were added."""
        with self._lock:
            return self._poll()

    def _poll(self) -> int:
        self._polled = True
        path = self.folder / HISTORY_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size <= self._offset:
            return 0
        with open(path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read(size - self._offset)
        complete = chunk.rfind(b"\n") + 1  # a torn last line waits (or stays skipped)
        added = 0
        for line in chunk[:complete].splitlines():
            try:
                self._apply(json.loads(line))
                added += 1
            except (ValueError, KeyError, TypeError, IndexError):
                self.skipped_lines += 1
        self._offset += complete
        if added:
            self._last_growth = time.time()
        return added

    def _apply(self, record: dict) -> None:
        kind = record["t"]
        history = self.history
        layers = len(history.layer_names)
        if kind == "batches":
            rows = np.asarray(record["rows"], dtype=np.float32).reshape(-1, len(BATCH_COLUMNS))
            norms = np.asarray(record["layers"], dtype=np.float32).reshape(-1, layers)
            if len(rows) != len(norms):
                raise ValueError("batch rows and layer norms disagree")
            history.append_batches(rows, norms)
        elif kind == "epoch":
            row = np.asarray(record["row"], dtype=np.float64).reshape(len(EPOCH_COLUMNS))
            history.append_epoch(**dict(zip(EPOCH_COLUMNS, row)))
        elif kind == "stats":
            stats = np.asarray(record["stats"], dtype=np.float32).reshape(layers, len(LAYER_STATS))
            weight = grad = None
            if "weight" in record:
                weight = tuple(np.asarray(a, dtype=np.float32) for a in record["weight"])
                grad = tuple(np.asarray(a, dtype=np.float32) for a in record["grad"])
            history.append_layer_stats(int(record["step"]), stats, weight, grad)
        elif kind == "status":
            history.planned_epochs = int(record.get("planned_epochs", 0))
            history.batches_per_epoch = int(record.get("batches_per_epoch", 0))
            history.set_status(str(record["status"]), str(record.get("message", "")))
        else:
            raise ValueError(f"unknown record {kind!r}")

    @property
    def is_stale(self) -> bool:
        if not self._polled:
            self.poll()
        return self.history.status == RUNNING and time.time() - self._last_growth > STALE_SECONDS

    @property
    def status(self) -> str:
        return STOPPED if self.is_stale else self.history.status

    @property
    def message(self) -> str:
        if self.is_stale:
            return (f"The process writing this run stopped without finishing (no new data for "
                    f"{STALE_SECONDS:.0f}s); showing what it wrote.")
        return self.history.message


def scan_runs(runs_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Run folders in runs_dir, oldest first, and a warning for everything skipped."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return [], []
    folders, warnings = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir() or not RUN_ID_PATTERN.match(entry.name):
            warnings.append(f"Skipped {entry.name}: not a run folder")
            continue
        try:
            meta = read_meta(entry)
        except (OSError, ValueError) as error:
            warnings.append(f"Skipped {entry.name}: unreadable run.json ({type(error).__name__})")
            continue
        folders.append((float(meta.get("created_at", 0)), entry))
    return [folder for _, folder in sorted(folders)], warnings


def save_weights(folder: Path, model: torch.nn.Module) -> Path:
    path = folder / WEIGHTS_FILE
    temporary = path.with_name(f".{WEIGHTS_FILE}.{os.getpid()}.tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, temporary)
    os.replace(temporary, path)
    return path


def load_weights(folder: Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load saved weights into a model of the same architecture. Tensors only: never pickled code."""
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- export


def _csv(frame) -> str:
    return frame.to_csv(index=False, na_rep="")


def export_csv_zip(snapshot, name: str) -> bytes:
    """batches.csv, epochs.csv and layer_stats.csv of a run, zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("batches.csv", _csv(snapshot.batch_frame()))
        archive.writestr("epochs.csv", _csv(snapshot.epoch_frame()))
        archive.writestr("layer_stats.csv", _csv(snapshot.layer_stats_frame()))
        archive.writestr("README.txt", f"Run: {name}\nOne row per batch, per epoch, and per layer per stats snapshot.\n")
    return buffer.getvalue()


def export_json(snapshot, meta: dict) -> bytes:
    """The whole history as one JSON document (NaN written as null)."""

    def clean(values):
        return [[None if isinstance(v, float) and not math.isfinite(v) else v for v in row] for row in values]

    document = {
        "run": {k: meta.get(k) for k in ("run_id", "name", "created_at", "source", "config")},
        "status": snapshot.status, "message": snapshot.message,
        "layer_names": list(snapshot.layer_names),
        "batch_columns": ["step", *BATCH_COLUMNS],
        "batches": clean(snapshot.batch_frame().values.tolist()),
        "epoch_columns": list(EPOCH_COLUMNS),
        "epochs": clean(snapshot.epochs.tolist()),
        "layer_stats_columns": ["step", "layer", *LAYER_STATS],
        "layer_stats": clean(snapshot.layer_stats_frame().values.tolist()),
    }
    return json.dumps(document).encode()
