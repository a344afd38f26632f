"""Live Training Dashboard: `streamlit run dashboard.py`.

Reads top to bottom like the page: sidebar -> RunConfig; Train/Stop; a live fragment that
lays out charts from a snapshot of the run's history. Training runs on a background thread
owned by the process-wide RunRegistry; this script only keeps a run id (in the session and
in the URL, so a browser refresh re-attaches to the run).
"""

from __future__ import annotations

import sys

import streamlit as st

import charts
from run_config import ACTIVATION_NAMES, DATASETS, MODELS, OPTIMIZERS, SCHEDULERS, RunConfig, parse_run_config
from runs import ENDED, PREPARING, RunRegistry, preview_architecture

REFRESH_SECONDS = 1.0
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
DEFAULTS = RunConfig()

st.set_page_config(page_title="Live Training Dashboard", page_icon="📈", layout="wide")
# The training thread drops the GIL at every torch op and must win it back from this
# script while it builds charts; Python's default 5 ms turns holds every op that long.
sys.setswitchinterval(0.0005)


@st.cache_resource
def run_registry() -> RunRegistry:
    """One registry per server process: runs outlive reruns, sessions and refreshes."""
    return RunRegistry()


@st.cache_data(max_entries=32)
def cached_preview(config: RunConfig):
    return preview_architecture(config)


registry = run_registry()

# --------------------------------------------------------------------------- sidebar

raw: dict = {}
error_slots: dict = {}


def control(name: str, value) -> None:
    """Record a widget's raw value and leave a slot under it for its validation message."""
    raw[name] = value
    error_slots[name] = st.sidebar.empty()


st.sidebar.header("Dataset")
control("dataset", st.sidebar.selectbox("Dataset", list(DATASETS), format_func=DATASETS.get, key="dataset"))
if raw["dataset"] == "spiral":
    control("num_samples", st.sidebar.slider("Points", 150, 6000, DEFAULTS.num_samples, 150, key="spiral_points"))
    control("noise", st.sidebar.slider("Noise", 0.0, 1.0, DEFAULTS.noise, 0.05, key="spiral_noise"))
    control("num_classes", st.sidebar.slider("Classes (arms)", 2, 6, DEFAULTS.num_classes, key="spiral_classes"))
elif raw["dataset"] == "mnist_like":
    control("num_samples", st.sidebar.number_input("Images", value=6000, step=1000, key="digits_images"))
    control("noise", st.sidebar.slider("Pixel noise", 0.0, 0.5, 0.15, 0.05, key="digits_noise"))
else:
    control("mnist_path", st.sidebar.text_input("Folder with MNIST IDX files", key="mnist_path",
                                                placeholder="e.g. ~/data/mnist",
                                                help="Needs train-images-idx3-ubyte and train-labels-idx1-ubyte, raw or .gz"))
    control("num_samples", st.sidebar.number_input("Use the first N images", value=60000, step=1000, key="mnist_images"))
control("train_fraction", st.sidebar.slider("Share of the training split to use", 0.05, 1.0, 1.0, 0.05, key="train_fraction",
                                            help="Less data makes overfitting easy to see"))

st.sidebar.header("Model")
control("model", st.sidebar.radio("Architecture", list(MODELS), format_func=MODELS.get, horizontal=True, key="model"))
if raw["model"] == "mlp":
    control("hidden_sizes", st.sidebar.text_input("Hidden layers", "128,128,128", key="hidden_sizes",
                                                  help="Widths separated by commas, e.g. 128,128,128"))
else:
    control("cnn_channels", st.sidebar.text_input("Conv channels", "16,32", key="cnn_channels",
                                                  help="One 3×3 conv + 2×2 max-pool per entry"))
    control("cnn_hidden", st.sidebar.number_input("Dense width", value=DEFAULTS.cnn_hidden, step=16, key="cnn_hidden"))
control("activation", st.sidebar.selectbox("Activation", ACTIVATION_NAMES, key="activation"))
control("dropout", st.sidebar.slider("Dropout", 0.0, 0.9, DEFAULTS.dropout, 0.05, key="dropout"))

st.sidebar.header("Training")
control("optimizer", st.sidebar.selectbox("Optimizer", list(OPTIMIZERS), format_func=OPTIMIZERS.get, key="optimizer"))
control("lr", st.sidebar.text_input("Learning rate", str(DEFAULTS.lr), key="lr", help="e.g. 0.005 or 1e-3"))
if raw["optimizer"] == "sgd":
    control("momentum", st.sidebar.slider("Momentum", 0.0, 0.99, DEFAULTS.momentum, 0.01, key="momentum"))
control("weight_decay", st.sidebar.text_input("Weight decay", "0.01" if raw["optimizer"] == "adamw" else "0",
                                              key=f"weight_decay_{raw['optimizer']}"))
control("scheduler", st.sidebar.selectbox("LR schedule", list(SCHEDULERS), format_func=SCHEDULERS.get, key="scheduler"))
if raw["scheduler"] == "step":
    control("step_size", st.sidebar.number_input("Step every (epochs)", value=DEFAULTS.step_size, step=1, key="step_size"))
    control("gamma", st.sidebar.number_input("Multiply LR by", value=DEFAULTS.gamma, step=0.1, format="%.3f", key="gamma"))
control("batch_size", st.sidebar.number_input("Batch size", value=DEFAULTS.batch_size, step=16, key="batch_size"))
control("epochs", st.sidebar.number_input("Epochs", value=DEFAULTS.epochs, step=5, key="epochs"))
control("seed", st.sidebar.number_input("Seed", value=DEFAULTS.seed, step=1, key="seed"))
control("stats_every", st.sidebar.number_input("Histograms & layer stats every N batches", value=DEFAULTS.stats_every,
                                               step=5, key="stats_every"))

config, errors = parse_run_config(raw)
for name, message in errors.items():
    (error_slots.get(name) or st.sidebar).error(message)

# --------------------------------------------------------------------------- which run this page shows

if "run_id" not in st.session_state:
    st.session_state.run_id = st.query_params.get("run")
run = registry.get(st.session_state.run_id)
if st.session_state.run_id and run is None:
    st.warning(f"Run `{st.session_state.run_id}` is not running in this server (it may have been restarted). "
               "Press Train to start a new one.")
    st.session_state.run_id = None
    st.query_params.pop("run", None)
active = run is not None and run.is_active


def start_run(run_config: RunConfig) -> None:
    started = registry.start(run_config)
    st.session_state.run_id = started.run_id
    st.query_params["run"] = started.run_id


def stop_run(run_id: str) -> None:
    registry.stop(run_id)


buttons = st.sidebar.columns(2)
buttons[0].button(
    "Train", type="primary", key="train", width="stretch", disabled=bool(errors) or active,
    on_click=start_run, args=(config,),
    help="Fix the settings marked in red first" if errors else ("Stop the current run first" if active else None),
)
buttons[1].button("Stop", key="stop", width="stretch", disabled=not active,
                  on_click=stop_run, args=(run.run_id if run else "",))

# --------------------------------------------------------------------------- main page

st.title("Live Training Dashboard")
if run is None:
    st.info("Choose a dataset, a model and training settings in the sidebar, then press **Train** "
            "to watch the network learn.")
    if config is not None:
        st.plotly_chart(charts.architecture_diagram(cached_preview(config)), key="preview_architecture",
                        config=PLOTLY_CONFIG)
        st.caption(f"Preview of **{config.label()}** on {DATASETS[config.dataset]}.")
    st.stop()

st.caption(f"Run `{run.run_id}` · **{run.config.label()}** · {DATASETS[run.config.dataset]} · "
           f"batch {run.config.batch_size} · {run.config.epochs} epochs · seed {run.config.seed}")
if active and config is not None and config != run.config:
    st.caption("Sidebar changes apply to the next run; this one keeps its settings.")
paused = st.toggle("Pause live updates (lets you zoom and pan charts)", key="paused", disabled=not active)


@st.fragment(run_every=REFRESH_SECONDS if active and not paused else None)
def live_panels() -> None:
    current = registry.get(run.run_id)
    if current is None:
        return
    if active and not current.is_active:
        st.rerun()  # the run ended: refresh the whole page so Train/Stop change state
    status = current.status
    if status == PREPARING:
        st.info(current.message)
        return
    if status == "failed":
        st.error(current.message)
        if current.setup is None:
            return
    elif status == "diverged":
        st.error(current.message)
    elif status == "stopped":
        st.warning(current.message)
    elif status == "finished":
        st.success(current.message)

    snapshot = current.snapshot()
    for column, item in zip(st.columns(5), charts.headline_metrics(snapshot)):
        column.metric(item.label, item.value, item.delta, delta_color=item.delta_color, border=True)
    progress = charts.training_progress(snapshot)
    st.progress(progress.fraction, text=progress.text() if status not in ENDED else
                f"{progress.batches_done:,} batches in {snapshot.batch('seconds')[-1]:.1f}s"
                if snapshot.num_steps else "no batch trained")

    curves, distributions, model = st.tabs(["Training curves", "Distributions", "Model"], key="view",
                                           on_change="rerun")
    if curves.open:
        with curves:
            left, right = st.columns(2)
            left.plotly_chart(charts.epoch_metric_chart(snapshot, "loss"), key="loss_chart", config=PLOTLY_CONFIG)
            right.plotly_chart(charts.epoch_metric_chart(snapshot, "accuracy"), key="accuracy_chart",
                               config=PLOTLY_CONFIG)
            left.plotly_chart(charts.batch_loss_chart(snapshot), key="batch_loss_chart", config=PLOTLY_CONFIG)
            right.plotly_chart(charts.grad_norm_chart(snapshot), key="grad_norm_chart", config=PLOTLY_CONFIG)
            left.plotly_chart(charts.lr_chart(snapshot), key="lr_chart", config=PLOTLY_CONFIG)
    if distributions.open:
        with distributions:
            left, right = st.columns(2)
            left.plotly_chart(charts.histogram_heatmaps(snapshot, "grad", columns=1), key="grad_hist_chart",
                              config=PLOTLY_CONFIG)
            left.plotly_chart(charts.latest_histograms(snapshot, "grad"), key="grad_latest_chart", config=PLOTLY_CONFIG)
            right.plotly_chart(charts.histogram_heatmaps(snapshot, "weight", columns=1), key="weight_hist_chart",
                               config=PLOTLY_CONFIG)
            right.plotly_chart(charts.latest_histograms(snapshot, "weight"), key="weight_latest_chart",
                               config=PLOTLY_CONFIG)
    if model.open:
        with model:
            architecture = current.setup.architecture
            st.plotly_chart(charts.architecture_diagram(architecture), key="architecture_chart", config=PLOTLY_CONFIG)
            st.dataframe(
                charts.layer_table(snapshot, architecture), key="layer_table", hide_index=True, width="stretch",
                column_config={
                    "parameters": st.column_config.NumberColumn(format="localized"),
                    "update/weight": st.column_config.NumberColumn(format="%.2e"),
                    "dead %": st.column_config.NumberColumn(format="%.1f"),
                    "saturated %": st.column_config.NumberColumn(format="%.1f"),
                },
            )
            st.caption(f"Statistics from step {int(snapshot.stats_steps[-1]) if len(snapshot.stats_steps) else '–'}, "
                       f"taken every {current.config.stats_every} batches. Dead: ReLU units silent for the whole "
                       "batch. Saturated: tanh/sigmoid outputs within 3% of their limits. Update/weight: size of "
                       "the last optimizer step relative to the weights (healthy near 1e-3).")


live_panels()
