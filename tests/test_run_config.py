import json

import pytest

from live_training_dashboard.run_config import RunConfig, parse_layer_sizes, parse_run_config, validate


def test_defaults_are_valid_and_round_trip_through_json():
    config, errors = parse_run_config({})
    assert errors == {} and config == RunConfig()
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "raw, field, fragment",
    [
        ({"hidden_sizes": "128,abc"}, "hidden_sizes", "'abc' is not a whole number"),
        ({"hidden_sizes": ""}, "hidden_sizes", "empty"),
        ({"hidden_sizes": "128,,64"}, "hidden_sizes", "extra comma"),
        ({"hidden_sizes": "0"}, "hidden_sizes", "at least 1"),
        ({"hidden_sizes": "-5"}, "hidden_sizes", "at least 1"),
        ({"hidden_sizes": "100000"}, "hidden_sizes", "over the limit"),
        ({"lr": "0"}, "lr", "at least 1e-08"),
        ({"lr": "1e-320"}, "lr", "at least 1e-08, got 1e-320"),  # what was typed, not the 0 it rounds to
        ({"lr": "100.0000001"}, "lr", "at most 100, got 100.0000001"),  # was "at most 100, got 100"
        ({"seed": 2147483648}, "seed", "at most 2147483647, got 2147483648"),
        ({"lr": "-0.1"}, "lr", "at least 1e-08"),
        ({"lr": ""}, "lr", "empty"),
        ({"lr": "fast"}, "lr", "must be a number"),
        ({"lr": "nan"}, "lr", "finite"),
        ({"batch_size": 0}, "batch_size", "at least 1"),
        ({"batch_size": -5}, "batch_size", "at least 1"),
        ({"batch_size": 5000}, "batch_size", "larger than the training set (1200 samples)"),
        ({"epochs": 0}, "epochs", "at least 1"),
        ({"epochs": 2.5}, "epochs", "whole number"),
        ({"weight_decay": "-1"}, "weight_decay", "at least 0"),
        ({"dataset": "mnist_idx", "mnist_path": " "}, "mnist_path", "folder"),
        ({"model": "cnn", "dataset": "spiral"}, "model", "needs images"),
        ({"model": "cnn", "dataset": "mnist_like", "num_samples": 6000, "cnn_channels": "8,8,8,8,8"}, "cnn_channels", "at most 4"),
        ({"scheduler": "step", "step_size": 0}, "step_size", "at least 1"),
    ],
)
def test_bad_values_give_a_message_on_their_field(raw, field, fragment):
    config, errors = parse_run_config(raw)
    assert config is None
    assert field in errors and fragment in errors[field], errors


def test_errors_in_hidden_controls_do_not_block_a_run():
    # CNN channels are not shown for an MLP, momentum only for SGD: typos there do not count.
    config, errors = parse_run_config({"model": "mlp", "cnn_channels": "abc", "optimizer": "adam", "momentum": -1})
    assert errors == {} and config.model == "mlp"


def test_text_fields_are_parsed_into_numbers():
    config, errors = parse_run_config({"hidden_sizes": " 64 , 32 ", "lr": "1e-3", "weight_decay": "0.01", "epochs": "7"})
    assert errors == {}
    assert config.hidden_sizes == (64, 32) and config.lr == 1e-3 and config.weight_decay == 0.01 and config.epochs == 7


def test_parse_layer_sizes():
    assert parse_layer_sizes("128;64") == (128, 64)
    with pytest.raises(ValueError):
        parse_layer_sizes("1.5")


def test_train_samples_mirror_the_real_split():
    from live_training_dashboard.training_setup import dataset_for

    for config in (RunConfig(), RunConfig(num_samples=1000, num_classes=3, train_fraction=0.3)):
        assert config.train_samples == len(dataset_for(config).x_train)


def test_label_names_the_key_settings():
    assert RunConfig().label() == "MLP 128×3 relu · Adam 5e-3"
    label = RunConfig(hidden_sizes=(64, 32), optimizer="sgd", lr=0.1, scheduler="cosine").label()
    assert label == "MLP 64-32 relu · SGD 1e-1 · cosine"
    assert validate(RunConfig(dataset="cifar")) != {}


def test_mnist_folder_must_exist_where_it_is_typed(tmp_path):
    config, errors = parse_run_config({"dataset": "mnist_idx", "mnist_path": str(tmp_path / "nope")})
    assert config is None and "No folder at" in errors["mnist_path"]
    config, errors = parse_run_config({"dataset": "mnist_idx", "mnist_path": str(tmp_path), "batch_size": 16})
    assert errors == {} and config.mnist_path == str(tmp_path)
    # A stored config naming a folder that is gone still loads (validate() does not look).
    assert validate(config.with_changes(mnist_path=str(tmp_path / "gone"))) == {}


def test_the_field_table_round_trips_every_preset_through_its_widgets():
    from live_training_dashboard.presets import PRESETS
    from live_training_dashboard.run_config import fields_for

    configs = [config for preset in PRESETS.values() for _, config in preset.runs]
    configs += [RunConfig(dataset="mnist_like", model="cnn", num_samples=3000, noise=0.3, optimizer="sgd",
                          scheduler="step", step_size=3, gamma=0.25, weight_decay=1e-4)]
    for config in configs:
        raw = {field.name: field.widget_value(config) for field in fields_for(config.to_dict())}
        parsed, errors = parse_run_config(raw)
        assert errors == {} and parsed == config


def test_every_slider_allows_exactly_what_validation_accepts():
    from live_training_dashboard.run_config import DATASETS, FIELDS

    for field in FIELDS:
        if field.widget != "slider":
            continue
        # The first dataset the slider is shown for (several share a setting with different ranges).
        dataset = next(d for d in DATASETS if field.applies({"dataset": d, "optimizer": "sgd", "model": "mlp",
                                                              "scheduler": "step"}))
        base = RunConfig(dataset=dataset, optimizer="sgd")
        if base.dataset == "mnist_like":
            base = base.with_changes(num_samples=6000)
        assert field.name not in validate(base.with_changes(**{field.name: type(getattr(base, field.name))(field.high)}))
        assert field.name not in validate(base.with_changes(**{field.name: type(getattr(base, field.name))(field.low)}))
        above = field.high + (field.step or 1)
        assert field.name in validate(base.with_changes(**{field.name: type(getattr(base, field.name))(above)})), field


def test_a_runs_summary_names_every_setting_that_shapes_training():
    assert RunConfig().summary() == "MLP 128-128-128 relu · Adam lr 0.005 · batch 32 · 20 epochs · seed 0"
    sgd = RunConfig(optimizer="sgd", momentum=0.9, weight_decay=1e-4, dropout=0.2, scheduler="step", step_size=5)
    assert sgd.summary() == ("MLP 128-128-128 relu · dropout 0.2 · SGD lr 0.005 momentum 0.9 weight decay 0.0001 · "
                             "StepLR every 5 × 0.5 · batch 32 · 20 epochs · seed 0")
