import math

import numpy as np
import plotly.graph_objects as go
import pytest

from live_training_dashboard import charts
from live_training_dashboard.run_config import RunConfig
from live_training_dashboard.training_setup import build_training


@pytest.fixture(scope="module")
def trained():
    setup = build_training(RunConfig(epochs=3, stats_every=5), device="cpu")
    setup.fit()
    return setup.monitor.history.snapshot(), setup.architecture


def test_downsampling_keeps_spikes_and_bounds_points():
    x = np.arange(100_000)
    y = np.ones(100_000)
    y[77_777] = 50.0
    y[12_345] = -3.0
    dx, dy = charts.downsample_minmax(x, y, max_points=2000)
    assert len(dx) <= 2000
    assert 50.0 in dy and -3.0 in dy and 77_777 in dx
    assert np.all(np.diff(dx) > 0)
    small_x, small_y = charts.downsample_minmax(x[:10], y[:10])
    assert len(small_x) == 10


def test_downsampling_keeps_a_diverged_tail_visible():
    y = np.linspace(1, 0, 10_000)
    y[9_000:] = np.nan
    dx, dy = charts.downsample_minmax(np.arange(10_000), y, max_points=500)
    assert np.isnan(dy).any() and dx.max() >= 9_000


def test_moving_average_matches_a_direct_computation():
    values = np.array([1.0, 3.0, 5.0, np.nan, 7.0])
    assert charts.moving_average(values, 2).tolist()[:3] == [1.0, 2.0, 4.0]
    assert charts.moving_average(values, 2)[3] == 5.0  # NaN skipped
    assert charts.moving_average(values, 2)[4] == 7.0


def test_rebinning_conserves_counts_and_leaves_no_gaps():
    counts = np.array([[0, 10, 10, 0], [5, 5, 5, 5]], dtype=float)
    ranges = np.array([[-1.0, 1.0], [0.0, 4.0]])
    edges, fractions = charts.rebin_histograms(counts, ranges, rows=50)
    assert edges[0] == -1.0 and edges[-1] == 4.0
    assert np.allclose(fractions.sum(0), 1.0)
    centres = (edges[:-1] + edges[1:]) / 2
    inside = (centres > 0.1) & (centres < 3.9)
    assert (fractions[inside, 1] > 0).all()  # no stripes of empty rows inside a flat histogram
    assert fractions[centres > 1.1, 0].sum() == 0  # the first histogram has nothing above 1


def test_curve_charts_draw_the_history(trained):
    snapshot, _ = trained
    loss = charts.epoch_metric_chart(snapshot, "loss")
    assert [t.name for t in loss.data] == ["train", "val"]
    assert np.allclose(loss.data[1].y, snapshot.epoch("val_loss"))
    batch = charts.batch_loss_chart(snapshot)
    assert len(batch.data[0].x) == snapshot.num_steps
    grad = charts.grad_norm_chart(snapshot)
    assert {t.name for t in grad.data} >= {"fc1", "fc4"} and grad.layout.yaxis.type == "log"
    lr = charts.lr_chart(snapshot)
    assert lr.layout.yaxis.range[0] == 0 and lr.layout.yaxis.range[1] > RunConfig().lr
    for figure in (loss, batch, grad, lr):
        assert figure.layout.height == charts.CHART_HEIGHT
        assert isinstance(figure.data[0].x, np.ndarray) or isinstance(figure.data[0].x, tuple)


def test_histogram_heatmaps_have_one_panel_per_layer(trained):
    snapshot, _ = trained
    for kind in ("grad", "weight"):
        figure = charts.histogram_heatmaps(snapshot, kind)
        heatmaps = [t for t in figure.data if isinstance(t, go.Heatmap)]
        assert len(heatmaps) == len(snapshot.layer_names)
        assert len(heatmaps[0].x) == len(snapshot.weight_histograms.steps)
        latest = charts.latest_histograms(snapshot, kind)
        assert len(latest.data) == len(snapshot.layer_names)
        assert math.isclose(sum(latest.data[0].y), 1.0, rel_tol=1e-6)


def test_empty_history_gives_empty_charts_with_a_note():
    setup = build_training(RunConfig(epochs=1), device="cpu")
    snapshot = setup.monitor.history.snapshot()
    for figure in (charts.epoch_metric_chart(snapshot, "loss"), charts.batch_loss_chart(snapshot),
                   charts.grad_norm_chart(snapshot), charts.histogram_heatmaps(snapshot, "grad")):
        assert len(figure.data) == 0 and figure.layout.annotations
    assert charts.training_progress(snapshot).fraction == 0.0
    assert charts.headline_metrics(snapshot)[1].value == "–"


def test_architecture_diagram_and_layer_table(trained):
    snapshot, architecture = trained
    boxes = charts.architecture_boxes(architecture)
    assert [b["name"] for b in boxes] == ["input", "fc1", "fc2", "fc3", "fc4"]
    assert boxes[1]["extras"] == ["ReLU"]
    figure = charts.architecture_diagram(architecture)
    assert "33,795 parameters" in figure.layout.title.text
    assert len([s for s in figure.layout.shapes if s.type == "rect"]) == 5
    table = charts.layer_table(snapshot, architecture)
    assert table["layer"].tolist() == ["fc1", "fc2", "fc3", "fc4"]
    assert table["parameters"].sum() == 33_795
    assert np.allclose(table["update/weight"], snapshot.layer_stat("update_ratio")[-1])
    assert table["dead %"].iloc[:3].between(0, 100).all() and np.isnan(table["dead %"].iloc[3])


def test_headline_metrics_and_progress(trained):
    snapshot, _ = trained
    items = {h.label: h for h in charts.headline_metrics(snapshot)}
    assert items["Epoch"].value == "3 / 3"
    assert items["Val accuracy"].value == f"{snapshot.epoch('val_accuracy')[-1]:.1%}"
    assert items["Train loss"].delta.startswith(("-", "+")) and items["Train loss"].delta_color == "inverse"
    progress = charts.training_progress(snapshot)
    assert progress.fraction == 1.0 and progress.batches_done == progress.batches_total == snapshot.num_steps
    assert progress.batches_per_second > 0 and "batches/s" in progress.text()


def test_robust_rebinning_keeps_every_value_and_ignores_a_lone_spike():
    counts = np.tile(np.array([[1.0, 4.0, 4.0, 1.0]]), (20, 1))
    ranges = np.tile(np.array([[-1.0, 1.0]]), (20, 1))
    ranges[7] = (-100.0, 100.0)  # one snapshot with a huge gradient spike
    edges, fractions = charts.rebin_histograms(counts, ranges, rows=40, robust=True)
    assert edges[0] == -1.0 and edges[-1] == 1.0
    assert np.allclose(fractions.sum(0), 1.0)  # nothing lost: the spike's tails sit in the edge rows
    assert fractions[0, 7] > 0.1 and fractions[-1, 7] > 0.1
    wide_edges, _ = charts.rebin_histograms(counts, ranges, rows=40)
    assert wide_edges[0] == -100.0


def test_an_envelope_updated_as_a_series_grows_keeps_every_spike_and_stays_bounded():
    rng = np.random.default_rng(1)
    values = rng.random(300_000).astype(np.float32)
    spikes = rng.choice(len(values), 5, replace=False)
    values[spikes] = 50.0
    values[123_456] = -9.0
    envelope = charts.SeriesEnvelope(max_points=2000)
    for end in (10, 5_000, 5_001, 77_777, 200_000, 300_000):  # refreshes while the run grows
        points = envelope.indices(values[:end])
        assert len(points) <= 2000 + 2 and np.all(np.diff(points) > 0) and points[-1] < end
    assert set(spikes) <= set(points.tolist()) and 123_456 in points
    assert values[points].max() == values.max() and values[points].min() == values.min()
    # A different series under the same envelope (a reloaded run) starts over instead of mixing.
    other = np.zeros(100_000, np.float32)
    other[99_000] = 7.0
    assert 99_000 in envelope.indices(other)


def test_moving_average_at_points_equals_the_full_moving_average_there():
    rng = np.random.default_rng(2)
    values = rng.random(10_000)
    values[[5, 400, 401]] = np.nan
    points = charts.display_points(len(values), 700)
    assert len(points) <= 700 and points[0] == 0 and points[-1] == len(values) - 1
    for window in (1, 7, 50):
        assert np.allclose(charts.moving_average_at(values, window, points), charts.moving_average(values, window)[points],
                           equal_nan=True)


def test_names_with_markdown_html_or_image_syntax_stay_plain_text():
    import re

    hostile = "![t](http://host/x) <img src=x onerror=alert(1)> **bold** :red[red] $x$ [link](http://a)"
    escaped = charts.escape_markdown(hostile)
    # Every special character is escaped, so no markdown construct survives.
    assert not re.search(r"(?<!\\)[!\[\]()<>*:$]", escaped)
    assert escaped.replace("\\", "") == hostile
    assert charts.escape_markdown("Adam 5e-3 · MLP 128×3") == "Adam 5e-3 · MLP 128×3"
    legend = charts.short_labels([hostile, "other"])
    assert "<" not in "".join(legend) and "&lt;img" in legend[0]


def test_every_chart_and_the_doctor_take_a_history_with_nan_and_inf_gradients(tmp_path):
    """An AMP run's skipped steps (Inf gradient norms) and a diverged run's NaN weights."""
    import warnings

    from live_training_dashboard.diagnostics import diagnose
    from live_training_dashboard.history import BATCH_COLUMNS, LAYER_STATS, History

    history = History(("fc1", "fc2"), 8)
    rng = np.random.default_rng(0)
    rows = rng.uniform(0.1, 1.0, size=(300, 6)).astype(np.float32)
    column = BATCH_COLUMNS.index
    rows[:, column("epoch_progress")] = np.arange(300) / 30
    rows[[5, 6, 150], column("grad_norm")] = np.inf  # overflowed gradient norms
    rows[299, column("loss")] = np.nan  # the last loss
    norms = rng.uniform(0.01, 1, size=(300, 2)).astype(np.float32)
    norms[[5, 6, 150]] = np.inf
    history.append_batches(rows, norms)
    for epoch in range(1, 10):
        history.append_epoch(epoch=epoch, train_loss=1 / epoch, train_accuracy=0.5, val_loss=np.nan if epoch == 9 else 1.0,
                             val_accuracy=0.5, lr=0.01, seconds=epoch, end_step=30 * epoch)
    stats = rng.uniform(0, 1, size=(2, len(LAYER_STATS)))
    counts = rng.integers(0, 5, size=(2, 8)).astype(np.float32)
    for step in range(0, 300, 20):
        ranges = np.array([[-1, 1], [np.nan, np.nan]], dtype=np.float32)  # fc2 had no finite value
        history.append_layer_stats(step, stats.astype(np.float32), (counts, ranges), (counts, ranges))
    snapshot = history.snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN/Inf either
        findings = diagnose(snapshot)
        figures = charts.training_curves_figures(snapshot, findings)
        figures += [charts.histogram_heatmaps(snapshot, "weight"), charts.histogram_heatmaps(snapshot, "grad"),
                    charts.latest_histograms(snapshot, "weight"), charts.latest_histograms(snapshot, "grad")]
        charts.headline_metrics(snapshot)
        charts.training_progress(snapshot)
    for figure in figures:
        figure.to_json()  # what Streamlit sends: must serialise
    [skipped] = [t for t in figures[2].data if t.name.startswith("step skipped")]
    assert np.allclose(skipped.x, rows[[5, 6, 150], column("epoch_progress")])  # the three overflowed batches, at their epochs


def test_rank_speeds_read_as_one_line_per_job():
    assert charts.rank_speeds_text(()) == "" and charts.rank_speeds_text((500.0,)) == ""
    assert charts.rank_speeds_text((640.9, 628.2)) == "2 ranks: 641 · 628 batches/s (rank 0 first)"
    assert charts.rank_speeds_text(tuple(range(20))).count("·") == 16


def test_an_experiments_lesson_is_written_from_its_numbers():
    from live_training_dashboard.history import History

    def run(accuracies):
        history = History(("fc1",))
        for epoch, accuracy in enumerate(accuracies, start=1):
            history.append_epoch(epoch=epoch, train_loss=1.0, train_accuracy=0.5, val_loss=1.0, val_accuracy=accuracy,
                                 lr=0.01, seconds=float(epoch), end_step=epoch * 10)
        return history.snapshot()

    lesson = charts.experiment_lesson([
        ("lr 0.001", run([0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.97])),
        ("lr 0.01", run([0.9, 0.96, 0.97, 0.98, 0.98, 0.98, 0.985, 0.98, 0.985, 0.99])),
        ("lr 0.1", run([0.7, 0.86, 0.99, 0.9, 0.95, 0.86, 0.99, 0.88, 0.96, 0.923])),
    ])
    assert lesson == ("lr 0.001 reached 95% in 7 epochs; lr 0.01 reached 95% in 2 epochs; lr 0.1 reached 95% in "
                      "3 epochs, then swung between 86% and 99%, and ended at 92.3% after a best of 99.0%.")
    table, _ = charts.comparison_table([("a", {"lr": 0.1}, run([0.99, 0.923]))], health=["Dead ReLUs (critical)"])
    assert table.loc[0, "final val accuracy"] == pytest.approx(0.923) and table.loc[0, "best val accuracy"] == 0.99
    assert table.loc[0, "health"] == "Dead ReLUs (critical)"


def test_log_axes_tick_powers_of_ten_and_a_constant_lr_is_not_drawn_at_zero(trained):
    trained, _ = trained
    figure = charts.grad_norm_chart(trained)
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.dtick == 1
    assert figure.layout.yaxis.exponentformat == "e"  # 1e-3, never a bare "5" that could be 0.5 or 0.05
    lr = charts.compare_chart([("a", trained), ("b", trained)], "lr")
    low, high = lr.layout.yaxis.range
    assert low == 0 and high == pytest.approx(trained.batch("lr").max() * 1.1)
