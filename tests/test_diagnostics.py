import numpy as np
import pytest

from live_training_dashboard import diagnostics
from live_training_dashboard.run_config import RunConfig
from live_training_dashboard.training_setup import build_training
from training_monitor import BATCH_COLUMNS, LAYER_STATS, History


def trained_snapshot(config: RunConfig):
    setup = build_training(config, device="cpu")
    setup.fit()
    return setup.monitor.history.snapshot()


def test_healthy_default_run_raises_nothing():
    assert diagnostics.diagnose(trained_snapshot(RunConfig())) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_healthy_runs_with_other_seeds_raise_nothing(seed):
    assert diagnostics.diagnose(trained_snapshot(RunConfig(seed=seed))) == []


def test_learning_rate_ten_is_diverged_and_only_that():
    snapshot = trained_snapshot(RunConfig(lr=10.0, epochs=5))
    findings = diagnostics.diagnose(snapshot)
    assert [f.code for f in findings] == ["diverged"]
    # The message's batch and the progress agree: the history ends at the batch that diverged.
    assert snapshot.num_steps == findings[0].step + 1 and f"batch {findings[0].step}:" in snapshot.message
    assert findings[0].severity == diagnostics.CRITICAL and "learning rate" in findings[0].evidence
    assert findings[0].step == 1  # the batch whose loss blew past 100x the first, as the message says


def test_deep_sigmoid_net_with_sgd_has_vanishing_gradients():
    config = RunConfig(hidden_sizes=(128, 128, 128, 128), activation="sigmoid", optimizer="sgd", lr=1.0,
                       momentum=0.0, epochs=10)
    findings = {f.code: f for f in diagnostics.diagnose(trained_snapshot(config))}
    vanishing = findings["vanishing_gradients"]
    assert vanishing.layer == "fc1" and vanishing.chart == "grad_norm"
    assert "ratio" in vanishing.evidence and vanishing.step is not None


def test_tiny_train_set_big_model_many_epochs_overfits():
    config = RunConfig(hidden_sizes=(512, 512, 512), batch_size=8, train_fraction=0.05, noise=0.5, lr=1e-3, epochs=150)
    findings = {f.code: f for f in diagnostics.diagnose(trained_snapshot(config))}
    overfitting = findings["overfitting"]
    assert overfitting.chart == "loss" and 5 <= overfitting.epoch <= 60
    assert "Val loss" in overfitting.evidence


def synthetic_history(grad_norms: np.ndarray, layers=("fc1", "fc2", "fc3")) -> History:
    history = History(layers)
    steps = len(grad_norms)
    rows = np.zeros((steps, len(BATCH_COLUMNS)), dtype=np.float32)
    rows[:, BATCH_COLUMNS.index("loss")] = 1.0
    rows[:, BATCH_COLUMNS.index("grad_norm")] = grad_norms
    rows[:, BATCH_COLUMNS.index("lr")] = 0.01
    rows[:, BATCH_COLUMNS.index("epoch_progress")] = np.arange(1, steps + 1) / 100
    history.append_batches(rows, np.repeat(grad_norms[:, None], len(layers), 1).astype(np.float32) / np.sqrt(len(layers)))
    return history


def test_exploding_gradients_need_a_sustained_jump_not_one_spike():
    norms = np.full(400, 0.5, dtype=np.float32)
    norms[200] = 40.0  # one spike, as Adam makes: not an explosion
    assert diagnostics.check_exploding_gradients(synthetic_history(norms).snapshot()) is None
    norms[-15:] = 30.0
    finding = diagnostics.check_exploding_gradients(synthetic_history(norms).snapshot())
    assert finding is not None and finding.step == 385 and "60×" in finding.evidence


def test_stalled_loss_is_reported_with_its_numbers():
    history = synthetic_history(np.full(400, 0.5, dtype=np.float32))
    finding = diagnostics.check_stalled(history.snapshot())
    assert finding is not None and "0% lower" in finding.evidence


def test_dead_units_update_ratio_and_saturation_read_the_layer_statistics():
    history = History(("fc1", "fc2"))
    for step in range(0, 100, 10):
        stats = np.full((2, len(LAYER_STATS)), np.nan, dtype=np.float32)
        stats[:, LAYER_STATS.index("update_ratio")] = (1e-3, 0.2)
        stats[:, LAYER_STATS.index("dead_fraction")] = (0.95, 0.1)
        stats[:, LAYER_STATS.index("saturation")] = (np.nan, 0.9)
        history.append_layer_stats(step, stats)
    snapshot = synthetic_history(np.full(100, 0.5, dtype=np.float32), ("fc1", "fc2")).snapshot()
    snapshot = snapshot.__class__(**{**snapshot.__dict__, "stats_steps": history.snapshot().stats_steps,
                                     "layer_stats": history.snapshot().layer_stats})
    dead = diagnostics.check_dead_relus(snapshot)
    assert dead.layer == "fc1" and dead.severity == diagnostics.CRITICAL and "95%" in dead.evidence
    update = diagnostics.check_update_ratio(snapshot)
    assert update.code == "update_ratio_high" and update.layer == "fc2"
    saturation = diagnostics.check_saturation(snapshot)
    assert saturation.layer == "fc2" and "90%" in saturation.evidence


def test_zero_gradients_when_logged_are_named_and_a_few_real_zeros_are_not():
    norms = np.zeros(50, dtype=np.float32)
    finding = diagnostics.check_zero_gradients(synthetic_history(norms).snapshot())
    assert finding.code == "zero_gradients" and "before optimizer.zero_grad()" in finding.explanation
    norms[::2] = 0.3  # half the batches had gradients: a loop that logs correctly
    assert diagnostics.check_zero_gradients(synthetic_history(norms).snapshot()) is None


def test_skipped_steps_are_counted_and_placed_at_the_first():
    norms = np.full(400, 0.5, dtype=np.float32)
    norms[[3, 4, 250]] = np.inf
    finding = diagnostics.check_skipped_steps(synthetic_history(norms).snapshot())
    assert finding.severity == diagnostics.INFO and finding.step == 3 and "3 of 400 batches" in finding.evidence
    norms[:100] = np.nan  # a quarter of all steps: fp16 overflows all the time
    assert diagnostics.check_skipped_steps(synthetic_history(norms).snapshot()).severity == diagnostics.WARNING


def test_all_clear_never_claims_what_was_not_measured():
    plain = synthetic_history(np.full(50, 0.5, dtype=np.float32)).snapshot()  # no layer stats, no epochs
    assert diagnostics.unmeasured(plain) == ["dead ReLUs (no ReLU modules seen)",
                                             "saturation (no tanh/sigmoid modules seen)",
                                             "overfitting (no validation loss logged)"]
    default = trained_snapshot(RunConfig(epochs=2))  # ReLU MLP with validation: only saturation is not
    assert diagnostics.unmeasured(default) == ["saturation (no tanh/sigmoid modules seen)"]


def test_an_all_clear_states_the_shares_of_dead_and_saturated_units_it_measured():
    def history_with(dead_per_snapshot: list[list[float]], saturation: float = np.nan) -> History:
        history = synthetic_history(np.full(100, 0.5, dtype=np.float32))
        for step, dead in zip(range(0, 100, 10), dead_per_snapshot):
            stats = np.full((3, len(LAYER_STATS)), np.nan, dtype=np.float32)  # NaN: not measured
            stats[:, LAYER_STATS.index("dead_fraction")] = dead
            stats[:, LAYER_STATS.index("saturation")] = saturation
            history.append_layer_stats(step, stats)
        return history

    # The recent snapshots speak, as in the check: fc2 was half dead early on and is at 3% now.
    early, late = [0.0, 0.5, 0.01], [0.0, 0.03, 0.01]
    assert diagnostics.unit_levels(history_with([early] * 3 + [late] * 7).snapshot()) == {
        "dead ReLUs": "dead ReLUs over 60% of a layer (the most: 3%, in fc2)"}
    assert diagnostics.unit_levels(history_with([[0.0, 0.002, 0.0]] * 10, saturation=0.0).snapshot()) == {
        "dead ReLUs": "dead ReLUs over 60% of a layer (the most: under 1%, in fc2)",
        "saturation": "saturation (none in any layer)"}
    assert diagnostics.unit_levels(history_with([[0.0] * 3] * 10).snapshot()) == {
        "dead ReLUs": "dead ReLUs (none in any layer)"}
    assert diagnostics.unit_levels(synthetic_history(np.full(50, 0.5, dtype=np.float32)).snapshot()) == {}


def sign(code, severity=diagnostics.WARNING, epoch=2.0):
    return diagnostics.Finding(code, severity, code.replace("_", " "), "", f"{code} evidence", "loss", 10, epoch)


def causes_of(codes, settings, accuracy=None):
    snapshot = synthetic_history(np.full(50, 0.5, dtype=np.float32)).snapshot()
    if accuracy is not None:
        history = synthetic_history(np.full(50, 0.5, dtype=np.float32))
        history.append_epoch(epoch=1, train_loss=0.5, train_accuracy=0.9, val_loss=0.5, val_accuracy=accuracy, lr=0.01,
                             seconds=1.0, end_step=50)
        snapshot = history.snapshot()
    return diagnostics.explain([sign(c) for c in codes], snapshot, settings)


def test_a_dead_layer_is_one_cause_and_starvation_follows_from_it():
    settings = {"lr": 1.0, "activation": "relu", "model": "mlp"}
    [cause] = causes_of(["dead_relus", "vanishing_gradients", "stalled", "update_ratio_low"], settings)
    assert cause.finding.code == "dead_relus"
    assert [c.code for c in cause.consequences] == ["vanishing_gradients", "stalled", "update_ratio_low"]
    assert [r.label for r in cause.remedies] == ["lr 1 → 0.1", "relu → leaky_relu"]
    assert cause.remedies[0].changes == {"lr": 0.1}


def test_advice_never_repeats_the_settings_or_contradicts_itself():
    relu = {"lr": 0.005, "activation": "relu"}
    [vanishing] = causes_of(["vanishing_gradients"], relu)
    assert all("relu" not in r.label for r in vanishing.remedies)  # already ReLU: not "use ReLU"
    [sigmoid] = causes_of(["vanishing_gradients"], {"lr": 1.0, "activation": "sigmoid"})
    assert [r.label for r in sigmoid.remedies] == ["sigmoid → relu"]
    # Too-large steps explain a bouncing loss: no "raise the LR" beside "lower it".
    [cause] = causes_of(["update_ratio_high", "stalled"], relu)
    assert [r.label for r in cause.remedies] == ["lr 0.005 → 0.0005"] and cause.consequences[0].code == "stalled"
    [slow] = causes_of(["stalled", "update_ratio_low"], {"lr": 1e-6})
    assert [r.label for r in slow.remedies] == ["lr 1e-06 → 1e-05"]
    [script] = causes_of(["stalled"], {})  # a user's script: advice in words, nothing to click
    assert script.remedies[0].changes == {} and "raise the learning rate" in script.remedies[0].label


def test_a_warning_sign_on_a_run_that_does_well_is_information():
    [cause] = causes_of(["dead_relus"], {"lr": 0.005, "activation": "relu"}, accuracy=0.968)
    assert cause.severity == diagnostics.INFO and "Not hurting so far: validation accuracy 96.8%" in cause.finding.evidence
    [hurting] = causes_of(["dead_relus"], {"lr": 0.005, "activation": "relu"}, accuracy=0.80)
    assert hurting.severity == diagnostics.WARNING


def test_a_divergence_says_whether_the_gradients_or_the_loss_went_first():
    norms = np.full(100, 0.5, dtype=np.float32)
    norms[60:] = np.geomspace(10, 1e6, 40)  # gradients explode from batch 60
    history = synthetic_history(norms)
    rows = history.snapshot().batches.copy()
    loss = np.ones(100, dtype=np.float32)
    loss[80:] = np.inf  # the loss follows at batch 80
    story = diagnostics.divergence_story(history.snapshot().__class__(
        **{**history.snapshot().__dict__, "batches": np.column_stack([loss, rows[:, 1:]])}))
    assert "gradient norm came first" in story and "at batch 60, 20 batches before the loss blew up at batch 80" in story
