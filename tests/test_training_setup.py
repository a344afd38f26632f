"""The architecture preview is worked out from shapes; it must say what the real model says."""

import pytest

from live_training_dashboard.run_config import RunConfig
from live_training_dashboard.training_setup import build_model, data_shape, describe_config


@pytest.mark.parametrize("config", [
    RunConfig(),
    RunConfig(hidden_sizes=(64, 32, 16), activation="tanh", dropout=0.3, num_classes=5),
    RunConfig(dataset="mnist_like", num_samples=3000, hidden_sizes=(256,), activation="gelu"),
    RunConfig(dataset="mnist_like", num_samples=3000, model="cnn", cnn_channels=(8, 16, 32), cnn_hidden=64,
              activation="leaky_relu", dropout=0.2),
    RunConfig(dataset="mnist_like", num_samples=3000, model="cnn", cnn_channels=(4,), activation="sigmoid"),
])
def test_the_preview_from_shapes_equals_describe_of_the_real_model(config):
    model = build_model(config, *data_shape(config))
    assert describe_config(config) == model.describe()


def test_a_huge_model_is_previewed_without_building_it():
    config = RunConfig(dataset="mnist_like", num_samples=3000, model="cnn", cnn_channels=(4096,) * 4, cnn_hidden=4096)
    layers = describe_config(config)  # a real one would take gigabytes
    assert sum(layer.param_count for layer in layers) > 400_000_000
