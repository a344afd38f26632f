"""Pure functions from a HistorySnapshot (or a model description) to Plotly figures and tables.

Nothing here imports streamlit, so every chart is unit-testable without a server. Figures
get numpy arrays, long series are downsampled keeping each bucket's min and max (a loss
spike stays visible), and every figure has a fixed height so the page does not jump.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import shlex
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from live_training_dashboard.history import LAYER_STATS, HistorySnapshot
from neural_network import LayerInfo

MAX_POINTS = 2000
# Per-epoch charts draw markers; past this many epochs they are evenly thinned (a 1M-batch run has 26k).
MAX_EPOCH_POINTS = 500
CHART_HEIGHT = 320
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#ff7f0e"
LAYER_COLORS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52")
MARKER_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}  # by finding severity
# Same layout revision across refreshes: Plotly keeps legend toggles where Streamlit lets it.
UI_REVISION = "live"


def downsample_minmax(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points points: each bucket keeps its min and its max, in x order.

    A plain stride would drop a one-batch loss spike; min/max keeps it. Non-finite values
    (a diverged tail) sort last and stay visible as gaps.
    """
    n = len(x)
    if n <= max_points:
        return np.asarray(x), np.asarray(y)
    y = np.asarray(y, dtype=np.float64)
    size = math.ceil(n / (max_points // 2))
    buckets = math.ceil(n / size)
    finite = np.isfinite(y)
    low = np.full(buckets * size, np.inf)
    high = np.full(buckets * size, -np.inf)
    low[:n] = np.where(finite, y, np.inf)
    high[:n] = np.where(finite, y, -np.inf)
    offsets = np.arange(buckets) * size
    keep = np.unique(np.concatenate([
        low.reshape(buckets, size).argmin(1) + offsets,
        high.reshape(buckets, size).argmax(1) + offsets,
    ]))
    keep = keep[keep < n]
    return np.asarray(x)[keep], y[keep]


def display_points(count: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices (first and last included) for drawing a smooth line of `count` rows:
    every row up to max_points, else every 2**k-th row and the last. The grid only coarsens as a run
    grows, keeping every other point, so values computed at its points stay valid (smoothed_at)."""
    if count <= max_points:
        return np.arange(count)
    stride = 1 << max(0, math.ceil(math.log2(count / (max_points - 1))))
    while -(-count // stride) + 1 > max_points:
        stride *= 2
    points = np.arange(0, count, stride)
    return points if points[-1] == count - 1 else np.append(points, count - 1)


X_AXES = {"step": "step (batches trained)", "epoch": "epoch", "time": "time since start (s)"}
Y_SCALES = ("auto", "linear", "log")


@dataclass(frozen=True)
class ChartOptions:
    """How the curves are drawn, chosen as in TensorBoard.

    smoothing: TensorBoard's debiased exponential moving average weight (0 draws the raw series
    only); x_axis: one of X_AXES; y_scale: "auto" (losses and the LR linear, gradient norms log),
    "linear" or "log" for every value chart; ignore_outliers: the y-range spans the 5th-95th
    percentile of what is drawn (a first-batch loss of 40 no longer flattens the rest)."""

    smoothing: float = 0.9
    x_axis: str = "epoch"
    y_scale: str = "auto"
    ignore_outliers: bool = False

    def __post_init__(self):
        if not (isinstance(self.smoothing, (int, float)) and 0 <= self.smoothing < 1):
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing!r}")
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}, got {self.x_axis!r}")
        if self.y_scale not in Y_SCALES:
            raise ValueError(f"y_scale must be one of {', '.join(Y_SCALES)}, got {self.y_scale!r}")

    def log_y(self, default: bool) -> bool:
        return default if self.y_scale == "auto" else self.y_scale == "log"


DEFAULT_OPTIONS = ChartOptions()


def _discounted_sums(values: np.ndarray, weight: float) -> np.ndarray:
    """s_t = weight * s_(t-1) + values_t, s_(-1) = 0, vectorised: each block is a cumulative sum of
    values_k / weight**k rescaled, with blocks short enough that weight**-block stays below 1e200."""
    out = np.empty(len(values))
    block = max(1, int(200 / -math.log10(weight)))
    powers = weight ** np.arange(min(block, len(values)) + 1, dtype=np.float64)
    carry = 0.0
    for start in range(0, len(values), block):
        chunk = values[start:start + block]
        m = len(chunk)
        sums = np.cumsum(chunk / powers[:m]) * powers[:m] + carry * powers[1:m + 1]
        out[start:start + m] = sums
        carry = sums[-1]
    return out


def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: last = last * w + (1 - w) * v, shown as last / (1 - w**count), i.e.
    the mean of the series so far weighted by w**age. A non-finite value is left out of the mean
    and drawn as a gap (NaN)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if weight <= 0 or len(values) == 0:
        return np.where(finite, values, np.nan)
    sums = _discounted_sums(np.where(finite, values, 0.0), weight)
    weights = _discounted_sums(finite.astype(np.float64), weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, sums / weights, np.nan)


def smooth_ema_at(values: np.ndarray, weight: float, points: np.ndarray) -> np.ndarray:
    """smooth_ema(values, weight)[points], from the last few hundred values before each point when
    that is cheaper than a pass over all of them (weights older than that are below 1e-7)."""
    values = np.asarray(values)
    if weight <= 0:
        return np.where(np.isfinite(values[points]), values[points], np.nan).astype(np.float64)
    reach = int(math.ceil(-7 / math.log10(weight)))
    if len(points) * reach >= len(values):
        return smooth_ema(values, weight)[points]
    rows = points[:, None] - np.arange(reach)[None, :]
    taken = values[np.maximum(rows, 0)].astype(np.float64)
    valid = (rows >= 0) & np.isfinite(taken)
    decay = weight ** np.arange(reach, dtype=np.float64)
    sums = np.where(valid, taken, 0.0) @ decay
    weights = valid @ decay
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(values[points]) & (weights > 0), sums / weights, np.nan)


class SmoothedPoints:
    """smooth_ema_at of an append-only series, remembering the points it computed: a refresh
    computes only the display points new since the last one (the grid of display_points keeps its
    old points as the run grows, and a smoothed value only looks back). Six series smoothed at 2,000
    points of a 1M-batch run took ~25 ms of every refresh."""

    def __init__(self):
        self.points = np.empty(0, np.int64)
        self.raw = np.empty(0)  # the series' values at `points`: a different series resets the cache
        self.smoothed = np.empty(0)

    def at(self, values: np.ndarray, weight: float, points: np.ndarray) -> np.ndarray:
        known = self.points[self.points < len(values)]
        if len(known) and not _same(values[known[-1]], self.raw[len(known) - 1]):
            self.__init__()
        slot = np.minimum(np.searchsorted(self.points, points), max(len(self.points) - 1, 0))
        found = (self.points[slot] == points) if len(self.points) else np.zeros(len(points), bool)
        smoothed = np.empty(len(points))
        smoothed[found] = self.smoothed[slot[found]]
        if not found.all():
            smoothed[~found] = smooth_ema_at(values, weight, points[~found])
        self.points, self.raw, self.smoothed = points, values[points].astype(np.float64), smoothed
        return smoothed


class SeriesEnvelope:
    """downsample_minmax of an append-only series, kept up to date with only the rows added since.

    Rows are grouped in buckets whose size doubles whenever there are more than max_points/2
    of them; each bucket keeps the index of its min and of its max. A refresh of a 1M-batch
    run then touches the few hundred new rows instead of all of them.
    """

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_buckets = max(2, max_points // 2)
        self.size = 1
        self.low_index = np.empty(0, np.int64)
        self.high_index = np.empty(0, np.int64)
        self.covered = 0  # rows in complete buckets
        self.last: float | None = None  # value of the last row covered: a different series resets it

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Indices to draw (in order) so every bucket's extremes show."""
        values = np.asarray(values)
        n = len(values)
        if n < self.covered or (self.covered and not _same(values[self.covered - 1], self.last)):
            self.__init__(self.max_buckets * 2)
        low = np.where(np.isfinite(values[self.covered:]), values[self.covered:], np.inf)
        high = np.where(np.isfinite(values[self.covered:]), values[self.covered:], -np.inf)
        complete = len(low) // self.size
        if complete:
            span = complete * self.size
            offsets = self.covered + np.arange(complete) * self.size
            self.low_index = np.concatenate([self.low_index, low[:span].reshape(complete, self.size).argmin(1) + offsets])
            self.high_index = np.concatenate([self.high_index,
                                              high[:span].reshape(complete, self.size).argmax(1) + offsets])
            self.covered += span
            low, high = low[span:], high[span:]
            self.last = values[self.covered - 1]
        while len(self.low_index) > self.max_buckets:
            self._merge(values)
        tail = [self.covered + int(low.argmin()), self.covered + int(high.argmax())] if len(low) else []
        return np.unique(np.concatenate([self.low_index, self.high_index, np.asarray(tail, np.int64)]))

    def _merge(self, values: np.ndarray) -> None:
        """Double the bucket size: each pair of buckets keeps the lower min and the higher max."""
        pairs = len(self.low_index) // 2
        finite = np.isfinite(values)
        low_values = np.where(finite, values, np.inf)
        high_values = np.where(finite, values, -np.inf)
        a, b = self.low_index[0 : 2 * pairs : 2], self.low_index[1 : 2 * pairs : 2]
        self.low_index = np.where(low_values[a] <= low_values[b], a, b)
        a, b = self.high_index[0 : 2 * pairs : 2], self.high_index[1 : 2 * pairs : 2]
        self.high_index = np.where(high_values[a] >= high_values[b], a, b)
        self.size *= 2
        self.covered = pairs * self.size  # an odd last bucket is folded back into the tail
        self.last = values[self.covered - 1] if self.covered else None


def _same(a, b) -> bool:
    return b is not None and (a == b or (a != a and b != b))


# (history id, series name) -> SeriesEnvelope, for the runs charts were drawn for lately.
_ENVELOPES: OrderedDict = OrderedDict()
_ENVELOPES_LOCK = threading.Lock()
MAX_ENVELOPES = 256


def _kept_series(key: tuple, make):
    """The series cache under `key` (made by `make()` if missing), now the most recently used; the
    least recently used go past MAX_ENVELOPES. Call with _ENVELOPES_LOCK held, and use it under it."""
    kept = _ENVELOPES.pop(key, None) or make()
    _ENVELOPES[key] = kept
    while len(_ENVELOPES) > MAX_ENVELOPES:
        _ENVELOPES.popitem(last=False)
    return kept


def envelope_points(snapshot: HistorySnapshot, name: str, values: np.ndarray) -> np.ndarray:
    """Row indices that draw `values` (a per-batch series of `snapshot`) with its spikes intact."""
    if len(values) <= MAX_POINTS:
        return np.arange(len(values))
    with _ENVELOPES_LOCK:  # page sessions draw at once; one envelope is updated by one at a time
        return _kept_series((snapshot.history_id, name), SeriesEnvelope).indices(values)


def smoothed_at(snapshot: HistorySnapshot, name: str, values: np.ndarray, weight: float, points: np.ndarray) -> np.ndarray:
    """smooth_ema_at(values, weight, points) for `values`, a per-batch series of `snapshot` named
    `name`, computed only at the points the last refresh of that series did not have."""
    if not snapshot.history_id or len(points) * 8 >= len(values):  # (a short run: nothing to save)
        return smooth_ema_at(values, weight, points)
    with _ENVELOPES_LOCK:
        return _kept_series(("smoothed", snapshot.history_id, name, weight), SmoothedPoints).at(values, weight, points)


def _batch_x(snapshot: HistorySnapshot, x_axis: str) -> np.ndarray:
    """x of every batch row on the chosen axis: batches trained, epochs (fractional) or seconds."""
    if x_axis == "step":
        return np.arange(1, snapshot.num_steps + 1, dtype=np.float64)
    return snapshot.batch("seconds" if x_axis == "time" else "epoch_progress")


def _epoch_x(snapshot: HistorySnapshot, x_axis: str) -> np.ndarray:
    """x of every epoch row: the step or the time at which the epoch ended, or its number."""
    return snapshot.epoch({"step": "end_step", "time": "seconds"}.get(x_axis, "epoch"))


def _epochs_to_x(snapshot: HistorySnapshot, x_axis: str, epochs: np.ndarray) -> np.ndarray:
    """Positions given in epochs (the doctor's markers) on the chosen axis."""
    epochs = np.asarray(epochs, dtype=np.float64)
    if x_axis == "epoch" or snapshot.num_steps == 0:
        return epochs
    return np.interp(epochs, snapshot.batch("epoch_progress").astype(np.float64), _batch_x(snapshot, x_axis))


def _batch_lines(snapshot: HistorySnapshot, name: str, values: np.ndarray, options: ChartOptions):
    """(x, y) of the raw series' envelope and (x, y) of its smoothed line (None without smoothing)."""
    x = _batch_x(snapshot, options.x_axis)
    raw = envelope_points(snapshot, name, values)
    if options.smoothing <= 0:
        return (x[raw], values[raw].astype(np.float32)), None
    points = display_points(len(values))
    return ((x[raw], values[raw].astype(np.float32)),
            (x[points], smoothed_at(snapshot, name, values, options.smoothing, points).astype(np.float32)))


def _epoch_points(snapshot: HistorySnapshot) -> np.ndarray:
    """Epoch rows to draw: all of them up to MAX_EPOCH_POINTS, else evenly spaced (last kept)."""
    return display_points(len(snapshot.epochs), MAX_EPOCH_POINTS)


def _figure(title: str, x_title: str, y_title: str, height: int = CHART_HEIGHT, log_y: bool = False) -> go.Figure:
    # One nested layout, validated once: update_layout with magic-underscore keys and a separate
    # update_yaxes took 12.4 ms a chart here against 1.1 ms, most of a 1M-batch refresh's 91 ms.
    y_axis = {"title": {"text": y_title}, "type": "log" if log_y else "linear"}
    if log_y:
        # Ticks at powers of ten only, written 1e-3: Plotly's default labels its 2x and 5x minor
        # ticks "2" and "5", and a learner cannot tell 0.5 from 0.05 where it matters most.
        y_axis.update(dtick=1, exponentformat="e", showexponent="all", minor={"ticks": "inside", "dtick": "D1"})
    return go.Figure(layout={
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": y_axis,
        # Below the x-axis title even when a narrow column wraps the legend into rows (automargin
        # then shrinks the plot, and the legend moves up with it).
        "legend": {"orientation": "h", "y": -0.32, "x": 0, "yanchor": "top"},
        "uirevision": UI_REVISION,
        "hovermode": "x unified",
    })


def _empty_note(figure: go.Figure, text: str) -> go.Figure:
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"color": "gray"})
    if not figure.data:  # Plotly's axes of nothing (-1..6 by -1..4) would read as data
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False)
    return figure


def _markers(figure: go.Figure, markers, snapshot: HistorySnapshot | None = None, x_axis: str = "epoch") -> go.Figure:
    """Vertical lines where the training doctor saw something: markers = [(epoch, label, color)],
    placed on the chart's x-axis."""
    markers = list(markers or ())
    if not markers:
        return figure
    xs = _epochs_to_x(snapshot, x_axis, [m[0] for m in markers]) if snapshot is not None else [m[0] for m in markers]
    for x, (_, label, color) in zip(xs, markers):
        figure.add_vline(x=float(x), line_dash="dot", line_color=color, annotation_text=label,
                         annotation_font_color=color)
    return figure


# Ignore outliers: the y-range spans these percentiles of what is drawn, padded by this share.
OUTLIER_PERCENTILES = (5, 95)
OUTLIER_PADDING = 0.1


def outlier_free_range(values: list[np.ndarray], log: bool) -> list[float] | None:
    """A y-range ([low, high], in log10 units on a log axis) around the 5th-95th percentile of
    `values`' finite (on a log axis: positive) numbers, or None when there are none."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values else np.empty(0)
    pooled = pooled[np.isfinite(pooled) & ((pooled > 0) if log else True)]
    if len(pooled) == 0:
        return None
    if log:
        pooled = np.log10(pooled)
    low, high = np.percentile(pooled, OUTLIER_PERCENTILES)
    span = high - low
    if span <= 0:  # a constant series: a band around it
        span = 1.0 if log or high == 0 else abs(high)
    return [float(low - OUTLIER_PADDING * span), float(high + OUTLIER_PADDING * span)]


def _scale_y(figure: go.Figure, options: ChartOptions, log: bool) -> go.Figure:
    """Ignore outliers: set the y-range from the figure's own lines (every point drawn counts).
    On a log axis, label more than the powers of ten where fewer than three would show."""
    lines = [np.asarray(t.y, dtype=np.float64) for t in figure.data if t.y is not None]
    span = outlier_free_range(lines, log) if options.ignore_outliers else None
    if span is not None:
        figure.layout.yaxis.update(range=span)
    if log:
        if span is not None:
            low, high = 10.0 ** span[0], 10.0 ** span[1]
        else:
            pooled = np.concatenate([line.ravel() for line in lines]) if lines else np.empty(0)
            pooled = pooled[np.isfinite(pooled) & (pooled > 0)]
            low, high = (float(pooled.min()), float(pooled.max())) if len(pooled) else (0.0, 0.0)
            if low == high:  # a constant (an unscheduled learning rate): ticks around it
                low, high = low / 2, high * 2
        _label_log_axis(figure, low, high)
    return figure


# Tick mantissas per power of ten, sparsest first: a log axis gets the first set that labels at
# least three values in view. A run's gradient norms often span less than a power of ten, where
# the powers of ten alone label one tick or none.
LOG_TICK_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 5, 7), tuple(range(1, 10)))


def log_axis_ticks(low: float, high: float) -> list[float] | None:
    """Tick values for a log axis that shows [low, high], or None where the powers of ten label
    three or more (or there is no range: non-positive, non-finite or empty). A range too narrow
    for whole mantissas (1.1 to 2.9) gets evenly spaced round values (1.5, 2, 2.5)."""
    if not (0 < low < high < math.inf):
        return None
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if last - first > 4:  # three powers of ten or more in view, whatever the mantissas would add
        return None
    for mantissas in LOG_TICK_MANTISSAS:
        ticks = sorted({value for exponent in range(first, last + 1) for mantissa in mantissas
                        if low <= (value := float(f"{mantissa}e{exponent}")) <= high})
        if len(ticks) >= 3:
            return None if mantissas == (1,) else ticks
    rough = (high - low) / 4
    if not 0 < rough < math.inf:  # (a span of a few subnormals rounds to 0)
        return None
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)
    start = math.ceil(low / step)
    ticks = [float(f"{(start + index) * step:.12g}") for index in range(int((high - low) / step) + 2)]
    return [tick for tick in ticks if low <= tick <= high] or None


def _label_log_axis(figure: go.Figure, low: float, high: float) -> None:
    ticks = log_axis_ticks(low, high)
    if ticks is not None:
        # Written in full (0.2, 0.5, 1, 2): "2" and "5" alone are what _figure's comment avoids.
        figure.layout.yaxis.update(tickmode="array", tickvals=ticks, ticktext=[f"{tick:g}" for tick in ticks])


# --------------------------------------------------------------------------- epoch curves


# The previous run's curves: the same colours, faint and dashed, beneath this run's.
PREVIOUS_OPACITY = 0.45


def _previous_line(figure: go.Figure, x, y, label: str, color: str, run_name: str) -> None:
    figure.add_trace(go.Scatter(
        x=x, y=y, name=label, mode="lines", opacity=PREVIOUS_OPACITY, legendgroup="previous",
        legendrank=1001,  # listed after this run's lines
        line={"color": color, "dash": "dash", "width": 1.5}, meta=escape_plotly(run_name),
        hovertemplate=f"{label} (%{{meta}}): %{{y:.4g}}<extra></extra>"))


def epoch_metric_chart(snapshot: HistorySnapshot, metric: str, markers=None,
                       options: ChartOptions = DEFAULT_OPTIONS, previous: tuple[str, HistorySnapshot] | None = None
                       ) -> go.Figure:
    """Train vs validation `metric` ("loss" or "accuracy") per epoch. previous: (name, history)
    of the run trained before this one, drawn faint and dashed beneath it, so a changed setting's
    effect shows on one chart (from the first moment: before this run's first epoch too)."""
    title = {"loss": "Loss per epoch", "accuracy": "Accuracy per epoch"}[metric]
    log = metric == "loss" and options.log_y(False)
    figure = _figure(title, X_AXES[options.x_axis], metric, log_y=log)
    previous_rows = _epoch_points(previous[1]) if previous is not None else ()
    if len(previous_rows):
        name, history = previous
        x = _epoch_x(history, options.x_axis)[previous_rows].astype(np.float32)
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            y = history.epoch(f"{split}_{metric}")[previous_rows].astype(np.float32)
            if np.isfinite(y).any():
                _previous_line(figure, x, y, f"{split}, previous run", color, name)
    rows = _epoch_points(snapshot)
    if len(rows) == 0:
        if metric == "accuracy" and len(previous_rows):
            figure.layout.yaxis.update(range=[0, 1.02], tickformat=".0%")
        return _empty_note(figure, "appears after the first epoch")
    x = _epoch_x(snapshot, options.x_axis)[rows].astype(np.float32)
    drawn = 0
    for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
        y = snapshot.epoch(f"{split}_{metric}")[rows].astype(np.float32)
        if not np.isfinite(y).any():  # a script that logs no validation (or no accuracy): no empty legend entry
            continue
        figure.add_trace(go.Scatter(x=x, y=y, name=split, mode="lines+markers" if len(rows) <= 100 else "lines",
                                    line={"color": color}))
        drawn += 1
    if not drawn:
        return _empty_note(figure, f"no {metric} to draw: none logged, or none finite")
    if metric == "accuracy":
        figure.layout.yaxis.update(range=[0, 1.02], tickformat=".0%")  # (update_yaxes: ~1 ms more)
    else:
        _scale_y(figure, options, log)
    return _markers(figure, markers, snapshot, options.x_axis)


# (history id, batches, smoothing, x axis) -> the previous run's batch-loss line: that run has
# usually ended, and its line at smoothing 0.99 took 42 ms of every 1 s refresh at 1M batches.
_PREVIOUS_LINES: OrderedDict = OrderedDict()


def _previous_batch_line(history: HistorySnapshot, options: ChartOptions) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a run's smoothed batch loss (its raw envelope with smoothing off), one line."""
    key = (history.history_id, history.num_steps, options.smoothing, options.x_axis)
    with _ENVELOPES_LOCK:
        line = _PREVIOUS_LINES.get(key) if history.history_id else None
    if line is None:
        loss = history.batch("loss")
        points = display_points(len(loss)) if options.smoothing > 0 else envelope_points(history, "loss", loss)
        y = smooth_ema_at(loss, options.smoothing, points) if options.smoothing > 0 else loss[points]
        line = (_batch_x(history, options.x_axis)[points], y.astype(np.float32))
        with _ENVELOPES_LOCK:
            _PREVIOUS_LINES[key] = line
            while len(_PREVIOUS_LINES) > MAX_ENVELOPES:
                _PREVIOUS_LINES.popitem(last=False)
    return line


def batch_loss_chart(snapshot: HistorySnapshot, markers=None, options: ChartOptions = DEFAULT_OPTIONS,
                     previous: tuple[str, HistorySnapshot] | None = None) -> go.Figure:
    """Per-batch loss (its envelope) and its smoothed line; previous: (name, history) of the run
    trained before, its smoothed line (raw without smoothing) faint and dashed beneath."""
    log = options.log_y(False)
    figure = _figure("Loss per batch", X_AXES[options.x_axis], "loss", log_y=log)
    if previous is not None and previous[1].num_steps:
        _previous_line(figure, *_previous_batch_line(previous[1], options),
                       "previous run" + (f" (smoothed {options.smoothing:g})" if options.smoothing > 0 else ""),
                       TRAIN_COLOR, previous[0])
    if snapshot.num_steps == 0:
        return _empty_note(figure, "waiting for the first batch")
    (px, py), smoothed = _batch_lines(snapshot, "loss", snapshot.batch("loss"), options)
    figure.add_trace(go.Scatter(x=px, y=py, name="batch loss", mode="lines",
                                line={"color": "rgba(31,119,180,0.35)" if smoothed else TRAIN_COLOR, "width": 1}))
    if smoothed is not None:
        figure.add_trace(go.Scatter(x=smoothed[0], y=smoothed[1], name=f"smoothed ({options.smoothing:g})",
                                    mode="lines", line={"color": TRAIN_COLOR, "width": 2}))
    _scale_y(figure, options, log)
    skipped = np.flatnonzero(~np.isfinite(snapshot.batch("grad_norm")) & np.isfinite(snapshot.batch("loss")))
    if len(skipped):  # AMP's skipped steps (NaN/Inf gradients, finite loss), at most MAX_POINTS of them
        skipped = skipped[display_points(len(skipped))]
        figure.add_trace(go.Scatter(x=_batch_x(snapshot, options.x_axis)[skipped], y=snapshot.batch("loss")[skipped],
                                    name="step skipped (NaN/Inf gradients)", mode="markers",
                                    marker={"symbol": "x", "color": MARKER_COLORS["warning"], "size": 7}))
    return _markers(figure, markers, snapshot, options.x_axis)


# Legend entries this long or shorter fit half of a chart's width in a 1024 px window.
LEGEND_HALF_CHARS = 12


def grad_norm_chart(snapshot: HistorySnapshot, markers=None, options: ChartOptions = DEFAULT_OPTIONS) -> go.Figure:
    """Global norm per batch (faint) and smoothed; each layer's norm smoothed (log axis by default),
    for a model of more than DEFAULT_HISTOGRAM_LAYERS layers those of default_histogram_layers."""
    log = options.log_y(True)
    layers = default_histogram_layers(len(snapshot.layer_names))
    # 61 lines and their legend left a deep script's chart 70 px of plot under a scrolling legend.
    which = "per layer" if len(layers) == len(snapshot.layer_names) else f"{len(layers)} of {len(snapshot.layer_names)} layers"
    figure = _figure(f"Gradient norm (global and {which})", X_AXES[options.x_axis], "L2 norm", log_y=log)
    if snapshot.num_steps == 0:
        return _empty_note(figure, "waiting for the first batch")
    x = _batch_x(snapshot, options.x_axis)
    (gx, gy), smoothed = _batch_lines(snapshot, "grad_norm", snapshot.batch("grad_norm"), options)
    # Short names, the smoothed line first: two entries fit a row of a chart in a 1024 px window.
    figure.add_trace(go.Scatter(x=gx, y=gy, name="global, raw" if smoothed else "global", mode="lines", legendrank=2,
                                line={"color": "rgba(0,0,0,0.2)" if smoothed else "black", "width": 1}))
    if smoothed is not None:
        figure.add_trace(go.Scatter(x=smoothed[0], y=smoothed[1], name="global", legendrank=1,
                                    mode="lines", line={"color": "black", "width": 2}))
    points = display_points(snapshot.num_steps)
    for index in layers:
        ly = smoothed_at(snapshot, f"layer_grad_norms/{index}", snapshot.layer_grad_norms[:, index], options.smoothing,
                         points).astype(np.float32)
        figure.add_trace(go.Scatter(x=x[points], y=ly, name=escape_plotly(snapshot.layer_names[index]), mode="lines",
                                    line={"color": LAYER_COLORS[index % len(LAYER_COLORS)], "width": 1.5}))
    if max(len(trace.name) for trace in figure.data) <= LEGEND_HALF_CHARS:
        # Two entries a row at any width: in a 1024 px window the six entries stood one a row and
        # left the plot 100 px, its axis title over the first entry.
        figure.layout.legend.update(entrywidthmode="fraction", entrywidth=0.5)
    _scale_y(figure, options, log)
    return _markers(figure, markers, snapshot, options.x_axis)


def lr_chart(snapshot: HistorySnapshot, options: ChartOptions = DEFAULT_OPTIONS) -> go.Figure:
    log = options.log_y(False)
    figure = _figure("Learning rate schedule", X_AXES[options.x_axis], "learning rate", log_y=log)
    if snapshot.num_steps == 0:
        return _empty_note(figure, "waiting for the first batch")
    rows = envelope_points(snapshot, "lr", snapshot.batch("lr"))
    x, y = _batch_x(snapshot, options.x_axis)[rows], snapshot.batch("lr")[rows]
    figure.add_trace(go.Scatter(x=x, y=y, name="lr", mode="lines", line={"color": "#2ca02c"}))
    if not log:
        top = float(np.nanmax(y)) if np.isfinite(y).any() else 1.0
        # Plotly pads a constant line to ±1 around it; anchor at zero so the value reads right.
        figure.update_yaxes(exponentformat="e", range=[0, top * 1.1 if top > 0 else 1.0])
    else:
        _scale_y(figure, replace(options, ignore_outliers=False), log)
    return figure


def doctor_markers(findings: list, chart: str) -> list:
    """(epoch, label, colour) of each finding the doctor placed on `chart` at a known epoch."""
    return [(f.epoch, f.title, MARKER_COLORS[f.severity]) for f in findings if f.chart == chart and f.epoch is not None]


def training_curves_figures(snapshot: HistorySnapshot, findings: list, options: ChartOptions = DEFAULT_OPTIONS,
                            replay_of: HistorySnapshot | None = None,
                            previous: tuple[str, HistorySnapshot] | None = None) -> list[go.Figure]:
    """The Training-curves tab: loss and accuracy per epoch, batch loss, gradient norms, LR.
    replay_of: the whole run, when `snapshot` is it cut at a replayed step: every chart keeps the
    whole run's x-range and shows a cursor where the replay is. previous: (name, history) of the
    run trained before, beneath the epoch curves and the batch loss."""
    figures = [
        epoch_metric_chart(snapshot, "loss", doctor_markers(findings, "loss"), options, previous),
        epoch_metric_chart(snapshot, "accuracy", doctor_markers(findings, "accuracy"), options, previous),
        batch_loss_chart(snapshot, doctor_markers(findings, "batch_loss"), options, previous),
        grad_norm_chart(snapshot, doctor_markers(findings, "grad_norm"), options),
        lr_chart(snapshot, options),
    ]
    if replay_of is not None and replay_of.num_steps and snapshot.num_steps:
        x = _batch_x(replay_of, options.x_axis)
        cursor = float(x[snapshot.num_steps - 1])
        for figure in figures:
            figure.update_xaxes(range=[0, float(x[-1]) * 1.02])
            # Named, so a page playing the replay in the browser finds the cursor and moves it.
            figure.add_shape(type="line", x0=cursor, x1=cursor, y0=0, y1=1, yref="paper", name=REPLAY_CURSOR,
                             line={"color": "#555", "width": 1.5})
            figure.add_annotation(x=cursor, y=1, yref="paper", text="replay", showarrow=False, xanchor="left",
                                  yanchor="bottom", font={"color": "#555"}, name=REPLAY_CURSOR)
    return figures


# The replay's cursor line and its label in the training-curve charts.
REPLAY_CURSOR = "replay-cursor"


def replay_frame_steps(start: int, last: int, frames: int = 100) -> list[int]:
    """The steps a replay shows when it plays from `start` to `last`: one frame per 1/`frames` of
    the whole run (at least one batch on), the last frame at `last`."""
    if last < 1:
        return []
    start = min(max(int(start), 1), last)
    stride = max(1, round(last / frames))
    steps = list(range(start, last, stride))
    return steps + [last]


def replay_cursor_x(whole: HistorySnapshot, x_axis: str, steps: list[int]) -> list[float]:
    """Where the replay cursor stands at each of `steps`, on the training curves' x-axis. A chart of
    the whole run with everything right of it veiled (as the browser plays it) shows the run as it
    stood then: every curve's x grows with the step, and smoothing only looks back."""
    x = _batch_x(whole, x_axis)
    return [float(x[min(max(step, 1), whole.num_steps) - 1]) for step in steps]


# --------------------------------------------------------------------------- distributions


def rebin_histograms(counts: np.ndarray, ranges: np.ndarray, rows: int = 60,
                     robust: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Put T histograms with their own [low, high] onto one shared grid of `rows` bins.

    counts (T, bins), ranges (T, 2) -> (edges (rows + 1,), fractions (rows, T)), each column
    summing to 1. Each source bin spreads its count over the grid rows it overlaps (linear
    interpolation of the cumulative count), so no row is left empty by aliasing. With
    robust=True the grid spans the 10th-90th percentile of the snapshots' ranges, so one
    gradient spike does not squash every other snapshot into a line; values beyond it are
    counted in the first or last row.
    """
    snapshots, bins = counts.shape
    finite = np.isfinite(ranges).all(1)
    if not finite.any():
        return np.linspace(-1, 1, rows + 1), np.zeros((rows, snapshots))
    if robust and finite.sum() >= 5:
        low, high = float(np.percentile(ranges[finite, 0], 10)), float(np.percentile(ranges[finite, 1], 90))
    else:
        low, high = float(ranges[finite, 0].min()), float(ranges[finite, 1].max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, rows + 1)
    counts = np.where(finite[:, None], counts, 0.0).astype(np.float64)
    source_low = np.where(finite, ranges[:, 0], low)[:, None]
    source_width = np.where(finite, ranges[:, 1] - ranges[:, 0], 0.0)[:, None] / bins
    # Position of every grid edge inside each snapshot's bins, in units of its bins.
    position = np.clip((edges[None, :] - source_low) / np.maximum(source_width, 1e-300), 0.0, bins)
    whole = np.minimum(position.astype(np.int64), bins - 1)
    cumulative = np.concatenate([np.zeros((snapshots, 1)), np.cumsum(counts, axis=1)], axis=1)
    below = np.take_along_axis(cumulative, whole, 1) + (position - whole) * np.take_along_axis(counts, whole, 1)
    grid = np.diff(below, axis=1).T  # (rows, T)
    grid[0] += below[:, 0]  # mass below the grid (only with robust=True) joins the edge rows
    grid[-1] += cumulative[:, -1] - below[:, -1]
    # A snapshot whose values were all equal has zero width: its whole count is one spike.
    for t in np.flatnonzero(finite & (source_width[:, 0] <= 0)):
        grid[:, t] = 0.0
        grid[min(int((ranges[t, 0] - low) / (high - low) * rows), rows - 1), t] = counts[t].sum()
    totals = grid.sum(0, keepdims=True)
    return edges, np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)


# Shares below this are drawn as empty: the colour scale spans 4 decades of share.
MIN_VISIBLE_SHARE = 1e-4
# A heatmap wider than this many snapshots shows no more detail on screen, only costs bytes.
MAX_HEATMAP_COLUMNS = 150


def _thin(count: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` of `count` items: every k-th counted back from the last (which is
    always kept), k the smallest stride that leaves at most `limit`, so at least limit / 2 of them.

    One stride, not the nearest items to evenly spread points: the history keeps its histograms at
    evenly spaced steps, and a heatmap whose columns stay evenly spaced is drawn by Plotly as one
    pixel per cell, scaled by the browser. Mixed gaps (40 and 80 batches, from picking 150 of 285)
    sent it down its cell-by-cell path: a Distributions tab click drew each 4-panel heatmap in
    216-307 ms instead of 85-150 ms (headless Chromium, 2-core VM)."""
    if count <= limit:
        return np.arange(count)
    stride = -(-count // limit)
    return np.arange(count - 1, -1, -stride)[::-1]


HISTOGRAM_MODES = ("heatmap", "offset")
HISTOGRAM_SCALES = ("layer", "shared")
# The shared log-magnitude axis spans at most this many decades below the largest value.
MAGNITUDE_DECADES = 12
# Offset (ridgeline) mode draws at most this many histograms per layer.
MAX_RIDGES = 24
SHARE_TICKS = {-4: "0.01%", -3: "0.1%", -2: "1%", -1: "10%", 0: "100%"}
# A heatmap cell's colour is its log share in 256 steps (0.016 decades each, finer than Viridis
# shows): one byte a cell instead of four. The hover reads the exact share beside it.
SHARE_LEVELS = 255


def share_levels(fractions: np.ndarray) -> np.ndarray:
    """uint8 colour levels of shares: 0 at MIN_VISIBLE_SHARE (or below), SHARE_LEVELS at 100%."""
    level = _share_level(np.log10(np.maximum(fractions, MIN_VISIBLE_SHARE)))
    return np.clip(np.rint(level), 0, SHARE_LEVELS).astype(np.uint8)


def _share_level(log_share):
    """The (unrounded) colour level of a log10 share, or of an array of them."""
    decades = -math.log10(MIN_VISIBLE_SHARE)
    return (log_share + decades) / decades * SHARE_LEVELS


def log_magnitudes(counts: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """(T, bins, 2): each bin's interval of log10 |value|. A bin can't tell magnitudes below half its
    width apart, so a bin around 0 starts there; an all-zero histogram gives -inf (drawn in the
    lowest row), a range that isn't finite NaN (left out)."""
    bins = counts.shape[-1]
    low, high = ranges[..., :1].astype(np.float64), ranges[..., 1:].astype(np.float64)
    width = (high - low) / bins
    left = low + np.arange(bins) * width
    right = left + width
    straddles = (left < 0) & (right > 0)
    small = np.where(straddles, width / 2, np.minimum(np.abs(left), np.abs(right)))
    large = np.maximum(np.abs(left), np.abs(right))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([np.log10(np.maximum(small, width / 2)), np.log10(large)], axis=-1)


def _occupied_magnitudes(counts: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """log_magnitudes of the bins that hold values (NaN elsewhere): what an axis must show."""
    return np.where(counts[..., None] > 0, log_magnitudes(counts, ranges), np.nan)


def magnitude_edges(magnitudes: list[np.ndarray], rows: int = 60) -> np.ndarray:
    """A grid of log10 |value| shared by every layer: from the largest magnitude down to the
    smallest, at most MAGNITUDE_DECADES below it."""
    pooled = np.concatenate([m.ravel() for m in magnitudes]) if magnitudes else np.empty(0)
    pooled = pooled[np.isfinite(pooled)]
    if len(pooled) == 0:
        return np.linspace(-1, 1, rows + 1)
    high = float(pooled.max())
    low = max(float(pooled.min()), high - MAGNITUDE_DECADES)
    if high - low < 1:  # at least one decade, centred on the values
        low, high = (low + high) / 2 - 0.5, (low + high) / 2 + 0.5
    return np.linspace(low, high, rows + 1)


def magnitude_histograms(counts: np.ndarray, ranges: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """T histograms (counts (T, bins) over ranges (T, 2)) as shares of log10 |value| on `edges`:
    (rows, T), each column summing to 1 (0 where a histogram has nothing finite). Each bin's count
    is spread evenly over its interval of log10 |value|, so a histogram of 30 bins draws a smooth
    curve on 60 rows instead of a comb."""
    snapshots, bins = counts.shape
    rows = len(edges) - 1
    intervals = log_magnitudes(counts, ranges)
    valid = ~np.isnan(intervals).any(-1) & np.isfinite(ranges).all(1)[:, None]
    start = np.clip(np.where(valid, intervals[..., 0], edges[0]), edges[0], edges[-1])
    end = np.clip(np.where(valid, intervals[..., 1], edges[0]), edges[0], edges[-1])
    weights = np.where(valid, counts, 0).astype(np.float64)
    # Overlap of every bin's interval with every row, as a share of the interval (T, bins, rows).
    overlap = np.clip(np.minimum(end[..., None], edges[1:]) - np.maximum(start[..., None], edges[:-1]), 0, None)
    length = end - start
    share = np.divide(overlap, length[..., None], out=np.zeros_like(overlap), where=length[..., None] > 0)
    # A point interval (all values equal, or clipped to one end) lands in the row that holds it.
    point = length <= 0
    if point.any():
        row = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, rows - 1)
        share[point] = 0.0
        share[point, row[point]] = 1.0
    grid = np.einsum("tb,tbr->rt", weights, share)
    totals = grid.sum(0, keepdims=True)
    return np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)


def _log_ticks(edges: np.ndarray) -> dict:
    """Axis ticks for log10 values: at whole decades, written 1e-3."""
    decades = np.arange(math.ceil(edges[0]), math.floor(edges[-1]) + 1)
    step = max(1, math.ceil(len(decades) / 8))
    decades = decades[::step]
    return {"tickvals": decades.tolist(), "ticktext": [f"1e{int(d)}" for d in decades]}


def _layer_grids(series, layers: list[int], shown: np.ndarray, kind: str, scale: str):
    """Per layer: (bin centres, shares (rows, len(shown))) on its own value range ("layer"), or on
    one log10 |value| grid for every layer ("shared")."""
    if scale == "shared":
        edges = magnitude_edges([_occupied_magnitudes(series.counts[shown, layer], series.ranges[shown, layer])
                                 for layer in layers])
        centres = (edges[:-1] + edges[1:]) / 2
        return [(centres, magnitude_histograms(series.counts[shown, layer], series.ranges[shown, layer], edges))
                for layer in layers], edges
    grids = []
    for layer in layers:
        edges, fractions = rebin_histograms(series.counts[shown, layer], series.ranges[shown, layer],
                                            robust=kind == "grad")
        grids.append(((edges[:-1] + edges[1:]) / 2, fractions))
    return grids, None


HEATMAP_ROOM_PX = 50
# The Distributions tab draws this many layers at first (a panel each, ~230 px): a script's model
# of 60 modules would be a 14,000 px column. The page offers the rest to pick.
DEFAULT_HISTOGRAM_LAYERS = 8


def default_histogram_layers(count: int, most: int = DEFAULT_HISTOGRAM_LAYERS) -> list[int]:
    """Indices of the layers drawn before anyone picks: all of up to `most`, else `most` spread
    evenly from the first to the last (depth is what a vanishing gradient shows along)."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def histogram_heatmaps(snapshot: HistorySnapshot, kind: str, layers: list[int] | None = None, columns: int = 2,
                       mode: str = "heatmap", scale: str = "layer") -> go.Figure:
    """One panel per layer over training steps. mode "heatmap": x = step, y = value, colour = share
    of the layer's values; "offset": one histogram per step stacked like TensorBoard's offset view
    (newest in front). scale "layer": each layer on its own value range; "shared": every layer on
    one log10 |value| axis, so a 1000x gap between layers shows as three decades."""
    if mode not in HISTOGRAM_MODES or scale not in HISTOGRAM_SCALES:
        raise ValueError(f"mode must be one of {HISTOGRAM_MODES} and scale one of {HISTOGRAM_SCALES}")
    series = snapshot.weight_histograms if kind == "weight" else snapshot.grad_histograms
    label = "Weight" if kind == "weight" else "Gradient"
    layers = list(range(len(snapshot.layer_names))) if layers is None else layers
    columns = max(1, min(columns, len(layers)))
    rows = math.ceil(len(layers) / columns)
    how = "|value| on one log scale" if scale == "shared" else "per layer"
    # The layout is built as one dict and the figure made once at the end: an update_layout and an
    # add_annotation per panel took 34 ms of server time for the default run's 4 panels, every refresh.
    height, margin = max(CHART_HEIGHT, 230 * rows), {"l": 50, "r": 60, "t": 50, "b": 30}
    layout = {"title": {"text": f"{label} distributions over time ({how})", "x": 0.01, "font": {"size": 14}},
              "height": height, "margin": margin, "uirevision": UI_REVISION, "showlegend": False}
    if len(series.steps) == 0:
        return _empty_note(go.Figure(layout=layout), f"the first {kind} histogram appears after the first batch")
    shown = _thin(len(series.steps), MAX_HEATMAP_COLUMNS if mode == "heatmap" else MAX_RIDGES)
    steps = series.steps[shown]
    grids, edges = _layer_grids(series, layers, shown, kind, scale)
    value_title = "log10 |value|" if scale == "shared" else "value"
    if mode == "heatmap":
        layout["coloraxis"] = {
            "colorscale": "Viridis", "cmin": 0, "cmax": SHARE_LEVELS,
            "colorbar": {"title": {"text": "share", "side": "right"}, "thickness": 12, "len": 0.9,
                         "tickvals": [_share_level(tick) for tick in SHARE_TICKS], "ticktext": list(SHARE_TICKS.values())}}
    else:
        layout["coloraxis"] = {
            "colorscale": "Viridis", "cmin": float(steps[0]), "cmax": float(steps[-1]) if len(steps) > 1 else float(steps[0]) + 1,
            "colorbar": {"title": {"text": "step", "side": "right"}, "thickness": 12, "len": 0.9}}
    gap = 0.08
    # Room above each panel (its name) and below (ticks, axis title) in pixels, not a share of the
    # figure: a share was 50 px at 4 layers and turned the panels inside out (domains with y0 > y1,
    # all piled on one another) at 9 or more, a script's transformer block.
    room = HEATMAP_ROOM_PX / (height - margin["t"] - margin["b"])
    traces, annotations = [], []
    for position, (layer, (centres, fractions)) in enumerate(zip(layers, grids)):
        r, c = divmod(position, columns)
        axis = "" if position == 0 else str(position + 1)
        x0 = c / columns + (gap / 2 if c else 0)
        x1 = (c + 1) / columns - (gap / 2 if c + 1 < columns else 0)
        y1 = 1 - r / rows - (room if r else 0)
        y0 = 1 - (r + 1) / rows + room
        name = escape_plotly(snapshot.layer_names[layer])
        if mode == "heatmap":
            # Log colour: the tails of a distribution matter as much as its peak. (Both from the float32
            # shares the hover shows.)
            shares = fractions.astype(np.float32)
            traces.append(go.Heatmap(
                x=steps, y=centres.astype(np.float32), z=share_levels(shares), customdata=shares,
                xaxis=f"x{axis}", yaxis=f"y{axis}", coloraxis="coloraxis",
                hovertemplate=f"step %{{x}}<br>{value_title} %{{y:.3g}}<br>share %{{customdata:.2%}}<extra>{name}</extra>",
            ))
            x_axis = {"title": {"text": "step", "standoff": 2}}
            y_axis = {"title": {"text": value_title, "standoff": 2}} if position == 0 else {}
            if edges is not None:
                y_axis.update(range=[float(edges[0]), float(edges[-1])], **_log_ticks(edges))
        else:
            traces.extend(_ridges(steps, centres, fractions, axis, name, value_title))
            x_axis = {"title": {"text": value_title, "standoff": 2}}
            if edges is not None:
                x_axis.update(range=[float(edges[0]), float(edges[-1])], **_log_ticks(edges))
            y_axis = {"autorange": "reversed", "title": {"text": "step", "standoff": 2}}
        layout[f"xaxis{axis}"] = {"domain": [x0, x1], "anchor": f"y{axis}", **x_axis}
        layout[f"yaxis{axis}"] = {"domain": [max(y0, 0), y1], "anchor": f"x{axis}", **y_axis}
        annotations.append({"text": f"<b>{name}</b>", "x": x0, "y": y1, "xref": "paper", "yref": "paper",
                            "xanchor": "left", "yanchor": "bottom", "showarrow": False})
    layout["annotations"] = annotations
    return go.Figure(data=traces, layout=layout)


def _ridges(steps: np.ndarray, centres: np.ndarray, fractions: np.ndarray, axis: str,
            name: str, value_title: str) -> list:
    """TensorBoard's offset view on one panel, as traces: a filled outline per step, each on its
    step's line (steps grow downwards, the newest in front), the tallest peak three rows high."""
    traces = []
    spacing = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
    height = 3 * spacing / max(float(fractions.max()), 1e-12)
    colors = sample_colorscale("Viridis", list((steps - steps[0]) / max(float(steps[-1] - steps[0]), 1e-12)))
    for index, step in enumerate(steps):
        top = step - height * fractions[:, index]
        traces.append(go.Scatter(
            x=np.concatenate([centres, centres[::-1]]).astype(np.float32),
            y=np.concatenate([top, np.full(len(centres), step)]).astype(np.float32),
            fill="toself", fillcolor="rgba(255,255,255,0.85)", mode="lines", line={"color": colors[index], "width": 1.2},
            xaxis=f"x{axis}", yaxis=f"y{axis}", customdata=np.concatenate([fractions[:, index], fractions[::-1, index]]),
            hovertemplate=f"step {int(step)}<br>{value_title} %{{x:.3g}}<br>share %{{customdata:.2%}}<extra>{name}</extra>",
        ))
    # Carries the step colour bar (the outlines' colours are fixed, a colour axis needs a trace).
    traces.append(go.Scatter(x=[centres[0], centres[0]], y=[steps[0], steps[-1]], mode="markers",
                             marker={"color": [float(steps[0]), float(steps[-1])], "coloraxis": "coloraxis",
                                     "opacity": 0, "size": 1},
                             xaxis=f"x{axis}", yaxis=f"y{axis}", hoverinfo="skip"))
    return traces


def _latest_histogram_lines(snapshot: HistorySnapshot, kind: str, scale: str, at: int, layers: list[int]):
    """Each of `layers`' histogram number `at` (an index into the kind's steps) as (x, share) lines,
    and the shared log-magnitude edges (None on the per-layer scale)."""
    series = snapshot.weight_histograms if kind == "weight" else snapshot.grad_histograms
    edges = None
    if scale == "shared":
        edges = magnitude_edges([_occupied_magnitudes(series.counts[[at], i], series.ranges[[at], i]) for i in layers])
    lines = []
    for index in layers:
        if scale == "shared":
            x = (edges[:-1] + edges[1:]) / 2
            share = magnitude_histograms(series.counts[[at], index], series.ranges[[at], index], edges)[:, 0]
        else:
            # Steps drawn from edge to edge (not centre to centre): the outer half bins of the widest
            # layer were cut off at the axis' ends.
            counts = series.counts[at, index]
            share = counts / max(counts.sum(), 1)
            x, share = series.edges(at, index), np.append(share, share[-1])
        lines.append((np.asarray(x, dtype=np.float32), np.asarray(share, dtype=np.float32)))
    return lines, edges


def latest_histograms(snapshot: HistorySnapshot, kind: str, scale: str = "layer", layers: list[int] | None = None
                      ) -> go.Figure:
    """The most recent histogram of each layer (of `layers`, indices; all by default) as outlines on
    one chart. scale "layer": on the value axis; "shared": on log10 |value|, where layers of very
    different sizes all keep their shape."""
    layers = list(range(len(snapshot.layer_names))) if layers is None else layers
    series = snapshot.weight_histograms if kind == "weight" else snapshot.grad_histograms
    label = "weights" if kind == "weight" else "gradients"
    figure = _figure(f"Latest {label} histogram", "log10 |value|" if scale == "shared" else "value",
                     "share of values")
    figure.update_layout(hovermode="closest")
    if len(series.steps) == 0:
        return _empty_note(figure, "no histogram yet")
    figure.update_layout(title={"text": f"Latest {label} histogram (step {int(series.steps[-1])})"})
    lines, edges = _latest_histogram_lines(snapshot, kind, scale, len(series.steps) - 1, layers)
    if edges is not None:
        figure.update_xaxes(range=[float(edges[0]), float(edges[-1])], **_log_ticks(edges))
    for index, (x, share) in zip(layers, lines):  # a layer keeps its colour whichever others are shown
        figure.add_trace(go.Scatter(x=x, y=share, name=escape_plotly(snapshot.layer_names[index]), mode="lines",
                                    line={"shape": "hv" if scale != "shared" else "hvh",
                                          "color": LAYER_COLORS[index % len(LAYER_COLORS)]}))
    return figure


def latest_histogram_frames(whole: HistorySnapshot, kind: str, scale: str, steps: list[int],
                            layers: list[int] | None = None) -> tuple[go.Figure, dict]:
    """The latest-histogram chart as a replay plays it in the browser: the figure at the first of
    `steps`, and each histogram the frames show once ("states": a restyle of every layer's x and share
    as float32, and the title, on the shared scale the axis' range and ticks), with the state each
    frame shows."""
    series = whole.weight_histograms if kind == "weight" else whole.grad_histograms
    label = "weights" if kind == "weight" else "gradients"
    # After s batches the newest histogram is the last one taken before batch s (see HistorySnapshot.until).
    taken = np.searchsorted(series.steps, np.asarray(steps, dtype=np.int64), side="left")
    shown = sorted({int(count) for count in taken if count > 0})
    layers = list(range(len(whole.layer_names))) if layers is None else layers
    figure = latest_histograms(whole.until(steps[0]) if steps else whole, kind, scale, layers)
    if not shown:
        return figure, {"states": [], "state_of_frame": [-1] * len(steps)}
    if len(figure.data) != len(layers):  # no histogram yet at the first frame: draw the first one
        figure = latest_histograms(whole.until(int(series.steps[shown[0] - 1]) + 1), kind, scale, layers)
    states = []
    for count in shown:
        lines, edges = _latest_histogram_lines(whole, kind, scale, count - 1, layers)
        layout = {"title.text": f"Latest {label} histogram (step {int(series.steps[count - 1])})"}
        if edges is not None:
            ticks = _log_ticks(edges)
            layout.update({"xaxis.range": [float(edges[0]), float(edges[-1])], "xaxis.tickvals": ticks["tickvals"],
                           "xaxis.ticktext": ticks["ticktext"]})
        states.append({"restyle": {"x": [typed_array(x) for x, _ in lines], "y": [typed_array(y) for _, y in lines]},
                       "layout": layout})
    index_of = {count: index for index, count in enumerate(shown)}
    return figure, {"states": states, "state_of_frame": [index_of.get(int(count), 0) for count in taken]}


def typed_array(values: np.ndarray, dtype: str = "f4") -> dict:
    """An array as plotly.py sends one to the browser: {dtype ("f4" float32, "u1" bytes), bdata (base64)}."""
    numpy_type = {"f4": "<f4", "u1": "u1"}[dtype]
    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(values, dtype=numpy_type).tobytes()).decode()}


def histogram_replay_cursor(whole: HistorySnapshot, kind: str, steps: list[int]) -> list[float]:
    """Where the replay cursor stands at each of `steps` on the histogram heatmaps of the whole run:
    between the last column taken before that batch and the next, so the veil right of it hides
    exactly the histograms not yet taken."""
    series = whole.weight_histograms if kind == "weight" else whole.grad_histograms
    columns = series.steps[_thin(len(series.steps), MAX_HEATMAP_COLUMNS)].astype(np.float64)
    if len(columns) == 0:
        return [0.0 for _ in steps]
    gap = float(np.median(np.diff(columns))) if len(columns) > 1 else 1.0
    bounds = np.concatenate([[columns[0] - gap / 2], (columns[:-1] + columns[1:]) / 2, [columns[-1] + gap / 2]])
    return [float(bounds[np.searchsorted(columns, step, side="left")]) for step in steps]


# --------------------------------------------------------------------------- the model


_KIND_COLORS = {"Input": "#e0e0e0", "Linear": "#aec7e8", "Conv2d": "#98df8a", "MaxPool2d": "#ffbb78", "Flatten": "#dbdb8d"}


# How the page's layer table writes its numbers (the same formats as its st.dataframe columns).
LAYER_TABLE_FORMATS = {"parameters": "{:,.0f}", "update/weight": "{:.2e}", "dead %": "{:.1f}", "saturated %": "{:.1f}"}
FLAGGED_FILL, PLAIN_FILL = "#fde2e1", "white"


def layer_table_cells(table: pd.DataFrame) -> list[list[str]]:
    """The layer table's columns as the texts a page shows: the page's number formats, "–" for a
    value not measured, every text escaped (a user's layer may have any name)."""
    columns = []
    for name in table.columns:
        form = LAYER_TABLE_FORMATS.get(name)
        texts = []
        for value in table[name].tolist():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                texts.append("–" if not math.isfinite(value) else (form or "{:.4g}").format(value))
            else:
                texts.append(escape_plotly(value))
        columns.append(texts)
    return columns


def layer_table_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """The layer table as a Plotly table (what a replay playing in the browser swaps frame by frame);
    rows the doctor flags ("check" in the health column) are tinted."""
    cells = layer_table_cells(table)
    flagged = table["health"].tolist() if "health" in table else []
    figure = go.Figure(go.Table(
        columnwidth=[max(7, len(name)) for name in table.columns],  # (relative: the headers' lengths)
        header={"values": [f"<b>{escape_plotly(name)}</b>" for name in table.columns], "align": "left",
                "fill": {"color": "#f0f2f6"}, "line": {"color": "#e6e9ef"}, "height": 28},
        cells={"values": cells, "align": "left", "height": 26, "line": {"color": "#e6e9ef"},
               "fill": {"color": [[FLAGGED_FILL if flag == "check" else PLAIN_FILL for flag in flagged]] * len(cells)}},
    ))
    figure.update_layout(title={"text": escape_plotly(title), "x": 0.01, "font": {"size": 14}},
                         # (room for texts wrapped on two lines: "Linear + relu", "update/weight")
                         margin={"l": 10, "r": 10, "t": 40, "b": 0}, height=50 + 44 + 44 * len(table))
    return figure


def layer_table_frames(whole: HistorySnapshot, layers: list[LayerInfo], steps: list[int],
                       flagged: list[set[str]]) -> tuple[go.Figure, dict]:
    """The layer table as a replay plays it in the browser: the figure at the first of `steps`, and
    each frame's cells (the statistics as they stood after that many batches; `flagged`: the layers the
    doctor named then, per frame), fill colours and title."""
    states = []
    figure = None
    for step, named in zip(steps, flagged):
        table = layer_table(whole.until(step), layers)
        table.insert(0, "health", ["check" if name in named else "ok" for name in table["layer"]])
        title = f"Layer statistics after batch {step:,}"
        if figure is None:
            figure = layer_table_figure(table, title)
        fill = [[FLAGGED_FILL if flag == "check" else PLAIN_FILL for flag in table["health"]]] * len(table.columns)
        states.append({"restyle": {"cells.values": [layer_table_cells(table)], "cells.fill.color": [fill]},
                       "layout": {"title.text": escape_plotly(title)}})
    if figure is None:
        figure = layer_table_figure(layer_table(None, layers).assign(health="ok"), "Layer statistics")
    return figure, {"states": states, "state_of_frame": list(range(len(states)))}


def architecture_boxes(layers: list[LayerInfo]) -> list[dict]:
    """Fold activations and dropout into the layer they follow: one box per real stage."""
    boxes: list[dict] = []
    for layer in layers:
        if layer.kind in ("ReLU", "LeakyReLU", "Tanh", "Sigmoid", "GELU", "Dropout") and boxes:
            boxes[-1]["extras"].append(layer.kind)
            boxes[-1]["shape"] = layer.output_shape
            continue
        boxes.append({"name": layer.name, "kind": layer.kind, "shape": layer.output_shape,
                      "params": layer.param_count, "extras": []})
    return boxes


# Box text is cut to what a box holds in the main column (~850 px wide, ~6.5 px a character): a
# user's module names and types ("block.self_attn.out_proj", "NonDynamicallyQuantizableLinear")
# ran over the next boxes. The hover has them in full.
DIAGRAM_WIDTH_PX, DIAGRAM_CHAR_PX = 850, 6.5


def _fit(text: str, chars: int, keep_end: bool = False) -> str:
    """`text` in at most `chars` characters, HTML-escaped; cut with an ellipsis (at the start with
    keep_end: a dotted module name's last parts say the most)."""
    if len(text) > chars:
        text = "…" + text[-(chars - 1):] if keep_end else text[:chars - 1] + "…"
    return escape_plotly(text)


def architecture_diagram(layers: list[LayerInfo], height: int = 260) -> go.Figure:
    """Boxes left to right: name, type (+activation), output shape, parameter count."""
    boxes = architecture_boxes(layers)
    total = sum(b["params"] for b in boxes)
    biggest = max((b["params"] for b in boxes), default=1) or 1
    chars = int(DIAGRAM_WIDTH_PX / max(len(boxes), 1) * 0.76 / DIAGRAM_CHAR_PX)
    # Shapes and annotations go into the layout at once: an add_shape and add_annotation per box
    # took 27 ms for the default MLP, at every refresh of the Model tab.
    shapes, annotations = [], []
    for index, box in enumerate(boxes):
        # Box height grows with log(parameters), so big layers look big without dwarfing the rest.
        half = 0.35 + 0.55 * (math.log1p(box["params"]) / math.log1p(biggest) if box["params"] else 0)
        color = _KIND_COLORS.get(box["kind"], "#c5b0d5")
        shapes.append({"type": "rect", "x0": index - 0.38, "x1": index + 0.38, "y0": -half, "y1": half,
                       "fillcolor": color, "line": {"color": "#555"}, "layer": "below"})
        if chars >= 4:  # (narrower: the hover alone names it)
            lines = [f"<b>{_fit(box['name'], chars, keep_end=True)}</b>", _fit(box["kind"], chars)]
            lines += [_fit("+" + "+".join(box["extras"]), chars)] if box["extras"] else []
            lines += [_fit("×".join(str(s) for s in box["shape"]), chars), _fit(f"{box['params']:,} p", chars)]
            annotations.append({"x": index, "y": 0, "showarrow": False, "font": {"size": 11, "color": "#222"},
                                "text": "<br>".join(lines)})
        if index:
            annotations.append({"x": index - 0.38, "y": 0, "ax": index - 0.62, "ay": 0, "xref": "x", "yref": "y",
                                "axref": "x", "ayref": "y", "showarrow": True, "arrowhead": 2, "arrowsize": 1,
                                "arrowcolor": "#555", "text": ""})
    hover = go.Scatter(
        x=list(range(len(boxes))), y=[0] * len(boxes), mode="markers", marker={"opacity": 0},
        customdata=[[escape_plotly(b["kind"]), "×".join(map(str, b["shape"])), b["params"]] for b in boxes],
        text=[escape_plotly(b["name"]) for b in boxes],
        hovertemplate="%{text}: %{customdata[0]}<br>output %{customdata[1]}<br>%{customdata[2]:,} parameters<extra></extra>",
    )
    return go.Figure(data=[hover], layout={
        "title": {"text": f"Architecture · {total:,} parameters", "x": 0.01, "font": {"size": 14}},
        "height": height, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "showlegend": False,
        "xaxis": {"visible": False, "range": [-0.6, len(boxes) - 0.4]}, "yaxis": {"visible": False, "range": [-1.3, 1.3]},
        "plot_bgcolor": "white", "shapes": shapes, "annotations": annotations,
    })


def layer_table(snapshot: HistorySnapshot | None, layers: list[LayerInfo]) -> pd.DataFrame:
    """Per monitored layer: shape and size, then its latest measured statistics."""
    monitored = [layer for layer in layers if layer.monitored]
    table = pd.DataFrame({
        "layer": [layer.name for layer in monitored],
        "type": [layer.kind + (f" + {layer.activation}" if layer.activation else "") for layer in monitored],
        "output shape": ["×".join(map(str, layer.output_shape)) for layer in monitored],
        "parameters": [layer.param_count for layer in monitored],
    })
    if not any(layer.output_shape for layer in monitored):
        table = table.drop(columns="output shape")  # a script's module tree: shapes never seen, a blank column
    if snapshot is None or len(snapshot.stats_steps) == 0:
        return table
    names = list(snapshot.layer_names)
    order = [names.index(layer.name) for layer in monitored if layer.name in names]
    if len(order) != len(monitored):
        return table
    latest = snapshot.layer_stats[-1][order]
    column = {stat: latest[:, i] for i, stat in enumerate(LAYER_STATS)}
    table["weight mean"] = column["weight_mean"]
    table["weight std"] = column["weight_std"]
    table["grad norm"] = snapshot.layer_grad_norms[-1][order] if snapshot.num_steps else column["grad_norm"]
    table["update/weight"] = column["update_ratio"]
    table["act mean"] = column["act_mean"]
    table["act std"] = column["act_std"]
    table["dead %"] = column["dead_fraction"] * 100
    table["saturated %"] = column["saturation"] * 100
    return table


# --------------------------------------------------------------------------- headline numbers


@dataclass(frozen=True)
class Headline:
    label: str
    value: str
    delta: str | None = None
    delta_color: str = "normal"  # "inverse" when lower is better


def _fmt(value: float, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def headline_metrics(snapshot: HistorySnapshot) -> list[Headline]:
    """Epoch, losses, accuracies and gradient norm, with the change since the previous epoch."""
    epochs = snapshot.epochs
    planned = snapshot.planned_epochs or "?"
    done = len(epochs)
    items = [Headline("Epoch", f"{done} / {planned}")]

    def epoch_item(label, column, percent=False, inverse=False):
        values = snapshot.epoch(column) if done else np.array([])
        if not len(values):
            return Headline(label, "–")
        current = values[-1]
        text = f"{current:.1%}" if percent and math.isfinite(current) else _fmt(current)  # not "nan%": no val logged
        delta = None
        if len(values) > 1 and math.isfinite(values[-2]) and math.isfinite(current):
            change = current - values[-2]
            delta = f"{change:+.1%}" if percent else f"{change:+.2g}"  # short: it must fit a card at 1024 px
        return Headline(label, text, delta, "inverse" if inverse else "normal")

    items.append(epoch_item("Train loss", "train_loss", inverse=True))
    items.append(epoch_item("Val loss", "val_loss", inverse=True))
    items.append(epoch_item("Val accuracy", "val_accuracy", percent=True))
    if snapshot.num_steps:
        recent = snapshot.batch("grad_norm")[-50:]
        earlier = snapshot.batch("grad_norm")[-100:-50]
        now = float(np.nanmean(recent))
        delta = f"{now - float(np.nanmean(earlier)):+.2g}" if len(earlier) else None
        items.append(Headline("Grad norm (last 50)", _fmt(now, 3), delta, "off"))
    else:
        items.append(Headline("Grad norm", "–"))
    return items


@dataclass(frozen=True)
class Progress:
    fraction: float
    batches_done: int
    batches_total: int
    batches_per_second: float
    seconds_left: float

    def text(self) -> str:
        rate = f"{self.batches_per_second:,.0f} batches/s" if self.batches_per_second > 0 else "– batches/s"
        if not self.batches_total:  # a script that did not say how long it trains
            return f"{self.batches_done:,} batches · {rate}"
        left = f"{_duration(self.seconds_left)} left" if math.isfinite(self.seconds_left) else "time left: –"
        return f"{self.batches_done:,} / {self.batches_total:,} batches · {rate} · {left}"

    def done_text(self) -> str:
        """'790 / 1,500 batches', or '790 batches' when the run's length is unknown."""
        return f"{self.batches_done:,} / {self.batches_total:,} batches" if self.batches_total else f"{self.batches_done:,} batches"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def rank_speeds_text(speeds) -> str:
    """'2 ranks: 641 · 628 batches/s' for a torchrun job; '' for one process."""
    if len(speeds) < 2:
        return ""
    shown = " · ".join(f"{s:,.0f}" for s in speeds[:16]) + (" · …" if len(speeds) > 16 else "")
    return f"{len(speeds)} ranks: {shown} batches/s (rank 0 first)"


def training_progress(snapshot: HistorySnapshot, window_seconds: float = 5.0) -> Progress:
    """Progress through the planned batches; speed over the last few seconds of training. A run
    whose length is unknown (a script's watch() without planned_epochs) has a speed but no fraction."""
    total = snapshot.planned_epochs * snapshot.batches_per_epoch
    done = snapshot.num_steps
    if done == 0:
        return Progress(0.0, done, total, 0.0, math.inf)
    seconds = snapshot.batch("seconds").astype(np.float64)
    start = int(np.searchsorted(seconds, seconds[-1] - window_seconds))
    span = seconds[-1] - (seconds[start - 1] if start > 0 else 0.0)
    rate = (done - start) / span if span > 0 else 0.0
    left = (total - done) / rate if rate > 0 and total else math.inf
    return Progress(min(done / total, 1.0) if total else 0.0, done, total, rate, left)


# --------------------------------------------------------------------------- predictions


CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


BOUNDARY_OPACITY = 0.35


def decision_boundary(xs, ys, classes, confidence, points: np.ndarray, labels: np.ndarray, step: int | None,
                      image: str | None = None) -> go.Figure:
    """Predicted class over the plane (class and confidence on hover), training points on top.
    `image`: the classes come as that picture (see boundary_picture: a replay's frame, a live
    run's refresh) in place of the heatmap, and the plane has no hover."""
    num_classes = int(max(classes.max(), labels.max())) + 1
    figure = _figure("Decision boundary" + (f" (weights of batch {step})" if step is not None and step >= 0 else ""),
                     "x₁", "x₂", height=460)
    figure.update_layout(hovermode="closest")
    # One discrete colour per class: map class k to the middle of its band of the colour scale.
    scale = []
    for k in range(num_classes):
        color = CLASS_COLORS[k % len(CLASS_COLORS)]
        scale += [[k / num_classes, color], [(k + 1) / num_classes, color]]
    if image is None:  # (a replay's picture replaces it, and its 3 x cells values need not travel every rerun)
        figure.add_trace(go.Heatmap(x=xs, y=ys, z=(classes + 0.5) / num_classes, zmin=0, zmax=1, colorscale=scale,
                                    opacity=BOUNDARY_OPACITY, showscale=False, customdata=confidence,
                                    hovertemplate="predicted class %{text}<br>confidence %{customdata:.0%}<extra></extra>",
                                    text=classes.astype(str)))
    for k in range(num_classes):
        mine = labels == k
        figure.add_trace(go.Scatter(x=points[mine, 0], y=points[mine, 1], mode="markers", name=f"class {k}",
                                    marker={"color": CLASS_COLORS[k % len(CLASS_COLORS)], "size": 5,
                                            "line": {"width": 0.5, "color": "white"}}))
    # Square units, and the plot shrinks to the data instead of padding x to -4..4 around a
    # -1.3..1.3 cloud to fill a wide column.
    figure.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    figure.update_xaxes(constrain="domain", range=[float(xs[0]), float(xs[-1])])
    figure.update_yaxes(range=[float(ys[0]), float(ys[-1])])
    if image is not None:
        figure.update_layout(images=[{"source": image, "xref": "x", "yref": "y", "x": float(xs[0]), "y": float(ys[-1]),
                                      "sizex": float(xs[-1] - xs[0]), "sizey": float(ys[-1] - ys[0]),
                                      "sizing": "stretch", "layer": "below"}])
    return figure


def confusion_matrix_chart(counts: np.ndarray) -> go.Figure:
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else math.nan
    figure = _figure(f"Confusion matrix (validation, accuracy {accuracy:.1%})", "predicted class", "true class",
                     height=460)
    figure.update_layout(hovermode="closest")
    labels = [str(k) for k in range(len(counts))]
    figure.add_trace(go.Heatmap(z=counts, x=labels, y=labels, colorscale="Blues", text=counts,
                                texttemplate="%{text}", showscale=False,
                                hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def mistakes_gallery(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, limit: int = 24,
                     columns: int = 8) -> go.Figure:
    """Misclassified validation images in a grid, each titled 'true → predicted'."""
    every_wrong = np.flatnonzero(labels[: len(predictions)] != predictions)
    wrong = every_wrong[:limit]
    shown = ("none" if not len(wrong) else f"all {len(wrong)}" if len(wrong) == len(every_wrong)
             else f"first {len(wrong)} of {len(every_wrong)}")
    figure = go.Figure()
    figure.update_layout(title={"text": f"Misclassified validation digits ({shown})", "x": 0.01,
                                "font": {"size": 14}}, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         xaxis={"visible": False}, yaxis={"visible": False, "autorange": "reversed"})
    if len(wrong) == 0:
        return _empty_note(figure, "no mistakes on the validation images")
    side, gap = images.shape[-1], 10  # the gap holds each tile's "true→predicted" title
    rows = math.ceil(len(wrong) / columns)
    canvas = np.full((rows * (side + gap), columns * (side + gap)), np.nan, dtype=np.float32)
    titles = []  # set at once (see neuron_view)
    for position, index in enumerate(wrong):
        r, c = divmod(position, columns)
        canvas[r * (side + gap): r * (side + gap) + side, c * (side + gap): c * (side + gap) + side] = images[index].reshape(side, side)
        titles.append({"x": c * (side + gap) + side / 2, "y": r * (side + gap) - 0.5, "yanchor": "bottom", "showarrow": False,
                       "text": f"{labels[index]}→{predictions[index]}", "font": {"size": 11, "color": "#c00"}})
    figure.update_layout(annotations=titles)
    figure.add_trace(go.Heatmap(z=canvas, colorscale="gray", showscale=False, hoverinfo="skip"))
    figure.update_yaxes(scaleanchor="x", scaleratio=1)
    return figure


# --------------------------------------------------------------------------- comparing runs


COMPARE_HEIGHT = 420


# What means something inside a line of Streamlit markdown: emphasis, code, links and images,
# HTML, strikethrough, $LaTeX$, :color[...] and :emoji: shortcodes. Names never start a line.
_MARKDOWN_SPECIALS = set("\\`*_[]()!<>~$:&")


def escape_markdown(text: str) -> str:
    """Text shown literally inside Streamlit markdown: a run named ![t](http://host/x) stays those
    characters instead of becoming an image the browser fetches."""
    return "".join(f"\\{ch}" if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))


def escape_plotly(text: str) -> str:
    """Text shown literally in Plotly (legends and titles understand a few HTML tags, links among them)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short_labels(names: list[str]) -> list[str]:
    """Legend labels for runs: the words every name shares dropped ('Learning-rate comparison ·
    lr 0.1' -> 'lr 0.1'), escaped so a name is only ever text."""
    if len(names) < 2:
        return [escape_plotly(name) for name in names]
    split = [name.split(" · ") for name in names]
    common = 0
    while all(len(parts) > common + 1 for parts in split) and len({parts[common] for parts in split}) == 1:
        common += 1
    return [escape_plotly(" · ".join(parts[common:])) for parts in split]


def compare_chart(entries: list[tuple[str, HistorySnapshot]], metric: str,
                  options: ChartOptions = DEFAULT_OPTIONS) -> go.Figure:
    """Overlay runs in distinct colours: metric is loss, accuracy, batch_loss, grad_norm or lr.
    Per-batch series are drawn smoothed as options say (raw when smoothing is 0)."""
    smoothing = f"smoothed {options.smoothing:g}" if options.smoothing > 0 else "raw"
    titles = {"loss": ("Loss per epoch (solid train, dashed val)", "loss"),
              "accuracy": ("Validation accuracy per epoch", "accuracy"),
              "batch_loss": (f"Loss per batch ({smoothing})", "loss"),
              "grad_norm": (f"Gradient norm ({smoothing})", "L2 norm"),
              "lr": ("Learning rate", "learning rate")}
    title, y_title = titles[metric]
    log = metric != "accuracy" and options.log_y(metric == "grad_norm")
    figure = _figure(title, X_AXES[options.x_axis], y_title, height=COMPARE_HEIGHT, log_y=log)
    figure.update_layout(legend={"y": -0.22, "font": {"size": 11}}, margin={"b": 60})
    for index, (label, snapshot) in enumerate(entries):
        color = LAYER_COLORS[index % len(LAYER_COLORS)]
        epochs = _epoch_x(snapshot, options.x_axis)
        if metric == "loss":
            figure.add_trace(go.Scatter(x=epochs, y=snapshot.epoch("train_loss"), name=f"{label} · train",
                                        legendgroup=label, mode="lines", line={"color": color}))
            figure.add_trace(go.Scatter(x=epochs, y=snapshot.epoch("val_loss"), name=f"{label} · val",
                                        legendgroup=label, mode="lines", line={"color": color, "dash": "dash"}))
        elif metric == "accuracy":
            figure.add_trace(go.Scatter(x=epochs, y=snapshot.epoch("val_accuracy"), name=label, mode="lines+markers",
                                        line={"color": color}, marker={"size": 4}))
            figure.update_yaxes(tickformat=".0%")
        elif snapshot.num_steps:
            values = snapshot.batch("loss" if metric == "batch_loss" else metric)
            x = _batch_x(snapshot, options.x_axis)
            if metric != "lr" and options.smoothing > 0:
                points = display_points(len(values))
                x, y = x[points], smoothed_at(snapshot, metric, values, options.smoothing, points).astype(np.float32)
            else:
                x, y = downsample_minmax(x, values)
            figure.add_trace(go.Scatter(x=x, y=y, name=label, mode="lines", line={"color": color}))
    if metric == "lr" and entries and not log:
        # A constant LR would sit in the middle of Plotly's -1..1 padding and read as 0: start at 0.
        tops = [float(np.nanmax(snap.batch("lr"))) for _, snap in entries if snap.num_steps]
        top = max(tops) if tops and np.isfinite(max(tops)) else 1.0
        figure.update_yaxes(exponentformat="e", range=[0, top * 1.1 if top > 0 else 1.0])
    elif metric != "accuracy":
        _scale_y(figure, options, log)
    if not entries:
        _empty_note(figure, "select runs to compare")
    return figure


def comparison_table(entries: list[tuple[str, dict, HistorySnapshot]],
                     health: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: the settings that differ between them, then final metrics (final and
    best validation accuracy: a run can end far below its best), and its health when given.

    Returns the table and the names of the setting columns whose values differ.
    """
    configs = [config for _, config, _ in entries]
    keys = sorted({k for config in configs for k in config})
    differing = [k for k in keys if len({json_key(config.get(k)) for config in configs}) > 1]
    rows = []
    for label, config, snapshot in entries:
        row = {"run": label}
        for key in differing:
            value = config.get(key)
            row[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        row["status"] = snapshot.status
        metrics = snapshot.final_metrics()
        del metrics["batches"]
        row.update(metrics)
        if health is not None:
            row["health"] = health[len(rows)]
        rows.append(row)
    return pd.DataFrame(rows), differing


def json_key(value) -> str:
    return repr(tuple(value)) if isinstance(value, (list, tuple)) else repr(value)


def experiment_lesson(entries: list[tuple[str, HistorySnapshot]]) -> str:
    """What an experiment showed, in words from its numbers: how soon each run reached a common
    validation accuracy, which swung late in training, which ended far below its best."""
    curves = [(label, snap.epoch("val_accuracy")) for label, snap in entries if len(snap.epochs)]
    curves = [(label, acc) for label, acc in curves if np.isfinite(acc).any()]
    if len(curves) < 2:
        return ""
    best_overall = max(float(np.nanmax(acc)) for _, acc in curves)
    target = 0.95 if best_overall >= 0.97 else math.floor((best_overall - 0.02) * 20) / 20
    parts = []
    for label, acc in curves:
        reached = np.flatnonzero(acc >= target)
        text = (f"{label} reached {target:.0%} in {int(reached[0]) + 1} epoch{'s' if reached[0] else ''}"
                if len(reached) else f"{label} never reached {target:.0%} (best {np.nanmax(acc):.1%})")
        late = acc[len(acc) // 2:]
        late = late[np.isfinite(late)]
        if len(late) >= 3 and late.max() - late.min() >= 0.05:
            text += f", then swung between {late.min():.0%} and {late.max():.0%}"
        if np.isfinite(acc[-1]) and np.nanmax(acc) - acc[-1] >= 0.03:
            text += f", and ended at {acc[-1]:.1%} after a best of {np.nanmax(acc):.1%}"
        parts.append(text)
    return "; ".join(parts) + "."


# --------------------------------------------------------------------------- the runs table (W&B habits)


RUN_METRIC_COLUMNS = ("epochs trained", "final train loss", "final val loss", "final val accuracy", "best val accuracy")


def _cell(value):
    """A setting as one table cell: lists joined, everything else as it is."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def runs_table(entries: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run with every setting and its final and best numbers, W&B's runs table.

    entries: dicts with id, name, tags, notes, status, source, created_at, config (dict) and
    metrics (HistorySnapshot.final_metrics). Returns the table and its setting columns, those that
    differ between runs first (the ones worth sorting and plotting)."""
    configs = [entry.get("config") or {} for entry in entries]
    keys = sorted({k for config in configs for k in config})
    differing = [k for k in keys if len({json_key(config.get(k)) for config in configs}) > 1]
    settings = differing + [k for k in keys if k not in differing]
    rows = []
    for entry, config in zip(entries, configs):
        row = {"name": entry["name"], "tags": ", ".join(entry.get("tags", ())), "status": str(entry["status"]),
               "source": entry.get("source", ""),
               "started": pd.Timestamp(entry["created_at"], unit="s").strftime("%Y-%m-%d %H:%M")}
        metrics = entry.get("metrics") or {}
        row.update({column: metrics.get(column, math.nan) for column in RUN_METRIC_COLUMNS})
        row.update({key: _cell(config.get(key)) for key in settings})
        row["notes"] = entry.get("notes", "")
        row["id"] = entry["id"]
        rows.append(row)
    columns = ["name", "tags", "status", "source", "started", *RUN_METRIC_COLUMNS, *settings, "notes", "id"]
    return pd.DataFrame(rows, columns=columns), settings


_FILTER_TERM = re.compile(r"^(?P<column>[^<>=!]+?)(?P<op>>=|<=|!=|=|>|<)(?P<value>.+)$")


def _column_named(table: pd.DataFrame, name: str) -> str | None:
    wanted = name.strip().lower().replace("_", " ")
    return next((c for c in table.columns if c.lower().replace("_", " ") == wanted), None)


def filter_runs(table: pd.DataFrame, query: str) -> tuple[pd.DataFrame, list[str]]:
    """Rows of `table` matching every term of `query`; and what could not be understood.

    A term is either text found (any case) in any cell of the row (name, tags, notes, settings), or
    `column<op>value` with op one of = != > < >= <=, the column named with spaces or underscores:
    `lr<0.01`, `optimizer=sgd`, `best_val_accuracy>=0.95`, `tags=baseline`."""
    try:
        terms = shlex.split(query)
    except ValueError:
        terms = query.split()
    keep = np.ones(len(table), dtype=bool)
    problems = []
    text = table.astype(str).apply(lambda column: column.str.lower())
    for term in terms:
        match = _FILTER_TERM.match(term)
        if match is None:
            needle = term.lower()
            keep &= np.logical_or.reduce([text[c].str.contains(needle, regex=False).to_numpy() for c in text.columns])
            continue
        column = _column_named(table, match["column"])
        op, value = match["op"], match["value"].strip()
        if column is None:
            problems.append(f"No column '{match['column']}' (filter term '{term}')")
            continue
        cells = table[column]
        if column == "tags" and op in ("=", "!="):
            wanted = value.lower()
            has = np.array([wanted in [t.strip().lower() for t in str(tags).split(",")] for tags in cells], dtype=bool)
            keep &= has if op == "=" else ~has
            continue
        numbers = pd.to_numeric(cells, errors="coerce")
        try:
            target = float(value)
        except ValueError:
            target = None
        if target is not None and numbers.notna().any():
            compare = {"=": numbers == target, "!=": numbers != target, ">": numbers > target, "<": numbers < target,
                       ">=": numbers >= target, "<=": numbers <= target}[op]
            keep &= compare.fillna(False).to_numpy(dtype=bool)
        elif op in ("=", "!="):
            equal = cells.astype(str).str.lower() == value.lower()
            keep &= (equal if op == "=" else ~equal).to_numpy()
        else:
            problems.append(f"'{term}': {column} holds text, compare it with = or !=")
    return table[keep], problems


def parallel_coordinates_chart(table: pd.DataFrame, settings: list[str],
                               target: str = "final val accuracy") -> go.Figure:
    """W&B's parallel coordinates: one line per run through the settings that differ between the
    runs to `target`, coloured by it. Numbers spanning 100x or more (learning rates) get a log10
    axis; text settings one tick per value. Runs without a value for `target` are left out (said
    in the title)."""
    figure = go.Figure()
    figure.update_layout(height=COMPARE_HEIGHT, margin={"l": 60, "r": 60, "t": 80, "b": 30},
                         title={"text": f"Settings → {target}", "x": 0.01, "font": {"size": 14}})
    measured = table[pd.to_numeric(table[target], errors="coerce").notna()] if target in table else table.iloc[:0]
    left_out = len(table) - len(measured)
    if left_out:
        figure.update_layout(title={"text": f"Settings → {target} ({left_out} run{'s' if left_out > 1 else ''} "
                                            "without it left out)"})
    if len(measured) < 2:  # a line of text, not a tall empty frame
        figure.update_layout(height=110, margin={"t": 40, "b": 10})
        return _empty_note(figure, f"select two or more runs with a {target} to compare their settings")
    dimensions = []
    for column in settings:
        if column not in measured or measured[column].astype(str).nunique() < 2:
            continue  # the same for every run: nothing to tell apart
        values = measured[column]
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
            numbers = numbers.astype(float)
            if (numbers > 0).all() and numbers.max() >= 100 * numbers.min():
                dimensions.append({"label": f"{column} (log10)", "values": np.log10(numbers).tolist()})
            else:
                dimensions.append({"label": column, "values": numbers.tolist()})
        else:
            labels = values.astype(str)
            categories = sorted(labels.unique())
            dimensions.append({"label": escape_plotly(column), "values": [categories.index(v) for v in labels],
                               "tickvals": list(range(len(categories))),
                               "ticktext": [escape_plotly(c[:24]) for c in categories]})
    scores = pd.to_numeric(measured[target]).astype(float)
    dimensions.append({"label": target, "values": scores.tolist(),
                       **({"range": [0, 1]} if "accuracy" in target else {})})
    figure.add_trace(go.Parcoords(
        dimensions=dimensions,
        line={"color": scores.tolist(), "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": target.replace(" ", "<br>")}, "thickness": 12},
              **({"cmin": 0, "cmax": 1} if "accuracy" in target else {})},
    ))
    return figure


# --------------------------------------------------------------------------- system metrics


SYSTEM_PANELS = (("cpu_percent", "CPU % (100 = one core)"), ("memory_mb", "Process memory (MB)"),
                 ("gpu_memory_mb", "GPU memory allocated (MB)"), ("batches_per_second", "Batches / s"))


# The system panel's 2 x 2 grid (what make_subplots(horizontal_spacing=0.1, vertical_spacing=0.2)
# lays out), by panel: (x domain, y domain).
SYSTEM_DOMAINS = (([0.0, 0.45], [0.6, 1.0]), ([0.55, 1.0], [0.6, 1.0]), ([0.0, 0.45], [0.0, 0.4]), ([0.55, 1.0], [0.0, 0.4]))


def system_metrics_chart(snapshot: HistorySnapshot) -> go.Figure:
    """W&B's system panel for the training process: CPU, resident memory, GPU memory (on CUDA) and
    speed over the run's time, as the monitor sampled them (about once a second)."""
    # The grid is laid out here, in one layout: make_subplots and an update per panel took 30 ms of
    # every refresh of the System tab.
    layout = {"height": 460, "margin": {"l": 50, "r": 10, "t": 60, "b": 40}, "showlegend": False,
              "uirevision": UI_REVISION, "title": {"text": "System (the training process)", "x": 0.01, "font": {"size": 14}}}
    annotations = [{"text": title, "x": sum(x_domain) / 2, "y": y_domain[1], "xref": "paper", "yref": "paper",
                    "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 16}}
                   for (_, title), (x_domain, y_domain) in zip(SYSTEM_PANELS, SYSTEM_DOMAINS)]
    for index, (x_domain, y_domain) in enumerate(SYSTEM_DOMAINS):
        axis = "" if index == 0 else str(index + 1)
        layout[f"xaxis{axis}"] = {"domain": x_domain, "anchor": f"y{axis}",
                                  **({"title": {"text": "time since start (s)"}} if index >= 2 else {})}
        layout[f"yaxis{axis}"] = {"domain": y_domain, "anchor": f"x{axis}", "rangemode": "tozero"}
    layout["annotations"] = annotations
    if len(snapshot.system) == 0:
        return _empty_note(go.Figure(layout=layout), "the first sample comes a second into training (runs written "
                                                     "before this version have none)")
    seconds = snapshot.system_metric("seconds")
    traces = []
    for index, ((column, title), (x_domain, y_domain)) in enumerate(zip(SYSTEM_PANELS, SYSTEM_DOMAINS)):
        values = snapshot.system_metric(column)
        axis = "" if index == 0 else str(index + 1)
        if not np.isfinite(values).any():
            # In paper coordinates at the panel's centre: Plotly.js drops "x3 domain" refs of an
            # axis without traces back to data coordinates of the first panel.
            annotations.append({"text": "not measured here" if column != "gpu_memory_mb" else "no GPU in this run",
                                "showarrow": False, "font": {"color": "gray"}, "xref": "paper", "yref": "paper",
                                "x": sum(x_domain) / 2, "y": sum(y_domain) / 2})
            continue
        traces.append(go.Scatter(x=seconds, y=values, mode="lines+markers" if len(values) < 60 else "lines",
                                 name=title, line={"color": LAYER_COLORS[index]}, marker={"size": 4},
                                 xaxis=f"x{axis}", yaxis=f"y{axis}"))
    return go.Figure(data=traces, layout=layout)


# --------------------------------------------------------------------------- the neuron view (2-D data)


# A unit whose output varies less than this over the whole plane (relative to the layer's largest
# output) is flat: dead for a ReLU (all zero), stuck for a saturated tanh or sigmoid.
FLAT_UNIT_SPREAD = 1e-6
NEURON_COLUMNS = 16
NEURON_VIEW_WIDTH = 900  # px, the plot's width the figure's height is made for
NEURON_VIEW_TITLE = "Neurons: each hidden unit's output over the input plane"


@dataclass
class NeuronTiles:
    """The neuron view laid out: every shown unit's output as a tile on one canvas (NaN between
    tiles and on flat units), the flat units' boxes, and the notes (layer headers, "dead")."""
    canvas: np.ndarray  # (height, width) float32, each tile scaled to -1..1 by its own largest |output|
    flat_boxes: list[tuple[int, int]]  # (top row, left column) of each flat unit's tile
    notes: list[dict]
    side: int
    height: int  # of the figure, px


def neuron_tiles(layers: list[tuple[str, np.ndarray]], side: int, max_units: int = 64) -> NeuronTiles:
    gap, header = 4, 10
    blocks = []
    for name, outputs in layers:
        shown = outputs[:max_units]
        rows = math.ceil(len(shown) / NEURON_COLUMNS)
        blocks.append((name, outputs, shown, rows))
    height_px = sum(header + rows * (side + gap) for *_, rows in blocks)
    canvas = np.full((height_px, NEURON_COLUMNS * (side + gap)), np.nan, dtype=np.float32)
    top = 0
    boxes, notes = [], []
    for name, outputs, shown, rows in blocks:
        scale = float(np.nanmax(np.abs(outputs))) if np.isfinite(outputs).any() else 1.0
        spread = np.nanmax(shown.reshape(len(shown), -1), 1) - np.nanmin(shown.reshape(len(shown), -1), 1)
        flat = ~(spread > FLAT_UNIT_SPREAD * max(scale, 1e-12))
        note = f"<b>{escape_plotly(name)}</b>: {len(outputs)} units" + (
            f" (first {len(shown)} shown)" if len(shown) < len(outputs) else "") + (
            f", {int(flat.sum())} flat (dead)" if flat.any() else "")
        notes.append({"text": note, "x": 0, "y": top, "xref": "x", "yref": "y", "xanchor": "left", "yanchor": "top",
                      "showarrow": False, "font": {"size": 11}})
        top += header
        finite = np.isfinite(shown)
        peaks = np.where(finite, np.abs(shown), 0).reshape(len(shown), -1).max(1, initial=0.0)
        with np.errstate(invalid="ignore"):
            scaled = shown / np.maximum(peaks, 1e-12)[:, None, None]  # each tile by its own largest |output|
        for unit, tile in enumerate(scaled):
            r, c = divmod(unit, NEURON_COLUMNS)
            y0, x0 = top + r * (side + gap), c * (side + gap)
            if flat[unit]:  # left NaN: drawn grey
                boxes.append((y0, x0))
                notes.append({"text": "dead", "x": x0 + side / 2, "y": y0 + side / 2, "showarrow": False,
                              "font": {"size": 9, "color": DEAD_UNIT_COLOR}})
                continue
            canvas[y0:y0 + side, x0:x0 + side] = tile
        top += rows * (side + gap)
    # Tall enough for the tiles at a wide column's ~900 px (the axes keep square pixels and sit top-left: a
    # narrower column leaves room below them, never above).
    return NeuronTiles(canvas, boxes, notes, side, int(50 + canvas.shape[0] * NEURON_VIEW_WIDTH / canvas.shape[1]))


DEAD_UNIT_COLOR, DEAD_UNIT_FILL = "#d62728", "#d9d9d9"


def neuron_view(xs: np.ndarray, ys: np.ndarray, layers: list[tuple[str, np.ndarray]], step: int | None,
                max_units: int = 64, image: str | None = None, as_picture: bool = False) -> go.Figure:
    """Each hidden unit's output over the input plane as small tiles, one block of rows per layer
    (TensorFlow Playground's neurons). Each tile is scaled to its own largest |output| (blue
    positive, red negative, white 0), so a unit's shape shows whatever its size; a flat unit (a
    dead ReLU) is grey and marked "dead". `image`: the tiles come as that picture (a replay's
    frame, see neuron_picture) and the heatmap is left empty; `as_picture`: as their own picture."""
    figure = go.Figure()
    title = NEURON_VIEW_TITLE + (f" (weights of batch {step})" if step is not None and step >= 0 else "")
    figure.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         xaxis={"visible": False}, yaxis={"visible": False, "autorange": "reversed"},
                         plot_bgcolor="white", showlegend=False, hovermode="closest")
    if not layers:
        figure.update_layout(height=200)
        return _empty_note(figure, "this model has no hidden activations to show")
    tiles = neuron_tiles(layers, len(xs), max_units)
    height, width = tiles.canvas.shape
    if as_picture and image is None:
        image = _tiles_picture(tiles)
    # Collected and set once: plotly.py validates the whole list on each add_shape/add_annotation
    # (0.7 s for 38 dead units here, which made each replayed frame of this tab take a second).
    shapes = [] if image is not None else [
        {"type": "rect", "x0": x0 - 0.5, "x1": x0 + tiles.side - 0.5, "y0": y0 - 0.5, "y1": y0 + tiles.side - 0.5,
         "fillcolor": DEAD_UNIT_FILL, "line": {"color": DEAD_UNIT_COLOR, "width": 1}, "layer": "below"}
        for y0, x0 in tiles.flat_boxes]
    figure.update_layout(shapes=shapes, annotations=tiles.notes)
    # No per-pixel hover text: at 64 units x 3 layers it would be ~200k strings every refresh.
    figure.add_trace(go.Heatmap(z=tiles.canvas if image is None else [[np.nan]], colorscale="RdBu", zmin=-1, zmax=1,
                                showscale=False, hoverinfo="skip"))
    figure.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain", constraintoward="top")
    figure.update_xaxes(constrain="domain", constraintoward="left")
    if image is not None:  # the picture fills the plane the heatmap would have
        figure.update_xaxes(range=[-0.5, width - 0.5])
        figure.update_yaxes(range=[height - 0.5, -0.5], autorange=False)
        figure.update_layout(images=[{"source": image, "xref": "x", "yref": "y", "x": -0.5, "y": -0.5, "sizex": width,
                                      "sizey": height, "sizing": "stretch", "layer": "below"}])
    figure.update_layout(height=tiles.height)
    return figure


# Neuron pictures (a replay's frames, a live run's refreshes): 63 levels of the tiles' colour scale
# (a 28 px tile shows no more), then transparent (between tiles), a flat unit's grey and its red
# edge. ~32 kB a picture as PNG.
NEURON_LEVELS = 63
_TRANSPARENT, _FLAT, _EDGE = 0, NEURON_LEVELS + 1, NEURON_LEVELS + 2


def neuron_picture(layers: list[tuple[str, np.ndarray]], side: int, max_units: int = 64) -> tuple[str, list[dict]]:
    """One moment of the neuron view as a picture: (PNG data URL, its notes). A replay's browser
    swaps it in when the replay reaches the weights it was drawn from."""
    tiles = neuron_tiles(layers, side, max_units)
    return _tiles_picture(tiles), tiles.notes


def _tiles_picture(tiles) -> str:
    """The tiles as a palette PNG data URL (what neuron_view shows with as_picture, and a replay's frame)."""
    finite = np.isfinite(tiles.canvas)
    levels = np.full(tiles.canvas.shape, _TRANSPARENT, dtype=np.uint8)
    levels[finite] = 1 + np.rint((np.clip(tiles.canvas[finite], -1, 1) + 1) / 2 * (NEURON_LEVELS - 1)).astype(np.uint8)
    for y0, x0 in tiles.flat_boxes:
        levels[y0:y0 + tiles.side, x0:x0 + tiles.side] = _EDGE
        levels[y0 + 1:y0 + tiles.side - 1, x0 + 1:x0 + tiles.side - 1] = _FLAT
    return palette_png(levels, _neuron_palette())


@functools.cache
def _neuron_palette() -> tuple[tuple[int, int, int, int], ...]:
    scale = go.Heatmap(colorscale="RdBu").colorscale  # the live view's colours, as plotly.py sends them
    colours = sample_colorscale([list(stop) for stop in scale], list(np.linspace(0, 1, NEURON_LEVELS)), colortype="tuple")
    return ((0, 0, 0, 0), *[(*(round(255 * c) for c in rgb), 255) for rgb in colours],  # (tuples are 0..1)
            (*_rgb(DEAD_UNIT_FILL), 255), (*_rgb(DEAD_UNIT_COLOR), 255))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def palette_png(levels: np.ndarray, palette: Sequence[tuple[int, int, int, int]]) -> str:
    """A (height, width) array of palette indices as an 8-bit indexed PNG data URL (the standard
    library's zlib is all it takes; the browser decodes it natively). zlib level 3: a neuron picture
    in 2.3 ms and 32 kB, where level 6 took 6 ms for 27 kB."""
    levels = np.ascontiguousarray(levels, dtype=np.uint8)
    height, width = levels.shape
    if levels.size and int(levels.max()) >= len(palette):
        raise ValueError(f"level {int(levels.max())} has no colour in a palette of {len(palette)}")
    rows = np.concatenate([np.zeros((height, 1), np.uint8), levels], 1)  # filter type 0 before each row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", bytes(v for r, g, b, _ in palette for v in (r, g, b)))
           + chunk(b"tRNS", bytes(a for *_, a in palette)) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 3))
           + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def boundary_picture(classes: np.ndarray) -> str:
    """One moment of the decision boundary (a replay's frame, a live run's refresh): the predicted
    class of each cell (row 0 the lowest y) as a picture in the class colours at the heatmap's opacity."""
    return palette_png(np.flipud(np.asarray(classes) % len(CLASS_COLORS)),
                       [(*_rgb(colour), round(255 * BOUNDARY_OPACITY)) for colour in CLASS_COLORS])
