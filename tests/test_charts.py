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


def tensorboard_smoothing(values, weight):
    """TensorBoard's own loop (vz_line_chart's resmoothDataset), non-finite values passed through."""
    last, count, out = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            out.append(math.nan)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight ** count))
    return np.array(out)


def test_smoothing_is_tensorboards_debiased_moving_average():
    rng = np.random.default_rng(1)
    values = rng.normal(size=30_000).cumsum() * 0.01 + 3
    for weight in (0.0, 0.3, 0.6, 0.9, 0.99):
        assert np.allclose(charts.smooth_ema(values, weight), tensorboard_smoothing(values, weight), rtol=1e-12)
    points = charts.display_points(len(values), 700)
    for weight in (0.3, 0.6, 0.9):  # read at points from the last few hundred values: same numbers
        assert np.allclose(charts.smooth_ema_at(values, weight, points), tensorboard_smoothing(values, weight)[points],
                           rtol=1e-6)
    assert charts.smooth_ema([2.0, 4.0], 0.5).tolist() == [2.0, pytest.approx(10 / 3)]  # (2 + 2 * 4) / 3: not pulled to 0
    with_gap = charts.smooth_ema([1.0, np.nan, 1.0], 0.9)
    assert np.isnan(with_gap[1]) and with_gap[2] == pytest.approx(1.0)  # a NaN batch is a gap, not a pull


def test_display_points_keep_first_and_last_and_only_coarsen_as_a_run_grows():
    assert charts.display_points(5, 10).tolist() == [0, 1, 2, 3, 4]
    previous = None
    for count in (11, 19, 20, 21, 39, 40, 41, 1000, 1001, 65_536, 1_000_000):
        points = charts.display_points(count, 10)
        assert points[0] == 0 and points[-1] == count - 1 and len(points) <= 10 and (np.diff(points) > 0).all()
        assert len(points) > 10 // 2 - 1  # never far fewer than asked for
        grid = points[:-1] if (points[-1] - points[0]) % max(points[1], 1) else points
        if previous is not None:  # the old grid's points that are still on the grid are all kept
            assert set(grid.tolist()) <= set(previous.tolist()) | set(range(previous[-1] + 1, count))
        previous = grid


def test_smoothed_series_computed_only_where_new_match_a_full_pass():
    """The smoothed lines of a growing run, a replay's shorter cut of it and another run under the same
    name all read as a full pass over the series reads them."""
    from live_training_dashboard.history import History

    rng = np.random.default_rng(4)
    history = History(["fc1"], 4)
    calls = []
    full = charts.smooth_ema_at
    try:
        charts.smooth_ema_at = lambda values, weight, points: calls.append(len(points)) or full(values, weight, points)
        for rows in (30_000, 10, 5_000, 70_000, 1):
            batch = np.column_stack([rng.random(rows) * 3 + 1] + [rng.random(rows)] * 5).astype(np.float32)
            history.append_batches(batch, rng.random((rows, 1)).astype(np.float32))
            snapshot = history.snapshot()
            loss = snapshot.batch("loss")
            points = charts.display_points(len(loss))
            calls.clear()
            got = charts.smoothed_at(snapshot, "loss", loss, 0.9, points)
            live_calls = list(calls)
            assert np.allclose(got, full(loss, 0.9, points), rtol=1e-6)
            cut = snapshot.until(len(loss) // 3)  # a replay frame: a prefix of the same series
            cut_points = charts.display_points(cut.num_steps)
            assert np.allclose(charts.smoothed_at(cut, "loss", cut.batch("loss"), 0.9, cut_points),
                               full(cut.batch("loss"), 0.9, cut_points), rtol=1e-6)
        assert live_calls == [1], live_calls  # the last refresh computed its one new point, not 2,000 of them
        other = charts.SmoothedPoints()
        other.at(loss, 0.9, points)
        changed = loss * 2  # another series in the same slot: not read from the first one's numbers
        assert np.allclose(other.at(changed, 0.9, points), full(changed, 0.9, points), rtol=1e-6)
    finally:
        charts.smooth_ema_at = full


def test_chart_options_reject_what_they_cannot_draw():
    for bad in ({"smoothing": 1.0}, {"smoothing": -0.1}, {"x_axis": "wall"}, {"y_scale": "symlog"}):
        with pytest.raises(ValueError):
            charts.ChartOptions(**bad)


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
        assert math.isclose(sum(latest.data[0].y[:-1]), 1.0, rel_tol=1e-6)  # one share per bin (+ the closing step)
        edges = snapshot.weight_histograms if kind == "weight" else snapshot.grad_histograms
        assert latest.data[0].x[0] == edges.ranges[-1, 0, 0] and latest.data[0].x[-1] == edges.ranges[-1, 0, 1]


@pytest.mark.parametrize("kept", [151, 285, 300, 301, 399])
def test_a_long_runs_heatmap_columns_stay_evenly_spaced_and_end_at_the_newest(kept):
    """More histograms than a heatmap shows: the columns are one stride apart (Plotly draws an evenly
    spaced heatmap as a picture, one pixel per cell; mixed gaps drew it cell by cell, 2-3x slower),
    the newest histogram is the last column, and at least half the column limit is drawn."""
    from live_training_dashboard.history import LAYER_STATS, History

    history = History(("fc1", "fc2"), 8, max_histogram_snapshots=1000)
    counts, ranges = np.ones((2, 8), np.float32), np.array([[-1, 1], [-1, 1]], np.float32)
    for step in range(20, 20 * kept + 1, 20):
        history.append_layer_stats(step, np.zeros((2, len(LAYER_STATS)), np.float32), (counts, ranges), (counts, ranges))
    snapshot = history.snapshot()
    assert len(snapshot.grad_histograms.steps) == kept
    for kind in ("grad", "weight"):
        heatmaps = charts.histogram_heatmaps(snapshot, kind).data
        steps = np.asarray(heatmaps[0].x)
        assert all(np.array_equal(np.asarray(panel.x), steps) for panel in heatmaps)
        assert charts.MAX_HEATMAP_COLUMNS // 2 <= len(steps) <= charts.MAX_HEATMAP_COLUMNS
        assert steps[-1] == 20 * kept  # the newest histogram
        assert len(np.unique(np.diff(steps))) == 1, np.unique(np.diff(steps))
    ridges = [t for t in charts.histogram_heatmaps(snapshot, "grad", mode="offset").data if t.fill == "toself"]
    assert charts.MAX_RIDGES // 2 <= len(ridges) // 2 <= charts.MAX_RIDGES  # (2 layers)


def test_a_deep_models_heatmap_panels_stay_apart_and_tall_enough():
    """12 layers in one column: the panels' domains were inside out (y0 > y1) from 9 layers on."""
    setup = build_training(RunConfig(hidden_sizes=(8,) * 11, epochs=1, num_samples=300, stats_every=2), device="cpu")
    setup.fit()
    snapshot = setup.monitor.history.snapshot()
    assert len(snapshot.layer_names) == 12
    for mode in ("heatmap", "offset"):
        layout = charts.histogram_heatmaps(snapshot, "grad", columns=1, mode=mode).layout
        plot_px = layout.height - layout.margin.t - layout.margin.b
        domains = sorted((layout[f"yaxis{'' if i == 0 else i + 1}"].domain for i in range(12)), reverse=True)
        for (low, _), (_, next_high) in zip(domains, domains[1:]):
            assert low > next_high  # apart, each below the one before
        assert all((high - low) * plot_px >= 100 for low, high in domains)


def test_a_deep_models_gradient_norms_draw_a_few_layers_spread_from_first_to_last():
    setup = build_training(RunConfig(hidden_sizes=(8,) * 11, epochs=1, num_samples=300), device="cpu")
    setup.fit()
    snapshot = setup.monitor.history.snapshot()
    figure = charts.grad_norm_chart(snapshot)
    layers = [t.name for t in figure.data if not t.name.startswith("global")]
    assert layers == [snapshot.layer_names[i] for i in charts.default_histogram_layers(12)]
    assert layers[0] == "fc1" and layers[-1] == "fc12" and "8 of 12 layers" in figure.layout.title.text
    # Two legend entries a row (a 1024 px window stacked them one a row over a 100 px plot), the
    # smoothed global line first; names too long for half a chart keep Plotly's own flow.
    assert figure.layout.legend.entrywidthmode == "fraction" and figure.layout.legend.entrywidth == 0.5
    assert sorted(figure.data, key=lambda t: t.legendrank or 1000)[0].name == "global"
    import dataclasses

    long_names = dataclasses.replace(snapshot, layer_names=tuple(f"encoder.layers.{i}.linear" for i in range(12)),
                                     history_id="long names")
    assert charts.grad_norm_chart(long_names).layout.legend.entrywidth is None


def test_a_deep_model_draws_a_few_layers_spread_from_first_to_last_at_first():
    assert charts.default_histogram_layers(5) == [0, 1, 2, 3, 4]
    picked = charts.default_histogram_layers(60)
    assert len(picked) == charts.DEFAULT_HISTOGRAM_LAYERS and picked[0] == 0 and picked[-1] == 59
    assert picked == sorted(set(picked)) and max(np.diff(picked)) - min(np.diff(picked)) <= 1
    assert charts.default_histogram_layers(9) == [0, 1, 2, 3, 5, 6, 7, 8]


def test_heatmap_colours_are_one_byte_log_shares_and_the_hover_keeps_the_exact_share(trained):
    snapshot, _ = trained
    shares = np.array([0.0, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0])
    levels = charts.share_levels(shares)
    assert levels.dtype == np.uint8 and levels[0] == levels[1] == levels[2] == 0 and levels[-1] == charts.SHARE_LEVELS
    assert np.all(np.diff(levels.astype(int)[2:]) > 0)  # every decade above the floor is its own colour
    # each decade a quarter of the scale (4 decades), so a colour bar tick sits where its share is drawn
    assert np.allclose(levels[2:6], [0, 64, 128, 191], atol=1)
    figure = charts.histogram_heatmaps(snapshot, "grad")
    colorbar = figure.layout.coloraxis.colorbar
    for value, label in zip(colorbar.tickvals, colorbar.ticktext):
        share = float(label.rstrip("%")) / 100
        assert abs(value - float(charts.share_levels(np.array([share]))[0])) <= 0.5, (label, value)
    heatmap = figure.data[0]
    z, hover = np.asarray(heatmap.z), np.asarray(heatmap.customdata)
    assert z.dtype == np.uint8 and hover.dtype == np.float32 and z.shape == hover.shape
    assert np.array_equal(z, charts.share_levels(hover))  # the colour is the hovered share's level
    sums = hover.sum(axis=0)  # each column: the shares of one histogram (none where it was empty)
    assert np.all(np.isclose(sums, 1.0, atol=1e-5) | (sums == 0))


def test_empty_history_gives_empty_charts_with_a_note():
    setup = build_training(RunConfig(epochs=1), device="cpu")
    snapshot = setup.monitor.history.snapshot()
    for figure in (charts.epoch_metric_chart(snapshot, "loss"), charts.batch_loss_chart(snapshot),
                   charts.grad_norm_chart(snapshot), charts.histogram_heatmaps(snapshot, "grad")):
        assert len(figure.data) == 0 and figure.layout.annotations
    assert charts.training_progress(snapshot).fraction == 0.0
    assert charts.headline_metrics(snapshot)[1].value == "–"


def test_the_previous_runs_epoch_curves_lie_faint_beneath_and_show_before_the_first_epoch(trained):
    snapshot, _ = trained
    empty = build_training(RunConfig(epochs=1), device="cpu").monitor.history.snapshot()
    hostile = "<b>x</b> %{y}"
    for metric in ("loss", "accuracy"):
        figure = charts.epoch_metric_chart(snapshot, metric, previous=(hostile, snapshot))
        previous, current = figure.data[:2], figure.data[2:]
        assert [t.name for t in current] == ["train", "val"]  # drawn last: on top
        for trace, split, own in zip(previous, ("train", "val"), current):
            assert trace.line.dash == "dash" and trace.opacity < 1 and trace.line.color == own.line.color
            assert np.array_equal(trace.y, snapshot.epoch(f"{split}_{metric}").astype(np.float32))
            assert trace.meta == "&lt;b&gt;x&lt;/b&gt; %{y}" and "%{meta}" in trace.hovertemplate  # the name, as text
        # This run before its first epoch: the previous run's curves already, under the note.
        waiting = charts.epoch_metric_chart(empty, metric, previous=("before", snapshot))
        assert len(waiting.data) == 2 and waiting.layout.annotations
    # A previous run without an epoch adds nothing.
    assert len(charts.epoch_metric_chart(snapshot, "loss", previous=("before", empty)).data) == 2
    figures = charts.training_curves_figures(snapshot, [], previous=("before", snapshot))
    assert [len(f.data) for f in figures[:2]] == [4, 4]
    # Loss per batch: the previous run's smoothed line (raw without smoothing), faint and dashed, first.
    for smoothing in (0.9, 0.0):
        options = charts.ChartOptions(smoothing=smoothing)
        batch = charts.batch_loss_chart(snapshot, options=options, previous=("before", snapshot))
        own = charts.batch_loss_chart(snapshot, options=options)
        line = batch.data[0]
        assert line.line.dash == "dash" and line.name.startswith("previous run") and len(batch.data) == len(own.data) + 1
        expected = own.data[-1] if smoothing else own.data[0]  # this run's own smoothed (or raw) line, same data
        assert np.allclose(line.y, expected.y) and np.array_equal(line.x, expected.x)
    assert len(charts.batch_loss_chart(empty, previous=("before", snapshot)).data) == 1  # before this run's first batch


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


def test_a_scripts_module_tree_fits_its_boxes_and_its_table_has_no_blank_shape_column():
    from neural_network import LayerInfo

    layers = [LayerInfo("embed", "Embedding", (), 1600, monitored=True),
              LayerInfo("block.self_attn.out_proj", "NonDynamicallyQuantizableLinear", (), 1056, monitored=True),
              *[LayerInfo(f"block.layers.{i}.linear", "Linear", (), 2112, monitored=True) for i in range(8)],
              LayerInfo("<b>head</b>", "Linear", (), 1650, monitored=True)]
    figure = charts.architecture_diagram(layers)
    texts = [a.text for a in figure.layout.annotations if a.text]
    assert len(texts) == len(layers)
    chars = int(charts.DIAGRAM_WIDTH_PX / len(layers) * 0.76 / charts.DIAGRAM_CHAR_PX)
    for text in texts:
        for line in text.replace("<b>", "").replace("</b>", "").split("<br>"):
            assert len(line.replace("&lt;", "<").replace("&gt;", ">")) <= chars, line
    assert "<b>…out_proj</b>" in texts[1] and "NonDyna" in texts[1] and "&lt;" in texts[-1]
    hover = figure.data[0]
    assert hover.text[1] == "block.self_attn.out_proj" and hover.customdata[1][0] == "NonDynamicallyQuantizableLinear"
    assert "output shape" not in charts.layer_table(None, layers).columns
    # Forty boxes leave no room for text: the hover names them.
    assert not [a for a in charts.architecture_diagram(layers * 4).layout.annotations if a.text]


def test_headline_metrics_and_progress(trained):
    snapshot, _ = trained
    items = {h.label: h for h in charts.headline_metrics(snapshot)}
    assert items["Epoch"].value == "3 / 3"
    assert items["Val accuracy"].value == f"{snapshot.epoch('val_accuracy')[-1]:.1%}"
    assert items["Train loss"].delta.startswith(("-", "+")) and items["Train loss"].delta_color == "inverse"
    progress = charts.training_progress(snapshot)
    assert progress.fraction == 1.0 and progress.batches_done == progress.batches_total == snapshot.num_steps
    assert progress.batches_per_second > 0 and "batches/s" in progress.text()
    # A script's run that never said how long it trains: its speed, no "/ 0" and no time left.
    import dataclasses

    unknown = charts.training_progress(dataclasses.replace(snapshot, planned_epochs=0))
    assert unknown.fraction == 0.0 and unknown.batches_per_second == progress.batches_per_second
    assert unknown.text() == f"{snapshot.num_steps:,} batches · {progress.batches_per_second:,.0f} batches/s"
    assert unknown.done_text() == f"{snapshot.num_steps:,} batches" and "/" in progress.done_text()
    # A script that logs epochs without validation: a dash, like the val loss, not "nan%".
    from live_training_dashboard.history import EPOCH_COLUMNS

    epochs = snapshot.epochs.copy()
    epochs[:, [EPOCH_COLUMNS.index("val_loss"), EPOCH_COLUMNS.index("val_accuracy")]] = np.nan
    items = {h.label: h for h in charts.headline_metrics(dataclasses.replace(snapshot, epochs=epochs))}
    assert items["Val accuracy"].value == items["Val loss"].value == "–" and items["Val accuracy"].delta is None
    no_validation = dataclasses.replace(snapshot, epochs=epochs)
    assert [t.name for t in charts.epoch_metric_chart(no_validation, "loss").data] == ["train"]  # no empty "val"
    epochs[:, EPOCH_COLUMNS.index("train_accuracy")] = np.nan  # a regression script: no accuracy at all
    nothing = charts.epoch_metric_chart(dataclasses.replace(snapshot, epochs=epochs), "accuracy")
    assert not nothing.data and "none logged" in nothing.layout.annotations[0].text


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


def test_smoothing_x_axis_log_scale_and_outliers_change_what_is_drawn(trained):
    snapshot, _ = trained
    raw = charts.batch_loss_chart(snapshot, options=charts.ChartOptions(smoothing=0))
    assert [t.name for t in raw.data] == ["batch loss"]
    smoothed = charts.batch_loss_chart(snapshot, options=charts.ChartOptions(smoothing=0.9))
    line = smoothed.data[1]
    assert line.name == "smoothed (0.9)"
    assert np.allclose(line.y, tensorboard_smoothing(snapshot.batch("loss").astype(np.float64), 0.9), rtol=1e-5)
    # x axis: batches trained, relative seconds, epochs
    steps = charts.batch_loss_chart(snapshot, options=charts.ChartOptions(x_axis="step"))
    assert steps.data[0].x.tolist() == list(range(1, snapshot.num_steps + 1))
    assert steps.layout.xaxis.title.text.startswith("step")
    timed = charts.epoch_metric_chart(snapshot, "loss", options=charts.ChartOptions(x_axis="time"))
    assert np.allclose(timed.data[0].x, snapshot.epoch("seconds"))
    # the doctor's markers move with the axis: epoch 2 is where the second epoch's last batch was
    marked = charts.batch_loss_chart(snapshot, markers=[(2.0, "here", "red")], options=charts.ChartOptions(x_axis="step"))
    assert marked.layout.shapes[0].x0 == pytest.approx(snapshot.epoch("end_step")[1])
    # y scale: auto keeps losses linear and gradient norms log; log and linear apply to every value chart
    assert charts.batch_loss_chart(snapshot).layout.yaxis.type == "linear"
    assert charts.grad_norm_chart(snapshot).layout.yaxis.type == "log"
    log = charts.ChartOptions(y_scale="log")
    assert {f.layout.yaxis.type for f in (charts.batch_loss_chart(snapshot, options=log), charts.lr_chart(snapshot, log),
                                          charts.epoch_metric_chart(snapshot, "loss", options=log))} == {"log"}
    assert charts.grad_norm_chart(snapshot, options=charts.ChartOptions(y_scale="linear")).layout.yaxis.type == "linear"
    assert charts.epoch_metric_chart(snapshot, "accuracy", options=log).layout.yaxis.type == "linear"


def test_ignoring_outliers_scales_the_y_axis_to_the_bulk_of_the_values():
    from live_training_dashboard.history import BATCH_COLUMNS, History

    history = History(("fc1",), 8)
    rows = np.zeros((500, len(BATCH_COLUMNS)), np.float32)
    rows[:, BATCH_COLUMNS.index("loss")] = np.linspace(1.0, 0.5, 500)
    rows[3, BATCH_COLUMNS.index("loss")] = 40.0  # one early spike
    rows[:, BATCH_COLUMNS.index("grad_norm")] = 1.0
    rows[:, BATCH_COLUMNS.index("epoch_progress")] = np.arange(1, 501) / 100
    history.append_batches(rows, np.ones((500, 1), np.float32))
    snapshot = history.snapshot()
    assert charts.batch_loss_chart(snapshot).layout.yaxis.range is None  # Plotly's own: 0.5 .. 40
    low, high = charts.batch_loss_chart(snapshot, options=charts.ChartOptions(ignore_outliers=True)).layout.yaxis.range
    assert 0.4 < low < 0.6 and 0.9 < high < 1.2  # the spike is left out, the whole decline is in
    low, high = charts.batch_loss_chart(
        snapshot, options=charts.ChartOptions(ignore_outliers=True, y_scale="log")).layout.yaxis.range
    assert math.log10(0.4) < low < math.log10(0.6) and math.log10(0.9) < high < math.log10(1.2)  # log10 units


def test_histograms_in_offset_mode_and_on_a_shared_log_scale_show_the_gap_between_layers():
    """Gradient-flow lesson: fc1's gradients are ~1000x smaller than fc2's. Per layer, both panels
    look alike; on the shared log |value| axis their peaks sit three decades apart."""
    from live_training_dashboard.history import LAYER_STATS, History

    history = History(("fc1", "fc2"), 16)
    rng = np.random.default_rng(0)
    for step in range(0, 200, 10):
        counts, ranges = [], []
        for scale in (1e-5, 1e-2):
            values = rng.normal(0, scale, 4000)
            hist, edges = np.histogram(values, 16)
            counts.append(hist)
            ranges.append((edges[0], edges[-1]))
        data = (np.array(counts, np.float32), np.array(ranges, np.float32))
        history.append_layer_stats(step, np.zeros((2, len(LAYER_STATS)), np.float32), data, data)
    snapshot = history.snapshot()
    per_layer = charts.histogram_heatmaps(snapshot, "grad")
    assert per_layer.layout.coloraxis.colorbar.title.text == "share"  # a colour bar, in shares
    shared = charts.histogram_heatmaps(snapshot, "grad", scale="shared")
    peaks = [float(np.asarray(t.y)[np.asarray(t.customdata)[:, -1].argmax()]) for t in shared.data]
    assert 2.5 < peaks[1] - peaks[0] < 3.5, peaks  # log10 |value|: three decades apart
    assert shared.layout.yaxis.range == shared.layout.yaxis2.range  # one axis for both layers
    assert "1e-5" in shared.layout.yaxis.ticktext or "1e-6" in shared.layout.yaxis.ticktext
    offset = charts.histogram_heatmaps(snapshot, "grad", mode="offset")
    ridges = [t for t in offset.data if t.fill == "toself"]
    assert len(ridges) == 2 * len(snapshot.grad_histograms.steps)  # one outline per step and layer (20 <= 24)
    assert offset.layout.coloraxis.colorbar.title.text == "step" and offset.layout.yaxis.autorange == "reversed"
    latest = charts.latest_histograms(snapshot, "grad", scale="shared")
    tops = [float(np.asarray(t.x)[np.asarray(t.y).argmax()]) for t in latest.data]
    assert 2.5 < tops[1] - tops[0] < 3.5
    with pytest.raises(ValueError):
        charts.histogram_heatmaps(snapshot, "grad", mode="violin")


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
        figures += charts.training_curves_figures(snapshot, findings, charts.ChartOptions(
            smoothing=0.95, x_axis="time", y_scale="log", ignore_outliers=True))
        for mode in charts.HISTOGRAM_MODES:
            for scale in charts.HISTOGRAM_SCALES:
                figures += [charts.histogram_heatmaps(snapshot, kind, mode=mode, scale=scale) for kind in ("weight", "grad")]
        figures += [charts.latest_histograms(snapshot, kind, scale) for kind in ("weight", "grad")
                    for scale in charts.HISTOGRAM_SCALES]
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


def test_a_log_axis_spanning_less_than_three_powers_of_ten_is_labelled_in_full(trained):
    """Gradient norms between 0.3 and 4 (common late in a run) showed one label, "1"."""
    import dataclasses

    from live_training_dashboard.history import BATCH_COLUMNS

    trained, _ = trained
    rng = np.random.default_rng(0)
    narrow = trained.batches.copy()
    narrow[:, BATCH_COLUMNS.index("grad_norm")] = rng.uniform(0.3, 4.0, len(narrow))
    snapshot = dataclasses.replace(trained, batches=narrow, history_id="narrow gradient norms",
                                   layer_grad_norms=rng.uniform(0.3, 4.0, trained.layer_grad_norms.shape))
    axis = charts.grad_norm_chart(snapshot).layout.yaxis
    assert axis.type == "log" and axis.tickmode == "array"
    assert dict(zip(axis.tickvals, axis.ticktext)) == {0.5: "0.5", 1.0: "1", 2.0: "2"}
    # The comparison draws the smoothed line only, narrower still (about 1.1 to 2.9): round steps.
    axis = charts.compare_chart([("a", snapshot)], "grad_norm").layout.yaxis
    assert len(axis.tickvals) >= 3 and list(axis.ticktext) == [f"{tick:g}" for tick in axis.tickvals]
    assert 1.0 < min(axis.tickvals) and max(axis.tickvals) < 3.0
    # Three or more powers of ten in view: those alone, as before.
    assert charts.log_axis_ticks(0.01, 50.0) is None
    assert charts.log_axis_ticks(0.02, 2.0) == [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]  # 0.1 and 1 alone: too few
    assert charts.log_axis_ticks(0.6, 0.95) == [0.6, 0.7, 0.8, 0.9]  # within one power: every digit
    assert charts.log_axis_ticks(0.52, 0.58) == [0.52, 0.54, 0.56, 0.58]
    for low, high in ((0.0, 1.0), (math.nan, 1.0), (1.0, math.inf), (2.0, 1.0), (5e-324, 1e-323)):
        assert charts.log_axis_ticks(low, high) is None  # no range: Plotly's own


def test_a_chart_with_nothing_to_draw_hides_its_empty_axes():
    from live_training_dashboard.history import History

    empty = History(["fc1"]).snapshot()
    figure = charts.batch_loss_chart(empty)
    assert figure.layout.annotations and figure.layout.xaxis.visible is False and figure.layout.yaxis.visible is False
    table, settings = charts.runs_table(runs_for_table())
    one_run = charts.parallel_coordinates_chart(table.iloc[:1], settings)
    assert one_run.layout.xaxis.visible is False


def runs_for_table():
    from live_training_dashboard.history import Status

    def entry(run_id, name, lr, optimizer, best, tags=(), notes=""):
        return {"id": run_id, "name": name, "tags": tags, "notes": notes, "status": Status.FINISHED, "source": "dashboard",
                "created_at": 1.7e9, "config": {"lr": lr, "optimizer": optimizer, "hidden_sizes": [128, 128], "seed": 0},
                "metrics": {"epochs trained": 20, "final train loss": 0.1, "final val loss": 0.2, "final val accuracy": best - 0.01,
                            "best val accuracy": best}}

    return [entry("a" * 12, "adam fast", 0.01, "adam", 0.99, ("baseline",)),
            entry("b" * 12, "adam slow", 0.0001, "adam", 0.80, ("lr sweep",), "too slow"),
            entry("c" * 12, "sgd", 0.1, "sgd", math.nan)]


def test_the_runs_table_has_every_setting_and_filters_like_wandb():
    table, settings = charts.runs_table(runs_for_table())
    assert settings[:2] == ["lr", "optimizer"]  # the settings that differ first
    assert {"hidden_sizes", "seed", "best val accuracy", "final val accuracy", "tags", "notes", "id"} <= set(table.columns)
    assert table.loc[0, "hidden_sizes"] == "128,128" and table.loc[1, "tags"] == "lr sweep"

    def names(query):
        shown, problems = charts.filter_runs(table, query)
        return shown["name"].tolist(), problems

    assert names("") == (["adam fast", "adam slow", "sgd"], [])
    assert names("ADAM") == (["adam fast", "adam slow"], [])  # text in any cell, any case
    assert names("slow")[0] == ["adam slow"] and names("too")[0] == ["adam slow"]  # names and notes
    assert names("lr<0.05")[0] == ["adam fast", "adam slow"]
    assert names("optimizer=adam lr>=0.001")[0] == ["adam fast"]
    assert names("best_val_accuracy>0.9")[0] == ["adam fast"]  # NaN never passes a comparison
    assert names("tags=baseline")[0] == ["adam fast"] and names("tags!=baseline")[0] == ["adam slow", "sgd"]
    assert names('"lr sweep"')[0] == ["adam slow"]
    shown, problems = names("nosuch>1")
    assert shown == ["adam fast", "adam slow", "sgd"] and "No column 'nosuch'" in problems[0]
    assert "holds text" in names("optimizer>adam")[1][0]


def test_parallel_coordinates_draw_what_differs_against_the_result():
    table, settings = charts.runs_table(runs_for_table())
    figure = charts.parallel_coordinates_chart(table, settings, "best val accuracy")
    [parcoords] = figure.data
    labels = [d.label for d in parcoords.dimensions]
    assert labels == ["lr (log10)", "best val accuracy"]  # without the sgd run (no accuracy) both are adam
    assert "1 run without it left out" in figure.layout.title.text
    both = charts.parallel_coordinates_chart(table, settings, "final val loss")
    labels = [d.label for d in both.data[0].dimensions]
    assert labels == ["lr (log10)", "optimizer", "final val loss"]  # 1e-4 .. 0.1: a log axis
    lr = both.data[0].dimensions[0]
    assert np.allclose(lr.values, np.log10([0.01, 0.0001, 0.1]))
    optimizer = both.data[0].dimensions[1]
    assert list(optimizer.ticktext) == ["adam", "sgd"] and list(optimizer.values) == [0, 0, 1]
    assert charts.parallel_coordinates_chart(table.iloc[:1], settings).layout.annotations  # one run: a note


def test_the_system_panel_draws_what_was_sampled_and_says_what_was_not():
    from live_training_dashboard.history import History

    history = History(("fc1",))
    assert charts.system_metrics_chart(history.snapshot()).layout.annotations[-1].text.startswith("the first sample")
    for second in range(1, 6):
        history.append_system([second, 100 * second, 95.0, 300.0 + second, np.nan, 100.0])
    figure = charts.system_metrics_chart(history.snapshot())
    assert [t.name for t in figure.data] == ["CPU % (100 = one core)", "Process memory (MB)", "Batches / s"]
    assert list(figure.data[1].y) == [301.0, 302.0, 303.0, 304.0, 305.0] and list(figure.data[0].x) == [1, 2, 3, 4, 5]
    assert any(a.text == "no GPU in this run" for a in figure.layout.annotations)


def test_a_history_cut_at_a_step_holds_exactly_what_was_known_then(trained):
    snapshot, _ = trained
    assert snapshot.until(snapshot.num_steps) is snapshot
    middle = snapshot.until(40)
    assert middle.num_steps == 40 and middle.layer_grad_norms.shape[0] == 40
    assert (middle.epoch("end_step") <= 40).all() and len(middle.epochs) == int((snapshot.epoch("end_step") <= 40).sum())
    assert (middle.stats_steps < 40).all() and len(middle.layer_stats) == len(middle.stats_steps)
    assert (middle.grad_histograms.steps < 40).all() and len(middle.grad_histograms.counts) == len(middle.grad_histograms.steps)
    assert str(middle.status) == "running" and middle.history_id != snapshot.history_id  # its own chart caches
    figures = charts.training_curves_figures(middle, [], replay_of=snapshot)
    assert all(f.layout.xaxis.range[1] >= snapshot.batch("epoch_progress")[-1] for f in figures)
    assert snapshot.until(0).num_steps == 0 and snapshot.until(10**9) is snapshot


def test_the_latest_histograms_replayed_in_the_browser_are_each_moments_own(trained):
    import base64

    snapshot, _ = trained
    series = snapshot.weight_histograms
    steps = charts.replay_frame_steps(1, snapshot.num_steps, 40)
    for scale in ("layer", "shared"):
        figure, frames = charts.latest_histogram_frames(snapshot, "weight", scale, steps)
        assert len(frames["state_of_frame"]) == len(steps) and len(figure.data) == len(snapshot.layer_names)
        for step, state in zip(steps, frames["state_of_frame"]):
            moment = snapshot.until(step)
            if len(moment.weight_histograms.steps) == 0:
                continue  # before the first histogram the frame keeps the first one drawn
            still = charts.latest_histograms(moment, "weight", scale)  # what the server draws at that step
            shown = frames["states"][state]
            assert shown["layout"]["title.text"] == still.layout.title.text
            for trace, x, y in zip(still.data, shown["restyle"]["x"], shown["restyle"]["y"]):
                assert x["dtype"] == y["dtype"] == "f4"
                assert np.allclose(np.frombuffer(base64.b64decode(x["bdata"]), "<f4"), trace.x, rtol=1e-5, atol=1e-6)
                assert np.allclose(np.frombuffer(base64.b64decode(y["bdata"]), "<f4"), trace.y, rtol=1e-5, atol=1e-6)
        assert len(frames["states"]) == len(set(frames["state_of_frame"])) > 3  # each moment sent once
    # The heatmaps' cursor: between the last column taken before the frame's batch and the next.
    cursor = charts.histogram_replay_cursor(snapshot, "weight", steps)
    columns = series.steps
    for step, x in zip(steps, cursor):
        assert (columns[columns < step] < x).all() and (columns[columns >= step] > x).all()


def test_the_layer_table_replayed_in_the_browser_shows_each_frames_statistics(trained):
    snapshot, architecture = trained
    steps = [5, 40, snapshot.num_steps]
    figure, frames = charts.layer_table_frames(snapshot, architecture, steps, [set(), {"fc2"}, set()])
    assert frames["state_of_frame"] == [0, 1, 2] and figure.data[0].type == "table"
    for step, state in zip(steps, frames["states"]):
        still = charts.layer_table(snapshot.until(step), architecture)  # what the page's table shows then
        columns = ["health", *still.columns]
        cells = dict(zip(columns, state["restyle"]["cells.values"][0]))
        assert cells["layer"] == list(still["layer"]) and state["layout"]["title.text"].endswith(f"batch {step:,}")
        assert cells["update/weight"] == [f"{v:.2e}" for v in still["update/weight"]]
        assert cells["weight std"] == [f"{v:.4g}" for v in still["weight std"]]
    flagged = dict(zip(frames["states"][1]["restyle"]["cells.values"][0][1], frames["states"][1]["restyle"]["cells.values"][0][0]))
    assert flagged["fc2"] == "check" and flagged["fc1"] == "ok"
    tint = frames["states"][1]["restyle"]["cells.fill.color"][0][0]
    assert tint[list(flagged).index("fc2")] == charts.FLAGGED_FILL and tint[0] == charts.PLAIN_FILL
    hostile = charts.layer_table(snapshot, architecture).assign(layer="<b>x</b>")
    assert charts.layer_table_cells(hostile)[0] == ["&lt;b&gt;x&lt;/b&gt;"] * len(hostile)


def test_the_neuron_view_shows_every_hidden_unit_and_marks_a_dead_one():
    import torch

    from live_training_dashboard import inspection
    from neural_network import MonitoredMLP

    torch.manual_seed(0)
    model = MonitoredMLP(2, [6, 4], 3)
    model.disable_monitoring()
    with torch.no_grad():
        model.fc1.bias[2] = -1e3  # unit 2 of fc1 is negative over the whole plane: a dead ReLU
    points = torch.randn(200, 2)
    xs, ys, layers = inspection.neuron_outputs(model, points, resolution=12)
    assert len(xs) == len(ys) == 12
    assert [(name, outputs.shape) for name, outputs in layers] == [("fc1", (6, 12, 12)), ("fc2", (4, 12, 12))]
    assert (layers[0][1][2] == 0).all() and layers[0][1][0].std() > 0
    figure = charts.neuron_view(xs, ys, layers, step=40)
    notes = [a.text for a in figure.layout.annotations]
    flat = [int((np.ptp(outputs.reshape(len(outputs), -1), axis=1) == 0).sum()) for _, outputs in layers]
    assert flat[0] >= 1  # the one made dead (a random fc2 unit may be dead over this plane too)
    assert notes[0] == f"<b>fc1</b>: 6 units, {flat[0]} flat (dead)" and notes.count("dead") == sum(flat)
    assert any(n.startswith("<b>fc2</b>: 4 units") for n in notes) and "batch 40" in figure.layout.title.text
    few = charts.neuron_view(xs, ys, [("fc1", np.zeros((100, 12, 12)))], step=None, max_units=64)
    assert "first 64 shown" in few.layout.annotations[0].text


def test_a_replayed_neuron_picture_is_the_live_view_in_63_levels_with_dead_units_grey():
    from conftest import png_pixels

    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(5, 12, 12)).astype(np.float32)
    outputs[3] = 0.0  # a dead unit
    layers = [("fc1", outputs), ("fc2", rng.normal(size=(20, 12, 12)).astype(np.float32))]
    url, notes = charts.neuron_picture(layers, side=12)
    levels, palette = png_pixels(url)
    tiles = charts.neuron_tiles(layers, 12)
    assert levels.shape == tiles.canvas.shape and notes == tiles.notes
    drawn = np.isfinite(tiles.canvas)
    values = (levels[drawn].astype(float) - 1) / (charts.NEURON_LEVELS - 1) * 2 - 1  # each level's value in -1..1
    assert np.abs(values - tiles.canvas[drawn]).max() <= 1 / (charts.NEURON_LEVELS - 1) + 1e-6
    # The live view's colour scale: red at -1, near-white at 0, blue at +1; between tiles transparent.
    assert palette[1][:3] == (103, 0, 31) and palette[32][:3] == (247, 247, 247)
    assert palette[charts.NEURON_LEVELS][:3] == (5, 48, 97) and palette[0][3] == 0
    assert set(np.unique(levels[~drawn])) <= {0, charts.NEURON_LEVELS + 1, charts.NEURON_LEVELS + 2}
    (top, left), = tiles.flat_boxes  # the dead unit: a grey tile with a red edge, labelled
    dead = levels[top:top + 12, left:left + 12]
    assert (dead[1:-1, 1:-1] == charts.NEURON_LEVELS + 1).all() and (dead[[0, -1]] == charts.NEURON_LEVELS + 2).all()
    assert palette[charts.NEURON_LEVELS + 2][:3] == (0xD6, 0x27, 0x28) and [n["text"] for n in notes].count("dead") == 1
    # The replay's chart: the picture over exactly the plane the heatmap fills, on fixed axes.
    figure = charts.neuron_view(np.arange(12.0), np.arange(12.0), layers, step=7, image=url)
    height, width = tiles.canvas.shape
    image = figure.layout.images[0]
    assert image.source == url and (image.x, image.y, image.sizex, image.sizey) == (-0.5, -0.5, width, height)
    assert tuple(figure.layout.xaxis.range) == (-0.5, width - 0.5) and tuple(figure.layout.yaxis.range) == (height - 0.5, -0.5)
    assert not figure.layout.shapes and "batch 7" in figure.layout.title.text


def test_a_palette_png_refuses_a_level_without_a_colour_and_a_boundary_picture_puts_the_lowest_y_at_the_bottom():
    from conftest import png_pixels

    with pytest.raises(ValueError, match="no colour"):
        charts.palette_png(np.array([[0, 2]]), [(0, 0, 0, 0), (1, 1, 1, 255)])
    classes = np.zeros((4, 5), np.int64)
    classes[0] = 2  # row 0 of a decision grid is the lowest y
    levels, palette = png_pixels(charts.boundary_picture(classes))
    assert (levels[-1] == 2).all() and (levels[:-1] == 0).all()
    assert palette[2][:3] == tuple(int(charts.CLASS_COLORS[2][i:i + 2], 16) for i in (1, 3, 5))


def test_the_mistakes_gallery_shows_each_wrong_digit_with_its_true_and_predicted_class():
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 28, 28)).astype(np.float32)
    labels = np.arange(40) % 10
    predictions = labels.copy()
    wrong = [3, 7, 19, 30]
    predictions[wrong] = (labels[wrong] + 1) % 10
    figure = charts.mistakes_gallery(images, labels, predictions)
    assert figure.layout.title.text == "Misclassified validation digits (all 4)"
    assert [a.text for a in figure.layout.annotations] == [f"{labels[i]}→{predictions[i]}" for i in wrong]
    canvas = np.asarray(figure.data[0].z, dtype=np.float32)
    side, gap = 28, 10
    for position, index in enumerate(wrong):  # each tile is that image, in reading order
        column = position * (side + gap)
        np.testing.assert_array_equal(canvas[:side, column:column + side], images[index, 0])
    # Over the limit: the first ones, and the title says how many there are.
    predictions = (labels + 1) % 10
    figure = charts.mistakes_gallery(images, labels, predictions, limit=24)
    assert figure.layout.title.text == "Misclassified validation digits (first 24 of 40)"
    assert len(figure.layout.annotations) == 24
    perfect = charts.mistakes_gallery(images, labels, labels)
    assert perfect.layout.title.text == "Misclassified validation digits (none)"
    assert "no mistakes" in perfect.layout.annotations[0].text
