"""MonitoredMLP and MonitoredCNN: small classifiers that can watch themselves train.

Each model names its weighted layers ("fc1", "conv2", ...) and pairs each with the activation
that follows it. When a TrainingMonitor asks for a capture (every N batches), forward hooks on
those activations measure them and arrange for the gradient flowing back through each to be
measured too. A model can describe its own architecture and remove all of its hooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}

# Order of the numbers an activation capture holds, per layer.
ACTIVATION_STATS = ("act_mean", "act_std", "dead_fraction", "saturation", "act_grad_norm")

# A tanh/sigmoid unit within 3% of its output range of an asymptote passes almost no gradient.
SATURATION_MARGIN = 0.03


@dataclass(frozen=True)
class LayerInfo:
    """One row of the architecture: what a diagram or table shows."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    param_count: int
    activation: str | None = None
    monitored: bool = False


def _check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive whole number, got {value!r}")
    return value


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")
    return activation


def _check_dropout(dropout: float) -> float:
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


class _KeptOutputs(dict):
    """Layer outputs kept for their gradients during a capture. A copy or a pickle of the model
    holds none and is not capturing (None): a non-leaf tensor can be neither deep-copied nor
    pickled (an EMA copy taken between a stats batch's forward and log_batch must not fail), and
    a copy nobody ends a capture of must not keep outputs."""

    def __deepcopy__(self, memo) -> None:
        return None

    def __reduce__(self):
        return _no_capture, ()


def _no_capture() -> None:
    return None


class ActivationCapture:
    """Activation capture of any nn.Module (ModuleWatcher): `_watched` lists (layer name, module
    whose output is measured, activation name); a capture registers forward hooks on those
    modules and fills captured_activations / captured_activation_grads. The models here capture
    from their own forward instead (MonitoredModel)."""

    _monitored: dict[str, nn.Module]
    _activation_of: dict[str, str | None]
    _watched: list[tuple[str, nn.Module, str | None]]
    _hook_handles: list
    monitoring_enabled: bool
    # CPU tensors are measured with numpy (4-number arrays, float norms), others stay on their device.
    captured_activations: dict[str, torch.Tensor | np.ndarray]
    captured_activation_grads: dict[str, torch.Tensor | float]

    @property
    def monitored_layers(self) -> dict[str, nn.Module]:
        """Weighted layers by readable name, in forward order."""
        return dict(self._monitored)

    @property
    def layer_activations(self) -> dict[str, str | None]:
        return dict(self._activation_of)

    @property
    def capturing(self) -> bool:
        """Whether a capture is on (the next forward/backward pass is measured)."""
        return bool(self._hook_handles)

    def capture(self, enabled: bool) -> None:
        """Measure activations and their gradients on the next forward/backward pass.

        The hooks exist only while a capture is on: any registered hook sends every module
        call down PyTorch's slower hook path, which costs a small MLP ~3% per batch even
        when the hook returns at once.
        """
        if enabled and self.monitoring_enabled and not self._hook_handles:
            self.captured_activations = {}
            self.captured_activation_grads = {}
            self._hook_handles = [
                module.register_forward_hook(self._make_forward_hook(name, activation))
                for name, module, activation in self._watched
            ]
        elif not enabled:
            self.remove_hooks()

    def remove_hooks(self) -> None:
        """Detach every hook this model registered, leaving a plain nn.Module."""
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []

    def disable_monitoring(self) -> None:
        """Remove the hooks and never register them again: a plain model from now on."""
        self.remove_hooks()
        self.monitoring_enabled = False

    def _make_forward_hook(self, name: str, activation: str | None):
        def forward_hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            try:
                self.captured_activations[name] = _activation_statistics(output.detach(), activation)
            except Exception:  # a tensor these statistics cannot read (sparse, quantized): not measured
                return
            if output.requires_grad:
                def gradient_hook(grad):
                    self.captured_activation_grads[name] = _norm(grad.detach())

                output.register_hook(gradient_hook)

        return forward_hook


class MonitoredModel(ActivationCapture, nn.Module):
    """Shared monitoring machinery; subclasses build layers, call _monitor(...) and, in forward,
    _keep(name, output) for each measured output.

    A capture registers no hook: forward keeps the measured outputs (and their gradients, with
    retain_grad) while one is on, and capture(False) measures them all at once. On the spiral MLP
    the hooks made a stats batch's forward and backward ~0.3 ms slower (PyTorch's hook path for
    every module call), and measuring inside the forward, between torch ops, cost ~0.1 ms more
    than the same numpy calls together (the first of a stretch of numpy calls after torch's ran
    at 160 us, the next ones at ~35)."""

    input_shape: tuple[int, ...]
    # Outputs kept during a capture, by layer name, with their gradients (retain_grad: a C++ hook;
    # a Python hook per output cost the spiral MLP's stats batch ~0.2 ms more) until the capture
    # ends (TrainingMonitor ends it after the step in fit()). Any nn.Module (ModuleWatcher) keeps
    # per-output hooks: kept gradients of a large model's activations could hold gigabytes
    # through its step.
    _retained: _KeptOutputs | None = None  # None: no capture on

    def __init__(self) -> None:
        super().__init__()
        self._monitored: dict[str, nn.Module] = {}
        self._activation_of: dict[str, str | None] = {}
        self._retained = None
        self.monitoring_enabled = True
        # name -> tensor of ACTIVATION_STATS (without the gradient) and name -> gradient norm
        self.captured_activations: dict[str, torch.Tensor] = {}
        self.captured_activation_grads: dict[str, torch.Tensor] = {}

    @property
    def capturing(self) -> bool:
        return self._retained is not None

    def capture(self, enabled: bool) -> None:
        """Measure activations and their gradients on the next forward/backward pass; with
        False, measure what the pass kept (after backward: the gradients are read then)."""
        if enabled:
            if self.monitoring_enabled and self._retained is None:
                self.captured_activations, self.captured_activation_grads = {}, {}
                self._retained = _KeptOutputs()
            return
        kept, self._retained = self._retained, None
        for name, output in (kept or {}).items():
            try:
                self.captured_activations[name] = _activation_statistics(output.detach(), self._activation_of[name])
            except Exception:  # a tensor these statistics cannot read (sparse, quantized): not measured
                pass
            if output.grad is not None:
                self.captured_activation_grads[name] = _norm(output.grad.detach())
                output.grad = None  # the caller may keep the output (logits): not its gradient

    def remove_hooks(self) -> None:
        """End a capture without measuring it (there are no hooks to remove)."""
        self._retained = None

    def _keep(self, name: str, output: torch.Tensor) -> None:
        """During a capture: keep a measured layer's output, and its gradient from backward."""
        self._retained[name] = output
        if output.requires_grad:
            output.retain_grad()

    # -- building ------------------------------------------------------------------
    def _monitor(self, name: str, layer: nn.Module, activation: str | None):
        """A weighted layer whose activation's output forward keeps (the output layer: its logits)."""
        self._monitored[name] = layer
        self._activation_of[name] = activation

    # -- self-description ----------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> list[LayerInfo]:
        """Layers in forward order with output shape (for one sample) and parameter count."""
        rows: list[LayerInfo] = []
        monitored_names = {id(m): n for n, m in self._monitored.items()}
        leaves = [(n, m) for n, m in self.named_modules() if n and not list(m.children())]
        handles = []
        for name, module in leaves:
            def record(module, inputs, output, name=name):
                params = sum(p.numel() for p in module.parameters(recurse=False))
                rows.append(
                    LayerInfo(
                        name=name,
                        kind=type(module).__name__,
                        output_shape=tuple(output.shape[1:]),
                        param_count=params,
                        activation=self._activation_of.get(name),
                        monitored=id(module) in monitored_names,
                    )
                )

            handles.append(module.register_forward_hook(record))
        was_training, kept = self.training, self._retained
        self._retained = None
        try:
            self.eval()
            device = next(self.parameters()).device
            with torch.no_grad():
                self(torch.zeros((1, *self.input_shape), device=device))
        finally:
            for handle in handles:
                handle.remove()
            self.train(was_training)
            self._retained = kept
        return [LayerInfo("input", "Input", tuple(self.input_shape), 0)] + rows


def flat_host_values(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's values as a flat float32 numpy view (a copy only for other dtypes): the
    fewest torch calls, each a few microseconds of dispatch on a stats batch's many tensors."""
    tensor = tensor.detach()
    if tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.numpy().reshape(-1)


def _norm(values: torch.Tensor) -> torch.Tensor | float:
    """L2 norm: a float for a CPU tensor (numpy, no dispatch cost), a 0-d tensor elsewhere."""
    if values.device.type != "cpu":
        return torch.linalg.vector_norm(values)
    flat = flat_host_values(values)
    return math.sqrt(float(np.dot(flat, flat)))


def _activation_statistics(values: torch.Tensor, activation: str | None) -> torch.Tensor | np.ndarray:
    """[mean, std, dead fraction, saturation] of one batch's activations: a tensor on the
    values' device, or a float64 numpy array for CPU values (_activation_statistics_host).

    A unit is a feature (MLP) or a channel (CNN). Dead: ReLU output exactly zero for every
    sample (leaky ReLU: negative for every sample). Saturated: tanh/sigmoid output within
    SATURATION_MARGIN of an asymptote. Statistics that do not apply are NaN.
    """
    if values.device.type == "cpu":
        return _activation_statistics_host(values, activation)
    return _activation_statistics_device(values, activation)


def _activation_statistics_device(values: torch.Tensor, activation: str | None) -> torch.Tensor:
    """_activation_statistics in torch ops, nothing read to the host (GPU)."""
    values = values.float()
    count = values.numel()
    if count == 0:
        return values.new_full((4,), math.nan)
    # Mean and std from the sum and the sum of squares: two fast reductions (std_mean is
    # ~15x slower on CPU for a conv layer's activations).
    mean = values.sum() / count
    squares = torch.linalg.vector_norm(values).square()
    std = ((squares - count * mean.square()).clamp_min(0.0) / max(count - 1, 1)).sqrt()
    nan = values.new_full((), math.nan)
    dead = saturation = nan
    if activation in ("relu", "leaky_relu"):
        # A unit is dead when its largest output over the batch is <= 0 (ReLU: all zeros).
        sample_dims = tuple(d for d in range(values.dim()) if d != 1)
        dead = (values.amax(dim=sample_dims) <= 0).float().mean()
    elif activation == "tanh":
        saturation = (values.abs() > 1.0 - 2 * SATURATION_MARGIN).float().mean()
    elif activation == "sigmoid":
        saturation = ((values - 0.5).abs() > 0.5 - SATURATION_MARGIN).float().mean()
    return torch.stack([mean, std, dead, saturation])


def _activation_statistics_host(values: torch.Tensor, activation: str | None) -> np.ndarray:
    """_activation_statistics of a CPU tensor with numpy: the same numbers, ~5x faster for a
    small layer, whose ~15 torch ops cost far more in dispatch than in arithmetic. Counts, not
    means, for the fractions (np.mean of a mask costs ~4x a count_nonzero).
    tests/test_neural_network.py checks both agree."""
    array = values.float().numpy()  # a view of the tensor's memory
    flat = array.reshape(-1)
    count = flat.size
    result = np.full(4, math.nan)
    if count == 0:
        return result
    with np.errstate(all="ignore"):  # NaN/Inf activations give NaN/Inf statistics, as on the device
        if activation == "relu":
            # ReLU outputs are >= 0, so a unit is dead (all zeros) exactly when its sum is 0: one
            # pass of per-unit sums gives the mean and the dead units, where a sum and a max took
            # two (a conv layer's statistics: 227 us against 461 here).
            unit_sums = _unit_sums(array)
            total = float(unit_sums.sum(dtype=np.float64))
            result[2] = np.count_nonzero(unit_sums <= 0) / unit_sums.size
        else:
            total = float(flat.sum())
        mean = total / count
        squares = float(np.dot(flat, flat))
        result[0] = mean
        result[1] = math.sqrt(max(squares - count * mean * mean, 0.0) / max(count - 1, 1))
        if activation == "leaky_relu":
            sample_axes = tuple(d for d in range(array.ndim) if d != 1)
            unit_max = array.max(axis=sample_axes) if sample_axes else array
            result[2] = np.count_nonzero(unit_max <= 0) / unit_max.size
        elif activation == "tanh":
            result[3] = np.count_nonzero(np.abs(flat) > 1.0 - 2 * SATURATION_MARGIN) / count
        elif activation == "sigmoid":
            result[3] = np.count_nonzero(np.abs(flat - 0.5) > 0.5 - SATURATION_MARGIN) / count
    return result


def _unit_sums(array: np.ndarray) -> np.ndarray:
    """Per-unit sums over the batch (and a channel's positions) of one layer's float32 outputs."""
    if array.ndim <= 2:  # (batch, features), or (batch,): one unit. float32 sums: 1.9 us against 3.4
        return np.asarray(array.sum(axis=0))
    # A conv layer's (batch, channels, positions): torch's reduction over the contiguous last
    # axis (on a view of the same memory) took 129 us against numpy's 190 for 64x16x28x28 here.
    per_sample = torch.from_numpy(array).reshape(array.shape[0], array.shape[1], -1).sum(dim=2)
    return per_sample.numpy().sum(axis=0, dtype=np.float64)


class MonitoredMLP(MonitoredModel):
    """input -> [Linear -> activation -> dropout] x len(hidden_sizes) -> Linear -> logits.

    Image inputs are flattened, so the same model trains on spiral points or 28x28 digits.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_sizes,
        num_classes: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive_int(input_dim, "input_dim")
        _check_positive_int(num_classes, "num_classes")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        hidden_sizes = list(hidden_sizes) if not isinstance(hidden_sizes, (str, bytes)) else hidden_sizes
        if not isinstance(hidden_sizes, list) or not hidden_sizes:
            raise ValueError("hidden_sizes must list at least one layer width, e.g. [128, 128]")
        for index, width in enumerate(hidden_sizes, start=1):
            _check_positive_int(width, f"hidden layer {index} width")
        self.activation = _check_activation(activation)
        self.dropout_rate = _check_dropout(dropout)
        self.input_shape = (input_dim,)
        self.hidden_sizes = tuple(hidden_sizes)
        self.num_classes = num_classes

        self._blocks: list[tuple[str, nn.Module, nn.Module | None, nn.Module | None]] = []
        widths = [input_dim, *hidden_sizes]
        for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:]), start=1):
            linear, act = nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()
            drop = nn.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None
            self.add_module(f"fc{index}", linear)
            self.add_module(f"act{index}", act)
            if drop is not None:
                self.add_module(f"dropout{index}", drop)
            self._blocks.append((f"fc{index}", linear, act, drop))
            self._monitor(f"fc{index}", linear, activation)
        output_name = f"fc{len(hidden_sizes) + 1}"
        output = nn.Linear(widths[-1], num_classes)
        self.add_module(output_name, output)
        self._blocks.append((output_name, output, None, None))
        self._monitor(output_name, output, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            x = x.flatten(1)
        for name, linear, act, drop in self._blocks:
            x = linear(x)
            if act is not None:
                x = act(x)
            if self._retained is not None:  # the activation's output (the logits for the output layer)
                self._keep(name, x)
            if drop is not None:
                x = drop(x)
        return x


class MonitoredCNN(MonitoredModel):
    """[Conv3x3 -> activation -> MaxPool2] per entry of channels -> Linear(hidden) -> Linear(classes)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels=(16, 32),
        hidden_size: int = 128,
        activation: str = "relu",
        dropout: float = 0.0,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(num_classes, "num_classes")
        _check_positive_int(hidden_size, "hidden_size")
        _check_positive_int(image_size, "image_size")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        channels = list(channels)
        if not channels:
            raise ValueError("channels must list at least one convolution width, e.g. [16, 32]")
        for index, width in enumerate(channels, start=1):
            _check_positive_int(width, f"conv layer {index} channels")
        if image_size // 2 ** len(channels) < 1:
            raise ValueError(
                f"{len(channels)} conv+pool stages halve a {image_size}px image to nothing; "
                f"use at most {int(math.log2(image_size))}"
            )
        self.activation = _check_activation(activation)
        self.dropout_rate = _check_dropout(dropout)
        self.input_shape = (in_channels, image_size, image_size)
        self.num_classes = num_classes

        self._conv_blocks: list[tuple[str, nn.Module, nn.Module, nn.Module]] = []
        previous, side = in_channels, image_size
        for index, width in enumerate(channels, start=1):
            conv, act, pool = nn.Conv2d(previous, width, 3, padding=1), ACTIVATIONS[activation](), nn.MaxPool2d(2)
            self.add_module(f"conv{index}", conv)
            self.add_module(f"act_conv{index}", act)
            self.add_module(f"pool{index}", pool)
            self._conv_blocks.append((f"conv{index}", conv, act, pool))
            self._monitor(f"conv{index}", conv, activation)
            previous, side = width, side // 2
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(previous * side * side, hidden_size)
        self.act_fc1 = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None
        self.fc2 = nn.Linear(hidden_size, num_classes)
        self._monitor("fc1", self.fc1, activation)
        self._monitor("fc2", self.fc2, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, conv, act, pool in self._conv_blocks:
            x = act(conv(x))
            if self._retained is not None:
                self._keep(name, x)
            x = pool(x)
        x = self.act_fc1(self.fc1(self.flatten(x)))
        if self._retained is not None:
            self._keep("fc1", x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.fc2(x)
        if self._retained is not None:
            self._keep("fc2", x)
        return x


# --------------------------------------------------------------------------- any nn.Module

ACTIVATION_KINDS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu", nn.SiLU: "silu", nn.ELU: "elu", nn.Softplus: "softplus", nn.Mish: "mish",
}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a user wrote, inside torch.compile's and DDP's/DataParallel's wrappers, so
    layer names match a single-process run ("fc1", never "module.fc1" or "_orig_mod.fc1")."""
    for _ in range(8):
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            break
    return model


class ModuleWatcher(ActivationCapture):
    """What MonitoredMLP/CNN know of themselves, for any nn.Module.

    Layers: every module that holds trainable parameters of its own (Linear, Conv, Embedding,
    LayerNorm, MultiheadAttention's input projection, ...), named as in named_modules().
    Activations: an activation module (nn.ReLU, nn.GELU, ...) is measured as the activation of
    the nearest layer registered before it. Activations applied as functions (F.relu inside
    forward) cannot be seen: those layers' activation statistics stay "not measured".
    """

    def __init__(self, model: nn.Module):
        self.model = unwrap_model(model)
        self._monitored: dict[str, nn.Module] = {}
        self._activation_of: dict[str, str | None] = {}
        self._watched = []
        self._hook_handles = []
        self.monitoring_enabled = True
        self.captured_activations = {}
        self.captured_activation_grads = {}
        self._shape_handles: list = []
        self._output_shapes: dict[str, tuple[int, ...]] = {}
        last_layer = None
        for name, module in self.model.named_modules():
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                last_layer = name or "model"
                self._monitored[last_layer] = module
                self._activation_of[last_layer] = None
            kind = ACTIVATION_KINDS.get(type(module))
            if kind is not None and last_layer is not None and self._activation_of[last_layer] is None:
                self._activation_of[last_layer] = kind
                self._watched.append((last_layer, module, kind))

    def describe(self) -> list[LayerInfo]:
        """The layers and their parameter counts, from the module tree alone (no forward pass:
        the input shape of an arbitrary model is unknown, so output shapes are left empty; see
        watch_shapes)."""
        # A tied weight (a language model's embedding and output layer) is counted once, at the first
        # layer that holds it, so the parameters add up to the model's; the other says it is tied.
        holder: dict[int, str] = {}
        rows = []
        for name, module in self._monitored.items():
            own, tied_to = 0, []
            for p in module.parameters(recurse=False):
                if id(p) in holder:
                    tied_to.append(holder[id(p)])
                else:
                    holder[id(p)] = name
                    own += p.numel()
            kind = type(module).__name__ + (f" (tied to {', '.join(dict.fromkeys(tied_to))})" if tied_to else "")
            rows.append(LayerInfo(name, kind, (), own, self._activation_of.get(name), True))
        return rows

    def watch_shapes(self) -> None:
        """Note each layer's output shape (one sample: the first dimension dropped) in the next
        forward pass; take_shapes() reads them and removes the hooks. A root module with children
        that holds parameters of its own (a position embedding) is left out: its output is the
        whole model's, not theirs."""
        self.take_shapes()

        def hook_for(name):
            def note_shape(module, inputs, output):
                if isinstance(output, (tuple, list)):  # MultiheadAttention: (output, weights)
                    output = next((item for item in output if isinstance(item, torch.Tensor)), None)
                if isinstance(output, torch.Tensor) and output.dim() >= 1 and name not in self._output_shapes:
                    self._output_shapes[name] = tuple(int(size) for size in output.shape[1:])
            return note_shape

        whole_model_is_a_container = any(True for _ in self.model.children())
        self._shape_handles = [module.register_forward_hook(hook_for(name)) for name, module in self._monitored.items()
                               if module is not self.model or not whole_model_is_a_container]

    def disable_monitoring(self) -> None:
        super().disable_monitoring()
        self.take_shapes()

    def take_shapes(self) -> dict[str, tuple[int, ...]]:
        """The output shapes watch_shapes saw (empty if none), its hooks removed."""
        for handle in self._shape_handles:
            handle.remove()
        self._shape_handles = []
        shapes, self._output_shapes = self._output_shapes, {}
        return shapes


def layer_weight(module: nn.Module) -> nn.Parameter:
    """The tensor that stands for a layer in histograms: its `weight`, else its largest parameter."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, nn.Parameter) and weight.requires_grad:
        return weight
    return max((p for p in module.parameters(recurse=False) if p.requires_grad), key=lambda p: p.numel())
