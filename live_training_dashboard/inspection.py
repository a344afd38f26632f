"""What a model predicts, for the Predictions tab: a decision boundary over the 2-D plane,
and validation predictions for a confusion matrix and a gallery of mistakes.

Runs on a copy of the model loaded with weights the training thread published, in eval
mode and without gradients, so it never touches the model being trained.
"""

from __future__ import annotations

import numpy as np
import torch

GRID_RESOLUTION = 120
MAX_VAL_SAMPLES = 2000


def _plane(points: torch.Tensor, resolution: int, margin: float):
    """xs, ys and the meshgrid of a resolution x resolution plane around `points` (N, 2)."""
    points = points.detach().cpu().float()
    low, high = points.min(0).values, points.max(0).values
    pad = (high - low) * margin
    xs = torch.linspace(float(low[0] - pad[0]), float(high[0] + pad[0]), resolution)
    ys = torch.linspace(float(low[1] - pad[1]), float(high[1] + pad[1]), resolution)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, grid_x, grid_y


@torch.no_grad()
def decision_grid(model: torch.nn.Module, points: torch.Tensor, resolution: int = GRID_RESOLUTION, margin: float = 0.15):
    """Predicted class and confidence on a resolution x resolution grid around `points` (N, 2).

    One batched forward pass. Returns xs (R,), ys (R,), classes (R, R), confidence (R, R).
    """
    xs, ys, grid_x, grid_y = _plane(points, resolution, margin)
    probabilities = torch.softmax(model(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], 1)), dim=1)
    confidence, classes = probabilities.max(1)
    return (xs.numpy(), ys.numpy(), classes.reshape(resolution, resolution).numpy(),
            confidence.reshape(resolution, resolution).numpy())


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Predicted classes for (at most MAX_VAL_SAMPLES of) `inputs`."""
    inputs = inputs[:MAX_VAL_SAMPLES].cpu()
    predictions = [model(inputs[i: i + batch_size]).argmax(1) for i in range(0, len(inputs), batch_size)]
    return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(true class, predicted class) counts."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels)[: len(predictions)], predictions), 1)
    return counts


NEURON_RESOLUTION = 28  # per unit: 64 units x 3 layers stay under 1 MB a refresh
MAX_NEURONS_PER_LAYER = 64


@torch.no_grad()
def neuron_outputs(model: torch.nn.Module, points: torch.Tensor, resolution: int = NEURON_RESOLUTION,
                   margin: float = 0.15) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    """Every hidden unit's output over the input plane (TensorFlow Playground's neuron view).

    The grid is the decision boundary's, coarser. Returns xs (R,), ys (R,) and, per hidden layer
    in order, (layer name, outputs (units, R, R)) read after its activation."""
    from neural_network import ACTIVATIONS  # the activation modules a MonitoredMLP uses

    kinds = tuple(ACTIVATIONS.values())
    xs, ys, grid_x, grid_y = _plane(points, resolution, margin)
    captured: list[tuple[str, torch.Tensor]] = []
    hooks = []
    names = dict(model.named_modules())
    for name, module in names.items():
        if isinstance(module, kinds):
            layer = name.replace("act", "fc", 1) if name.startswith("act") else name
            hooks.append(module.register_forward_hook(
                lambda _module, _inputs, output, layer=layer: captured.append((layer, output.detach()))))
    try:
        model(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], 1))
    finally:
        for hook in hooks:
            hook.remove()
    layers = [(name, output.T.reshape(-1, resolution, resolution).numpy()) for name, output in captured
              if output.ndim == 2]
    return xs.numpy(), ys.numpy(), layers
