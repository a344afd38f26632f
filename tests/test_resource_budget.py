"""Settings that would not fit are refused before anything is allocated, with what to change."""

import pytest

from live_training_dashboard import resource_budget
from live_training_dashboard.run_config import ConfigError, RunConfig
from live_training_dashboard.training_setup import budget_problems, build_training, describe_config, sample_count

GB = 1 << 30


def test_the_estimate_counts_weights_optimizer_state_data_and_activations():
    config = RunConfig(dataset="mnist_like", num_samples=6000, hidden_sizes=(4096,) * 12)
    found = resource_budget.estimate(config, describe_config(config), sample_count(config))
    assert found.parameters == sum(layer.param_count for layer in describe_config(config)) > 185_000_000
    assert found.model_bytes == found.parameters * 4 * 6  # weights, grads, Adam's 2 states, 2 copies
    assert found.dataset_bytes == 6000 * 785 * 4 * 2 + resource_budget.MNIST_LIKE_TEMPORARY_BYTES
    assert found.activation_bytes > 0
    plain_sgd = resource_budget.estimate(RunConfig(optimizer="sgd", momentum=0.0), describe_config(RunConfig()), 1500)
    assert plain_sgd.model_bytes == plain_sgd.parameters * 4 * 4


def test_a_model_too_big_for_the_budget_is_refused_with_what_to_change():
    config = RunConfig(dataset="mnist_like", hidden_sizes=(4096,) * 12)
    [message] = budget_problems(config, available=8 * GB)
    assert "about 4.8 GB" in message and "the model and its optimizer" in message
    assert "budget of 2.0 GB (25% of the 8.0 GB available now)" in message and "narrower layers" in message
    assert budget_problems(config, available=32 * GB) == []  # the same settings fit a bigger machine
    assert budget_problems(RunConfig(), available=1 * GB) == []  # the defaults fit anywhere


def test_digits_that_take_minutes_to_draw_are_refused_with_how_many_would_do():
    [message] = budget_problems(RunConfig(dataset="mnist_like", num_samples=1_000_000, model="cnn"), available=64 * GB)
    assert message == ("Drawing 1,000,000 digits would take about 165 s before training starts (limit 60 s): "
                       "use at most 363,636 images.")
    assert budget_problems(RunConfig(dataset="mnist_like", num_samples=200_000, model="cnn"), available=64 * GB) == []


def test_a_million_digits_is_refused_by_memory_where_memory_is_short():
    problems = budget_problems(RunConfig(dataset="mnist_like", num_samples=1_000_000), available=16 * GB)
    assert len(problems) == 2 and "most of it the data, 6.0 GB" in problems[0]


def test_a_fixed_budget_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv(resource_budget.BUDGET_VARIABLE, "100")
    [message] = budget_problems(RunConfig(hidden_sizes=(4096, 4096)), available=64 * GB)
    assert "budget of 100.0 MB (set by DASHBOARD_MEMORY_BUDGET_MB)" in message


@pytest.mark.parametrize("value", ["lots", "-5", "0", "nan"])
def test_a_fixed_budget_that_is_not_a_number_of_megabytes_is_a_message(monkeypatch, value):
    monkeypatch.setenv(resource_budget.BUDGET_VARIABLE, value)
    [message] = budget_problems(RunConfig(), available=64 * GB)
    assert message.startswith(f"DASHBOARD_MEMORY_BUDGET_MB={value!r} is not a memory budget")


def test_the_worker_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr(resource_budget, "available_memory", lambda: 256 << 20)
    with pytest.raises(ConfigError, match="over the budget of 64.0 MB"):
        build_training(RunConfig(hidden_sizes=(4096, 4096)))
