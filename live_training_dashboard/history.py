"""A run's history as plain numpy data: the column schema, History, HistorySnapshot, Status.

numpy only (pandas for the frames): the charts, the doctor and the run store import this,
never the torch-heavy monitor. The History only ever grows at the end, so a reader on
another thread gets a consistent snapshot by taking the committed row count under a lock
and slicing: rows below that count are never written again.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
import pandas as pd

# Per-batch series, one float32 column each.
BATCH_COLUMNS = ("loss", "accuracy", "grad_norm", "lr", "epoch_progress", "seconds")
EPOCH_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "end_step")
# System metrics of the training process, sampled about once a second (W&B's system panel):
# seconds since the start, batches done, CPU % of one core (above 100 with several threads),
# resident memory, GPU memory allocated by torch (NaN without a GPU), batches/s since the last.
SYSTEM_COLUMNS = ("seconds", "step", "cpu_percent", "memory_mb", "gpu_memory_mb", "batches_per_second")
# Per-layer numbers taken every stats_every batches.
LAYER_STATS = (
    "weight_mean",
    "weight_std",
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "dead_fraction",
    "saturation",
    "act_grad_norm",
)

# Cross-entropy starts near ln(classes); a loss 100x its first value means the weights blew up.
# The monitor ends a run there and the doctor explains it: both read this one number.
DIVERGENCE_LOSS_FACTOR = 100.0
DEFAULT_HISTOGRAM_BINS = 40
# Enough snapshots for a smooth heatmap; beyond it older ones are thinned evenly.
DEFAULT_MAX_HISTOGRAM_SNAPSHOTS = 400


class Status(str, Enum):
    """How a run stands. Writer (monitor, worker) and readers (page, doctor) share these words."""

    IDLE = "idle"
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def ended(self) -> bool:
        return self in ENDED_STATUSES


IDLE, QUEUED, PREPARING, RUNNING = Status.IDLE, Status.QUEUED, Status.PREPARING, Status.RUNNING
FINISHED, STOPPED, DIVERGED, FAILED = Status.FINISHED, Status.STOPPED, Status.DIVERGED, Status.FAILED
ENDED_STATUSES = frozenset({FINISHED, STOPPED, DIVERGED, FAILED})


class _Rows:
    """An append-only 2-D float array that doubles its capacity as it grows."""

    def __init__(self, width: int, dtype=np.float32, capacity: int = 1024):
        self._data = np.empty((capacity, width), dtype=dtype)
        self.count = 0

    def append(self, block: np.ndarray) -> None:
        needed = self.count + len(block)
        if needed > len(self._data):
            grown = np.empty((max(needed, 2 * len(self._data)), self._data.shape[1]), dtype=self._data.dtype)
            grown[: self.count] = self._data[: self.count]
            self._data = grown
        self._data[self.count : needed] = block
        self.count = needed

    def view(self, count: int) -> np.ndarray:
        view = self._data[:count]
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        return self._data.nbytes


@dataclass(frozen=True)
class HistogramSeries:
    """Histograms of one quantity per layer over time: counts (T, L, bins), range (T, L, 2)."""

    steps: np.ndarray
    counts: np.ndarray
    ranges: np.ndarray

    def edges(self, snapshot: int, layer: int) -> np.ndarray:
        low, high = self.ranges[snapshot, layer]
        return np.linspace(low, high, self.counts.shape[-1] + 1)


@dataclass(frozen=True)
class HistorySnapshot:
    """A consistent, read-only view of a run's history at one moment."""

    layer_names: tuple[str, ...]
    batches: np.ndarray  # (steps, len(BATCH_COLUMNS))
    layer_grad_norms: np.ndarray  # (steps, layers)
    epochs: np.ndarray  # (epochs, len(EPOCH_COLUMNS))
    stats_steps: np.ndarray  # (snapshots,)
    layer_stats: np.ndarray  # (snapshots, layers, len(LAYER_STATS))
    weight_histograms: HistogramSeries
    grad_histograms: HistogramSeries
    status: Status
    message: str
    planned_epochs: int
    batches_per_epoch: int
    system: np.ndarray = field(default_factory=lambda: np.zeros((0, len(SYSTEM_COLUMNS))))  # (samples, columns)
    # Which History this is a view of: rows below num_steps never change for one id, so charts
    # may keep summaries of them between refreshes.
    history_id: str = ""

    @property
    def num_steps(self) -> int:
        return len(self.batches)

    def batch(self, column: str) -> np.ndarray:
        return self.batches[:, BATCH_COLUMNS.index(column)]

    def epoch(self, column: str) -> np.ndarray:
        return self.epochs[:, EPOCH_COLUMNS.index(column)]

    def system_metric(self, column: str) -> np.ndarray:
        return self.system[:, SYSTEM_COLUMNS.index(column)]

    def layer_stat(self, stat: str) -> np.ndarray:
        """(snapshots, layers) series of one of LAYER_STATS."""
        return self.layer_stats[:, :, LAYER_STATS.index(stat)]

    def until(self, steps: int) -> HistorySnapshot:
        """The history as it stood after `steps` batches, for replay: every series cut there, the
        status RUNNING unless that is the end. A statistics or histogram step k was taken during
        batch k (counting from 0), so it belongs to every moment after k + 1 batches."""
        steps = max(0, min(int(steps), self.num_steps))
        if steps == self.num_steps:
            return self
        stats = self.stats_steps < steps

        def cut(series: HistogramSeries) -> HistogramSeries:
            kept = series.steps < steps
            return HistogramSeries(series.steps[kept], series.counts[kept], series.ranges[kept])

        return replace(
            self, batches=self.batches[:steps], layer_grad_norms=self.layer_grad_norms[:steps],
            epochs=self.epochs[self.epoch("end_step") <= steps], stats_steps=self.stats_steps[stats],
            layer_stats=self.layer_stats[stats], weight_histograms=cut(self.weight_histograms),
            grad_histograms=cut(self.grad_histograms), system=self.system[self.system_metric("step") <= steps],
            status=RUNNING, message="", history_id=f"{self.history_id}@replay",
        )

    def final_metrics(self) -> dict[str, float]:
        """What a runs table shows of a run: epochs and batches done, the last epoch's losses, the
        final and the best validation accuracy (a run can end far below its best)."""
        has_epochs = len(self.epochs) > 0
        accuracy = self.epoch("val_accuracy")
        measured = has_epochs and bool(np.isfinite(accuracy).any())
        return {
            "epochs trained": len(self.epochs),
            "batches": self.num_steps,
            "final train loss": float(self.epoch("train_loss")[-1]) if has_epochs else math.nan,
            "final val loss": float(self.epoch("val_loss")[-1]) if has_epochs else math.nan,
            "final val accuracy": float(accuracy[-1]) if has_epochs else math.nan,
            "best val accuracy": float(np.nanmax(accuracy)) if measured else math.nan,
        }

    def batch_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.batches, columns=list(BATCH_COLUMNS))
        for index, name in enumerate(self.layer_names):
            frame[f"grad_norm_{name}"] = self.layer_grad_norms[:, index]
        frame.insert(0, "step", np.arange(len(frame)))
        return frame

    def epoch_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.epochs, columns=list(EPOCH_COLUMNS))
        return frame.astype({"epoch": int, "end_step": int})

    def layer_stats_frame(self) -> pd.DataFrame:
        snapshots, layers = len(self.stats_steps), len(self.layer_names)
        frame = pd.DataFrame(self.layer_stats.reshape(snapshots * layers, len(LAYER_STATS)), columns=list(LAYER_STATS))
        frame.insert(0, "layer", np.tile(np.array(self.layer_names, dtype=object), snapshots))
        frame.insert(0, "step", np.repeat(self.stats_steps, layers))
        return frame


class History:
    """Everything recorded about a run.

    Per-batch series cost (6 + layers) float32 per batch and per-layer statistics
    len(LAYER_STATS) floats per layer every stats_every batches, so they grow with the run: 19 MB
    for a million batches of a 4-layer model, ~0.9 GB for a 160-layer one (not yet thinned).
    Histograms are bounded: at most max_histogram_snapshots, thinned evenly as the run grows.
    """

    def __init__(self, layer_names: Sequence[str], histogram_bins: int = DEFAULT_HISTOGRAM_BINS,
                 max_histogram_snapshots: int = DEFAULT_MAX_HISTOGRAM_SNAPSHOTS):
        if max_histogram_snapshots < 2:
            raise ValueError("max_histogram_snapshots must be at least 2")
        self.layer_names = tuple(layer_names)
        self.id = uuid.uuid4().hex
        self.histogram_bins = histogram_bins
        self.max_histogram_snapshots = max_histogram_snapshots
        layers = len(self.layer_names)
        self._lock = threading.Lock()
        self._batches = _Rows(len(BATCH_COLUMNS))
        self._layer_grad_norms = _Rows(layers)
        self._epochs = _Rows(len(EPOCH_COLUMNS), dtype=np.float64, capacity=16)
        self._stats_steps = _Rows(1, dtype=np.int64, capacity=64)
        self._layer_stats = _Rows(layers * len(LAYER_STATS), capacity=64)
        self._system = _Rows(len(SYSTEM_COLUMNS), dtype=np.float64, capacity=64)
        # Histogram snapshots live in lists that are replaced, never edited, when thinned.
        self._histogram_steps: list[int] = []
        self._weight_histograms: list[tuple[np.ndarray, np.ndarray]] = []
        self._grad_histograms: list[tuple[np.ndarray, np.ndarray]] = []
        self._histogram_stride = 1
        self._stats_taken = 0
        self.status: Status = IDLE
        self.message = ""
        self.planned_epochs = 0
        self.batches_per_epoch = 0
        # Something that also records every append (e.g. run_store.RunWriter); None: memory only.
        self.sink = None

    # -- writing (the training thread) --------------------------------------------
    def append_batches(self, batch_rows: np.ndarray, layer_grad_norms: np.ndarray) -> None:
        with self._lock:
            self._batches.append(batch_rows)
            self._layer_grad_norms.append(layer_grad_norms)
        if self.sink is not None:
            self.sink.on_batches(batch_rows, layer_grad_norms)

    def append_epoch(self, **values: float) -> None:
        self.append_epochs(np.array([[values[c] for c in EPOCH_COLUMNS]], dtype=np.float64))

    def append_epochs(self, rows: np.ndarray) -> None:
        """Rows of EPOCH_COLUMNS (one per epoch; a stored piece being read gives many at once)."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(EPOCH_COLUMNS))
        with self._lock:
            self._epochs.append(rows)
        if self.sink is not None:
            for row in rows:
                self.sink.on_epoch(row)

    def append_system(self, row: np.ndarray) -> None:
        """One sample of SYSTEM_COLUMNS."""
        row = np.asarray(row, dtype=np.float64).reshape(1, len(SYSTEM_COLUMNS))
        with self._lock:
            self._system.append(row)
        if self.sink is not None:
            self.sink.on_system(row[0])

    def wants_histograms(self) -> bool:
        """Whether the next append_layer_stats will keep histograms: a producer can skip them."""
        return self._stats_taken % self._histogram_stride == 0

    def append_layer_stats(self, step: int, layer_stats: np.ndarray, weight_histograms=None, grad_histograms=None) -> bool:
        """layer_stats: (layers, len(LAYER_STATS)); histograms: (counts (L, bins), ranges (L, 2)).

        Returns whether the histograms were kept (they are thinned evenly as the run grows).
        """
        with self._lock:
            self._stats_steps.append(np.array([[step]]))
            self._layer_stats.append(layer_stats.reshape(1, -1))
            kept = weight_histograms is not None and self._keep_histograms(self._stats_taken, step, weight_histograms,
                                                                           grad_histograms)
            self._stats_taken += 1
        if self.sink is not None:  # histograms the history dropped are not stored either
            self.sink.on_layer_stats(step, layer_stats, *((weight_histograms, grad_histograms) if kept else (None, None)))
        return kept

    def append_layer_stats_rows(self, steps: np.ndarray, layer_stats: np.ndarray, histograms: dict) -> None:
        """Many rows at once, kept as append_layer_stats one by one would keep them (a stored piece
        being read: 50,000 rows of a 1M-batch run took ~0.4 s one by one). steps (n,); layer_stats
        (n, layers, len(LAYER_STATS)); histograms: row index -> (weight, grad) for rows that have them."""
        if self.sink is not None:  # one by one, so the sink sees each row
            for row, step in enumerate(steps):
                self.append_layer_stats(int(step), layer_stats[row], *histograms.get(row, (None, None)))
            return
        count = len(steps)
        with self._lock:
            self._stats_steps.append(np.asarray(steps, dtype=np.int64).reshape(count, 1))
            self._layer_stats.append(np.asarray(layer_stats).reshape(count, -1))
            for row in sorted(histograms):
                self._keep_histograms(self._stats_taken + row, int(steps[row]), *histograms[row])
            self._stats_taken += count

    def _keep_histograms(self, taken: int, step: int, weight_histograms, grad_histograms) -> bool:
        """Keep the histograms of the `taken`-th stats row if the thinning keeps it (lock held)."""
        if taken % self._histogram_stride:
            return False
        self._histogram_steps.append(step)
        self._weight_histograms.append(weight_histograms)
        self._grad_histograms.append(grad_histograms)
        if len(self._histogram_steps) >= self.max_histogram_snapshots:
            self._histogram_steps = self._histogram_steps[::2]
            self._weight_histograms = self._weight_histograms[::2]
            self._grad_histograms = self._grad_histograms[::2]
            self._histogram_stride *= 2
        return True

    def set_status(self, status: Status | str, message: str = "") -> None:
        with self._lock:
            self.status, self.message = Status(status), message
        if self.sink is not None:
            self.sink.on_status(status, message, self.planned_epochs, self.batches_per_epoch)

    # -- reading (any thread) ------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return self._batches.count

    def snapshot(self) -> HistorySnapshot:
        with self._lock:
            steps = self._batches.count
            layers = len(self.layer_names)
            stats_count = self._stats_steps.count
            histogram_steps = np.array(self._histogram_steps, dtype=np.int64)
            weight, grad = list(self._weight_histograms), list(self._grad_histograms)
            return HistorySnapshot(
                layer_names=self.layer_names,
                batches=self._batches.view(steps),
                layer_grad_norms=self._layer_grad_norms.view(steps),
                epochs=self._epochs.view(self._epochs.count),
                stats_steps=self._stats_steps.view(stats_count)[:, 0],
                layer_stats=self._layer_stats.view(stats_count).reshape(stats_count, layers, len(LAYER_STATS)),
                weight_histograms=_stack_histograms(histogram_steps, weight, layers, self.histogram_bins),
                grad_histograms=_stack_histograms(histogram_steps, grad, layers, self.histogram_bins),
                status=self.status,
                message=self.message,
                planned_epochs=self.planned_epochs,
                batches_per_epoch=self.batches_per_epoch,
                system=self._system.view(self._system.count),
                history_id=self.id,
            )

    @property
    def nbytes(self) -> int:
        histogram_bytes = sum(c.nbytes + r.nbytes for c, r in self._weight_histograms + self._grad_histograms)
        return (
            self._batches.nbytes + self._layer_grad_norms.nbytes + self._epochs.nbytes
            + self._stats_steps.nbytes + self._layer_stats.nbytes + self._system.nbytes + histogram_bytes
        )


def _stack_histograms(steps: np.ndarray, snapshots: list, layers: int, bins: int) -> HistogramSeries:
    if not snapshots:
        return HistogramSeries(steps, np.zeros((0, layers, bins), np.float32), np.zeros((0, layers, 2), np.float32))
    return HistogramSeries(steps, np.stack([c for c, _ in snapshots]), np.stack([r for _, r in snapshots]))
