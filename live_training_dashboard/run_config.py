"""RunConfig: every setting of one training run, validated once where it enters.

FIELDS is the one table of settings: each entry's label, widget, range, step and when it
applies drive the sidebar's widgets, validation, messages and the widget values that restore
a config (presets, a refreshed page). A new setting is one RunConfig field and one entry.
The sidebar hands raw values (text fields as strings) to `parse_run_config`, which returns
either a RunConfig or a message per field saying what to type instead. Nothing downstream
re-parses widgets. Pure Python: no torch, no streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

DATASETS = {"spiral": "Spiral (2-D)", "circle": "Circle (2-D)", "xor": "XOR (2-D)", "gaussians": "Two Gaussians (2-D)",
            "mnist_like": "MNIST-like (procedural digits)", "mnist_idx": "MNIST (IDX files)"}
POINT_DATASETS = ("spiral", "circle", "xor", "gaussians")  # 2-D points: MLP only, decision boundary
MODELS = {"mlp": "MLP", "cnn": "CNN"}
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD + momentum", "adamw": "AdamW"}
SCHEDULERS = {"none": "None", "step": "StepLR", "cosine": "CosineAnnealing"}
# Watchable: a short run is stretched to about 20 s (training_monitor.WATCHABLE_PACE_SECONDS).
PACES = {"watchable": "Watchable (about 20 s)", "fast": "As fast as possible"}
ACTIVATION_NAMES = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")

# Limits that keep a run inside what a laptop CPU trains interactively and what fits in memory.
MAX_HIDDEN_LAYERS = 12
MAX_LAYER_WIDTH = 4096
# The largest count typed into the sidebar; whether a count fits is decided by memory and time
# (resource_budget: 25% of available memory, a minute of drawing digits), not by this number.
MAX_SAMPLES = 1_000_000
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 8192
# Bounds the sidebar's sliders and validation share (they once disagreed: 0.9 vs 0.95, 1 vs 5).
MAX_DROPOUT = 0.9
MAX_NOISE = {"spiral": 1.0, "circle": 0.5, "xor": 0.5, "gaussians": 0.5, "mnist_like": 0.5, "mnist_idx": 0.5}  # spiral: angle jitter; digits: pixel noise


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
    pace: str = "watchable"

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

    def summary(self) -> str:
        """Every setting that shapes training, for a run's caption: 'MLP 128×3 relu · Adam lr 0.005 ·
        batch 32 · 20 epochs · seed 0', with momentum, weight decay, dropout and schedule when they apply."""
        if self.model == "mlp":
            model = f"MLP {'-'.join(map(str, self.hidden_sizes))} {self.activation}"
        else:
            model = f"CNN {'-'.join(map(str, self.cnn_channels))} + {self.cnn_hidden} {self.activation}"
        parts = [model]
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        optimizer = f"{OPTIMIZERS[self.optimizer].split()[0]} lr {self.lr:g}"
        if self.optimizer == "sgd":
            optimizer += f" momentum {self.momentum:g}"
        if self.weight_decay:
            optimizer += f" weight decay {self.weight_decay:g}"
        parts.append(optimizer)
        if self.scheduler == "step":
            parts.append(f"StepLR every {self.step_size} × {self.gamma:g}")
        elif self.scheduler == "cosine":
            parts.append("cosine schedule")
        parts += [f"batch {self.batch_size}", f"{self.epochs} epochs", f"seed {self.seed}"]
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """Rebuild from to_dict() output (e.g. JSON); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        for key in ("hidden_sizes", "cnn_channels"):
            if key in kept:
                kept[key] = tuple(kept[key])
        return cls(**kept)

    def with_changes(self, **changes) -> RunConfig:
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
    # What was typed, as typed: 1e-400 is not "got 0", nor 100.0000001 "at most 100, got 100".
    got = _short(value, 40) if isinstance(value, str) else _show(number)
    if low is not None and (number <= low if low_open else number < low):
        raise ValueError(f"{what} must be {'greater than' if low_open else 'at least'} {_show(low)}, got {got}")
    if high is not None and number > high:
        raise ValueError(f"{what} must be at most {_show(high)}, got {got}")
    return number


def _short(text: str, limit: int = 120) -> str:
    """A path as a message can show it: long ones keep their start and end."""
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def _show(number: float) -> str:
    """A number as a person typed it: whole numbers in full (2147483647, not 2.14748e+09)."""
    if float(number).is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(float(number))  # the shortest text that reads back as this number


# --------------------------------------------------------------------------- the table of settings


def _always(values: dict) -> bool:
    return True


def _when(name: str, *choices: str) -> Callable[[dict], bool]:
    return lambda values: values.get(name) in choices


IMAGE_DATASETS = ("mnist_like", "mnist_idx")


def _own_value_for_images(name: str) -> Callable[[dict], str]:
    """A widget key that gives image datasets their own value of a setting (and default, in
    key_defaults): the spiral's LR 0.005 kills ReLUs of a 784-input MLP on one seed in two, and
    20 epochs on 4,800 digits overfit. Measured in tests/test_doctor_scenarios.py."""
    return lambda values: f"{name}_images" if values.get("dataset") in IMAGE_DATASETS else name


@dataclass(frozen=True)
class Field:
    """One sidebar setting. `applies` sees the values chosen above it (raw widget values or a config)."""

    name: str  # the RunConfig attribute
    label: str  # next to the widget and in messages
    widget: str  # "select", "radio", "slider", "number", "text"
    kind: str  # "choice", "int", "float", "layers", "path"
    section: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    step: float | None = None
    options: dict | None = None  # choice value -> what the user reads
    applies: Callable[[dict], bool] = _always
    key: str | Callable[[dict], str] | None = None  # the widget's key when it is not `name`
    help: str | None = None
    placeholder: str | None = None
    number_format: str | None = None
    key_defaults: tuple[tuple[str, object], ...] = ()  # widget keys whose default is not RunConfig's

    def widget_key(self, values: dict) -> str:
        if callable(self.key):
            return self.key(values)
        return self.key or self.name

    def check(self, value) -> None:
        """Raises ValueError with what to type instead."""
        if self.kind == "choice":
            if value not in self.options:
                raise ValueError(f"{self.label} must be one of {', '.join(self.options)}, got {value!r}")
        elif self.kind in ("int", "float"):
            _number(value, self.label, int if self.kind == "int" else float, self.low, self.high, self.low_open)
        elif self.kind == "layers":
            sizes = parse_layer_sizes(",".join(map(str, value)), self.label)
            if self.high is not None and len(sizes) > self.high:
                raise ValueError(f"{self.label}: at most {_show(self.high)} entries fit, got {len(sizes)}")

    def widget_value(self, config: RunConfig):
        """What this field's widget shows for `config`."""
        value = getattr(config, self.name)
        if self.kind == "layers":
            return ",".join(map(str, value))
        if self.widget == "text" and self.kind == "float":
            return f"{value:g}"
        return value


DATASET, MODEL, TRAINING = "Dataset", "Model", "Training"
FIELDS: tuple[Field, ...] = (
    Field("dataset", "Dataset", "select", "choice", DATASET, options=DATASETS),
    Field("num_samples", "Points", "slider", "int", DATASET, 150, 6000, step=150,
          applies=_when("dataset", *POINT_DATASETS), key="spiral_points"),
    Field("noise", "Noise", "slider", "float", DATASET, 0.0, MAX_NOISE["spiral"], step=0.05,
          applies=_when("dataset", "spiral"), key="spiral_noise"),
    Field("noise", "Noise", "slider", "float", DATASET, 0.0, MAX_NOISE["circle"], step=0.01,
          applies=_when("dataset", "circle", "xor", "gaussians"), key="points_noise", key_defaults=(("points_noise", 0.05),),
          help="Standard deviation of a random jitter of every point (the sets span about -1..1)"),
    Field("num_classes", "Classes (arms)", "slider", "int", DATASET, 2, 6, applies=_when("dataset", "spiral"),
          key="spiral_classes"),
    Field("num_samples", "Images", "number", "int", DATASET, 20, MAX_SAMPLES, step=1000,
          applies=_when("dataset", "mnist_like"), key="digits_images", key_defaults=(("digits_images", 6000),)),
    Field("noise", "Pixel noise", "slider", "float", DATASET, 0.0, MAX_NOISE["mnist_like"], step=0.05,
          applies=_when("dataset", "mnist_like"), key="digits_noise", key_defaults=(("digits_noise", 0.15),)),
    Field("mnist_path", "Folder with MNIST IDX files", "text", "path", DATASET, applies=_when("dataset", "mnist_idx"),
          placeholder="e.g. ~/data/mnist", help="Needs train-images-idx3-ubyte and train-labels-idx1-ubyte, raw or .gz"),
    Field("num_samples", "Use the first N images", "number", "int", DATASET, 20, MAX_SAMPLES, step=1000,
          applies=_when("dataset", "mnist_idx"), key="mnist_images", key_defaults=(("mnist_images", 60000),)),
    Field("train_fraction", "Share of the training split to use", "slider", "float", DATASET, 0.05, 1.0, step=0.05,
          help="Less data makes overfitting easy to see"),
    Field("model", "Architecture", "radio", "choice", MODEL, options=MODELS),
    Field("hidden_sizes", "Hidden layers", "text", "layers", MODEL, high=MAX_HIDDEN_LAYERS, applies=_when("model", "mlp"),
          help="Widths separated by commas, e.g. 128,128,128"),
    Field("cnn_channels", "Conv channels", "text", "layers", MODEL, high=4, applies=_when("model", "cnn"),
          help="One 3×3 conv + 2×2 max-pool per entry; at most 4 fit a 28×28 image"),
    Field("cnn_hidden", "Dense width", "number", "int", MODEL, 1, MAX_LAYER_WIDTH, step=16, applies=_when("model", "cnn")),
    Field("activation", "Activation", "select", "choice", MODEL, options={name: name for name in ACTIVATION_NAMES}),
    Field("dropout", "Dropout", "slider", "float", MODEL, 0.0, MAX_DROPOUT, step=0.05),
    Field("optimizer", "Optimizer", "select", "choice", TRAINING, options=OPTIMIZERS),
    # Below 1e-8 a step changes float32 weights by nothing: such an LR is a typo (e.g. 1e-320).
    Field("lr", "Learning rate", "text", "float", TRAINING, 1e-8, 100.0, help="e.g. 0.005 or 1e-3",
          key=_own_value_for_images("lr"), key_defaults=(("lr_images", 0.001),)),
    Field("momentum", "Momentum", "slider", "float", TRAINING, 0.0, 0.99, step=0.01, applies=_when("optimizer", "sgd")),
    # One box per optimizer, so switching to AdamW shows its usual 0.01 and back shows what was typed.
    Field("weight_decay", "Weight decay", "text", "float", TRAINING, 0.0, 1.0,
          key=lambda values: f"weight_decay_{values.get('optimizer', 'adam')}",
          key_defaults=(("weight_decay_sgd", 0.0), ("weight_decay_adam", 0.0), ("weight_decay_adamw", 0.01))),
    Field("scheduler", "LR schedule", "select", "choice", TRAINING, options=SCHEDULERS),
    Field("step_size", "Step every (epochs)", "number", "int", TRAINING, 1, MAX_EPOCHS, step=1,
          applies=_when("scheduler", "step")),
    Field("gamma", "Multiply LR by", "number", "float", TRAINING, 0.0, 1.0, low_open=True, step=0.1,
          applies=_when("scheduler", "step"), number_format="%.3f"),
    Field("batch_size", "Batch size", "number", "int", TRAINING, 1, MAX_BATCH_SIZE, step=16),
    Field("epochs", "Epochs", "number", "int", TRAINING, 1, MAX_EPOCHS, step=5,
          key=_own_value_for_images("epochs"), key_defaults=(("epochs_images", 10),)),
    Field("seed", "Seed", "number", "int", TRAINING, 0, 2**31 - 1, step=1),
    Field("stats_every", "Histograms & layer stats every N batches", "number", "int", TRAINING, 1, 10_000, step=5),
    Field("pace", "Pace", "radio", "choice", TRAINING, options=PACES,
          help="Watchable stretches a short run to about 20 s so you can see it learn (the default spiral run "
               "takes under a second otherwise); a run that takes longer anyway is never slowed. Only the wall "
               "clock changes, not what is learned. Switch a running run to full speed from its page."),
)


def fields_for(values: dict) -> list[Field]:
    """The fields shown for these choices, in sidebar order (one entry per setting)."""
    return [field for field in FIELDS if field.applies(values)]


def _field_for(name: str, values: dict) -> Field | None:
    return next((field for field in FIELDS if field.name == name and field.applies(values)), None)


def widget_values(config: RunConfig) -> dict:
    """Sidebar widget keys -> values that show `config` (presets, a refreshed page)."""
    values = config.to_dict()
    return {field.widget_key(values): field.widget_value(config) for field in fields_for(values)}


def default_widget_values() -> dict:
    """Every widget key's first value, including those of controls hidden by the defaults."""
    defaults = RunConfig()
    values = {}
    for field in FIELDS:
        values[field.widget_key(defaults.to_dict())] = field.widget_value(defaults)
        for widget_key, value in field.key_defaults:
            values[widget_key] = f"{value:g}" if field.widget == "text" else value
    return values


def sidebar_defaults(dataset: str, **changes) -> RunConfig:
    """The config a fresh sidebar shows once `dataset` is chosen (each dataset's own defaults),
    with `changes` on top (mnist_idx needs a mnist_path). Raises ConfigError if that is invalid."""
    widgets = default_widget_values()
    chosen = {**RunConfig().to_dict(), "dataset": dataset, **changes}
    raw = {field.name: widgets[field.widget_key(chosen)] for field in fields_for(chosen)
           if field.widget_key(chosen) in widgets}
    config, errors = parse_run_config({**raw, "dataset": dataset, **changes})
    if errors:
        raise ConfigError(errors)
    return config


def validate(config: RunConfig) -> dict[str, str]:
    """Messages for every shown field that is wrong, keyed by field name; empty when all is well."""
    errors: dict[str, str] = {}
    values = config.to_dict()
    for name in values:
        field = _field_for(name, values)
        if field is None:
            continue
        try:
            field.check(values[name])
        except ValueError as error:
            errors.setdefault(name, str(error))
    try:
        _number(config.val_fraction, "Validation fraction", float, 0.05, 0.5)
    except ValueError as error:
        errors["val_fraction"] = str(error)
    if config.model == "cnn" and config.dataset in POINT_DATASETS:
        errors["model"] = f"A CNN needs images: pick MNIST-like or MNIST, or use the MLP for {DATASETS[config.dataset]}"
    if config.dataset == "mnist_idx" and not str(config.mnist_path).strip():
        errors["mnist_path"] = "Type the folder that holds train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)"
    if not errors and config.batch_size > config.train_samples:
        errors["batch_size"] = (
            f"Batch size {config.batch_size} is larger than the training set ({config.train_samples} samples); "
            f"use at most {config.train_samples}"
        )
    return errors


def parse_run_config(raw: dict) -> tuple[RunConfig | None, dict[str, str]]:
    """Raw sidebar values -> (RunConfig, {}) or (None, {field: message}).

    Text fields (hidden_sizes, cnn_channels, lr, ...) may arrive as strings; numbers are
    converted here, so a typo becomes a message next to its control, not a traceback.
    Messages of fields that the choices hide (CNN channels for an MLP) do not count.
    """
    defaults = RunConfig()
    chosen = {**defaults.to_dict(), **raw}  # what decides which fields are shown
    errors: dict[str, str] = {}
    values: dict = {}
    for f in fields(RunConfig):
        default = getattr(defaults, f.name)
        value = raw.get(f.name, default)
        field = _field_for(f.name, chosen)
        label = field.label if field is not None else f.name
        try:
            if f.name in ("hidden_sizes", "cnn_channels"):
                value = parse_layer_sizes(value if isinstance(value, str) else ",".join(map(str, value)), label)
            elif isinstance(default, str):
                value = str(value) if value is not None else ""
            elif isinstance(default, int):
                value = int(_number(value, label, int))
            elif isinstance(default, float):
                value = float(_number(value, label, float))
        except ValueError as error:
            if field is not None:
                errors[f.name] = str(error)
            value = default
        values[f.name] = value
    config = RunConfig(**values)
    for name, message in validate(config).items():
        errors.setdefault(name, message)
    # Checked here, where the user types it, not in validate(): a stored config may name a
    # folder of another machine and must still load.
    if config.dataset == "mnist_idx" and "mnist_path" not in errors:
        folder = Path(config.mnist_path.strip()).expanduser()
        try:
            found = folder.is_dir()
        except OSError as error:  # e.g. a name longer than the filesystem allows
            found, reason = False, f" ({error.strerror})"
        else:
            reason = ""
        if not found:
            errors["mnist_path"] = (f"No folder at {_short(str(folder))}{reason}; type the folder that holds the "
                                    "MNIST IDX files")
    if not errors:
        return config, {}
    return None, errors
