import math

import numpy as np
import pytest
import torch
from torch import nn

from neural_network import (
    ACTIVATIONS,
    ModuleWatcher,
    MonitoredCNN,
    MonitoredMLP,
    _activation_statistics_device,
    _activation_statistics_host,
)


def test_mlp_names_layers_and_describes_itself():
    model = MonitoredMLP(2, [128, 64], 3)
    assert list(model.monitored_layers) == ["fc1", "fc2", "fc3"]
    rows = model.describe()
    linear_rows = [r for r in rows if r.kind == "Linear"]
    assert [(r.name, r.output_shape, r.param_count) for r in linear_rows] == [
        ("fc1", (128,), 2 * 128 + 128),
        ("fc2", (64,), 128 * 64 + 64),
        ("fc3", (3,), 64 * 3 + 3),
    ]
    assert rows[0].kind == "Input" and rows[0].output_shape == (2,)
    assert sum(r.param_count for r in rows) == model.parameter_count()
    assert all(r.monitored for r in linear_rows)


def test_cnn_describes_shapes_through_conv_and_pool():
    model = MonitoredCNN(1, 10, (16, 32), 128)
    shapes = {r.name: r.output_shape for r in model.describe()}
    assert shapes["conv1"] == (16, 28, 28) and shapes["pool1"] == (16, 14, 14)
    assert shapes["conv2"] == (32, 14, 14) and shapes["pool2"] == (32, 7, 7)
    assert shapes["fc1"] == (128,) and shapes["fc2"] == (10,)
    assert list(model.monitored_layers) == ["conv1", "conv2", "fc1", "fc2"]
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_sizes": []}, "at least one"),
        ({"hidden_sizes": [128, 0]}, "hidden layer 2 width"),
        ({"hidden_sizes": [128, -5]}, "positive whole number"),
        ({"hidden_sizes": [12.5]}, "positive whole number"),
        ({"hidden_sizes": "128,abc"}, "at least one"),
        ({"activation": "swish"}, "Unknown activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 1}, "num_classes"),
        ({"input_dim": 0}, "input_dim"),
    ],
)
def test_bad_mlp_specs_raise_clear_value_errors(kwargs, message):
    args = {"input_dim": 2, "hidden_sizes": [8], "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        MonitoredMLP(**args)


def test_bad_cnn_specs_raise_clear_value_errors():
    with pytest.raises(ValueError, match="conv layer 2 channels"):
        MonitoredCNN(channels=(16, 0))
    with pytest.raises(ValueError, match="halve"):
        MonitoredCNN(channels=(8,) * 6)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_trains_a_step(activation):
    model = MonitoredMLP(2, [16, 16], 3, activation=activation, dropout=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(8, 2)), torch.randint(0, 3, (8,)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_capture_measures_activations_and_their_gradients_only_when_asked():
    model = MonitoredMLP(4, [32, 32], 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    model(x)
    assert model.captured_activations == {} and not model.capturing
    model.capture(True)
    nn.functional.cross_entropy(model(x), y).backward()
    model.capture(False)
    assert set(model.captured_activations) == {"fc1", "fc2", "fc3"}
    assert set(model.captured_activation_grads) == {"fc1", "fc2", "fc3"}
    mean, std, dead, saturation = model.captured_activations["fc1"].tolist()
    hidden = torch.relu(model.fc1(x))
    assert mean == pytest.approx(hidden.mean().item(), rel=1e-5)
    assert std == pytest.approx(hidden.std().item(), rel=1e-4)
    assert dead == pytest.approx((hidden.max(0).values == 0).float().mean().item())
    assert saturation != saturation  # NaN: saturation does not apply to ReLU
    assert not model.capturing
    # The gradient norm is that of d loss / d (the activation's output), read at the capture's end.
    hidden = torch.relu(model.fc1(x)).detach().requires_grad_()
    rest = nn.Sequential(model.fc2, model.act2, model.fc3)
    nn.functional.cross_entropy(rest(hidden), y).backward()
    assert model.captured_activation_grads["fc1"] == pytest.approx(hidden.grad.norm().item(), rel=1e-5)


def test_a_model_copied_in_the_middle_of_a_capture_copies_and_captures():
    """Between a stats batch's forward and the end of its capture the model holds its outputs
    (non-leaf tensors, which deepcopy refuses): an EMA copy taken there must still work."""
    import copy
    import pickle

    model = MonitoredMLP(4, [16], 3)
    model.capture(True)
    logits = model(torch.randn(8, 4))
    twin = copy.deepcopy(model)
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters()))
    assert not twin.capturing and pickle.loads(pickle.dumps(model)).capturing is False
    twin(torch.randn(8, 4))  # a copy nobody ends a capture of keeps no outputs
    assert twin._retained is None
    nn.functional.cross_entropy(logits, torch.randint(0, 3, (8,))).backward()
    model.capture(False)
    assert set(model.captured_activation_grads) == {"fc1", "fc2"}


def test_any_modules_capture_measures_the_same_activation_gradients():
    """ModuleWatcher keeps per-output hooks (no gradient held through a large model's step), the
    models here keep the gradients until the capture ends: the same numbers either way."""
    model = MonitoredMLP(4, [32, 32], 3)
    watcher = ModuleWatcher(nn.Sequential(model.fc1, model.act1, model.fc2, model.act2, model.fc3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for capture in (model, watcher):
        capture.capture(True)
        forward = model if capture is model else watcher.model
        logits = forward(x)
        nn.functional.cross_entropy(logits, y).backward()
        capture.capture(False)
        if capture is model:  # its logits' gradient was kept for the capture: not left on them
            assert logits.retains_grad and logits.grad is None
    assert set(watcher.captured_activation_grads) == {"0", "2"}  # Sequential's names
    ours = [model.captured_activation_grads[name] for name in ("fc1", "fc2")]
    assert [watcher.captured_activation_grads[name] for name in ("0", "2")] == pytest.approx(ours, rel=1e-6)


@pytest.mark.parametrize("statistics", [_activation_statistics_host, _activation_statistics_device])
def test_dead_units_and_saturation_are_counted_per_unit(statistics):
    relu_out = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.5, 0.0]])  # units 0 and 3 never fire
    assert statistics(relu_out, "relu")[2].item() == pytest.approx(0.5)
    conv_out = torch.zeros(2, 4, 3, 3)
    conv_out[1, 2, 0, 0] = 1.0  # only channel 2 ever fires
    assert statistics(conv_out, "relu")[2].item() == pytest.approx(0.75)
    conv_out[0, 0, 2, 1] = 1e-30  # a tiny output is a live unit, however small
    assert statistics(conv_out, "relu")[2].item() == pytest.approx(0.5)
    tanh_out = torch.tensor([[0.99, 0.0], [-0.999, 0.5]])
    assert statistics(tanh_out, "tanh")[3].item() == pytest.approx(0.5)
    sigmoid_out = torch.tensor([[0.001, 0.5, 0.99, 0.6]])
    assert statistics(sigmoid_out, "sigmoid")[3].item() == pytest.approx(0.5)


@pytest.mark.parametrize("activation", [*ACTIVATIONS, None])
@pytest.mark.parametrize("shape", [(32, 64), (8, 6, 5, 5), (7,)])
def test_numpy_and_torch_activation_statistics_agree(activation, shape):
    """CPU captures use numpy; GPU ones torch. Both must give the same numbers, NaN/Inf included."""
    generator = torch.Generator().manual_seed(len(shape))
    values = torch.randn(shape, generator=generator) * 3
    if activation in ("relu", "leaky_relu"):
        values = values.clamp_min(0) if activation == "relu" else torch.where(values > 0, values, values * 0.01)
    elif activation in ("tanh", "sigmoid"):
        values = values.tanh() if activation == "tanh" else values.sigmoid()
    cases = [values, values.clone().index_put_((torch.tensor([0]),), torch.tensor(math.nan)),
             values.clone().index_put_((torch.tensor([0]),), torch.tensor(math.inf)), values[:0]]
    if values.dim() > 1:  # units 1 and 3 never fire (host ReLU counts them by their sums, torch by max)
        silent = values.clone()
        silent[:, 1] = silent[:, 3] = 0.0
        cases.append(silent)
    for case in cases:
        host = _activation_statistics_host(case, activation)
        device = _activation_statistics_device(case, activation).numpy()
        assert np.allclose(host, device, rtol=1e-4, atol=1e-6, equal_nan=True), (case.shape, host, device)


def test_removed_hooks_leave_a_plain_model():
    model = MonitoredMLP(2, [16], 3)
    model.capture(True)
    assert model.capturing
    model.disable_monitoring()
    model.capture(True)  # monitoring is off for good: no hook comes back
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks
    plain = nn.Sequential(model.fc1, model.act1, model.fc2)
    x = torch.randn(5, 2)
    assert torch.equal(model(x), plain(x))
    model(x).sum().backward()
    assert model.captured_activation_grads == {}
