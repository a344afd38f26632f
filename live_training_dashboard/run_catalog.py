"""The runs a page can show: every run in a runs folder, whoever trained it, plus the runs
this server launched that have not written anything yet.

One kind of Run, backed by the run store: a run from the sidebar, a preset, a user's own
script or a torchrun job differ only in `source`. For runs this server launched, the worker
process adds what the store cannot say (queued, preparing, killed before it wrote).
Threads: Streamlit session threads call everything here; the locks say who writes what.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from live_training_dashboard.history import FAILED, IDLE, PREPARING, QUEUED, RUNNING, STOPPED, HistorySnapshot, Status
from live_training_dashboard.run_config import ConfigError, RunConfig, validate
from live_training_dashboard.run_store import (
    HEARTBEAT_TIMEOUT_SECONDS,
    Labels,
    RunReader,
    RunStore,
    StoreError,
    check_run_id,
    clean_name,
    new_run_id,
)
from neural_network import LayerInfo

# One page render asks a run for its state and snapshot several times: the store is read once.
# Short, because a new run's first piece is what a Train click waits for (it lands ~40 ms in).
POLL_SECONDS = 0.05
SHAPES_POLL_SECONDS = 2.0
# Readers (each holds a run's history in memory) kept open for ended runs; others reopen on demand.
MAX_OPEN_ENDED_READERS = 8
# The page loads a run's weights for predictions only up to this size: the page holds no big models.
MAX_INSPECTION_PARAMETERS = 16_000_000  # 64 MB of float32

_pool = None
_pool_lock = threading.Lock()


def worker_pool():
    """The server's one WorkerPool (imported lazily: the page needs torch only to launch)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from live_training_dashboard.launcher import WorkerPool

            _pool = WorkerPool()
            _pool.warm()
        return _pool


def _inference_on_one_thread() -> None:
    """The page's own forward passes (a decision boundary: 14,400 points through the model each
    refresh) run on one thread. With torch's default of every core they ran on the core a
    training worker was using too: the page's work, not the training, should wait."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class Run:
    """One run as the page sees it."""

    def __init__(self, catalog: RunCatalog, run_id: str, launched=None, meta: dict | None = None):
        self.catalog, self.run_id, self.launched = catalog, run_id, launched
        self._meta = meta
        self._reader: RunReader | None = None
        self._labels: Labels | None = None
        self._final_metrics: dict | None = None
        self._last_poll = 0.0
        self._lock = threading.Lock()  # guards the reader and the inspection model
        self._inspection: tuple | None = None  # (model, step loaded)
        self._shapes: dict | None = None  # a script's layers' output shapes, once found
        self._final_state: tuple[Status, str] | None = None  # the stored status once it has ended
        self._shapes_looked_at = -float("inf")
        self.last_used = time.monotonic()

    # -- what the run is ----------------------------------------------------------------
    @property
    def store(self) -> RunStore:
        return self.catalog.store

    def _read_meta(self) -> dict | None:
        if self._meta is None:
            try:
                self._meta = self.store.read_meta(self.run_id)
            except StoreError:
                return None
        return self._meta

    @property
    def labels(self) -> Labels:
        """Name, notes and tags (read once; edits through the catalog keep them current)."""
        if self._labels is None:
            meta = self._read_meta()
            if meta is None:
                return Labels(self.launched.name if self.launched else self.run_id)
            self._labels = self.store.read_labels(self.run_id, meta)
        return self._labels

    @property
    def name(self) -> str:
        return self.labels.name

    @property
    def notes(self) -> str:
        return self.labels.notes

    @property
    def tags(self) -> tuple[str, ...]:
        return self.labels.tags

    def final_metrics(self) -> dict[str, float]:
        """HistorySnapshot.final_metrics, kept once the run has ended (the runs table shows every
        run; an ended one is read once, not at every refresh)."""
        if self._final_metrics is not None:
            return self._final_metrics
        snapshot = self.snapshot()
        metrics = snapshot.final_metrics() if snapshot is not None else {}
        if snapshot is not None and snapshot.status.ended:
            self._final_metrics = metrics
        return metrics

    @property
    def created_at(self) -> float:
        meta = self._read_meta()
        return meta["created_at"] if meta else (self.launched.created_at if self.launched else 0.0)

    @property
    def source(self) -> str:
        meta = self._read_meta()
        return meta["source"] if meta else "dashboard"

    @property
    def device(self) -> str:
        meta = self._read_meta()
        return meta["device"] if meta else ""

    @property
    def config_dict(self) -> dict:
        meta = self._read_meta()
        if meta is not None:
            return dict(meta["config"])
        return self.launched.config.to_dict() if self.launched else {}

    @property
    def config(self) -> RunConfig | None:
        """The dashboard settings the run was trained with; None for scripts or unreadable settings."""
        if self.launched is not None:
            return self.launched.config
        meta = self._read_meta()
        if meta is None or meta["source"] != "dashboard":
            return None
        try:
            config = RunConfig.from_dict(meta["config"])
        except (TypeError, ValueError):
            return None
        return None if validate(config) else config

    @property
    def architecture(self) -> list[LayerInfo]:
        meta = self._read_meta()
        rows = []
        for row in (meta or {}).get("architecture", []):
            try:
                rows.append(LayerInfo(str(row["name"]), str(row["kind"]), tuple(int(d) for d in row["output_shape"]),
                                      int(row["param_count"]), row.get("activation") and str(row["activation"]),
                                      bool(row.get("monitored", False))))
            except (KeyError, TypeError, ValueError):
                return []
        if rows and not any(row.output_shape for row in rows):  # a script's module tree: shapes come later
            shapes = self._output_shapes()
            rows = [dataclasses.replace(row, output_shape=shapes.get(row.name, ())) for row in rows]
        return rows

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        """A script's layers' output shapes (shapes.json, written once after its first batch), looked
        for at most every SHAPES_POLL_SECONDS until found (a run written before there were shapes
        has none: one small read every few seconds while it is shown)."""
        if self._shapes is None and time.monotonic() - self._shapes_looked_at >= SHAPES_POLL_SECONDS:
            self._shapes_looked_at = time.monotonic()
            self._shapes = self.store.read_shapes(self.run_id) or None
        return self._shapes or {}

    @property
    def folder(self) -> str:
        return self.store.path(self.run_id)

    # -- how it stands --------------------------------------------------------------------
    def _poll(self, force: bool = False) -> RunReader | None:
        """The reader, brought up to date at most every POLL_SECONDS (force: now)."""
        with self._lock:
            self.last_used = time.monotonic()
            if self._reader is None:
                meta = self._read_meta()
                if meta is None:
                    return None
                self._reader = RunReader(self.store, self.run_id, meta)
                self._last_poll = 0.0
            if force or time.monotonic() - self._last_poll >= POLL_SECONDS:
                self._reader.poll()
                self._last_poll = time.monotonic()
            return self._reader

    def close_reader(self) -> None:
        with self._lock:
            self._reader, self._inspection = None, None

    @property
    def has_reader(self) -> bool:
        return self._reader is not None

    def state(self) -> tuple[Status, str]:
        if self._final_state is not None:
            return self._final_state
        launched = self.launched
        group = launched.group if launched is not None else None
        if group is not None:
            group.collect()
        if launched is not None and launched.cancelled:
            return STOPPED, "Stopped before its turn came; it never trained."
        reader = self._poll()
        if reader is None:
            if launched is None:
                return FAILED, "This run's settings (run.json) cannot be read."
            if launched.result is not None:
                return launched.result
            if group is not None and group.exited:
                return STOPPED, f"Stopped unexpectedly: {group.exit_reason()} before it wrote anything."
            if launched.started:
                return PREPARING, "Preparing the dataset and model…"
            return QUEUED, "Waiting for the run before it to finish…"
        stored = reader.state
        if not stored.status.ended and launched is not None and launched.result is not None:
            stored = self._poll(force=True).state  # the worker reported the end: read it now
        if stored.status.ended:
            # The writer's last word (nothing is written after it): kept, so the runs table of an
            # idle page asks no reader for it. With 300 runs, every refresh reopened the readers the
            # catalog had closed to bound memory, reading 300 histories: 1.3 s a refresh.
            self._final_state = (stored.status, stored.message)
            return self._final_state
        if launched is not None and launched.result is not None and launched.result[0].ended:
            return launched.result  # e.g. the disk filled up: the store could not take the final word
        if group is not None and group.exited:
            return STOPPED, f"Stopped unexpectedly: {group.exit_reason()}; showing what it wrote."
        if reader.writer_lost:
            return STOPPED, (f"Stopped unexpectedly: no word from the process writing this run for "
                             f"{min(reader.heartbeat_age, 1e6):.0f} s (more than {HEARTBEAT_TIMEOUT_SECONDS:.0f} s); "
                             "showing what it wrote.")
        if stored.status == IDLE:
            return PREPARING, "Preparing the dataset and model…"
        return stored.status, stored.message

    @property
    def rank_speeds(self) -> tuple[float, ...]:
        """Batches/s of each rank of a torchrun job (rank 0 first), as its writer last said."""
        reader = self._reader
        return reader.state.rank_speeds if reader is not None else ()

    @property
    def writer_state(self):
        """status.json as the writer last wrote it (run_store.RunState): pausable, paused_at, pace."""
        reader = self._poll()
        return reader.state if reader is not None else None

    def control(self, **changes) -> str:
        """Ask the process training this run to pause, step or change pace (see run_store.CONTROLS);
        returns '' or why the request could not be written."""
        try:
            self.store.update_control(self.run_id, **changes)
        except (OSError, StoreError) as error:
            return f"Could not write the request into the runs folder: {error}"
        return ""

    @property
    def status(self) -> Status:
        return self.state()[0]

    @property
    def message(self) -> str:
        return self.state()[1]

    @property
    def is_active(self) -> bool:
        return self.status in (QUEUED, PREPARING, RUNNING)

    @property
    def problems(self) -> list[str]:
        return list(self._reader.problems) if self._reader is not None else []

    def snapshot(self) -> HistorySnapshot | None:
        """The history so far, with the status as this page judges it; None before any data."""
        reader = self._poll()
        if reader is None:
            return None
        status, message = self.state()
        return dataclasses.replace(reader.history.snapshot(), status=status, message=message)

    # -- predictions ----------------------------------------------------------------------
    def inspection_model(self, step: int | None = None):
        """(model with the stored weights at or before `step` (None: newest), the step they are from),
        or (None, reason)."""
        config = self.config
        if config is None:
            return None, "Predictions need a run started from this dashboard (its model and dataset are known)."
        parameters = sum(layer.param_count for layer in self.architecture)
        if parameters > MAX_INSPECTION_PARAMETERS:
            return None, (f"Predictions are drawn for models of up to {MAX_INSPECTION_PARAMETERS:,} parameters; this one "
                          f"has {parameters:,}. Its weights are in the run's folder.")
        try:
            steps = self.store.weight_steps(self.run_id)
        except (OSError, ValueError) as error:
            return None, f"Cannot list this run's weights: {error}"
        if not steps:
            return None, "Predictions appear once the run has stored its first weights."
        from live_training_dashboard.training_setup import build_model, data_shape  # torch only when predictions are shown

        _inference_on_one_thread()
        with self._lock:
            try:
                chosen, state = self.store.load_weights(self.run_id, step)
                if self._inspection is None:
                    model = build_model(config, *data_shape(config))
                    model.disable_monitoring()
                    model.eval()
                    self._inspection = (model, None)
                model = self._inspection[0]
                if self._inspection[1] != chosen or chosen == -1:
                    model.load_state_dict(state)
                    self._inspection = (model, chosen)
            except (OSError, ValueError, RuntimeError, ConfigError) as error:
                return None, f"Cannot load this run's weights: {error}"
        return model, chosen

    @property
    def inspection_lock(self) -> threading.Lock:
        return self._lock

    def stop(self) -> None:
        """Ask the run to stop: a queued one never starts; a training one stops within a batch."""
        launched = self.launched
        if launched is not None and launched.group is not None and not launched.started:
            launched.group.cancelled[self.run_id].set()
            launched.group.collect()
            if not launched.started:
                return
        try:
            self.store.request_stop(self.run_id)
        except OSError:
            pass  # the store is unwritable: the run is failing on its own


class RunCatalog:
    """The runs of one runs folder (a path or an fsspec URL), and the runs this server launched."""

    def __init__(self, url: str, warm_up: bool = True):
        self.store = RunStore(url)
        if "memory" in (self.store.fs.protocol if isinstance(self.store.fs.protocol, tuple) else (self.store.fs.protocol,)):
            raise StoreError(f"{url} lives inside one process, and runs train in processes of their own; "
                             "type a folder, e.g. ./runs")
        if warm_up:
            worker_pool()  # the forkserver imports torch now, while the page is read, not on the first Train
        self.scan_warnings: list[str] = []
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()  # guards _runs
        self._launch_lock = threading.Lock()  # one launch at a time: guards _launched_by
        self._launched_by: dict[str, list[Run]] = {}  # requester -> the runs of its latest launch
        self._scanned_stamp = object()

    def launch(self, named_configs: list[tuple[str, RunConfig]], requester: str | None = None) -> list[Run]:
        """Start runs in worker processes (one after another, or side by side when cores allow).

        requester: who asks (a browser session). While its previous launch is still active, the
        same runs are returned instead of new ones: five quick clicks on Train start one run.
        """
        from live_training_dashboard.launcher import LaunchedRun

        for _, config in named_configs:
            errors = validate(config)
            if errors:
                raise ConfigError(errors)
        with self._launch_lock:
            previous = self._launched_by.get(requester) if requester is not None else None
            if previous and any(run.is_active for run in previous):
                return previous
            launched = [LaunchedRun(new_run_id(), clean_name(name or config.label()), config)
                        for name, config in named_configs]
            worker_pool().launch(self.store.url, launched)
            runs = [Run(self, item.run_id, launched=item) for item in launched]
            with self._lock:
                for run in runs:
                    self._runs[run.run_id] = run
            if requester is not None:
                self._launched_by[requester] = runs
        return runs

    def get(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        try:
            check_run_id(run_id)
        except ValueError:
            return None
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            return run
        try:
            meta = self.store.read_meta(run_id)
        except (StoreError, OSError):
            return None
        with self._lock:
            return self._runs.setdefault(run_id, Run(self, run_id, meta=meta))

    def runs(self) -> list[Run]:
        """Every run here, oldest first (the folder is rescanned only when it changed)."""
        stamp = self.store.stamp()
        if stamp is None or stamp != self._scanned_stamp:
            found, self.scan_warnings = self.store.scan()
            for _, run_id in found:
                self.get(run_id)
            self._scanned_stamp = stamp
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.created_at)
        self._close_idle_readers(runs)
        return runs

    def _close_idle_readers(self, runs: list[Run]) -> None:
        """Bound memory: histories of ended runs nobody looked at lately are dropped (reread on demand)."""
        open_ended = sorted((r for r in runs if r.has_reader and r.launched is None and not r.is_active),
                            key=lambda r: r.last_used)
        for run in open_ended[: max(0, len(open_ended) - MAX_OPEN_ENDED_READERS)]:
            run.close_reader()

    def stop(self, run_id: str) -> None:
        run = self.get(run_id)
        if run is not None:
            run.stop()

    def rename(self, run_id: str, name: str) -> None:
        self.label(run_id, name=name)

    def label(self, run_id: str, *, name: str | None = None, notes: str | None = None, tags=None) -> None:
        """Rename a run, or change its notes or tags (ValueError with what is wrong)."""
        run = self.get(run_id)
        if run is None:
            raise ValueError(f"No run {run_id}")
        if name is not None:
            clean_name(name)  # say what is wrong with the name before anything else
        meta = run._read_meta()
        if meta is None:
            raise ValueError("This run has not started yet; label it once it trains")
        run._labels = self.store.write_labels(run_id, meta, name=name, notes=notes, tags=tags)

    def delete(self, run_id: str) -> None:
        """Forget a run and remove its folder. Refuses a run that is still training."""
        run = self.get(run_id)
        if run is None:
            return
        if run.is_active:
            raise ValueError("Stop the run before deleting it")
        with self._lock:
            self._runs.pop(run_id, None)
        run.close_reader()
        if run._read_meta() is not None or self.store.exists(self.store.path(run_id)):
            try:
                self.store.delete(run_id)
            except OSError as error:
                raise ValueError(f"Could not delete the run's folder: {error.strerror or error}") from None

    def wait(self, run_id: str, timeout: float = 120.0) -> Run | None:
        """Block until a run has ended (tests and scripts)."""
        run = self.get(run_id)
        deadline = time.monotonic() + timeout
        while run is not None and run.is_active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout:.0f} s")
            time.sleep(0.05)
        return run
