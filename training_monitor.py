"""TrainingMonitor: runs a train/validation loop and records everything a dashboard draws.

Cost model (this is what keeps the monitor cheap): every batch adds a handful of tensor ops
whose results land in a small device-side buffer; the buffer is read to the host once per
flush (every FLUSH_ROWS batches or FLUSH_SECONDS, whichever comes first), so there is no
host sync per statistic. The expensive statistics (histograms, activation statistics, the
update-to-weight ratio) are taken every `stats_every` batches and read in one transfer.

Where the history goes: always into `monitor.history` (history.History, plain numpy); with
`watch(runs_dir)` also into the run store, through a RunWriter whose own thread does the
I/O. The dashboard's worker process and a user's own script take that same path.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from live_training_dashboard.history import (  # noqa: F401  (re-exported: the monitor's public vocabulary)
    BATCH_COLUMNS,
    DEFAULT_HISTOGRAM_BINS,
    DEFAULT_MAX_HISTOGRAM_SNAPSHOTS,
    DIVERGED,
    DIVERGENCE_LOSS_FACTOR,
    ENDED_STATUSES,
    EPOCH_COLUMNS,
    FAILED,
    FINISHED,
    IDLE,
    LAYER_STATS,
    RUNNING,
    STOPPED,
    HistogramSeries,
    History,
    HistorySnapshot,
    Status,
)
from neural_network import ModuleWatcher, MonitoredModel, flat_host_values, layer_weight, unwrap_model

FLUSH_ROWS = 256
STACK_ROWS = 32  # per-batch numbers are stacked into the flush buffer in blocks of this many
FLUSH_SECONDS = 0.5  # as often as the run writer writes pieces (run_store.PIECE_SECONDS): sooner is not seen sooner
# System metrics (CPU, memory, GPU memory, speed) at most this often.
SYSTEM_SECONDS = 1.0
# Logits wait for the flush to be scored; this caps the memory they hold (64 MB of float32).
MAX_PENDING_LOGIT_ELEMENTS = 1 << 24
DEFAULT_STATS_EVERY = 20
# The dashboard's "watchable" pace: a short run is stretched to last about this long, so a
# learner sees ~20 page updates of it learning (the default spiral run otherwise ends in <1 s).
WATCHABLE_PACE_SECONDS = 20.0
PACES = {"watchable": WATCHABLE_PACE_SECONDS, "fast": None}


class Callback:
    """Hooks a training run calls, with PyTorch Lightning's names. Override what you need."""

    def on_train_start(self, monitor: TrainingMonitor) -> None: ...

    def on_batch_end(self, monitor: TrainingMonitor, step: int) -> None: ...

    def on_epoch_end(self, monitor: TrainingMonitor, epoch: int) -> None: ...

    def on_train_end(self, monitor: TrainingMonitor) -> None: ...


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _segment_statistics(tensors: Sequence[torch.Tensor], bins: int, summed: int | None = None) -> torch.Tensor:
    """For each tensor: low, high, sum, sum of squares and a histogram over [low, high].

    The device (GPU) version: a few foreach kernels for the per-tensor numbers and a single
    bincount for all histograms, nothing read to the host. Sums only for the first `summed`
    tensors (the weights; gradients' means are never shown). Returns (len(tensors), 4 + bins).
    NaN/Inf values (an AMP step that overflowed, a diverging run) are left out of the range
    and the histogram, and make the sums non-finite; a tensor with no finite value gets a NaN
    range and an empty histogram.
    """
    summed = len(tensors) if summed is None else summed
    tensors = [t.detach().reshape(-1).float() for t in tensors]
    finite = [t.isfinite() for t in tensors]
    inf = torch.tensor(math.inf, device=tensors[0].device)
    high = torch.stack([torch.where(f, t, -inf).max() for t, f in zip(tensors, finite)])
    low = torch.stack([torch.where(f, t, inf).min() for t, f in zip(tensors, finite)])
    squares = torch.stack(torch._foreach_norm(tensors)) ** 2
    sums = torch.stack([t.sum() for t in tensors[:summed]] + [squares[0] * 0] * (len(tensors) - summed))
    scale = bins / (high - low).clamp_min(1e-12)
    shift = -low * scale
    # bin = (x - low) * scale as one fused multiply-add, offset so each tensor has its own bins;
    # non-finite values go to one extra bin past the end that is dropped.
    dropped = len(tensors) * bins
    bin_index = torch.cat([
        torch.addcmul(shift[i], tensor, scale[i]).nan_to_num_(0.0, 0.0, 0.0).long().clamp_(0, bins - 1)
        .add_(i * bins).masked_fill_(~f, dropped)
        for i, (tensor, f) in enumerate(zip(tensors, finite))
    ])
    # index_add_, not bincount: CUDA's bincount reads the largest index back to the host, a stall
    # of the whole pipeline every stats batch.
    counts = torch.zeros(dropped + 1, dtype=torch.long, device=bin_index.device)
    counts.index_add_(0, bin_index, torch.ones(1, dtype=torch.long, device=bin_index.device).expand(len(bin_index)))
    counts = counts[:dropped].view(len(tensors), bins)
    nothing_finite = torch.isinf(low)
    low, high = low.masked_fill(nothing_finite, math.nan), high.masked_fill(nothing_finite, math.nan)
    return torch.cat([low[:, None], high[:, None], sums[:, None], squares[:, None], counts.float()], dim=1)


def _dense_values(tensor: torch.Tensor) -> torch.Tensor:
    """The values of a tensor, sparse or not (a sparse Embedding's gradient holds only the used rows)."""
    tensor = tensor.detach()
    return tensor.coalesce().values() if tensor.is_sparse else tensor


def _host_numbers(value, size: int) -> np.ndarray:
    """A captured statistic (numpy array, float or tensor; None when not measured) as floats."""
    if value is None:
        return np.full(size, math.nan)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64).reshape(size)


LARGE_BINCOUNT = 32_768  # from this many values, a histogram is counted by torch (fewer, its dispatch costs more)


def _segment_statistics_host(tensors: Sequence[torch.Tensor | np.ndarray], bins: int, summed: int,
                             histograms: bool = True) -> np.ndarray:
    """_segment_statistics for CPU tensors, in numpy: the same numbers, about 2x faster here.

    CPU tensors already live in host memory (numpy views, no copy), and numpy's
    single-threaded kernels beat torch's per-op dispatch for the few-thousand-element
    tensors of small models. tests/test_training_monitor.py checks both agree.
    """
    rows = np.zeros((len(tensors), 4 + bins))
    for index, tensor in enumerate(tensors):
        values = tensor if isinstance(tensor, np.ndarray) else flat_host_values(tensor)
        low, high = float(values.min()), float(values.max())
        # float32 pairwise sums: 5x faster than float64 accumulation, ~1e-7 relative error.
        rows[index, 2] = float(values.sum()) if index < summed else 0.0
        rows[index, 3] = float(np.dot(values, values))
        if not histograms:
            rows[index, :2] = low, high
            continue
        if not math.isfinite(high - low):  # NaN/Inf in it: range and histogram of the finite values
            values = values[np.isfinite(values)]
            if not len(values):
                rows[index, :2] = math.nan
                continue
            low, high = float(values.min()), float(values.max())
        scaled = values - low
        scaled *= bins / max(high - low, 1e-12)
        # Indices 0..bins (only `high` itself, or a value a rounding above it, reaches bins): one
        # extra bin folded into the last instead of a clamp, and int32, not intp: the float clamp
        # and the int64 cast took ~19 of a 16k-element tensor's ~65 us here, this way ~3.
        indices = scaled.astype(np.int32)
        if len(indices) >= LARGE_BINCOUNT:  # torch's counting loop: 155 us for 200k values here, numpy's 295
            counts = torch.bincount(torch.from_numpy(indices), minlength=bins + 1).numpy()
        else:
            counts = np.bincount(indices, minlength=bins + 1)
        counts[bins - 1] += counts[bins]
        rows[index, :2] = low, high
        rows[index, 4:] = counts[:bins]
    return rows


def step_keeps_gradients(optimizer: torch.optim.Optimizer) -> bool:
    """Whether optimizer.step() leaves every .grad as it was, so fit() may read the gradients
    after the step. True of torch's Adam and AdamW and of SGD without Nesterov momentum (its
    foreach update adds the momentum into .grad), unless fused or differentiable: code paths not
    checked. False of anything else: a custom optimizer may change .grad as it likes.
    tests/test_training_monitor.py checks the claim against the installed torch."""
    kind = type(optimizer)
    if kind not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        return False
    return not any(group.get("fused") or group.get("differentiable") or group.get("nesterov")
                   for group in optimizer.param_groups)


# torchrun/DDP: ranks exchange their numbers about every RANK_SYNC_SECONDS (and at each epoch's
# end and at finish), so every rank decides divergence and stops at the same batch. The next
# exchange's batch is computed from the exchanged speeds, the same numbers on every rank.
RANK_SYNC_SECONDS = 0.25
RANK_HANDSHAKE_SECONDS = 30.0
_HANDSHAKE_PREFIX = "live_training_dashboard/watch"


class RankGroup:
    """The ranks of a torch.distributed job that all call the monitor.

    Found at watch() through the job's own key-value store (no collective, so a rank-0-only
    monitor cannot hang there): each rank announces itself and rank 0 publishes the run id.
    Afterwards one all_reduce per exchange; nothing else talks across ranks.
    """

    _watches = 0  # watch() calls in this process: every rank makes the same calls in order

    def __init__(self, dist, device: torch.device):
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        # NCCL reduces device tensors only; gloo and the others take CPU tensors.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")
        self.last_time, self.last_step = time.perf_counter(), 0
        self.next_step = 1  # the first batch at once: it is what a watcher waits for

    @classmethod
    def join(cls, device: torch.device, run_id: str | None, timeout: float) -> tuple[RankGroup | None, str | None]:
        """(the group, the shared run id) when every rank called watch(); (None, run_id) alone."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None, run_id
        from live_training_dashboard.run_store import new_run_id

        cls._watches += 1
        prefix = f"{_HANDSHAKE_PREFIX}/{cls._watches}"
        rank, size = dist.get_rank(), dist.get_world_size()
        try:
            store = dist.distributed_c10d._get_default_store()
            if rank == 0:
                store.set(f"{prefix}/run_id", run_id or new_run_id())
            store.set(f"{prefix}/rank{rank}", "1")
            keys = [f"{prefix}/rank{r}" for r in range(size)] + [f"{prefix}/run_id"]
            # Poll with check(), never a blocking wait(): a TCPStore wait() that times out leaves
            # its answer pending on the connection, and the job's next store call (seen: in
            # destroy_process_group) reads it and aborts the process.
            deadline = time.monotonic() + timeout
            while not store.check(keys):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout:g} s")
                time.sleep(0.02)
            shared = store.get(f"{prefix}/run_id").decode()
        except Exception as error:  # a rank that never called watch(), or a store without these calls
            warnings.warn(f"TrainingMonitor: not every rank called watch() within {timeout:g} s ({error}); "
                          f"recording rank {rank} alone. log_batch's answer then speaks for this rank only: "
                          "call the monitor on every rank so all of them stop together.", RuntimeWarning, stacklevel=3)
            return None, run_id
        return cls(dist, device), shared

    def exchange(self, losses, correct, sizes, scored_sizes, stop: bool = False,
                 write_failed: bool = False) -> tuple[np.ndarray, ...]:
        """Sum every rank's batch numbers in one all_reduce, with each rank's batches/s and
        whether any rank was asked to stop or could not write. Returns the global per-batch
        loss, correct, sizes and scored sizes, (stop, write_failed), and the per-rank speeds."""
        pending = len(losses)
        self.last_step += pending
        now = time.perf_counter()
        speeds = np.zeros(self.size)
        speeds[self.rank] = pending / max(now - self.last_time, 1e-9)
        self.last_time = now
        with np.errstate(invalid="ignore"):
            weighted = losses * sizes
        payload = np.concatenate([weighted, np.nan_to_num(correct, nan=0.0), sizes, scored_sizes,
                                  [float(stop), float(write_failed)], speeds])
        tensor = torch.from_numpy(payload).to(self.device)
        self.dist.all_reduce(tensor)
        total = tensor.cpu().numpy()
        weighted, correct, sizes, scored_sizes = (total[i * pending:(i + 1) * pending] for i in range(4))
        speeds = total[4 * pending + 2:]
        # Every rank holds the same reduced numbers, so every rank picks the same next batch.
        interval = int(min(max(RANK_SYNC_SECONDS * float(speeds.min()), 1), FLUSH_ROWS))
        self.next_step = self.last_step + interval
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weighted / sizes, np.where(scored_sizes > 0, correct, np.nan), sizes, scored_sizes,
                    (total[4 * pending] > 0, total[4 * pending + 1] > 0), speeds)

    def mean_of_finite(self, values: Sequence[float]) -> list[float]:
        """Each value averaged over the ranks that have a finite one (NaN where none has)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        tensor = torch.from_numpy(np.concatenate([np.where(finite, values, 0.0), finite.astype(np.float64)]))
        tensor = tensor.to(self.device)
        self.dist.all_reduce(tensor)
        sums, counts = np.split(tensor.cpu().numpy(), 2)
        return [float(s / c) if c else math.nan for s, c in zip(sums, counts)]


class WatchedRun:
    """What TrainingMonitor.watch returns: the run's folder (None without a runs folder), and a
    context manager that ends the run however the block ends."""

    def __init__(self, monitor: TrainingMonitor, folder: str | None):
        self.monitor, self.folder = monitor, folder

    def __str__(self) -> str:
        return str(self.folder)

    def __enter__(self) -> WatchedRun:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            self.monitor.finish()
        elif isinstance(error, KeyboardInterrupt):
            self.monitor.ranks = None
            self.monitor.finish(STOPPED, f"Stopped by Ctrl+C after {self.monitor.step} batches.")
        else:
            self.monitor.ranks = None  # only this rank left the block: end here, with no collective to hang in
            self.monitor.finish(FAILED, f"Failed after {self.monitor.step} batches: {type(error).__name__}: {error}")
        return False  # the exception goes on to the user's code: the monitor never swallows it


_ENDED_WORDS = frozenset(str(status) for status in ENDED_STATUSES)  # what finish(status) accepts


def _epoch_number(value, name: str) -> float:
    """A validation number given to log_epoch as a float: a number or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"log_epoch's {name} must be one number, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"log_epoch's {name} must be a number, got {type(value).__name__}")
    return float(value)


def _resident_megabytes() -> float:
    """This process's resident memory (Linux's /proc; NaN where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return math.nan


class TrainingMonitor:
    """Trains `model` with `optimizer` and records its History.

    model: any nn.Module; a MonitoredMLP/MonitoredCNN adds activation statistics.
    scheduler: stepped once per epoch (or per batch with scheduler_interval="batch").
    stats_every: batches between histogram/activation/update-ratio snapshots.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        *,
        loss_fn: Callable | None = None,
        device: str | torch.device | None = None,
        stats_every: int = DEFAULT_STATS_EVERY,
        histogram_bins: int = DEFAULT_HISTOGRAM_BINS,
        max_histogram_snapshots: int = DEFAULT_MAX_HISTOGRAM_SNAPSHOTS,
        scheduler_interval: str = "epoch",
        callbacks: Iterable[Callback] = (),
    ):
        if isinstance(stats_every, bool) or not isinstance(stats_every, int) or stats_every < 1:
            raise ValueError(f"stats_every must be a positive whole number of batches, got {stats_every!r}")
        if isinstance(histogram_bins, bool) or not isinstance(histogram_bins, int) or not 2 <= histogram_bins <= 512:
            raise ValueError(f"histogram_bins must be between 2 and 512, got {histogram_bins!r}")
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError("scheduler_interval must be 'epoch' or 'batch'")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.stats_every = stats_every
        self.callbacks = list(callbacks)
        self._stop_event = threading.Event()
        # Pause, step and pace (pause(), advance(), set_pace(), or the page through control.json).
        self._gate = threading.Condition()
        self._paused = False
        self._hold_at = 0  # while paused, training holds once `step` reaches this
        self._advance_seen = None  # the id of the page's last step request already obeyed
        self._held_at = -1  # the step training is held at; -1 while it trains
        self.pace_seconds: float | None = None
        self._pace_origin: tuple[float, int] | None = None  # (time, step) the pace is kept from

        # The user's own module inside torch.compile/DDP wrappers: its layer names, its hooks.
        inner = unwrap_model(model)
        self.watcher = inner if isinstance(inner, MonitoredModel) else ModuleWatcher(inner)
        layers = self.watcher.monitored_layers
        if not layers:
            raise ValueError("the model has no trainable parameters to monitor")
        self.layer_names = tuple(layers)
        self._layer_weights = [layer_weight(layers[name]) for name in self.layer_names]
        self._layer_sizes = np.array([w.numel() for w in self._layer_weights], dtype=np.float64)
        self._host_stats = self.device.type == "cpu"  # layer statistics in numpy (see _take_layer_stats)
        self._step_keeps_gradients = False  # fit() asks step_keeps_gradients(optimizer)
        self._params = [p for p in model.parameters() if p.requires_grad]
        # Which layers hold each parameter, so per-parameter norms sum into per-layer norms. A tied
        # weight (a language model's embedding and output layer) counts in both: attributed to one,
        # the other's gradient read 0, which the doctor would take for a vanishing gradient.
        self._param_layer = np.zeros((len(self._params), len(self.layer_names)), dtype=np.float32)
        row_of = {id(p): row for row, p in enumerate(self._params)}
        for index, name in enumerate(self.layer_names):
            for p in layers[name].parameters(recurse=False):
                if id(p) in row_of:
                    self._param_layer[row_of[id(p)], index] = 1.0
        self.history = History(self.layer_names, histogram_bins, max_histogram_snapshots)
        self.histogram_bins = histogram_bins

        # Per-batch results wait here as device tensors until a flush reads them all at once.
        # Losses and per-parameter gradient norms go into preallocated rows (one small copy per
        # batch) rather than lists of one-number tensors: nothing is held per parameter between
        # flushes, and a flush reads one block instead of stacking hundreds of tensors.
        self._batch_rows = torch.empty((FLUSH_ROWS, 1 + len(self._params)), device=self.device)  # loss, norms
        self._unstacked: list[torch.Tensor] = []  # the last few batches' numbers, stacked every STACK_ROWS
        self._stacked_rows = 0
        self._pending_logits: list[torch.Tensor] = []
        self._pending_labels: list[torch.Tensor] = []
        self._pending_logit_elements = 0
        self._pending_host_rows: list[tuple] = []  # (batch size, lr, epoch progress, seconds, scored)
        self._pending_stats: list[tuple[int, torch.Tensor]] = []  # a device's stats batches, read at the flush
        self._pending = 0
        self._last_flush = 0.0
        self._first_loss: float | None = None
        self.overflowed_steps = 0  # batches whose gradients were NaN/Inf while the loss was finite
        self._first_overflow_step: int | None = None
        self._zero_gradient_warning: str | None = None
        self._broken: str | None = None  # why the monitor stopped recording (its own fault), if it did
        self.ranks: RankGroup | None = None  # the ranks of a torchrun job, when all of them watch
        self._stop_pending = False  # a stop from the page, held for the ranks' next exchange
        self._batch_open = False  # inside log_batch, before the batch was counted
        self._checked_call: str | None = None  # the kind of log_batch call already checked in full
        self._broken_batches = 0  # batches a failed rank has seen, to keep exchanging in step
        self.step = 0
        self.epoch = 0
        self._started_at = 0.0
        self._system_at, self._system_cpu, self._system_step = 0.0, 0.0, 0
        self._epoch_totals = np.zeros(4)
        self.writer = None  # a run_store.RunWriter while watch() records into a runs folder
        self._watching = False
        self._shapes_pending = False  # a plain module's output shapes, noted in its first batch for the store
        self._stop_message = "Stopped by the user after {steps} batches."
        self._parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    # -- control -------------------------------------------------------------------
    def stop(self, message: str | None = None) -> None:
        """Ask training to end after the current batch. Safe from any thread.

        message: how the run's status will explain it; "{steps}" becomes the batch count.
        """
        if message:
            self._stop_message = message
        if self.ranks is not None:
            self._stop_pending = True  # every rank stops together, at the ranks' next exchange
        else:
            self._stop_event.set()
            self._wake_held_training()

    def _wake_held_training(self) -> None:
        with self._gate:
            self._gate.notify_all()

    # -- pause, step, pace ------------------------------------------------------------
    def pause(self) -> None:
        """Hold training between batches until resume(), advance() or stop(). Safe from any thread.

        fit() holds before its next batch, so an epoch's validation is done before it holds; your
        own loop is held inside log_batch, before it returns. Not under torchrun: one held rank
        would leave the others waiting in a collective until it times out."""
        if self.ranks is not None:
            raise RuntimeError("a torchrun job cannot be paused: its ranks would wait on each other and time out")
        with self._gate:
            if not self._paused:
                self._paused, self._hold_at = True, self.step
            self._gate.notify_all()

    def resume(self) -> None:
        with self._gate:
            self._paused = False
            self._gate.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def advance(self, unit: str = "batch") -> None:
        """While paused: train exactly one more batch ("batch") or up to the end of the current
        epoch ("epoch"), then hold again. Requests add up: two batch steps train two batches."""
        if unit not in ("batch", "epoch"):
            raise ValueError(f"advance() takes 'batch' or 'epoch', got {unit!r}")
        with self._gate:
            if not self._paused:
                return
            start = max(self.step, self._hold_at)
            per_epoch = self.history.batches_per_epoch
            self._hold_at = (start // per_epoch + 1) * per_epoch if unit == "epoch" and per_epoch else start + 1
            self._gate.notify_all()

    def set_pace(self, seconds: float | None) -> None:
        """Stretch the run (planned epochs x batches per epoch) to last at least `seconds`, evenly
        spread over its batches; a run that takes longer anyway is never slowed. None: full speed."""
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds < 1e7):
            raise ValueError(f"pace must be a number of seconds > 0, or None, got {seconds!r}")
        self.pace_seconds = float(seconds) if seconds is not None else None
        self._pace_origin = None
        self._report_pause_state()

    def _apply_control(self, control: dict) -> None:
        """What the page asks in the run's control file (called on the writer's thread).
        Unknown or malformed entries are ignored: the file is the page's, not trusted here."""
        try:
            if self.ranks is not None:
                return
            if control.get("paused") is True:
                self.pause()
            elif self._paused:
                self.resume()
            advance = control.get("advance")
            if isinstance(advance, dict) and advance.get("id") != self._advance_seen:
                self._advance_seen = advance.get("id")
                if advance.get("unit") in ("batch", "epoch"):
                    self.advance(advance["unit"])
            pace = control.get("pace")
            if pace in PACES and PACES[pace] != self.pace_seconds:
                self.set_pace(PACES[pace])
        except Exception as error:  # never into the training loop, never kill the writer
            warnings.warn(f"training monitor: ignored the page's control request: {error}", RuntimeWarning,
                          stacklevel=2)

    def _report_pause_state(self) -> None:
        if self.writer is not None:
            self.writer.on_pause_state(self.ranks is None, self._held_at, self.pace_seconds)

    def _between_batches(self) -> bool:
        """Where training may wait: the pace, a pause, the end of a step. False if the run ended
        meanwhile (stopped, or diverged at the flush that shows everything before holding)."""
        if self.pace_seconds is not None:
            self._keep_pace()
        if not self._paused or self.step < self._hold_at or self._stop_event.is_set():
            return self.status == RUNNING and not self._stop_event.is_set()
        if not self._flush():  # the page shows every batch up to the held one
            return False
        self._held_at = self.step
        self._report_pause_state()
        with self._gate:
            while self._paused and self.step >= self._hold_at and not self._stop_event.is_set():
                self._gate.wait(0.5)
        self._held_at = -1
        self._report_pause_state()
        self._pace_origin = None  # held time is not made up for by training faster
        return self.status == RUNNING and not self._stop_event.is_set()

    def _keep_pace(self) -> None:
        total = self.history.planned_epochs * self.history.batches_per_epoch
        if not total:
            return
        now = time.perf_counter()
        if self._pace_origin is None:
            self._pace_origin = (now, self.step)
            return
        since, first_step = self._pace_origin
        wait = since + (self.step - first_step) * self.pace_seconds / total - now
        if wait > 0:
            self._stop_event.wait(wait)  # a stop ends the wait at once
        elif wait < -1.0:  # slower than the pace (a big model): never catch up in a burst
            self._pace_origin = (now, self.step)

    @property
    def stop_requested(self) -> bool:
        return self._stop_event.is_set()

    @property
    def status(self) -> str:
        return self.history.status

    @property
    def message(self) -> str:
        return self.history.message

    def _notify(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # -- the loop ------------------------------------------------------------------
    def fit(self, train_batches: Iterable, val_batches: Iterable | None = None, epochs: int = 1) -> str:
        """Train for `epochs` and return the final status: finished, stopped, diverged or failed.

        train_batches/val_batches: re-iterable sources of (inputs, labels), e.g. a DataLoader.
        A NaN/Inf or exploding loss ends the run as "diverged"; the history is always kept.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive whole number, got {epochs!r}")
        self.history.planned_epochs = epochs
        try:
            self.history.batches_per_epoch = len(train_batches)  # type: ignore[arg-type]
        except TypeError:
            self.history.batches_per_epoch = 0
        if self.writer is None or self.status != RUNNING:
            self._begin("Training…")
        else:  # watch() opened the run; now its length is known
            self.history.set_status(RUNNING, "Training…")
        batch_callbacks = [c for c in self.callbacks if type(c).on_batch_end is not Callback.on_batch_end]
        self._step_keeps_gradients = step_keeps_gradients(self.optimizer)
        self._notify("on_train_start")
        try:
            for epoch in range(epochs):
                self.epoch = epoch
                if not self._train_epoch(train_batches, epoch, batch_callbacks):
                    break
                self._end_epoch(epoch, val_batches)
                if self.status != RUNNING or self._stop_event.is_set():
                    break
            self._flush()
            if self.status == RUNNING and not self._stop_event.is_set():
                self.history.set_status(FINISHED, f"Finished {epochs} epochs ({self.step} batches).")
        except Exception as error:  # keep the history and say what broke rather than lose the run
            self._flush(check=False)
            self.history.set_status(FAILED, f"{type(error).__name__}: {error}")
            raise
        finally:
            self._end()
        return self.status

    def _train_epoch(self, train_batches: Iterable, epoch: int, batch_callbacks: list) -> bool:
        self.model.train()
        batches_per_epoch = self.history.batches_per_epoch or 1
        self._epoch_totals = np.zeros(4)  # loss * samples, correct, samples, scored samples; summed at each flush
        for batch_index, (inputs, labels) in enumerate(train_batches):
            if not self._between_batches():
                return False
            inputs = inputs.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            self._train_step(inputs, labels, take_stats=self.step % self.stats_every == 0)
            if not self._after_batch(len(labels), epoch + (batch_index + 1) / batches_per_epoch, batch_callbacks):
                return False
        return True

    def _train_step(self, inputs: torch.Tensor, labels: torch.Tensor, take_stats: bool) -> None:
        model, optimizer = self.model, self.optimizer
        capture = self.watcher.capture
        if take_stats:
            capture(True)
        logits = model(inputs)
        loss = self.loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        weights_before = layer_grads = None
        if take_stats:
            weights_before = self._weights_before_step()
        if self._step_keeps_gradients:
            optimizer.step()
            # After the step, the gradients are still in cache from its reads: the CNN's norms took
            # 84 us here against 165 us straight after backward, whose last kernels evict them.
            grad_norms = self._grad_norms()
        else:  # the step may change .grad in place (Nesterov SGD): read them first
            grad_norms = self._grad_norms()
            if take_stats:
                layer_grads = [g.clone() for g in self._layer_grads()]
            optimizer.step()
        if take_stats:  # here, not before the step: its numpy work runs in one stretch with the layer statistics'
            capture(False)
        self._record(loss, logits, labels, grad_norms, weights_before, layer_grads)

    def _grad_norms(self) -> list[torch.Tensor]:
        grads = [p.grad for p in self._params]
        try:
            return torch._foreach_norm(grads)
        except (TypeError, RuntimeError):  # no gradient this batch (norm 0), or a sparse one (an Embedding's)
            return [torch.linalg.vector_norm(_dense_values(g)) if g is not None else p.new_zeros(())
                    for g, p in zip(grads, self._params)]

    def _layer_grads(self) -> list[torch.Tensor]:
        """The monitored layers' weight gradients, dense, zeros where a layer got none."""
        return [torch.zeros_like(w) if w.grad is None else w.grad.to_dense() if w.grad.is_sparse else w.grad
                for w in self._layer_weights]

    def _record(self, loss, logits, labels, grad_norms, weights_before, layer_grads=None) -> None:
        """Queue one batch's numbers; with weights_before, also take the layer statistics (of
        layer_grads, or of the gradients as they are now)."""
        # Only references here: scoring and reading happen once per flush, not per batch. (Reading
        # each number at once on CPU, 9 .item() calls, took 18-36 us a batch in a run, cold
        # after backward; the stacks here ~12.)
        self._unstacked.append(loss.detach())
        self._unstacked.extend(grad_norms)
        if self._pending + 1 - self._stacked_rows == STACK_ROWS:
            self._stack_rows(self._pending + 1)
        if logits is not None:  # a classifier's batch: scored for accuracy at the flush
            self._pending_logits.append(logits.detach())
            self._pending_labels.append(labels)
            self._pending_logit_elements += logits.numel()
        if weights_before is not None:  # (NaN/Inf/huge values give NaN/Inf statistics, not numpy warnings in the loop)
            grads = self._layer_grads() if layer_grads is None else layer_grads
            with np.errstate(all="ignore"):
                self._take_layer_stats(weights_before, grads)

    def _stack_rows(self, rows: int) -> None:
        """Move the one-number tensors of batches [_stacked_rows, rows) into the row buffer: one
        stack per STACK_ROWS batches (~1 us a batch) instead of one per batch (~10 us)."""
        if rows == self._stacked_rows:
            return
        block = torch.stack(self._unstacked).view(rows - self._stacked_rows, -1)
        self._batch_rows[self._stacked_rows:rows] = block
        self._unstacked, self._stacked_rows = [], rows

    def _after_batch(self, batch_size: int, epoch_progress: float, batch_callbacks: list, scored: bool = True) -> bool:
        """Host-side bookkeeping of a batch; flushes when due. False when the run diverged."""
        now = time.perf_counter()
        self._pending_host_rows.append(
            (batch_size, self.optimizer.param_groups[0]["lr"], epoch_progress, now - self._started_at, scored)
        )
        self._pending += 1
        self.step += 1
        if self._shapes_pending:
            self._send_shapes()
        if self.scheduler is not None and self.scheduler_interval == "batch":
            self.scheduler.step()
        if self.ranks is not None:  # ranks exchange at the same batches, never by their own clocks
            due = self.step == self.ranks.next_step
        else:
            due = (
                self._pending == FLUSH_ROWS
                or self._pending_logit_elements > MAX_PENDING_LOGIT_ELEMENTS
                or now - self._last_flush > FLUSH_SECONDS
                or self.step == 1  # the first batch at once: it is what a watcher waits for
            )
        if due:
            if not self._flush():
                return False
        for callback in batch_callbacks:
            callback.on_batch_end(self, self.step - 1)
        return True

    # -- your own training loop ------------------------------------------------------
    def watch(self, runs_dir=None, name: str = "", config: dict | None = None,
              planned_epochs: int = 0, batches_per_epoch: int = 0, *, run_id: str | None = None,
              architecture: list | None = None, source: str = "script",
              rank_handshake_seconds: float = RANK_HANDSHAKE_SECONDS):
        """Record a training loop you write yourself; call log_batch/log_epoch/finish from it.

        runs_dir: a folder or fsspec URL (or a run_store.RunStore). The run is written there
        as it trains, so the dashboard lists it and shows it live, and can stop it (log_batch
        then returns False). Returns a WatchedRun: its `folder`, and as a context manager
        (`with monitor.watch(...):`) it finishes the run, or marks it failed with the exception
        that left the block (stopped, for Ctrl+C).

        Under torchrun (torch.distributed initialised, 2+ ranks), call it on every rank: they
        make one run, written by rank 0, with loss and accuracy averaged over all ranks, and
        log_batch returns the same answer on every rank at the same batch.
        """
        if self._watching and self.status == RUNNING:
            raise RuntimeError("this monitor is already recording a run; call monitor.finish() first")
        self.history.planned_epochs, self.history.batches_per_epoch = planned_epochs, batches_per_epoch
        self.writer = None
        self.ranks, run_id = RankGroup.join(self.device, run_id, rank_handshake_seconds)
        if self.ranks is not None and self.ranks.rank != 0:
            runs_dir = None  # rank 0 writes the run; the others only take part in the exchanges
        if runs_dir is not None:
            from live_training_dashboard.run_store import RunStore  # the store builds on history, not on this module

            store = runs_dir if isinstance(runs_dir, RunStore) else RunStore(runs_dir)
            if architecture is None:
                architecture = [asdict(layer) for layer in self.watcher.describe()]
            self.writer = store.create_run(
                name=name or "script", config=config or {}, layer_names=self.layer_names, source=source,
                architecture=architecture, histogram_bins=self.histogram_bins, run_id=run_id,
                planned_epochs=planned_epochs, batches_per_epoch=batches_per_epoch, device=self.device_name(),
            )
            self.writer.on_stop_requested = self._stop_from_dashboard
            self.writer.on_control = self._apply_control
            if isinstance(self.watcher, ModuleWatcher):  # the module tree told no shapes: the first batch will
                self.watcher.watch_shapes()
                self._shapes_pending = True
            self._report_pause_state()
            self.history.sink = self.writer
        self._watching = True
        self._watch_epoch = 0
        self._begin("Training in your script…")
        self._prepare_next_batch()
        self._notify("on_train_start")
        return WatchedRun(self, self.writer.folder if self.writer is not None else None)

    def device_name(self) -> str:
        """Where the run trains, as a person reads it: 'cpu' or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
        if self.device.type != "cuda":
            return str(self.device)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"

    def _weights_on_host(self) -> dict:
        """A CPU copy of the model's state_dict: the store writes it while training goes on."""
        return {k: v.detach().to("cpu", copy=True) for k, v in unwrap_model(self.model).state_dict().items()}

    def _weights_for_writer(self) -> tuple[dict, Callable | None]:
        """(CPU copies of the state_dict, a wait for them or None) for a weight snapshot. From a GPU
        the copies run asynchronously into pinned memory and the writer thread waits for them, so
        the training thread never waits for the device here."""
        state = unwrap_model(self.model).state_dict()
        if not any(v.is_cuda for v in state.values()):
            return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}, None
        copies = {}
        for name, value in state.items():
            value = value.detach()
            if value.is_cuda:
                copies[name] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                copies[name].copy_(value, non_blocking=True)
            else:
                copies[name] = value.to("cpu", copy=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(self.device))
        return copies, copied.synchronize

    def _fail_writing(self, reason: str) -> None:
        self.history.set_status(FAILED, f"Failed: could not write the run: {reason}")

    def _begin(self, message: str) -> None:
        self._started_at = self._last_flush = time.perf_counter()
        self._system_at, self._system_cpu, self._system_step = self._started_at, time.process_time(), 0
        self._epoch_totals = np.zeros(4)
        self.history.set_status(RUNNING, message)

    def _stop_from_dashboard(self) -> None:
        self._stop_message = "Stopped from the dashboard after {steps} batches."
        if self.ranks is not None:
            self._stop_pending = True  # every rank stops together, at the next exchange
        else:
            self._stop_event.set()
            self._wake_held_training()

    def _prepare_next_batch(self) -> None:
        """Before a stats batch of a user's loop: turn capture on and keep the weights to diff."""
        self._watch_weights_before = None
        # Only rank 0 writes the run: the other ranks' layer statistics would never be seen.
        if self.step % self.stats_every == 0 and (self.ranks is None or self.ranks.rank == 0):
            self._watch_weights_before = self._weights_before_step()
            self.watcher.capture(True)

    def log_batch(self, loss: torch.Tensor | float, logits: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, *, batch_size: int | None = None) -> bool:
        """Record one batch of your loop, after loss.backward() and optimizer.step().

        loss: the batch's scalar loss, any kind (regression, a language model's...). logits and
        labels: a classifier's outputs (batch, classes) and class indices, for accuracy; without
        them accuracy is not recorded. batch_size weighs the epoch's mean loss (default: the
        number of labels or logits rows, else 1).

        Returns False once the run should end: the loss diverged (NaN/Inf or exploding), the
        dashboard asked to stop, or the run could not be written. Later calls do nothing and
        return False, so a loop that ignores the answer is never broken by the monitor. If the
        monitor itself fails (a bug, an input it cannot read), it warns once, marks the run
        failed, stops recording and returns True: your training goes on.
        """
        if self._broken is not None:
            self._exchange_while_broken(batch=True)
            return True
        if self.status != RUNNING or self._stop_event.is_set():
            if self._watching:
                return False
            raise RuntimeError("call monitor.watch(...) before log_batch")
        loss, batch_size = self._check_logged_batch(loss, logits, labels, batch_size)
        self._batch_open = True
        try:
            if self._watch_weights_before is not None:
                self.watcher.capture(False)
            self._record(loss, logits, labels, self._grad_norms(), self._watch_weights_before)
            batches = self.history.batches_per_epoch
            progress = self._watch_epoch + ((self.step % batches) + 1) / batches if batches else float(self._watch_epoch)
            healthy = self._after_batch(batch_size, progress, self.callbacks, scored=logits is not None)
            self._batch_open = False
            self._prepare_next_batch()
            if healthy and self.ranks is None:
                healthy = self._between_batches()
        except Exception as error:
            return self._stop_recording(error)
        return healthy and self.status == RUNNING and not self._stop_event.is_set()

    def _check_logged_batch(self, loss, logits, labels, batch_size) -> tuple[torch.Tensor, int]:
        """Misuse of log_batch is a clear error at once (shapes only: no device sync). After a
        first call that passed, only what can change between batches is checked (~10 us less)."""
        if self._checked_call is not None and type(loss) is torch.Tensor and loss.dim() == 0 \
                and batch_size is None and (logits is None) == (self._checked_call == "plain") \
                and (labels is None or labels.shape == logits.shape[:1]):  # (a mismatch failed the run at its flush)
            return loss, labels.shape[0] if labels is not None else 1
        if not isinstance(loss, torch.Tensor):
            if isinstance(loss, bool) or not isinstance(loss, (int, float)):
                raise TypeError(f"log_batch needs the batch's loss as a tensor or a number, got {type(loss).__name__}")
            loss = torch.tensor(float(loss), device=self.device)
        if loss.numel() != 1:
            raise ValueError(f"log_batch needs the batch's scalar loss, got a tensor of shape {tuple(loss.shape)}")
        if (logits is None) != (labels is None):
            raise ValueError("log_batch needs both logits and labels for accuracy, or neither")
        if logits is not None and (logits.dim() != 2 or labels.shape != logits.shape[:1]):
            raise ValueError(f"log_batch's logits must be (batch, classes) and labels (batch,), got "
                             f"{tuple(logits.shape)} and {tuple(labels.shape)}")
        if batch_size is None:
            batch_size = len(labels) if labels is not None else 1
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        self._checked_call = "plain" if logits is None else "scored"
        return loss.reshape(()), batch_size

    def log_epoch(self, val_loss: float = math.nan, val_accuracy: float = math.nan) -> None:
        """Close an epoch of your loop, with validation numbers if you have them."""
        if self._broken is not None:
            self._exchange_while_broken(epoch=True)
            return
        if self.status != RUNNING or self._stop_event.is_set():
            return
        # Misuse is a clear error here, before anything is recorded ("x" ended the run as failed).
        val_loss, val_accuracy = _epoch_number(val_loss, "val_loss"), _epoch_number(val_accuracy, "val_accuracy")
        if 1 < val_accuracy < math.inf:
            raise ValueError(f"val_accuracy is a share from 0 to 1, got {val_accuracy:g} (a percentage? "
                             f"pass {val_accuracy / 100:g})")
        try:
            self._flush()
            if self.ranks is not None:
                val_loss, val_accuracy = self.ranks.mean_of_finite([float(val_loss), float(val_accuracy)])
            self._record_epoch(self._watch_epoch, float(val_loss), float(val_accuracy))
            self._watch_epoch += 1
        except Exception as error:
            self._stop_recording(error)

    def finish(self, status: str = FINISHED, message: str = "") -> None:
        """End a watched run: flush what is pending, record how it ended, save the weights."""
        if self._broken is not None:
            self._exchange_while_broken()
            return
        if str(status) not in _ENDED_WORDS:  # (misuse: the run used to fail on it)
            raise ValueError(f"finish's status must be one of finished, stopped, diverged, failed; got {status!r}")
        try:
            if self.status == RUNNING and not self._stop_event.is_set():
                self._flush(check=False)
                if self.status == RUNNING:
                    self.history.set_status(status, message or f"{str(status).capitalize()} after {self.step} batches."
                                            + self._overflow_note())
            self._end()
        except Exception as error:
            self._stop_recording(error)

    def _exchange_while_broken(self, batch: bool = False, epoch: bool = False, catch_up: bool = False) -> None:
        """A rank whose monitor failed still takes part in the ranks' exchanges (adding nothing),
        so the other ranks never wait for it forever."""
        ranks = self.ranks
        if ranks is None:
            return
        try:
            if batch:
                self._broken_batches += 1
            pending = self._broken_batches - ranks.last_step
            at_sync_step = self._broken_batches == ranks.next_step
            due = pending > 0 and (at_sync_step if batch or catch_up else True)
            if due:
                zeros = np.zeros(pending)
                ranks.exchange(zeros, zeros, zeros, zeros)
            if epoch:
                ranks.mean_of_finite([math.nan, math.nan])
        except Exception:  # the group itself is gone: nothing left to keep in step with
            self.ranks = None

    def _overflow_note(self) -> str:
        if not self.overflowed_steps:
            return ""
        return (f" {self.overflowed_steps} of them had NaN/Inf gradients (from batch {self._first_overflow_step}); "
                "with AMP these are steps GradScaler skipped.")

    def _stop_recording(self, error: Exception) -> bool:
        """The monitor's own failure must never break the user's loop: warn, mark the run
        failed, close what can be closed, and let training go on unrecorded."""
        from live_training_dashboard.run_store import error_reason

        self._broken = error_reason(error)
        # Batches this rank had begun when it failed, counted as the other ranks count them.
        self._broken_batches = self.step + (1 if self._batch_open else 0)
        self._exchange_while_broken(catch_up=True)  # the exchange the failed batch owed the others
        warnings.warn(f"TrainingMonitor stopped recording this run after {self.step} batches "
                      f"({type(error).__name__}: {error}); your training goes on.", RuntimeWarning, stacklevel=3)
        try:
            self._take_shapes()  # no hook of ours stays on the user's model
            self.history.set_status(FAILED, f"Failed: the monitor stopped recording after {self.step} batches: "
                                            f"{self._broken}")
            writer, self.writer = self.writer, None
            if writer is not None:
                writer.close(self.history.snapshot())
            self.history.sink = None
        except Exception:  # the store may be what failed; the loop still must not see it
            pass
        return True

    def _take_shapes(self) -> dict:
        """The output shapes watch() asked a plain module for (ModuleWatcher.watch_shapes), its hooks
        removed; {} when none were asked for."""
        if not self._shapes_pending:
            return {}
        self._shapes_pending = False
        return self.watcher.take_shapes()

    def _send_shapes(self) -> None:
        """A plain module's output shapes, seen in the batch just trained, to the run's architecture."""
        shapes = self._take_shapes()
        if shapes and self.writer is not None:
            self.writer.on_shapes(shapes)

    def _end(self) -> None:
        """Whatever ended the run: stop capturing, write the rest, close the store, tell callbacks."""
        self._take_shapes()  # (no batch came)
        if self.writer is not None and self.writer.error is None:
            self._flush(check=False)
        if self.step > self._system_step:  # the last stretch, however short: every run has a sample
            self._sample_system(time.perf_counter(), force=True)
        if self.status == RUNNING:
            if self._stop_event.is_set():
                self.history.set_status(STOPPED, self._stop_message.format(steps=self.step))
            else:
                self.history.set_status(FINISHED, f"Finished after {self.step} batches." + self._overflow_note())
        self.watcher.capture(False)
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close(self.history.snapshot(), final_weights=self._weights_on_host())
            if writer.error is not None and self.status != FAILED:
                self._fail_writing(writer.error)
        self.history.sink = None
        self._notify("on_train_end")

    def _weights_before_step(self) -> list:
        """The layers' weights before a stats batch's step, to measure the update (numpy on CPU)."""
        if self._host_stats:
            return [flat_host_values(w).copy() for w in self._layer_weights]
        return [w.detach().clone() for w in self._layer_weights]

    def _take_layer_stats(self, weights_before: list, grads: list[torch.Tensor]) -> None:
        """Histograms, weight/gradient/activation statistics and update ratios of this batch.

        CPU: numpy throughout (its kernels beat torch's per-op dispatch on small layers), into the
        history at once. Other devices: computed there into one tensor that the next flush reads,
        which waits for the device anyway; a read here would stall the host every stats batch."""
        layers = len(self.layer_names)
        captured = self.watcher.captured_activations
        captured_grads = self.watcher.captured_activation_grads
        histograms = self.history.wants_histograms()  # thinned ones are never drawn: skip computing them
        if self._host_stats:
            weights = [flat_host_values(w) for w in self._layer_weights]
            update_norms = np.array([math.sqrt(float(np.dot(d, d))) for d in
                                     (w - before for w, before in zip(weights, weights_before))])
            activations = np.array([_host_numbers(captured.get(name), 4) for name in self.layer_names])
            activation_grads = np.array([_host_numbers(captured_grads.get(name), 1)[0] for name in self.layer_names])
            segments = _segment_statistics_host(weights + grads, self.histogram_bins, summed=layers, histograms=histograms)
            self._append_layer_stats(self.step, update_norms, activations, activation_grads, segments, histograms)
        else:
            weights = [w.detach() for w in self._layer_weights]
            update_norms = torch.stack(torch._foreach_norm(torch._foreach_sub(weights, weights_before)))
            nan = torch.full((4,), math.nan, device=self.device)
            activations = torch.stack([captured.get(name, nan) for name in self.layer_names])  # (layers, 4)
            activation_grads = torch.stack([captured_grads.get(name, nan[0]) for name in self.layer_names])
            self._pending_stats.append((self.step, torch.cat([
                update_norms, activations.flatten(), activation_grads,
                _segment_statistics(weights + grads, self.histogram_bins, summed=layers).flatten()])))
        if self.writer is not None and self.writer.wants_weights(self._parameter_bytes, self._planned_stats_batches()):
            self.writer.on_weights(self.step, *self._weights_for_writer())

    def _planned_stats_batches(self) -> int:
        """How many stats batches the run plans (0 when its length is unknown)."""
        planned = self.history.planned_epochs * self.history.batches_per_epoch
        return -(-planned // self.stats_every) if planned > 0 else 0

    def _read_pending_stats(self) -> None:
        """The device's stats batches since the last flush, into the history (one read each)."""
        pending, self._pending_stats = self._pending_stats, []
        layers = len(self.layer_names)
        with np.errstate(all="ignore"):
            for step, combined in pending:
                values = combined.cpu().numpy().astype(np.float64)
                self._append_layer_stats(
                    step, values[:layers], values[layers : 5 * layers].reshape(layers, 4), values[5 * layers : 6 * layers],
                    values[6 * layers :].reshape(2 * layers, 4 + self.histogram_bins), True)

    def _append_layer_stats(self, step: int, update_norms: np.ndarray, activations: np.ndarray,
                            activation_grads: np.ndarray, segments: np.ndarray, histograms: bool) -> None:
        """segments: (2 x layers, 4 + bins) of weights then gradients: low, high, sum, sum of squares, counts."""
        layers = len(self.layer_names)
        sizes = self._layer_sizes
        weight_sum, weight_squares = segments[:layers, 2], segments[:layers, 3]
        weight_mean = weight_sum / sizes
        weight_var = np.maximum(weight_squares - sizes * weight_mean**2, 0.0) / np.maximum(sizes - 1, 1)
        weight_norm = np.sqrt(weight_squares)
        stats = np.column_stack([
            weight_mean,
            np.sqrt(weight_var),
            weight_norm,
            np.sqrt(segments[layers:, 3]),
            update_norms / np.maximum(weight_norm, 1e-12),
            activations,
            activation_grads,
        ]).astype(np.float32)
        weight = (segments[:layers, 4:].astype(np.float32), segments[:layers, :2].astype(np.float32)) if histograms else None
        grad = (segments[layers:, 4:].astype(np.float32), segments[layers:, :2].astype(np.float32)) if histograms else None
        self.history.append_layer_stats(step, stats, weight, grad)

    def _sample_system(self, now: float, force: bool = False) -> None:
        """A row of SYSTEM_COLUMNS about once a second, rarer as the run grows (every elapsed/1000 s:
        ~1,000 rows per run plus 1,000 per e-fold of its length). Host counters only, no device sync."""
        wall = now - self._system_at
        if wall <= 0 or (not force and wall < max(SYSTEM_SECONDS, (now - self._started_at) / 1000)):
            return
        cpu = time.process_time()
        gpu = torch.cuda.memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else math.nan
        self.history.append_system([now - self._started_at, self.step, 100 * (cpu - self._system_cpu) / wall,
                                    _resident_megabytes(), gpu, (self.step - self._system_step) / wall])
        self._system_at, self._system_cpu, self._system_step = now, cpu, self.step

    def _flush(self, check: bool = True) -> bool:
        """Move buffered per-batch numbers into the history; False if the run diverged."""
        pending = self._pending
        self._last_flush = time.perf_counter()
        self._sample_system(self._last_flush)
        if self._pending_stats:
            self._read_pending_stats()
        if pending == 0:
            return True
        hits = torch.cat(self._pending_logits).argmax(1) == torch.cat(self._pending_labels) \
            if self._pending_logits else None
        self._stack_rows(pending)
        self._stacked_rows = 0
        rows = self._batch_rows[:pending]
        if rows.device.type == "cpu":  # numpy views of host memory: no gathering into one read
            table = rows.numpy().astype(np.float64)
            hit_values = hits.numpy() if hits is not None else None
        else:  # one read from the device for all of it
            read = torch.cat([rows.flatten()] + ([hits.to(rows.dtype)] if hits is not None else [])).cpu().numpy()
            table = read[:rows.numel()].reshape(pending, -1).astype(np.float64)
            hit_values = read[rows.numel():]
        host_rows = np.array(self._pending_host_rows, dtype=np.float64)
        self._pending_host_rows = []
        self._pending = 0
        self._pending_logits, self._pending_labels = [], []
        self._pending_logit_elements = 0

        loss, param_norms = table[:, 0], table[:, 1:]
        batch_sizes = host_rows[:, 0].astype(np.int64)
        scored = host_rows[:, 4].astype(bool)  # batches logged with logits and labels
        correct = np.full(pending, np.nan)
        if scored.any():
            scored_sizes = batch_sizes[scored]
            correct[scored] = np.add.reduceat(hit_values, np.concatenate([[0], np.cumsum(scored_sizes)[:-1]]),
                                              dtype=np.float64)
        stop = write_failed = False
        if self.ranks is not None:
            loss, correct, sizes, scored_sizes, (stop, write_failed), speeds = self.ranks.exchange(
                loss, correct, batch_sizes.astype(np.float64), batch_sizes * scored, self._stop_pending,
                self.writer is not None and self.writer.error is not None)
            batch_sizes, scored = sizes.astype(np.int64), scored_sizes > 0
            if self.writer is not None:
                self.writer.on_rank_speeds(speeds)
        with np.errstate(invalid="ignore", over="ignore"):
            squared = param_norms**2
            layer_norms = np.sqrt(squared @ self._param_layer)
            grad_norm = np.sqrt(squared.sum(1))
        diverged_row = self._diverged_row(loss) if check else None
        if diverged_row is not None:
            # The history ends at the batch that diverged: the batches trained after it, before
            # this flush noticed, are not shown, so "Diverged at batch N" and the progress agree.
            keep = slice(0, diverged_row + 1)
            loss, correct, batch_sizes, scored = loss[keep], correct[keep], batch_sizes[keep], scored[keep]
            grad_norm, layer_norms, host_rows = grad_norm[keep], layer_norms[keep], host_rows[keep]
        batch_rows = np.column_stack(
            [loss, correct / batch_sizes, grad_norm, host_rows[:, 1], host_rows[:, 2], host_rows[:, 3]]
        ).astype(np.float32)
        self.history.append_batches(batch_rows, layer_norms.astype(np.float32))
        self._epoch_totals += ((loss * batch_sizes).sum(), correct[scored].sum(), batch_sizes.sum(),
                               batch_sizes[scored].sum())
        if self.ranks is not None:
            if write_failed and self.status == RUNNING:
                self._fail_writing(self.writer.error if self.writer is not None else "rank 0 could not write the run")
                return False
            if stop:
                self._stop_event.set()
        elif self.writer is not None and self.writer.error is not None and self.status == RUNNING:
            self._fail_writing(self.writer.error)
            return False
        if not check:
            return True
        return self._check_divergence(loss, grad_norm, diverged_row)

    def _diverged_row(self, loss: np.ndarray) -> int | None:
        """The first row of a flush whose loss is NaN/Inf or over DIVERGENCE_LOSS_FACTOR x the first."""
        first = self._first_loss
        if first is None and len(loss) and math.isfinite(loss[0]):
            first = float(loss[0])
        limit = DIVERGENCE_LOSS_FACTOR * first if first is not None and first > 0 else math.inf
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~np.isfinite(loss) | (loss > limit))
        return int(bad[0]) if len(bad) else None

    def _check_divergence(self, loss: np.ndarray, grad_norm: np.ndarray, diverged_row: int | None) -> bool:
        """Diverged = the loss became NaN/Inf or exploded (the flush found the row: diverged_row).
        NaN/Inf gradients with a finite loss are not, by themselves: AMP's GradScaler skips such
        steps and lowers its scale (normal fp16 training). They are counted, and named when the
        loss fails after them."""
        first_step = self.history.num_steps - len(loss)
        bad_grads = ~np.isfinite(grad_norm)
        if bad_grads.any():
            self.overflowed_steps += int(bad_grads.sum())
            if self._first_overflow_step is None:
                self._first_overflow_step = first_step + int(np.argmax(bad_grads))
        if self._first_loss is None and len(loss) and math.isfinite(loss[0]):
            self._first_loss = float(loss[0])
        if diverged_row is not None:
            step = first_step + diverged_row
            lower = "The learning rate is probably too high; lower it (e.g. by 10x) and train again."
            if not math.isfinite(loss[diverged_row]):
                before = self._first_overflow_step
                cause = f", after the gradient norm did at batch {before}" if before is not None and before < step else ""
                self.history.set_status(DIVERGED, f"Diverged at batch {step}: the loss became NaN/Inf{cause}. {lower}")
            else:
                self.history.set_status(
                    DIVERGED,
                    f"Diverged at batch {step}: the loss reached {loss[diverged_row]:.3g}, over "
                    f"{DIVERGENCE_LOSS_FACTOR:g}x its starting value {self._first_loss:.3g}. {lower}",
                )
            return False
        if len(grad_norm) and self._zero_gradient_warning is None and self.step >= 3 \
                and not np.any(grad_norm) and np.all(loss > 0):
            self._warn_zero_gradients()
        return True

    def _warn_zero_gradients(self) -> None:
        """Every gradient exactly zero (or absent) while the loss is not: the loop clears them
        before log_batch sees them. Said once, as a warning in the run and in the terminal."""
        self._zero_gradient_warning = (
            "Every gradient was zero when log_batch ran: call monitor.log_batch(...) after "
            "optimizer.step() and before optimizer.zero_grad(), or gradient norms read as 0.")
        warnings.warn(self._zero_gradient_warning, RuntimeWarning, stacklevel=4)
        if self.status == RUNNING:
            self.history.set_status(RUNNING, f"{self.history.message} Warning: {self._zero_gradient_warning}")

    def _end_epoch(self, epoch: int, val_batches: Iterable | None) -> None:
        if not self._flush():
            return
        val_loss, val_accuracy = self.evaluate(val_batches) if val_batches is not None else (math.nan, math.nan)
        self._record_epoch(epoch, val_loss, val_accuracy)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        self._notify("on_epoch_end", epoch + 1)

    def _record_epoch(self, epoch: int, val_loss: float, val_accuracy: float) -> None:
        train_loss, train_correct, samples, scored_samples = self._epoch_totals
        self._epoch_totals = np.zeros(4)
        self.history.append_epoch(
            epoch=epoch + 1,
            train_loss=train_loss / max(samples, 1),
            train_accuracy=train_correct / scored_samples if scored_samples else math.nan,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=self.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - self._started_at,
            end_step=self.step,
        )

    @torch.no_grad()
    def evaluate(self, batches: Iterable) -> tuple[float, float]:
        """Mean loss and accuracy over `batches` in eval mode (one host read at the end)."""
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        samples = 0
        try:
            for inputs, labels in batches:
                if self._stop_event.is_set():
                    break
                inputs, labels = inputs.to(self.device), labels.to(self.device)
                logits = self.model(inputs)
                loss_sum += self.loss_fn(logits, labels) * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                samples += len(labels)
        finally:
            self.model.train(was_training)
        if samples == 0:
            return math.nan, math.nan
        totals = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).cpu().tolist()
        return totals[0] / samples, totals[1] / samples
