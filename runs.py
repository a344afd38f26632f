"""Turning a RunConfig into a training run, and the process-wide registry of running runs.

Training happens on a background thread owned by the registry, never in a Streamlit script
thread: a script thread dies on the first widget click, Stop or browser refresh. The page
keeps only a run id and reads the run's history snapshots.
"""

from __future__ import annotations

import functools
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from datasets import Dataset, TensorBatches, build_dataset
from neural_network import LayerInfo, MonitoredCNN, MonitoredMLP, MonitoredModel
from run_store import RunTail, RunWriter, clean_name, new_run_id, rename_run, run_folder, save_weights, scan_runs
from run_config import ConfigError, RunConfig, validate
from training_monitor import DIVERGED, FAILED, FINISHED, RUNNING, STOPPED, Callback, TrainingMonitor

PREPARING, QUEUED = "preparing", "queued"
ENDED = (FINISHED, STOPPED, DIVERGED, FAILED)
# The registry keeps this many ended runs in memory, dropping the oldest beyond it.
MAX_KEPT_RUNS = 30
VAL_BATCH_SIZE = 1024

# torch.manual_seed is process-wide: hold this while seeding and building a model, so two
# runs started at once each get the initial weights their seed promises.
_seed_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, num_samples: int, noise: float, num_classes: int, train_fraction: float,
                   val_fraction: float, seed: int, mnist_path: str) -> Dataset:
    """Datasets are deterministic in their settings, so runs that share them share one copy."""
    return build_dataset(
        name, num_samples=num_samples, noise=noise, num_classes=num_classes, train_fraction=train_fraction,
        val_fraction=val_fraction, seed=seed, mnist_path=mnist_path or None,
    )


def dataset_for(config: RunConfig) -> Dataset:
    return cached_dataset(
        config.dataset, config.num_samples, config.noise, config.num_classes, config.train_fraction,
        config.val_fraction, config.seed, config.mnist_path,
    )


def build_model(config: RunConfig, dataset: Dataset) -> MonitoredModel:
    with _seed_lock:
        torch.manual_seed(config.seed)
        if config.model == "cnn":
            if not dataset.is_image:
                raise ConfigError({"model": "A CNN needs image data; use the MLP for the spiral"})
            channels, side = dataset.input_shape[0], dataset.input_shape[1]
            return MonitoredCNN(channels, dataset.num_classes, config.cnn_channels, config.cnn_hidden,
                                config.activation, config.dropout, side)
        input_dim = 1
        for size in dataset.input_shape:
            input_dim *= size
        return MonitoredMLP(input_dim, config.hidden_sizes, dataset.num_classes, config.activation, config.dropout)


def build_optimizer(config: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


@dataclass
class TrainingSetup:
    config: RunConfig
    dataset: Dataset
    model: MonitoredModel
    monitor: TrainingMonitor
    train_batches: TensorBatches
    val_batches: TensorBatches
    # Taken before training: describe() runs a forward pass, never to be done mid-training.
    architecture: list = field(default_factory=list)

    def fit(self) -> str:
        return self.monitor.fit(self.train_batches, self.val_batches, self.config.epochs)


def build_training(config: RunConfig, device: str | torch.device | None = None, callbacks=()) -> TrainingSetup:
    """Everything one run needs, from a validated config. Raises ConfigError on a bad config."""
    errors = validate(config)
    if errors:
        raise ConfigError(errors)
    dataset = dataset_for(config)
    model = build_model(config, dataset)
    optimizer = build_optimizer(config, model)
    monitor = TrainingMonitor(
        model, optimizer, build_scheduler(config, optimizer), device=device,
        stats_every=config.stats_every, callbacks=callbacks,
    )
    train = TensorBatches(dataset.x_train, dataset.y_train, config.batch_size, seed=config.seed).to(monitor.device)
    val = TensorBatches(dataset.x_val, dataset.y_val, VAL_BATCH_SIZE, shuffle=False).to(monitor.device)
    return TrainingSetup(config, dataset, model, monitor, train, val, model.describe())


def intra_op_threads(config: RunConfig) -> int:
    """CPU threads per op for a run on a background thread.

    Measured on 2 cores: an MLP's ops are too small to split, and from a non-main thread
    two OpenMP threads halve its speed (415 vs 880 batches/s on the spiral MLP); a CNN's
    convolutions still gain from all cores (81 vs 71 batches/s). Only this thread is
    affected: OpenMP's thread count is per calling thread.
    """
    return torch.get_num_threads() if config.model == "cnn" else 1


class _PublishWeights(Callback):
    """Hands the page a copy of the weights about twice a second, for predictions on a grid.

    The page never runs the training model itself: that would race the optimizer and flip
    train/eval mode under the training thread.
    """

    def __init__(self, run: "Run", every_seconds: float = 0.5):
        self.run, self.every_seconds, self._last = run, every_seconds, 0.0

    def _publish(self, monitor) -> None:
        self._last = time.monotonic()
        state = {k: v.detach().to("cpu", copy=True) for k, v in monitor.model.state_dict().items()}
        self.run.published_weights = (monitor.step, state)

    def on_batch_end(self, monitor, step):
        if time.monotonic() - self._last > self.every_seconds:
            self._publish(monitor)

    def on_train_end(self, monitor):
        self._publish(monitor)


@dataclass
class Run:
    """A run trained by this process (in memory), or one read from the runs folder (stored)."""

    run_id: str
    config: RunConfig | None
    name: str = ""
    created_at: float = field(default_factory=time.time)
    setup: TrainingSetup | None = None
    error: str = ""
    thread: threading.Thread | None = None
    folder: Path | None = None
    tail: RunTail | None = None  # set for runs read from disk (other processes, earlier servers)
    queued: bool = False
    cancelled: bool = False  # stopped while it was still waiting its turn
    published_weights: tuple | None = None
    _stop_requested: bool = False
    _inspection_lock: threading.Lock = field(default_factory=threading.Lock)
    _inspection_model: object = None

    @property
    def source(self) -> str:
        return self.tail.meta.get("source", "dashboard") if self.tail is not None else "dashboard"

    @property
    def status(self) -> str:
        if self.tail is not None:
            return self.tail.status
        if self.cancelled:
            return STOPPED
        if self.error and self.setup is None:
            return FAILED
        if self.queued:
            return QUEUED
        if self.setup is None:
            return PREPARING
        return self.setup.monitor.status

    @property
    def message(self) -> str:
        if self.tail is not None:
            return self.tail.message
        if self.cancelled:
            return "Stopped before its turn came; it never trained."
        if self.queued:
            return "Waiting for the run before it to finish…"
        if self.setup is None:
            return self.error or "Preparing the dataset and model…"
        return self.setup.monitor.message

    @property
    def is_active(self) -> bool:
        if self.tail is not None:
            return self.tail.status == RUNNING
        return self.thread is not None and self.thread.is_alive() and self.status not in ENDED

    @property
    def architecture(self) -> list:
        if self.setup is not None:
            return self.setup.architecture
        if self.tail is not None:
            return [LayerInfo(**{**row, "output_shape": tuple(row["output_shape"])})
                    for row in self.tail.meta.get("architecture", [])]
        return []

    @property
    def config_dict(self) -> dict:
        if self.config is not None:
            return self.config.to_dict()
        return dict(self.tail.meta.get("config", {})) if self.tail is not None else {}

    def snapshot(self):
        if self.tail is not None:
            self.tail.poll()
            return self.tail.history.snapshot()
        return self.setup.monitor.history.snapshot() if self.setup is not None else None

    def stop(self) -> None:
        self._stop_requested = True
        if self.setup is not None:
            self.setup.monitor.stop()

    def inspection_model(self):
        """(model copy with the latest published weights, step), or (None, None) before any."""
        published = self.published_weights
        if published is None and self.folder is not None and (self.folder / "model.pt").exists():
            published = (-1, torch.load(self.folder / "model.pt", map_location="cpu", weights_only=True))
            self.published_weights = published
        if published is None or self.config is None:
            return None, None
        step, state = published
        with self._inspection_lock:
            if self._inspection_model is None:
                self._inspection_model = build_model(self.config, dataset_for(self.config))
                self._inspection_model.disable_monitoring()
                self._inspection_model.eval()
            self._inspection_model.load_state_dict(state)
            return self._inspection_model, step


class RunRegistry:
    """All runs this server knows, by id: trained here (threads) or found in the runs folder."""

    def __init__(self, runs_dir: str | Path | None = "runs", device: str | torch.device | None = None):
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.device = device
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.scan_warnings: list[str] = []
        self._scanned_stamp: int | None = None

    def start(self, config: RunConfig, name: str = "") -> Run:
        return self.start_sequence([(name, config)])[0]

    def start_sequence(self, named_configs: list[tuple[str, RunConfig]]) -> list[Run]:
        """Runs that train one after another on one background thread, in the given order."""
        for _, config in named_configs:
            errors = validate(config)
            if errors:
                raise ConfigError(errors)
        runs = [Run(new_run_id(), config, name=name or config.label(), queued=True) for name, config in named_configs]
        thread = threading.Thread(target=self._train_all, args=(runs,), name=f"train-{runs[0].run_id}", daemon=True)
        with self._lock:
            for run in runs:
                run.thread = thread
                self._runs[run.run_id] = run
            self._forget_old_runs()
        thread.start()
        return runs

    def _train_all(self, runs: list[Run]) -> None:
        for run in runs:
            if run._stop_requested:
                run.queued, run.cancelled = False, True
                continue
            self._train(run)

    def _train(self, run: Run) -> None:
        run.queued = False
        torch.set_num_threads(intra_op_threads(run.config))
        try:
            setup = build_training(run.config, self.device, callbacks=[_PublishWeights(run)])
            writer = None
            if self.runs_dir is not None:
                writer = RunWriter.create(
                    self.runs_dir, name=run.name, config=run.config.to_dict(), layer_names=setup.monitor.layer_names,
                    architecture=[asdict(layer) for layer in setup.architecture], run_id=run.run_id,
                )
                run.folder = writer.folder
                setup.monitor.history.sink = writer
        except Exception as error:  # a bad IDX file, an unreadable folder, out of memory...
            run.error = f"Could not start: {error}"
            return
        run.setup = setup
        if run._stop_requested:
            setup.monitor.stop()
        try:
            setup.fit()
        except Exception:  # fit() already recorded the failure in the history's status
            pass
        finally:
            if writer is not None:
                try:
                    save_weights(writer.folder, setup.model)
                finally:
                    writer.close()

    def get(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        with self._lock:
            run = self._runs.get(run_id)
        if run is None and self.runs_dir is not None:
            run = self._load(run_id)
        return run

    def _load(self, run_id: str) -> Run | None:
        try:
            folder = run_folder(self.runs_dir, run_id)
            tail = RunTail.open(folder)
        except (OSError, ValueError):
            return None
        meta = tail.meta
        try:
            config = RunConfig.from_dict(meta["config"]) if meta.get("source") == "dashboard" else None
        except (TypeError, ValueError):
            config = None
        run = Run(run_id, config, name=meta.get("name", run_id), created_at=float(meta.get("created_at", 0)),
                  folder=folder, tail=tail)
        with self._lock:
            return self._runs.setdefault(run_id, run)

    def stop(self, run_id: str) -> None:
        run = self.get(run_id)
        if run is not None:
            run.stop()

    def runs(self) -> list[Run]:
        """Every run: this process's and, when a runs folder is set, those found on disk."""
        if self.runs_dir is not None:
            try:
                # Adding or removing an entry changes the folder's mtime: rescan only then.
                stamp = self.runs_dir.stat().st_mtime_ns
            except OSError:
                stamp = None
            if stamp is None or stamp != self._scanned_stamp:
                folders, self.scan_warnings = scan_runs(self.runs_dir)
                for folder in folders:
                    if folder.name not in self._runs:
                        self._load(folder.name)
                self._scanned_stamp = stamp
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.created_at)

    def rename(self, run_id: str, name: str) -> None:
        run = self.get(run_id)
        if run is None:
            raise ValueError(f"No run {run_id}")
        name = clean_name(name)
        if run.folder is not None and (run.folder / "run.json").exists():
            meta = rename_run(run.folder, name)
            if run.tail is not None:
                run.tail.meta = meta
        run.name = name

    def delete(self, run_id: str) -> None:
        """Forget a run and remove its folder. Refuses a run that is still training."""
        run = self.get(run_id)
        if run is None:
            return
        if run.is_active:
            raise ValueError("Stop the run before deleting it")
        with self._lock:
            self._runs.pop(run_id, None)
        if run.folder is not None and run.folder.is_dir():
            shutil.rmtree(run_folder(self.runs_dir, run_id))

    def _forget_old_runs(self) -> None:
        """Keep memory bounded: drop the oldest ended runs (their folders stay on disk)."""
        ended = [r for r in sorted(self._runs.values(), key=lambda r: r.created_at) if not r.is_active]
        for run in ended[: max(0, len(self._runs) - MAX_KEPT_RUNS)]:
            del self._runs[run.run_id]

    def wait(self, run_id: str, timeout: float | None = None) -> Run | None:
        run = self.get(run_id)
        if run is not None and run.thread is not None:
            run.thread.join(timeout)
        return run


def preview_architecture(config: RunConfig):
    """describe() of the model a config would build, without loading its dataset."""
    if config.dataset == "spiral":
        input_shape, classes = (2,), config.num_classes
    else:
        input_shape, classes = (1, 28, 28), 10
    if config.model == "cnn":
        model = MonitoredCNN(input_shape[0], classes, config.cnn_channels, config.cnn_hidden,
                             config.activation, config.dropout, input_shape[-1])
    else:
        size = 1
        for dim in input_shape:
            size *= dim
        model = MonitoredMLP(size, config.hidden_sizes, classes, config.activation, config.dropout)
    return model.describe()
