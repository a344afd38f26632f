"""The training doctor: pure functions from a HistorySnapshot to plain-language findings.

Each check covers one warning sign, returns at most one Finding with its evidence (numbers
and the step or epoch where it started) and names the chart that shows it. Thresholds are
named constants; the comment on each says why it sits where it does. Healthy runs (the
default spiral MLP, a default CNN) must raise nothing: tests train both directions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from live_training_dashboard.history import DIVERGED, DIVERGENCE_LOSS_FACTOR, HistorySnapshot

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITY_ORDER = {CRITICAL: 0, WARNING: 1, INFO: 2}

# Overfitting: validation loss (3-epoch mean, to ride out noise) has risen for this many
# epochs since its best, by at least this much, while the training loss kept falling.
OVERFIT_MIN_EPOCHS_RISING = 3
OVERFIT_MIN_RISE = 0.05  # absolute, in loss units: below this a spiral's val loss just jitters
OVERFIT_MIN_RELATIVE_RISE = 0.25
# Stalled: after this many batches the recent loss is still this close to where it began.
STALL_MIN_BATCHES = 200
STALL_MAX_IMPROVEMENT = 0.10  # <10% lower than the first batches' loss
# Exploding gradients: the median norm of the last few batches, against its own past.
EXPLODE_WINDOW = 10  # a median over 10 batches ignores the single-batch spikes Adam makes
EXPLODE_FACTOR = 10.0  # healthy runs peak near 5x their running median (measured on spiral)
EXPLODE_ABSOLUTE = 100.0  # a global norm this large is never healthy for these models
# Vanishing gradients: first layer's norm vs the last's. Healthy ReLU nets sit near 0.2-6;
# a deep sigmoid net with SGD sits near 1e-3.
VANISH_RATIO = 1e-2
# Dead ReLUs: share of a layer's units silent for a whole stats batch, median over recent
# snapshots. Healthy spiral runs measure 15-45% on 32-sample stats batches.
DEAD_FRACTION_WARN = 0.6
DEAD_FRACTION_CRITICAL = 0.9
RECENT_SNAPSHOTS = 5
# Update-to-weight ratio: ~1e-3 is the classic healthy size of a step (Karpathy's rule of thumb).
UPDATE_RATIO_HIGH = 3e-2  # 30x larger: weights are being rewritten every few steps
UPDATE_RATIO_LOW = 1e-5  # 100x smaller: the layer has effectively stopped learning
ANNEALED_LR_SHARE = 0.1  # below 10% of its starting LR a schedule is meant to make steps tiny
# Saturation: share of tanh/sigmoid outputs within 3% of their limits.
SATURATION_WARN = 0.75  # a tanh MLP that trains well on the spiral measures up to ~60%
# Noisy plateau: over the last third of training the epoch loss stopped improving while the
# per-batch loss still swings widely: the learning rate is too high to settle.
PLATEAU_MIN_EPOCHS = 9
PLATEAU_MAX_IMPROVEMENT = 0.15
PLATEAU_MIN_SPREAD = 0.8  # std / mean of the batch loss
PLATEAU_MIN_LOSS_SHARE = 0.1  # a loss already 90% below its start has learned; its jitter is harmless


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    title: str
    explanation: str
    evidence: str
    chart: str  # which chart shows it: loss, accuracy, batch_loss, grad_norm, layer_table, grad_hist
    step: int | None = None  # batch where it started
    epoch: float | None = None  # the same moment in epochs (the charts' x axis)
    layer: str | None = None


def _epoch_at(snapshot: HistorySnapshot, step: int) -> float:
    progress = snapshot.batch("epoch_progress")
    return float(progress[min(max(step, 0), len(progress) - 1)]) if len(progress) else 0.0


def _change(improvement: float) -> str:
    return f"{abs(improvement):.0%} {'lower' if improvement >= 0 else 'higher'}"


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _first_blown_up_batch(loss: np.ndarray) -> int | None:
    """The first batch whose loss was NaN/Inf or over the monitor's divergence limit."""
    limit = DIVERGENCE_LOSS_FACTOR * loss[0] if len(loss) and np.isfinite(loss[0]) else np.inf
    bad = np.flatnonzero(~np.isfinite(loss) | (loss > limit))
    return int(bad[0]) if len(bad) else None


def check_diverged(snapshot: HistorySnapshot) -> Finding | None:
    if snapshot.status != DIVERGED:
        return None
    blown = _first_blown_up_batch(snapshot.batch("loss").astype(np.float64))
    step = blown if blown is not None else max(snapshot.num_steps - 1, 0)
    return Finding(
        "diverged", CRITICAL, "Training diverged",
        "The loss blew up (NaN/Inf or far above its start): the learning rate is too high for this model.",
        snapshot.message, "batch_loss", step, _epoch_at(snapshot, step),
    )


def check_overfitting(snapshot: HistorySnapshot) -> Finding | None:
    val, train = snapshot.epoch("val_loss"), snapshot.epoch("train_loss")
    if len(val) < OVERFIT_MIN_EPOCHS_RISING + 3 or not np.isfinite(val).all():
        return None
    smooth_val, smooth_train = _rolling_mean(val, 3), _rolling_mean(train, 3)
    best = int(np.argmin(smooth_val))
    rising_for = len(smooth_val) - 1 - best
    rise = smooth_val[-1] - smooth_val[best]
    if (
        rising_for >= OVERFIT_MIN_EPOCHS_RISING
        and rise >= max(OVERFIT_MIN_RISE, OVERFIT_MIN_RELATIVE_RISE * smooth_val[best])
        and smooth_train[-1] < smooth_train[best]
    ):
        best_epoch = best + 2  # centre of the 3-epoch window, 1-based
        return Finding(
            "overfitting", WARNING, "Overfitting",
            "Validation loss has been rising while training loss keeps falling: the model is memorising "
            "the training set.",
            f"Val loss {smooth_val[best]:.3f} → {smooth_val[-1]:.3f} since epoch {best_epoch} while train loss "
            f"{smooth_train[best]:.3f} → {smooth_train[-1]:.3f}; train/val gap now {val[-1] - train[-1]:.3f}.",
            "loss", int(snapshot.epoch("end_step")[best + 1]), float(best_epoch),
        )
    return None


def check_stalled(snapshot: HistorySnapshot) -> Finding | None:
    loss = snapshot.batch("loss")
    if len(loss) < STALL_MIN_BATCHES or snapshot.status == DIVERGED:
        return None
    window = max(20, len(loss) // 10)
    first, recent = float(np.nanmean(loss[:window])), float(np.nanmean(loss[-window:]))
    if not (math.isfinite(first) and math.isfinite(recent)) or first <= 0:
        return None
    improvement = 1 - recent / first
    if improvement < STALL_MAX_IMPROVEMENT:
        return Finding(
            "stalled", WARNING, "Loss is not decreasing",
            "After many batches the loss is about where it started.",
            f"Mean loss of the first {window} batches {first:.3f}, of the last {window} {recent:.3f} "
            f"({_change(improvement)}) after {len(loss)} batches.",
            "batch_loss", window, _epoch_at(snapshot, window),
        )
    return None


def check_exploding_gradients(snapshot: HistorySnapshot) -> Finding | None:
    norms = snapshot.batch("grad_norm")
    if len(norms) < 2 * EXPLODE_WINDOW:
        return None
    # Only the last few hundred batches decide (a 1M-batch run's whole series cost ~4 ms a refresh).
    tail = norms[max(0, len(norms) - 200 - EXPLODE_WINDOW):].astype(np.float64)
    recent = float(np.nanmedian(tail[-EXPLODE_WINDOW:]))
    past = tail[:-EXPLODE_WINDOW]
    baseline = float(np.nanmedian(past)) if len(past) else math.nan
    relative = math.isfinite(baseline) and baseline > 0 and recent > EXPLODE_FACTOR * baseline
    if not (relative or recent > EXPLODE_ABSOLUTE):
        return None
    threshold = EXPLODE_FACTOR * baseline if relative else EXPLODE_ABSOLUTE
    calm = np.flatnonzero(~(norms > threshold))  # the jump started after the last calm batch
    step = int(calm[-1] + 1) if len(calm) else 0
    layer_recent = np.nanmedian(snapshot.layer_grad_norms[-EXPLODE_WINDOW:], axis=0)
    worst = snapshot.layer_names[int(np.nanargmax(layer_recent))]
    return Finding(
        "exploding_gradients", CRITICAL if recent > EXPLODE_ABSOLUTE else WARNING, "Exploding gradients",
        "Gradient norms jumped far above their usual level: steps this large wreck the weights.",
        f"Median global norm over the last {EXPLODE_WINDOW} batches {recent:.3g} vs {baseline:.3g} before "
        f"({recent / baseline if baseline > 0 else math.inf:.0f}×); largest in {worst}.",
        "grad_norm", step, _epoch_at(snapshot, step), worst,
    )


def check_vanishing_gradients(snapshot: HistorySnapshot) -> Finding | None:
    norms = snapshot.layer_grad_norms
    if len(norms) < 20 or norms.shape[1] < 3:
        return None
    window = norms[-min(200, len(norms)):].astype(np.float64)
    first, last = float(np.nanmedian(window[:, 0])), float(np.nanmedian(window[:, -1]))
    if not (last > 0 and math.isfinite(first)):
        return None
    ratio = first / last
    if ratio >= VANISH_RATIO:
        return None
    # When it started: the first batch from which the running ratio stayed below the threshold.
    ratios = norms[:, 0].astype(np.float64) / np.maximum(norms[:, -1].astype(np.float64), 1e-30)
    above = np.flatnonzero(~(ratios < VANISH_RATIO))
    step = int(above[-1] + 1) if len(above) and above[-1] + 1 < len(ratios) else 0
    return Finding(
        "vanishing_gradients", WARNING, "Vanishing gradients",
        "The first layers get almost no gradient, so they barely learn.",
        f"Median gradient norm {snapshot.layer_names[0]} {first:.2e} vs {snapshot.layer_names[-1]} {last:.2e} "
        f"(ratio {ratio:.1e}, threshold {VANISH_RATIO:.0e}) over the last {len(window)} batches.",
        "grad_norm", step, _epoch_at(snapshot, step), snapshot.layer_names[0],
    )


def _recent_layer_stat(snapshot: HistorySnapshot, stat: str) -> np.ndarray | None:
    if len(snapshot.stats_steps) == 0:
        return None
    values = snapshot.layer_stat(stat)[-RECENT_SNAPSHOTS:].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layers (no such stat) stay NaN
        return np.nanmedian(values, axis=0)


def _first_stats_step_above(snapshot: HistorySnapshot, stat: str, layer: int, threshold: float) -> int:
    values = snapshot.layer_stat(stat)[:, layer]
    below = np.flatnonzero(~(values > threshold))
    start = below[-1] + 1 if len(below) else 0
    return int(snapshot.stats_steps[min(start, len(values) - 1)])


def _worst_layer_over(snapshot: HistorySnapshot, stat: str, threshold: float):
    """(layer index, recent values, step the streak began) for the layer furthest over threshold."""
    recent = _recent_layer_stat(snapshot, stat)
    if recent is None or not np.isfinite(recent).any():
        return None
    layer = int(np.nanargmax(recent))
    if not recent[layer] >= threshold:
        return None
    return layer, recent, _first_stats_step_above(snapshot, stat, layer, threshold)


def check_dead_relus(snapshot: HistorySnapshot) -> Finding | None:
    worst = _worst_layer_over(snapshot, "dead_fraction", DEAD_FRACTION_WARN)
    if worst is None:
        return None
    layer, dead, step = worst
    name = snapshot.layer_names[layer]
    others = ", ".join(f"{n} {d:.0%}" for n, d in zip(snapshot.layer_names, dead) if np.isfinite(d))
    return Finding(
        "dead_relus", CRITICAL if dead[layer] >= DEAD_FRACTION_CRITICAL else WARNING, "Dead ReLUs",
        f"Most units of {name} output zero for every sample, so they pass no gradient and stop learning; "
        "layers before it get little gradient through it.",
        f"Units silent for the whole stats batch (median of the last {RECENT_SNAPSHOTS} snapshots): {others}.",
        "layer_table", step, _epoch_at(snapshot, step), name,
    )


def check_update_ratio(snapshot: HistorySnapshot) -> Finding | None:
    ratios = _recent_layer_stat(snapshot, "update_ratio")
    if ratios is None or len(snapshot.stats_steps) < RECENT_SNAPSHOTS:
        return None
    lr = snapshot.batch("lr")
    annealed = len(lr) and lr[0] > 0 and lr[-1] < ANNEALED_LR_SHARE * lr[0]
    high = np.flatnonzero(ratios > UPDATE_RATIO_HIGH)
    low = np.flatnonzero(ratios < UPDATE_RATIO_LOW) if not annealed else np.array([], dtype=int)
    if len(high):
        layer = int(high[np.argmax(ratios[high])])
        direction, threshold = "large", UPDATE_RATIO_HIGH
        explanation = "Each optimizer step changes these weights by several percent: training is noisy or unstable."
    elif len(low):
        layer = int(low[np.argmin(ratios[low])])
        direction, threshold = "small", UPDATE_RATIO_LOW
        explanation = "Each step barely changes these weights: this layer has effectively stopped learning."
    else:
        return None
    name = snapshot.layer_names[layer]
    values = ", ".join(f"{n} {r:.1e}" for n, r in zip(snapshot.layer_names, ratios))
    step = int(snapshot.stats_steps[-min(RECENT_SNAPSHOTS, len(snapshot.stats_steps))])
    return Finding(
        f"update_ratio_{'high' if direction == 'large' else 'low'}", WARNING, f"Updates too {direction} in {name}",
        explanation + " A healthy update/weight ratio is near 1e-3.",
        f"Update/weight ratio (median of the last {RECENT_SNAPSHOTS} snapshots): {values}; threshold {threshold:.0e}.",
        "layer_table", step, _epoch_at(snapshot, step), name,
    )


def check_saturation(snapshot: HistorySnapshot) -> Finding | None:
    worst = _worst_layer_over(snapshot, "saturation", SATURATION_WARN)
    if worst is None:
        return None
    layer, saturation, step = worst
    name = snapshot.layer_names[layer]
    return Finding(
        "saturation", WARNING, f"Saturated activations in {name}",
        "Most tanh/sigmoid outputs sit at their limits, where the gradient is nearly zero.",
        f"{saturation[layer]:.0%} of {name}'s outputs within 3% of their limits (median of the last "
        f"{RECENT_SNAPSHOTS} snapshots).",
        "layer_table", step, _epoch_at(snapshot, step), name,
    )


def check_noisy_plateau(snapshot: HistorySnapshot) -> Finding | None:
    train = snapshot.epoch("train_loss")
    if len(train) < PLATEAU_MIN_EPOCHS or snapshot.status == DIVERGED:
        return None
    third = len(train) // 3
    middle, last = float(np.mean(train[third: 2 * third])), float(np.mean(train[2 * third:]))
    lr = snapshot.batch("lr")
    if not (len(lr) and lr[-1] >= 0.5 * lr[0]):  # a schedule is already lowering the LR
        return None
    start_step = int(snapshot.epoch("end_step")[2 * third - 1])
    batch_loss = snapshot.batch("loss")[start_step:].astype(np.float64)
    spread = float(np.std(batch_loss) / np.mean(batch_loss)) if len(batch_loss) and np.mean(batch_loss) > 0 else 0.0
    improvement = 1 - last / middle if middle > 0 else 0.0
    if (
        improvement < PLATEAU_MAX_IMPROVEMENT
        and spread > PLATEAU_MIN_SPREAD
        and last > PLATEAU_MIN_LOSS_SHARE * train[0]
    ):
        return Finding(
            "noisy_plateau", INFO, "Loss plateaued at a noisy level",
            "The epoch loss stopped improving while the batch loss keeps jumping: the steps are too large to "
            "settle into a minimum.",
            f"Train loss {middle:.3g} → {last:.3g} over the last third of training ({_change(improvement)}); "
            f"batch-loss spread (std/mean) {spread:.2f} at a constant LR {lr[-1]:.2g}.",
            "batch_loss", start_step, _epoch_at(snapshot, start_step),
        )
    return None


# Zero gradients: this share of logged batches with a gradient norm of exactly 0 means the
# loop cleared the gradients before log_batch read them (a real gradient is never exactly 0).
ZERO_GRADIENT_SHARE = 0.9


def check_zero_gradients(snapshot: HistorySnapshot) -> Finding | None:
    norms, loss = snapshot.batch("grad_norm"), snapshot.batch("loss")
    if len(norms) < 3 or norms.min() > 0:  # (norms are >= 0; NaN reads on. One pass: most runs end here)
        return None
    zero = (norms == 0) & np.isfinite(loss) & (loss > 0)
    if zero.mean() < ZERO_GRADIENT_SHARE:
        return None
    step = int(np.argmax(zero))
    return Finding(
        "zero_gradients", WARNING, "Gradients were zero when logged",
        "Every gradient was exactly zero when log_batch ran, so gradient norms, gradient histograms and the "
        "gradient checks read nothing. Call monitor.log_batch(...) after optimizer.step() and before "
        "optimizer.zero_grad().",
        f"{int(zero.sum())} of {len(norms)} batches logged a gradient norm of 0 with a loss above 0.",
        "grad_norm", step, _epoch_at(snapshot, step),
    )


def check_skipped_steps(snapshot: HistorySnapshot) -> Finding | None:
    """NaN/Inf gradients with a finite loss: AMP's GradScaler skipped those steps (normal while
    it finds its scale); many of them mean fp16 overflows all the time."""
    norms, loss = snapshot.batch("grad_norm"), snapshot.batch("loss")
    if np.isfinite(norms.sum(dtype=np.float64)):  # no NaN/Inf norm at all: one pass, no masks
        return None
    skipped = ~np.isfinite(norms) & np.isfinite(loss)
    if not skipped.any():
        return None
    count, step = int(skipped.sum()), int(np.argmax(skipped))
    share = count / len(norms)
    return Finding(
        "skipped_steps", WARNING if share > 0.05 else INFO, "Steps with NaN/Inf gradients",
        "Some batches produced NaN/Inf gradients while the loss stayed finite. With mixed precision (AMP) these "
        "are steps GradScaler skipped while lowering its scale: harmless when rare. Without AMP, or when many, "
        "the gradients overflow: lower the learning rate or clip gradients.",
        f"{count} of {len(norms)} batches ({share:.1%}), the first at batch {step}; marked on the loss per batch.",
        "batch_loss", step, _epoch_at(snapshot, step),
    )


def unit_levels(snapshot: HistorySnapshot) -> dict[str, str]:
    """What an all-clear says about the unit statistics it did measure, with the check's line and
    the run's own number: the worst layer's recent share of dead ReLUs and of saturated outputs (the
    medians the checks hold against their thresholds). A few dead units are normal, so "no sign of
    dead ReLUs" beside a unit drawn dead would mislead: {"dead ReLUs": "dead ReLUs over 60% of a
    layer (the most: 30%, in fc2)"}."""
    levels = {}
    for stat, words, line in (("dead_fraction", "dead ReLUs", f"over {DEAD_FRACTION_WARN:.0%} of a layer"),
                              ("saturation", "saturation", f"over {SATURATION_WARN:.0%} of a layer's outputs")):
        recent = _recent_layer_stat(snapshot, stat)
        if recent is None or not np.isfinite(recent).any():
            continue
        layer = int(np.nanargmax(recent))
        share = float(recent[layer])
        if share == 0:
            levels[words] = f"{words} (none in any layer)"
        else:
            amount = f"{share:.0%}" if share >= 0.005 else "under 1%"
            levels[words] = f"{words} {line} (the most: {amount}, in {snapshot.layer_names[layer]})"
    return levels


def unmeasured(snapshot: HistorySnapshot) -> list[str]:
    """What the doctor could not check on this run, in words, so "all clear" never claims it."""
    missing = []
    for stat, words in (("dead_fraction", "dead ReLUs (no ReLU modules seen)"),
                        ("saturation", "saturation (no tanh/sigmoid modules seen)")):
        if len(snapshot.stats_steps) == 0 or not np.isfinite(snapshot.layer_stat(stat)).any():
            missing.append(words)
    if not len(snapshot.epochs) or not np.isfinite(snapshot.epoch("val_loss")).any():
        missing.append("overfitting (no validation loss logged)")
    return missing


CHECKS = (
    check_diverged,
    check_zero_gradients,
    check_skipped_steps,
    check_exploding_gradients,
    check_vanishing_gradients,
    check_dead_relus,
    check_overfitting,
    check_stalled,
    check_update_ratio,
    check_saturation,
    check_noisy_plateau,
)


def diagnose(snapshot: HistorySnapshot) -> list[Finding]:
    """Every warning sign present now, most severe first; empty for a healthy run."""
    diverged = check_diverged(snapshot)
    if diverged is not None:
        # After a blow-up every other statistic is a symptom (NaN weights kill every unit).
        return [diverged]
    findings = [f for check in CHECKS if (f := check(snapshot)) is not None]
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


# --------------------------------------------------------------------------- causes and remedies
#
# The checks above each report a sign. A run usually shows several signs of one cause: a dead
# layer starves the layers before it (vanishing gradients), so the loss stalls and the updates
# shrink. explain() groups the signs into causes, states the cause first with its evidence and
# lists what follows from it, and proposes concrete changes that never contradict each other or
# the run's own settings.

# Signs that a step is too large; and the signs it explains when present (they are its effects).
TOO_LARGE_STEPS = ("exploding_gradients", "update_ratio_high", "noisy_plateau", "saturation")
STARVED = ("vanishing_gradients", "stalled", "update_ratio_low")
# A condition that is not hurting: validation accuracy this high (when measured).
NOT_HURTING_ACCURACY = 0.95
# Which came first before a divergence: the gradient norm this many times its early median.
GRADIENT_RISE_FACTOR = 10.0


@dataclass(frozen=True)
class Remedy:
    """One change to try: `label` in words ("lr 1 → 0.1"); `changes` the settings it changes
    (empty when the run's settings are unknown, e.g. a user's script: then it is advice only)."""

    label: str
    changes: dict


@dataclass(frozen=True)
class Cause:
    finding: Finding  # the cause, with its evidence
    consequences: tuple[Finding, ...]  # signs that follow from it
    remedies: tuple[Remedy, ...]

    @property
    def severity(self) -> str:
        return self.finding.severity


def _number(settings: dict, name: str) -> float | None:
    value = settings.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _nice(value: float) -> float:
    """A round number near value (one significant digit): 0.0123 -> 0.01."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value))
    return round(value, -exponent)


def _lower_lr(settings: dict) -> Remedy:
    lr = _number(settings, "lr")
    if lr is None:
        return Remedy("lower the learning rate (e.g. 10×)", {})
    new = _nice(lr / 10)
    return Remedy(f"lr {lr:g} → {new:g}", {"lr": new})


def _raise_lr(settings: dict) -> Remedy:
    lr = _number(settings, "lr")
    if lr is None:
        return Remedy("raise the learning rate (e.g. 10×)", {})
    new = _nice(lr * 10)
    return Remedy(f"lr {lr:g} → {new:g}", {"lr": new})


def _activation_remedy(settings: dict, to: str, when: tuple[str, ...]) -> list[Remedy]:
    activation = settings.get("activation")
    if activation in when:
        return [Remedy(f"{activation} → {to}", {"activation": to})]
    return []


def _overfitting_remedies(settings: dict, finding: Finding) -> list[Remedy]:
    remedies = []
    if settings.get("dropout") == 0 and settings.get("model") in ("mlp", "cnn"):
        remedies.append(Remedy("dropout 0 → 0.3", {"dropout": 0.3}))
    epochs = settings.get("epochs")
    if isinstance(epochs, int) and finding.epoch is not None and finding.epoch + 1 < epochs:
        best = max(1, int(round(finding.epoch)))
        remedies.append(Remedy(f"epochs {epochs} → {best} (stop at the best validation loss)", {"epochs": best}))
    if not remedies:
        remedies.append(Remedy("more data, a smaller model or weight decay", {}))
    return remedies


def _not_hurting(snapshot: HistorySnapshot) -> float | None:
    """The final validation accuracy when it is high enough that a warning sign is not hurting."""
    accuracy = snapshot.epoch("val_accuracy")
    if len(accuracy) and np.isfinite(accuracy[-1]) and accuracy[-1] >= NOT_HURTING_ACCURACY:
        return float(accuracy[-1])
    return None


def divergence_story(snapshot: HistorySnapshot) -> str:
    """Which came first before a divergence: the gradient norm's rise or the loss's, with batches."""
    loss = snapshot.batch("loss").astype(np.float64)
    norms = snapshot.batch("grad_norm").astype(np.float64)
    loss_step = _first_blown_up_batch(loss) if len(loss) >= 2 else None
    if loss_step is None:
        return ""
    early = norms[: max(1, min(20, loss_step))]
    early = early[np.isfinite(early)]
    if not len(early) or np.median(early) <= 0:
        return ""
    rose = np.flatnonzero(~(norms[: loss_step + 1] <= GRADIENT_RISE_FACTOR * np.median(early)))
    if not len(rose):
        return f" The loss blew up at batch {loss_step} with no rise of the gradient norm before it."
    grad_step = int(rose[0])
    if grad_step < loss_step:
        return (f" The gradient norm came first: it rose past {GRADIENT_RISE_FACTOR:g}× its early level "
                f"({np.median(early):.3g}) at batch {grad_step}, {loss_step - grad_step} batches before the loss "
                f"blew up at batch {loss_step} (exploding gradients).")
    return f" The loss and the gradient norm blew up together at batch {loss_step}."


def explain(findings: list[Finding], snapshot: HistorySnapshot, settings: dict | None = None) -> list[Cause]:
    """Group findings into causes, most severe first; settings: the run's config (a dict)."""
    settings = settings or {}
    by_code = {f.code: f for f in findings}
    used: set[str] = set()
    causes: list[Cause] = []

    def take(codes) -> tuple[Finding, ...]:
        taken = tuple(by_code[c] for c in codes if c in by_code and c not in used)
        used.update(f.code for f in taken)
        return taken

    def add(root: Finding, consequences=(), remedies=()) -> None:
        used.add(root.code)
        unique = {remedy.label: remedy for remedy in remedies}  # the same change proposed twice is listed once
        causes.append(Cause(root, tuple(consequences), tuple(unique.values())))

    if "diverged" in by_code:
        root = by_code["diverged"]
        add(replace(root, evidence=root.evidence + divergence_story(snapshot)), take(TOO_LARGE_STEPS),
            [_lower_lr(settings)])
    if "dead_relus" in by_code:
        # A dead layer starves what is before it: vanishing gradients, a stalled loss and tiny updates
        # are its effects, not separate problems (and never "raise the LR" next to "lower it").
        add(by_code["dead_relus"], take(STARVED + TOO_LARGE_STEPS),
            [_lower_lr(settings), *_activation_remedy(settings, "leaky_relu", ("relu",))])
    if "vanishing_gradients" in by_code and "vanishing_gradients" not in used:
        remedies = _activation_remedy(settings, "relu", ("tanh", "sigmoid"))
        if not remedies:
            remedies = [Remedy("fewer layers, or normalisation between them", {})]
        add(by_code["vanishing_gradients"], take(["stalled", "update_ratio_low"]), remedies)
    large = [c for c in TOO_LARGE_STEPS if c in by_code and c not in used]
    if large:
        root = by_code[large[0]]
        remedies = [_lower_lr(settings)]
        if "noisy_plateau" in large and settings.get("scheduler") == "none":
            remedies.append(Remedy("scheduler none → cosine", {"scheduler": "cosine"}))
        if "saturation" in large:
            remedies += _activation_remedy(settings, "relu", ("tanh", "sigmoid"))
        # Too-large steps also explain a loss that bounces without improving.
        add(root, take([c for c in large[1:]] + ["stalled"]), remedies)
    slow = [c for c in ("stalled", "update_ratio_low") if c in by_code and c not in used]
    if slow:
        # Only here, with no sign of too-large steps anywhere, is the learning rate too low.
        add(by_code[slow[0]], take(slow[1:]), [_raise_lr(settings)])
    if "overfitting" in by_code:
        add(by_code["overfitting"], (), _overfitting_remedies(settings, by_code["overfitting"]))
    for finding in findings:  # the rest stand alone (zero gradients, skipped steps)
        if finding.code not in used:
            add(finding)

    accuracy = _not_hurting(snapshot)
    if accuracy is not None:  # impact: a warning sign on a run that does well is worth knowing, not fixing
        causes = [replace(c, finding=replace(
            c.finding, severity=INFO,
            evidence=c.finding.evidence + f" Not hurting so far: validation accuracy {accuracy:.1%}."))
            if c.finding.severity == WARNING else c for c in causes]
    return sorted(causes, key=lambda c: SEVERITY_ORDER[c.severity])
