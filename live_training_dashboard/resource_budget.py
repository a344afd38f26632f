"""How much memory and time a run's settings ask for, judged from shapes before anything is built.

The sidebar allows wide ranges (up to 1,000,000 images, 12 layers of 4,096 units); whether a
setting fits depends on the machine, not on a digit count. A run is refused with a message when
its estimate exceeds BUDGET_FRACTION of the memory available now, or when preparing its data
would take longer than MAX_PREPARE_SECONDS.

The estimate counts what a worker holds while it trains (measured on this project's models):
- the dataset as float32, plus the train/validation copies the split makes, plus the drawing's
  temporaries for procedural digits (measured: 1.35 GB peak for 200,000 images, estimated 1.4 GB);
- weights, gradients, the optimizer's state (Adam/AdamW: 2 tensors per weight, SGD with
  momentum: 1), the stats batch's copy of the weights and the host copy a weight snapshot takes;
- one training batch's activations and their gradients, and one validation batch's activations.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the page reads this module without loading torch for it
    from neural_network import LayerInfo as LayerShape

BUDGET_FRACTION = 0.25
BUDGET_VARIABLE = "DASHBOARD_MEMORY_BUDGET_MB"  # a fixed budget instead (a shared server, a test)
MAX_PREPARE_SECONDS = 60.0  # a minute of "Preparing…" before the first batch is the most a learner should wait
# Drawing procedural digits: 200,000 images took 33 s on the 2-vCPU Xeon this was tuned on.
MNIST_LIKE_SECONDS_PER_IMAGE = 33.0 / 200_000
MNIST_LIKE_TEMPORARY_BYTES = 170 << 20  # the renderer's working set (64 images at a time)
FLOAT_BYTES = 4
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1}  # SGD keeps a momentum buffer when momentum > 0
VAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Estimate:
    parameters: int
    dataset_bytes: int
    model_bytes: int
    activation_bytes: int
    prepare_seconds: float

    @property
    def total_bytes(self) -> int:
        return self.dataset_bytes + self.model_bytes + self.activation_bytes


def estimate(config, layers: list[LayerShape], samples: int) -> Estimate:
    """config: a RunConfig; layers: the model's layers with output shapes and parameter counts
    (training_setup.describe_config); samples: how many samples the dataset will hold."""
    sample_floats = math.prod(layers[0].output_shape) if layers else 0
    dataset = samples * (sample_floats + 1) * FLOAT_BYTES * 2  # the tensors, and the split's copies
    if config.dataset == "mnist_like":
        dataset += MNIST_LIKE_TEMPORARY_BYTES
    elif config.dataset == "mnist_idx":
        dataset += samples * sample_floats  # the raw bytes read before scaling to float32
    parameters = sum(layer.param_count for layer in layers)
    states = OPTIMIZER_STATES.get(config.optimizer, 1)
    if config.optimizer == "sgd" and not config.momentum:
        states = 0
    model = parameters * FLOAT_BYTES * (1 + 1 + states + 2)  # weights, grads, states, stats + snapshot copies
    per_sample = sum(math.prod(layer.output_shape) for layer in layers[1:])
    activations = per_sample * FLOAT_BYTES * (2 * min(config.batch_size, samples) + min(VAL_BATCH_SIZE, samples))
    prepare = samples * MNIST_LIKE_SECONDS_PER_IMAGE if config.dataset == "mnist_like" else 0.0
    return Estimate(parameters, dataset, model, activations, prepare)


def available_memory() -> int:
    """Bytes of memory available for new work now (Linux: MemAvailable), else the machine's total."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse on a guess


def _size(count: float) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1024:.0f} KB"


def budget_problems(config, layers: list[LayerShape], samples: int, available: int | None = None) -> list[str]:
    """Plain-words reasons this run would not fit, with what to change; empty when it fits."""
    found = estimate(config, layers, samples)
    available = available_memory() if available is None else available
    budget = BUDGET_FRACTION * available
    where = f"{BUDGET_FRACTION:.0%} of the {_size(available)} available now"
    problems = []
    fixed = os.environ.get(BUDGET_VARIABLE, "").strip()
    if fixed:
        try:
            megabytes = float(fixed)
        except ValueError:
            megabytes = math.nan
        if not (math.isfinite(megabytes) and megabytes > 0):
            return [f"{BUDGET_VARIABLE}={fixed!r} is not a memory budget: set it to a number of megabytes "
                    f"above 0 (e.g. 4000), or unset it for {BUDGET_FRACTION:.0%} of the available memory."]
        budget, where = megabytes * (1 << 20), f"set by {BUDGET_VARIABLE}"
    if found.total_bytes > budget:
        parts = {"the data": found.dataset_bytes, "the model and its optimizer": found.model_bytes,
                 "one batch's activations": found.activation_bytes}
        largest = max(parts, key=parts.get)
        problems.append(
            f"This run needs about {_size(found.total_bytes)} of memory ({found.parameters:,} parameters; "
            f"most of it {largest}, {_size(parts[largest])}), over the budget of {_size(budget)} "
            f"({where}). Use fewer or narrower layers, fewer images or a smaller batch.")
    if found.prepare_seconds > MAX_PREPARE_SECONDS:
        fits = int(MAX_PREPARE_SECONDS / MNIST_LIKE_SECONDS_PER_IMAGE)
        problems.append(
            f"Drawing {samples:,} digits would take about {found.prepare_seconds:.0f} s before training starts "
            f"(limit {MAX_PREPARE_SECONDS:.0f} s): use at most {fits:,} images.")
    return problems
