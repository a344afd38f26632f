"""Turning a RunConfig into a training run, and the process-wide registry of running runs.

Training happens on a background thread owned by the registry, never in a Streamlit script
thread: a script thread dies on the first widget click, Stop or browser refresh. The page
keeps only a run id and reads the run's history snapshots.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from dataclasses import dataclass, field

import torch

from datasets import Dataset, TensorBatches, build_dataset
from neural_network import MonitoredCNN, MonitoredMLP, MonitoredModel
from run_config import ConfigError, RunConfig, validate
from training_monitor import DIVERGED, FAILED, FINISHED, RUNNING, STOPPED, Callback, TrainingMonitor

PREPARING = "preparing"
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


class _Heartbeat(Callback):
    """Counts batches so the page can tell a live run from a stuck one without a lock."""

    def __init__(self, run: "Run"):
        self.run = run

    def on_batch_end(self, monitor, step):
        self.run.last_batch_at = time.time()


@dataclass
class Run:
    run_id: str
    config: RunConfig
    created_at: float = field(default_factory=time.time)
    setup: TrainingSetup | None = None
    error: str = ""
    last_batch_at: float = 0.0
    thread: threading.Thread | None = None
    _stop_requested: bool = False

    @property
    def status(self) -> str:
        if self.error and self.setup is None:
            return FAILED
        if self.setup is None:
            return PREPARING
        return self.setup.monitor.status

    @property
    def message(self) -> str:
        if self.setup is None:
            return self.error or "Preparing the dataset and model…"
        return self.setup.monitor.message

    @property
    def is_active(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def snapshot(self):
        return self.setup.monitor.history.snapshot() if self.setup is not None else None

    def stop(self) -> None:
        self._stop_requested = True
        if self.setup is not None:
            self.setup.monitor.stop()


class RunRegistry:
    """All runs of this server process, by id. Thread-safe; one training thread per run."""

    def __init__(self, device: str | torch.device | None = None):
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.device = device

    def start(self, config: RunConfig) -> Run:
        errors = validate(config)
        if errors:
            raise ConfigError(errors)
        run = Run(uuid.uuid4().hex[:12], config)
        run.thread = threading.Thread(target=self._train, args=(run,), name=f"train-{run.run_id}", daemon=True)
        with self._lock:
            self._runs[run.run_id] = run
            self._forget_old_runs()
        run.thread.start()
        return run

    def _train(self, run: Run) -> None:
        torch.set_num_threads(intra_op_threads(run.config))
        try:
            setup = build_training(run.config, self.device, callbacks=[_Heartbeat(run)])
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

    def get(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        with self._lock:
            return self._runs.get(run_id)

    def stop(self, run_id: str) -> None:
        run = self.get(run_id)
        if run is not None:
            run.stop()

    def runs(self) -> list[Run]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.created_at)

    def _forget_old_runs(self) -> None:
        ended = [r for r in sorted(self._runs.values(), key=lambda r: r.created_at) if not r.is_active]
        for run in ended[: max(0, len(self._runs) - MAX_KEPT_RUNS)]:
            del self._runs[run.run_id]

    def wait(self, run_id: str, timeout: float | None = None) -> Run | None:
        run = self.get(run_id)
        if run is not None and run.thread is not None:
            run.thread.join(timeout)
        return run


__all__ = ["Run", "RunRegistry", "TrainingSetup", "build_training", "PREPARING", "ENDED", "RUNNING"]


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
