"""From a RunConfig to what one run trains with: dataset, model, optimizer, scheduler.

Used by the worker process that trains a run and by the page's architecture preview and
predictions, so the two can never disagree about what a config builds. The preview is
worked out from shapes alone: typing a huge model into the sidebar allocates nothing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from live_training_dashboard import resource_budget
from live_training_dashboard.datasets import IMAGE_SIZE, NUM_DIGIT_CLASSES, Dataset, TensorBatches, build_dataset, idx_shape, mnist_idx_files
from live_training_dashboard.run_config import POINT_DATASETS, ConfigError, RunConfig, validate
from neural_network import ACTIVATIONS, LayerInfo, MonitoredCNN, MonitoredMLP, MonitoredModel
from training_monitor import TrainingMonitor

VAL_BATCH_SIZE = 1024


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


def data_shape(config: RunConfig) -> tuple[tuple[int, ...], int]:
    """(input shape of one sample, number of classes) of a config's dataset, without loading it."""
    if config.dataset == "spiral":
        return (2,), config.num_classes
    if config.dataset in POINT_DATASETS:
        return (2,), 2
    if config.dataset == "mnist_idx":
        images, _ = mnist_idx_files(config.mnist_path)
        shape = idx_shape(images)
        if len(shape) != 3:
            raise ValueError(f"{images.name} holds {len(shape)}-D data; MNIST images are (N, height, width)")
        return (1, shape[1], shape[2]), NUM_DIGIT_CLASSES
    return (1, IMAGE_SIZE, IMAGE_SIZE), NUM_DIGIT_CLASSES


def sample_count(config: RunConfig) -> int:
    """How many samples the config's dataset will hold, without building it (IDX: the header)."""
    if config.dataset == "spiral":
        return max(2, config.num_samples // config.num_classes) * config.num_classes
    if config.dataset == "mnist_idx":
        images, _ = mnist_idx_files(config.mnist_path)
        in_file = idx_shape(images)[0]
        return min(in_file, config.num_samples) if config.num_samples else in_file
    return config.num_samples


def budget_problems(config: RunConfig, available: int | None = None) -> list[str]:
    """Why this config would not fit this machine's memory or time budget (resource_budget)."""
    return resource_budget.budget_problems(config, describe_config(config), sample_count(config), available)


def build_model(config: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> MonitoredModel:
    """The model a config describes, seeded with the config's seed (the same weights every time)."""
    torch.manual_seed(config.seed)
    if config.model == "cnn":
        if len(input_shape) != 3:
            raise ConfigError({"model": "A CNN needs image data; use the MLP for 2-D points"})
        channels, height, width = input_shape
        if height != width:
            raise ConfigError({"model": f"The CNN needs square images; these are {height}×{width}. Use the MLP."})
        return MonitoredCNN(channels, num_classes, config.cnn_channels, config.cnn_hidden,
                            config.activation, config.dropout, height)
    return MonitoredMLP(math.prod(input_shape), config.hidden_sizes, num_classes, config.activation, config.dropout)


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
    architecture: list = field(default_factory=list)

    def fit(self) -> str:
        return self.monitor.fit(self.train_batches, self.val_batches, self.config.epochs)


def build_training(config: RunConfig, device: str | torch.device | None = None, callbacks=()) -> TrainingSetup:
    """Everything one run needs, from a validated config. Raises ConfigError on a bad config."""
    errors = validate(config)
    if errors:
        raise ConfigError(errors)
    problems = budget_problems(config)  # checked where the memory would be taken: before any of it is
    if problems:
        raise ConfigError({"budget": " ".join(problems)})
    dataset = dataset_for(config)
    model = build_model(config, dataset.input_shape, dataset.num_classes)
    optimizer = build_optimizer(config, model)
    monitor = TrainingMonitor(
        model, optimizer, build_scheduler(config, optimizer), device=device,
        stats_every=config.stats_every, callbacks=callbacks,
    )
    train = TensorBatches(dataset.x_train, dataset.y_train, config.batch_size, seed=config.seed).to(monitor.device)
    val = TensorBatches(dataset.x_val, dataset.y_val, VAL_BATCH_SIZE, shuffle=False).to(monitor.device)
    return TrainingSetup(config, dataset, model, monitor, train, val, describe_config(config))


def describe_config(config: RunConfig, shape: tuple[tuple[int, ...], int] | None = None) -> list[LayerInfo]:
    """What model.describe() returns for the model of `config`, computed from shapes alone.

    tests/test_training_setup.py checks it against describe() of real models.
    """
    input_shape, classes = shape or data_shape(config)
    rows = [LayerInfo("input", "Input", tuple(input_shape), 0)]
    activation_kind = ACTIVATIONS[config.activation].__name__
    dropout = config.dropout > 0
    if config.model == "cnn":
        channels, side, _ = input_shape
        for index, width in enumerate(config.cnn_channels, start=1):
            rows.append(LayerInfo(f"conv{index}", "Conv2d", (width, side, side), (channels * 9 + 1) * width,
                                  config.activation, True))
            rows.append(LayerInfo(f"act_conv{index}", activation_kind, (width, side, side), 0))
            side //= 2
            rows.append(LayerInfo(f"pool{index}", "MaxPool2d", (width, side, side), 0))
            channels = width
        flat = channels * side * side
        rows.append(LayerInfo("flatten", "Flatten", (flat,), 0))
        rows.append(LayerInfo("fc1", "Linear", (config.cnn_hidden,), (flat + 1) * config.cnn_hidden,
                              config.activation, True))
        rows.append(LayerInfo("act_fc1", activation_kind, (config.cnn_hidden,), 0))
        if dropout:
            rows.append(LayerInfo("dropout", "Dropout", (config.cnn_hidden,), 0))
        rows.append(LayerInfo("fc2", "Linear", (classes,), (config.cnn_hidden + 1) * classes, None, True))
        return rows
    width_in = math.prod(input_shape)
    rows[0] = LayerInfo("input", "Input", (width_in,), 0)  # the MLP sees images flattened
    for index, width in enumerate(config.hidden_sizes, start=1):
        rows.append(LayerInfo(f"fc{index}", "Linear", (width,), (width_in + 1) * width, config.activation, True))
        rows.append(LayerInfo(f"act{index}", activation_kind, (width,), 0))
        if dropout:
            rows.append(LayerInfo(f"dropout{index}", "Dropout", (width,), 0))
        width_in = width
    output = len(config.hidden_sizes) + 1
    rows.append(LayerInfo(f"fc{output}", "Linear", (classes,), (width_in + 1) * classes, None, True))
    return rows
