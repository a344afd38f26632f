"""RunConfig: every setting of one training run, validated once where it enters.

The sidebar hands raw values (text fields as strings) to `parse_run_config`, which returns
either a RunConfig or a message per field saying what to type instead. Nothing downstream
re-parses widgets. Pure Python: no torch, no streamlit.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import asdict, dataclass, fields, replace

DATASETS = {"spiral": "Spiral (2-D)", "mnist_like": "MNIST-like (procedural digits)", "mnist_idx": "MNIST (IDX files)"}
MODELS = {"mlp": "MLP", "cnn": "CNN"}
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD + momentum", "adamw": "AdamW"}
SCHEDULERS = {"none": "None", "step": "StepLR", "cosine": "CosineAnnealing"}
ACTIVATION_NAMES = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")

# Limits that keep a run inside what a laptop CPU trains interactively and what fits in memory.
MAX_HIDDEN_LAYERS = 12
MAX_LAYER_WIDTH = 4096
MAX_SAMPLES = 200_000
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 8192


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "spiral"
    num_samples: int = 1500
    noise: float = 0.2
    num_classes: int = 3
    train_fraction: float = 1.0
    val_fraction: float = 0.2
    mnist_path: str = ""
    model: str = "mlp"
    hidden_sizes: tuple[int, ...] = (128, 128, 128)
    activation: str = "relu"
    dropout: float = 0.0
    cnn_channels: tuple[int, ...] = (16, 32)
    cnn_hidden: int = 128
    optimizer: str = "adam"
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 10
    gamma: float = 0.5
    batch_size: int = 32
    epochs: int = 20
    seed: int = 0
    stats_every: int = 20

    @property
    def train_samples(self) -> int:
        """How many samples the training split holds (mirrors datasets.build_dataset)."""
        total = self.num_samples
        if self.dataset == "spiral":
            total = max(2, self.num_samples // self.num_classes) * self.num_classes
        train = total - int(round(total * self.val_fraction))
        return max(1, int(train * self.train_fraction)) if self.train_fraction < 1 else train

    def label(self) -> str:
        """A short human name, e.g. 'MLP 128×3 · Adam 5e-3 · cosine'."""
        if self.model == "mlp":
            sizes = self.hidden_sizes
            shape = f"{sizes[0]}×{len(sizes)}" if len(set(sizes)) == 1 else "-".join(map(str, sizes))
            model = f"MLP {shape} {self.activation}"
        else:
            model = "CNN " + "-".join(map(str, self.cnn_channels))
        parts = [model, f"{OPTIMIZERS[self.optimizer].split()[0]} {self.lr:.0e}".replace("e-0", "e-")]
        if self.scheduler != "none":
            parts.append(self.scheduler)
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Rebuild from to_dict() output (e.g. JSON); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        for key in ("hidden_sizes", "cnn_channels"):
            if key in kept:
                kept[key] = tuple(kept[key])
        return cls(**kept)

    def with_changes(self, **changes) -> "RunConfig":
        return replace(self, **changes)


class ConfigError(ValueError):
    """Raised by RunConfig validation; .errors maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_layer_sizes(text: str, what: str = "Hidden layers") -> tuple[int, ...]:
    """'128, 64,32' -> (128, 64, 32); raises ValueError with a message saying what to type."""
    if text is None or not str(text).strip():
        raise ValueError(f"{what} is empty: type widths separated by commas, e.g. 128,128,128")
    sizes = []
    for position, part in enumerate(str(text).replace(";", ",").split(","), start=1):
        part = part.strip()
        if not part:
            raise ValueError(f"{what}: entry {position} is empty; remove the extra comma")
        try:
            width = int(part)
        except ValueError:
            raise ValueError(f"{what}: '{part}' is not a whole number; use e.g. 128,128,128") from None
        if width < 1:
            raise ValueError(f"{what}: width {width} must be at least 1")
        if width > MAX_LAYER_WIDTH:
            raise ValueError(f"{what}: width {width} is over the limit of {MAX_LAYER_WIDTH}")
        sizes.append(width)
    if len(sizes) > MAX_HIDDEN_LAYERS:
        raise ValueError(f"{what}: {len(sizes)} layers is over the limit of {MAX_HIDDEN_LAYERS}")
    return tuple(sizes)


def _number(value, what: str, kind=float, low=None, high=None, low_open=False) -> float | int:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise ValueError(f"{what} is empty")
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if kind is int and float(value) != int(float(value)):
        raise ValueError(f"{what} must be a whole number, got {value}")
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number")
    if low is not None and (number <= low if low_open else number < low):
        raise ValueError(f"{what} must be {'greater than' if low_open else 'at least'} {low:g}, got {number:g}")
    if high is not None and number > high:
        raise ValueError(f"{what} must be at most {high:g}, got {number:g}")
    return number


def validate(config: RunConfig) -> dict[str, str]:
    """Messages for every field that is wrong, keyed by field name; empty when all is well."""
    errors: dict[str, str] = {}

    def check(name: str, test):
        try:
            test()
        except ValueError as error:
            errors.setdefault(name, str(error))

    c = config
    check("dataset", lambda: _choice(c.dataset, DATASETS, "Dataset"))
    check("model", lambda: _choice(c.model, MODELS, "Model"))
    check("optimizer", lambda: _choice(c.optimizer, OPTIMIZERS, "Optimizer"))
    check("scheduler", lambda: _choice(c.scheduler, SCHEDULERS, "Scheduler"))
    check("activation", lambda: _choice(c.activation, dict.fromkeys(ACTIVATION_NAMES), "Activation"))
    check("num_samples", lambda: _number(c.num_samples, "Samples", int, 20, MAX_SAMPLES))
    check("noise", lambda: _number(c.noise, "Noise", float, 0.0, 5.0))
    check("num_classes", lambda: _number(c.num_classes, "Classes", int, 2, 10))
    check("train_fraction", lambda: _number(c.train_fraction, "Train fraction", float, 0.0, 1.0, low_open=True))
    check("val_fraction", lambda: _number(c.val_fraction, "Validation fraction", float, 0.05, 0.5))
    check("dropout", lambda: _number(c.dropout, "Dropout", float, 0.0, 0.95))
    check("lr", lambda: _number(c.lr, "Learning rate", float, 0.0, 100.0, low_open=True))
    check("momentum", lambda: _number(c.momentum, "Momentum", float, 0.0, 0.999))
    check("weight_decay", lambda: _number(c.weight_decay, "Weight decay", float, 0.0, 1.0))
    check("step_size", lambda: _number(c.step_size, "Step size", int, 1, MAX_EPOCHS))
    check("gamma", lambda: _number(c.gamma, "Gamma", float, 0.0, 1.0, low_open=True))
    check("batch_size", lambda: _number(c.batch_size, "Batch size", int, 1, MAX_BATCH_SIZE))
    check("epochs", lambda: _number(c.epochs, "Epochs", int, 1, MAX_EPOCHS))
    check("seed", lambda: _number(c.seed, "Seed", int, 0, 2**31 - 1))
    check("stats_every", lambda: _number(c.stats_every, "Statistics interval", int, 1, 10_000))
    check("cnn_hidden", lambda: _number(c.cnn_hidden, "CNN hidden width", int, 1, MAX_LAYER_WIDTH))
    if c.model == "mlp":
        check("hidden_sizes", lambda: parse_layer_sizes(",".join(map(str, c.hidden_sizes))))
    if c.model == "cnn":
        if c.dataset == "spiral":
            errors["model"] = "A CNN needs images: pick MNIST-like or MNIST, or use the MLP for the spiral"
        check("cnn_channels", lambda: parse_layer_sizes(",".join(map(str, c.cnn_channels)), "Conv channels"))
        if "cnn_channels" not in errors and len(c.cnn_channels) > 4:
            errors["cnn_channels"] = "Conv channels: at most 4 conv+pool stages fit a 28×28 image"
    if c.dataset == "mnist_idx" and not str(c.mnist_path).strip():
        errors["mnist_path"] = "Type the folder that holds train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)"
    if not errors and c.batch_size > c.train_samples:
        errors["batch_size"] = (
            f"Batch size {c.batch_size} is larger than the training set ({c.train_samples} samples); "
            f"use at most {c.train_samples}"
        )
    return errors


def _choice(value, options: dict, what: str) -> None:
    if value not in options:
        raise ValueError(f"{what} must be one of {', '.join(options)}, got {value!r}")


def parse_run_config(raw: dict) -> tuple[RunConfig | None, dict[str, str]]:
    """Raw sidebar values -> (RunConfig, {}) or (None, {field: message}).

    Text fields (hidden_sizes, cnn_channels, lr, ...) may arrive as strings; numbers are
    converted here, so a typo becomes a message next to its control, not a traceback.
    """
    defaults = RunConfig()
    errors: dict[str, str] = {}
    values: dict = {}
    for f in fields(RunConfig):
        value = raw.get(f.name, getattr(defaults, f.name))
        default = getattr(defaults, f.name)
        try:
            if f.name in ("hidden_sizes", "cnn_channels"):
                what = "Hidden layers" if f.name == "hidden_sizes" else "Conv channels"
                value = parse_layer_sizes(value if isinstance(value, str) else ",".join(map(str, value)), what)
            elif isinstance(default, bool) or isinstance(default, str):
                value = str(value) if value is not None else ""
            elif isinstance(default, int):
                value = int(_number(value, _LABELS.get(f.name, f.name), int))
            elif isinstance(default, float):
                value = float(_number(value, _LABELS.get(f.name, f.name), float))
        except ValueError as error:
            errors[f.name] = str(error)
            value = default
        values[f.name] = value
    config = RunConfig(**values)
    # Fields that did not even parse keep their first message; validate() adds the rest.
    for name, message in validate(config).items():
        errors.setdefault(name, message)
    # Checked here, where the user types it, not in validate(): a stored config may name a
    # folder of another machine and must still load.
    if config.dataset == "mnist_idx" and "mnist_path" not in errors:
        folder = Path(config.mnist_path.strip()).expanduser()
        if not folder.is_dir():
            errors["mnist_path"] = f"No folder at {folder}; type the folder that holds the MNIST IDX files"
    if not _applies(errors, config):
        return config, {}
    return (None, {k: v for k, v in errors.items() if _field_applies(k, config)})


_LABELS = {
    "num_samples": "Samples", "noise": "Noise", "num_classes": "Classes", "train_fraction": "Train fraction",
    "val_fraction": "Validation fraction", "dropout": "Dropout", "lr": "Learning rate", "momentum": "Momentum",
    "weight_decay": "Weight decay", "step_size": "Step size", "gamma": "Gamma", "batch_size": "Batch size",
    "epochs": "Epochs", "seed": "Seed", "stats_every": "Statistics interval", "cnn_hidden": "CNN hidden width",
}


def _field_applies(name: str, config: RunConfig) -> bool:
    """Errors in controls the current choices hide (e.g. CNN channels for an MLP) do not count."""
    if name == "hidden_sizes":
        return config.model == "mlp"
    if name in ("cnn_channels", "cnn_hidden"):
        return config.model == "cnn"
    if name == "momentum":
        return config.optimizer == "sgd"
    if name in ("step_size", "gamma"):
        return config.scheduler == "step"
    if name == "mnist_path":
        return config.dataset == "mnist_idx"
    if name == "num_classes":
        return config.dataset == "spiral"
    return True


def _applies(errors: dict[str, str], config: RunConfig) -> bool:
    return any(_field_applies(name, config) for name in errors)
