"""Live Training Dashboard: `streamlit run dashboard.py`.

Reads top to bottom like the page: sidebar -> RunConfig; Train/Stop; a live fragment that
lays out charts from a snapshot of the run's history. Each run trains in a worker process
that writes the run store; this page only launches runs, asks them to stop, and reads the
store. It keeps a run id (in the session and in the URL, so a refresh re-attaches).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly
import plotly.io
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from live_training_dashboard import charts, diagnostics, inspection, run_store
from live_training_dashboard.history import ENDED_STATUSES as ENDED
from live_training_dashboard.history import PREPARING, QUEUED, RUNNING
from live_training_dashboard.page_refresh import AUTO, REFRESH_CHOICES, server_pages
from live_training_dashboard.presets import PRESETS
from live_training_dashboard.run_catalog import RunCatalog
from live_training_dashboard.run_config import (
    DATASETS,
    FIELDS,
    IMAGE_DATASETS,
    Field,
    RunConfig,
    default_widget_values,
    parse_run_config,
    validate,
    widget_values,
)
from live_training_dashboard.training_setup import budget_problems, dataset_for, describe_config, sample_count

# Between live refreshes: page_refresh.LivePages shares the machine between the pages watching.
# Until a new run's first numbers arrive, look 10x as often: the first chart is what a click waits for.
FIRST_DATA_REFRESH_SECONDS = 0.1
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}

# Charts are updated in place. st.plotly_chart's element id hashes the figure, so each refresh
# with new data remounted every chart (a fresh Plotly.newPlot, the old copy kept hidden until the
# rerun ended) and reset its zoom: measured on a 2-vCPU EPYC, ~2.8 s of the browser's main thread
# per refresh of the first tab, so a tab click showed after 5-25 s while a run trained. This keyed
# component keeps its identity across reruns and calls Plotly.react on the same chart (zoom and
# legend toggles kept through uirevision). plotly.js is the plotly package's own, served from the
# app's static folder; without static serving, st.plotly_chart is used as before.
LIVE_CHART_JS = """
function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  window.__ltdPlotly = window.__ltdPlotly || new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "./app/static/plotly.min.js?v=PLOTLY_VERSION";
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { window.__ltdPlotly = null; reject(new Error("plotly.js did not load")); };
    document.head.appendChild(script);
  });
  return window.__ltdPlotly;
}
// A replay playing in the browser. Each frame must cost next to nothing (redrawing six charts
// took ~300 ms a frame in a 2-core machine's headless Chromium): the curves are drawn once, for
// the whole run, and a white veil over everything right of the cursor moves (a DOM element, not a
// Plotly relayout); the boundary's class map is a layout image, swapped when the weights change.
function decoded(value) {  // plotly.py and the page send arrays as {dtype, bdata (base64)}: bytes or float32
  if (!value || typeof value.bdata !== "string") return value;
  const bytes = Uint8Array.from(atob(value.bdata), (c) => c.charCodeAt(0));
  return value.dtype === "f4" ? new Float32Array(bytes.buffer) : bytes;
}
function decodedDeep(value) {  // every {dtype, bdata} array in a restyle decoded
  if (Array.isArray(value)) return value.map(decodedDeep);
  if (value && typeof value.bdata === "string") return decoded(value);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodedDeep(v)]));
  return value;
}
// Dark theme (Streamlit follows the system's by default): the figures are built for a white page.
// On a dark one their backgrounds become the page's, text and grids turn light, and the colours
// picked against white swap (black lines, white fills, light table headers). Read from the page's
// own background at each drawing, so a theme switched in the menu applies from the next one.
const DARK_COLORS = {
  "black": "#e8e8e8", "rgba(0,0,0,0.2)": "rgba(255,255,255,0.25)", "#555": "#b0b0b0", "white": "rgba(0,0,0,0)",
  "rgba(255,255,255,0.85)": "rgba(14,17,23,0.85)", "#f0f2f6": "#262730", "#e6e9ef": "#3b3d4a", "#fde2e1": "#5a2626",
};
function pageBackground(element) {  // [r, g, b] of the page behind the charts, or null
  const app = element.closest(".stApp") || document.querySelector(".stApp") || document.body;
  const rgb = (getComputedStyle(app).backgroundColor.match(/[\\d.]+/g) || []).map(Number);
  return rgb.length >= 3 && (rgb.length < 4 || rgb[3] > 0) ? rgb.slice(0, 3) : null;
}
function pageIsDark(element) {
  const rgb = pageBackground(element);
  return rgb !== null && 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 100;
}
function swapColors(value) {
  if (typeof value === "string") return Object.prototype.hasOwnProperty.call(DARK_COLORS, value) ? DARK_COLORS[value] : value;
  if (Array.isArray(value)) return typeof value[0] === "number" ? value : value.map(swapColors);
  if (value && typeof value === "object" && typeof value.bdata !== "string") {
    for (const key of Object.keys(value)) value[key] = swapColors(value[key]);
  }
  return value;
}
function forDarkPage(figure) {
  const { template, ...layout } = figure.layout;
  swapColors(figure.data);
  swapColors(layout);
  const grid = { gridcolor: "rgba(250,250,250,0.12)", linecolor: "rgba(250,250,250,0.35)", zerolinecolor: "rgba(250,250,250,0.35)" };
  for (const key of new Set(["xaxis", "yaxis", ...Object.keys(layout).filter((k) => /^[xy]axis\\d*$/.test(k))])) {
    layout[key] = Object.assign({}, grid, layout[key]);
  }
  Object.assign(layout, { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" });
  layout.font = Object.assign({}, layout.font, { color: "#e6e6e6" });
  layout.hoverlabel = Object.assign({ bgcolor: "#262730", bordercolor: "#555", font: { color: "#fafafa" } }, layout.hoverlabel);
  layout.modebar = Object.assign({ bgcolor: "rgba(0,0,0,0)", color: "#999", activecolor: "#fafafa" }, layout.modebar);
  figure.layout = template ? { template, ...layout } : layout;
  return figure;
}
function overlays(chart) {
  if (!chart.__veil) {
    chart.style.position = "relative";
    chart.__veil = document.createElement("div");
    const dark = pageIsDark(chart), ink = dark ? "#aaa" : "#555";  // the veil is the page's own colour
    chart.__veil.style.cssText = "position:absolute;z-index:2;background:" +
      (dark ? `rgba(${pageBackground(chart).join(",")},0.95)` : "rgba(255,255,255,0.95)") + ";";
    chart.__cursor = document.createElement("div");
    chart.__cursor.style.cssText = `position:absolute;width:0;border-left:1.5px solid ${ink};z-index:3;` +
      `pointer-events:none;font:11px sans-serif;color:${ink};white-space:nowrap;`;
    chart.__cursor.innerHTML = "<span style='position:absolute;top:-14px;left:3px'>replay</span>";
    chart.append(chart.__veil, chart.__cursor);
  }
  return [chart.__veil, chart.__cursor];
}
function dropOverlays(chart) {
  if (chart.__veil) { chart.__veil.remove(); chart.__cursor.remove(); chart.__veil = chart.__cursor = null; }
}
function startReel(chart, figure, reel) {  // the chart a replay plays on, drawn once
  const layout = Object.assign({}, figure.layout), data = figure.data.slice();
  if (reel.cursor) {  // the cursor is the overlay's (the still chart's named one is left out)
    layout.shapes = (layout.shapes || []).filter((item) => item.name !== "replay-cursor");
    layout.annotations = (layout.annotations || []).filter((item) => item.name !== "replay-cursor");
  }
  return window.Plotly.react(chart, data, layout, chart.__config);
}
function showFrame(chart, reel, frame, player, fresh) {
  if (reel.cursor) {
    const full = chart._fullLayout, size = full && full._size;
    if (size && full.xaxis) {
      const at = Math.max(0, Math.min(size.w, full.xaxis.l2p(reel.cursor[frame])));
      const [veil, cursor] = overlays(chart);
      Object.assign(veil.style, { left: size.l + at + "px", top: size.t + "px", width: size.w - at + "px", height: size.h + "px" });
      Object.assign(cursor.style, { left: size.l + at + "px", top: size.t + "px", height: size.h + "px" });
    }
  }
  let drawn = Promise.resolve();
  if (reel.image_of_frame && reel.image_of_frame[frame] !== player.image) {
    // A picture of one moment (the boundary's classes, the neurons' tiles): swapped in with its notes.
    player.image = reel.image_of_frame[frame];
    const pictures = player.payload, update = { "images[0].source": pictures.images[player.image], "title.text": reel.titles[frame] };
    const layout = pictures.layouts ? pictures.layout_of_image[player.image] : 0;
    if (layout !== player.layout) Object.assign(update, pictures.layouts[layout]);  // (0: the figure's own)
    player.layout = layout;
    drawn = window.Plotly.relayout(chart, update);
  }
  const states = player.payload.states;
  if (states && reel.state_of_frame[frame] !== player.state && states[reel.state_of_frame[frame]]) {
    // A chart of one moment (the latest histograms, the layer table): its data and title swapped when the moment changes.
    player.state = reel.state_of_frame[frame];
    const state = states[player.state];
    drawn = window.Plotly.update(chart, decodedDeep(state.restyle), state.layout);
  }
  chart.dataset.replayStep = String(reel.steps[frame]);
  return drawn.then(() => {
    if (!fresh) return;
    // Each frame shown, for bench/replay_fps.py (bounded: the newest 5000 kept).
    const shown = (window.__ltdReplayFrames = window.__ltdReplayFrames || []);
    shown.push([chart.__chartKey, reel.steps[frame], performance.now()]);
    if (shown.length > 5000) shown.splice(0, shown.length - 5000);
  });
}
function play(chart, player) {  // frames follow the clock: a busy page skips frames, never slows the replay
  if (chart.__player !== player || !chart.isConnected) return;
  const last = player.reel.steps.length - 1;
  const frame = Math.min(Math.floor((performance.now() - player.began) / player.reel.frame_ms), last);
  const next = () => {
    if (player.frame < last || chart.__veil) {  // the last frame shown: keep the overlay placed while the page resizes
      setTimeout(() => play(chart, player), Math.min(player.reel.frame_ms / 4, 50));
    }
  };
  const fresh = frame !== player.frame;
  if (!fresh && !player.reel.cursor) { next(); return; }
  player.frame = frame;
  showFrame(chart, player.reel, frame, player, fresh).then(next, next);  // (not fresh: the veil re-placed only)
}
// Live refreshes: one chart redrawn at a time, page-wide, and after each redraw a rest twice as long
// as it took, so Plotly gets at most a third of the browser. A browser slower than the refresh skips
// figures (each chart keeps only its newest waiting one) instead of queueing them, and a tab click is
// not stuck behind them (bench/run_path.py tab-clicks: median 2.4 s, was 3.5 s, on 2 cores with
// software rendering). A chart's first drawing (a tab just opened) does not wait.
const redraws = (window.__ltdRedraws = window.__ltdRedraws || { busy: false, waiting: new Map() });
// A chart scrolled out of sight, or on a browser tab in the background, keeps only its newest
// figure and is drawn when it is seen again: a laptop's window shows two or three of a tab's charts.
const sight = (window.__ltdSight = window.__ltdSight || new IntersectionObserver((entries) => {
  for (const entry of entries) {
    entry.target.__outOfSight = !entry.isIntersecting;
    if (!entry.target.isConnected) sight.unobserve(entry.target);  // (its tab was closed)
  }
  nextRedraw();
}));
if (!window.__ltdSeenAgain) {
  window.__ltdSeenAgain = true;
  document.addEventListener("visibilitychange", () => nextRedraw());
}
function redrawLater(chart, redraw) {
  redraws.waiting.set(chart, redraw);
  nextRedraw();
}
function nextRedraw() {
  if (redraws.busy || document.visibilityState === "hidden") return;
  for (const [chart, redraw] of redraws.waiting) {
    if (chart.__outOfSight && chart.isConnected) continue;  // (drawn when it scrolls into sight)
    redraws.waiting.delete(chart);
    if (!chart.isConnected) continue;  // its tab was closed
    redraws.busy = true;
    const began = performance.now();
    const rest = () => setTimeout(() => { redraws.busy = false; nextRedraw(); }, Math.min(2 * (performance.now() - began), 1500));
    Promise.resolve().then(redraw).then(rest, rest);
    return;
  }
}
// A figure whose data are the drawn ones and whose title, pictures, notes or shapes changed is
// relaid out, not reacted: Plotly.react redrew every trace point by point here even then (each
// figure arrives parsed anew, and a changed title alone set it off). That is a live refresh of the
// decision boundary and the neurons while a run trains (their pictures are layout images): 65-70
// ms of react for 1,200 training points in a 2-core machine's headless Chromium, 0.2-8 ms relaid out.
const RELAYOUT_KEYS = new Set(["title", "images", "annotations", "shapes"]);
function layoutParts(layout) {
  const parts = new Map();
  for (const [key, value] of Object.entries(layout)) parts.set(key, JSON.stringify(value));
  return parts;
}
function redrawFigure(chart, figure, config) {
  const dataJson = JSON.stringify(figure.data), parts = layoutParts(figure.layout);  // (before Plotly adds to them)
  const drawn = chart.__drawn;
  chart.__drawn = { dataJson, parts };
  if (drawn && chart._fullLayout && drawn.dataJson === dataJson) {
    const changes = {};
    let layoutOnly = true;
    for (const key of new Set([...parts.keys(), ...drawn.parts.keys()])) {
      if (parts.get(key) === drawn.parts.get(key)) continue;
      if (!RELAYOUT_KEYS.has(key)) { layoutOnly = false; break; }
      changes[key] = parts.has(key) ? figure.layout[key] : null;
    }
    if (layoutOnly) return window.Plotly.relayout(chart, changes);
  }
  return window.Plotly.react(chart, figure.data, figure.layout, config);
}
// A replay's large, unchanging part (its pictures, a chart's states) comes once per browser page: later reruns name it
// by id. Kept here, not on the chart, so a chart drawn again (a tab opened again) finds it; one the
// page lacks (evicted, or a rerun's message lost) is asked for again.
const payloads = (window.__ltdPayloads = window.__ltdPayloads || new Map());
function reelPayload(reel, setTriggerValue) {
  if (!reel.payload) return {};
  const { id, data } = reel.payload;
  if (data) {
    payloads.delete(id);
    payloads.set(id, data);
    while (payloads.size > 8) payloads.delete(payloads.keys().next().value);
  }
  const payload = payloads.get(id);
  if (!payload) setTriggerValue("missing", id);
  return payload;
}
export default function ({ parentElement, data, setTriggerValue }) {
  let chart = parentElement.querySelector(".ltd-chart");
  if (!chart) {
    chart = document.createElement("div");
    chart.className = "ltd-chart";
    chart.style.width = "100%";
    parentElement.appendChild(chart);
    new ResizeObserver(() => { if (chart._fullLayout && chart.isConnected) window.Plotly.Plots.resize(chart); })
      .observe(chart);
    sight.observe(chart);
  }
  const reel = data.reel || null;
  const dark = pageIsDark(parentElement);
  const key = data.spec + (reel ? reel.id : "") + (dark ? " dark" : "");
  if (chart.__key === key) return;  // an unchanged figure (a paused or ended run) costs nothing
  const payload = reel ? reelPayload(reel, setTriggerValue) : null;
  if (reel && !payload) return;  // (its pictures were asked for: the rerun brings them)
  chart.__key = key;
  loadPlotly().then((Plotly) => {
    if (chart.__key !== key) return;  // a newer figure came while plotly.js loaded
    if (!reel) {
      const redraw = () => {
        if (chart.__key !== key) return;  // (a newer figure replaced this one while it waited)
        const figure = JSON.parse(data.spec);
        figure.layout.font = Object.assign({ family: '"Source Sans Pro", sans-serif' }, figure.layout.font);
        if (dark) forDarkPage(figure);
        chart.__config = data.config;
        chart.__chartKey = data.key;
        chart.__player = null;
        dropOverlays(chart);
        delete chart.dataset.replayStep;
        chart.dataset.chartKey = data.key;
        chart.dataset.draws = String(Number(chart.dataset.draws || 0) + 1);  // (counted for tests/test_browser.py)
        return redrawFigure(chart, figure, data.config);
      };
      if (!chart._fullLayout || chart.__player || window.__ltdNoRedrawQueue) return redraw();  // (the flag: bench/run_path.py's baseline)
      redrawLater(chart, () => Promise.resolve().then(redraw).catch((error) => {
        chart.textContent = "This chart could not be drawn: " + error.message;
      }));
      return;
    }
    const figure = JSON.parse(data.spec);
    figure.layout.font = Object.assign({ family: '"Source Sans Pro", sans-serif' }, figure.layout.font);
    if (dark) forDarkPage(figure);
    chart.__config = data.config;
    chart.__chartKey = data.key;
    const running = chart.__player && chart.__player.reel.id === reel.id;
    const player = { reel: reel, payload: payload, frame: -1, image: 0, layout: 0, state: -1,
                     began: running ? chart.__player.began : performance.now() - reel.elapsed_ms };
    chart.__player = player;
    chart.__drawn = null;  // (a live figure after the replay is drawn whole)
    return startReel(chart, figure, reel).then(() => play(chart, player));
  }).catch((error) => { chart.textContent = "This chart could not be drawn: " + error.message; });
}
""".replace("PLOTLY_VERSION", plotly.__version__)
live_chart = st.components.v2.component("live_chart", js=LIVE_CHART_JS, isolate_styles=False)

st.set_page_config(page_title="Live Training Dashboard", page_icon="📈", layout="wide")
# Five metric cards share the main column: at 1024-1280 px Streamlit's fixed 2.25rem values were
# cut to "233 / …" and "0.007…". Values scale with the window and may wrap; labels may wrap too.
st.html("""<style>
[data-testid="stMetricValue"] { font-size: clamp(1.05rem, 1.85vw, 2.25rem); }
[data-testid="stMetricValue"] > div, [data-testid="stMetricLabel"] p, [data-testid="stMetricDelta"],
[data-testid="stMetricDelta"] * { white-space: normal; overflow: visible; text-overflow: clip; overflow-wrap: anywhere; }
</style>""")


@st.cache_resource
def plotly_js_served() -> bool:
    """Whether the page loads plotly.js from the static folder beside this script (copied there
    from the installed plotly package, so it always matches the figures' version)."""
    if not st.get_option("server.enableStaticServing"):
        return False
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    target = Path(__file__).resolve().parent / "static" / "plotly.min.js"
    try:
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            target.parent.mkdir(exist_ok=True)
            partial = target.with_name(f".plotly.min.js.{os.getpid()}")
            shutil.copyfile(source, partial)
            partial.replace(target)
    except OSError:
        return False
    return True


def draw_chart(where, figure, key: str, reel: dict | None = None) -> None:
    """A Plotly figure in `where` (st, a column), updated in place on the next refresh. `reel`: a
    replay the browser plays on this figure (see replay_reel)."""
    if not plotly_js_served():
        where.plotly_chart(figure, key=key, config=PLOTLY_CONFIG)
        return
    data = {"spec": plotly.io.to_json(figure, validate=False), "config": PLOTLY_CONFIG, "key": key}
    if reel is not None:  # how far it has played, as this chart leaves (a chart drawn later starts later on)
        data["reel"] = {**reel, "elapsed_ms": (time.time() - reel["began"]) * 1000}
        if "payload" in reel:  # its pictures go to this browser page once; the page reruns every 2 s while it plays
            sent = st.session_state.setdefault("sent_payloads", set())
            payload_id = reel["payload"]["id"]
            data["reel"]["payload"] = {"id": payload_id} if payload_id in sent else reel["payload"]
            sent.add(payload_id)
    if where is st:  # the current container (a tab, an expander)
        live_chart(key=key, data=data, on_missing_change=resend_payloads)
    else:
        with where:
            live_chart(key=key, data=data, on_missing_change=resend_payloads)


def resend_payloads() -> None:
    """The browser page lacks a replay's pictures (evicted, or a message lost): send them again."""
    st.session_state.sent_payloads = set()


@st.cache_resource
def run_catalog(runs_dir: str) -> RunCatalog:
    """One catalog per server process and runs folder: runs outlive reruns, sessions and refreshes."""
    return RunCatalog(runs_dir)


@st.cache_resource
def fallback_runs_dir() -> str:
    """Where runs go while the typed runs folder cannot be used (one per server)."""
    return tempfile.mkdtemp(prefix="dashboard-runs-")


@st.cache_data(max_entries=32)
def cached_preview(config: RunConfig):
    return describe_config(config)


def watch(run_ids: list[str]) -> None:
    """Show the first of run_ids live and overlay all of them in the Runs tab; keep both in the URL."""
    st.session_state.run_id = run_ids[0]
    st.session_state.compare_ids = run_ids
    st.query_params["run"] = run_ids[0]
    st.query_params.pop("previous", None)  # (remember_previous sets it again for a run just started)
    if len(run_ids) > 1:
        st.query_params["compare"] = ",".join(run_ids)
    else:
        st.query_params.pop("compare", None)


def browser_session() -> str | None:
    """This browser session's id: the catalog starts one launch per session at a time. Session
    state is no guard here: quick clicks' callbacks each see it as it was before the first."""
    context = get_script_run_ctx()
    return context.session_id if context is not None else None


def remember_previous(new_run_id: str, shown_before: str | None) -> None:
    """The run on screen when a run was started: its curves stay beneath the new run's (after
    watch(): the URL keeps it too, so a refresh or a shared link shows the same charts)."""
    if shown_before and shown_before != new_run_id:
        st.session_state.previous_run = {"of": new_run_id, "id": shown_before}
        st.query_params["previous"] = shown_before


def start_run(run_config: RunConfig) -> None:
    shown_before = st.session_state.get("run_id")
    run_ids = [run.run_id for run in registry.launch([("", run_config)], requester=browser_session())]
    watch(run_ids)
    remember_previous(run_ids[0], shown_before)


def start_preset(key: str) -> None:
    preset = PRESETS[key]
    pace = st.session_state.get("pace", RunConfig.pace)  # the pace chosen in the sidebar
    st.session_state.update(widget_values(preset.runs[-1][1]))
    runs = registry.launch([(f"{preset.title.split('·')[-1].strip()} · {label}", cfg.with_changes(pace=pace))
                            for label, cfg in preset.runs], requester=browser_session())
    watch([run.run_id for run in runs])


def stop_run(run_ids: list[str]) -> None:
    for run_id in run_ids:
        registry.stop(run_id)


st.session_state.setdefault("runs_dir", os.environ.get("DASHBOARD_RUNS_DIR", "runs"))
try:
    registry = run_catalog(str(st.session_state.runs_dir).strip())
    registry.store.check_usable()
    runs_dir, runs_dir_error = registry.store.url, ""
except run_store.StoreError as error:
    runs_dir = fallback_runs_dir()
    runs_dir_error = f"{error}. Until you fix it, runs go to a temporary folder: {runs_dir}"
    registry = run_catalog(runs_dir)

if "run_id" not in st.session_state:
    # A new browser session (first visit or refresh): the URL says which run to show.
    st.session_state.run_id = st.query_params.get("run")
    st.session_state.compare_ids = [i for i in st.query_params.get("compare", "").split(",") if i] or (
        [st.session_state.run_id] if st.session_state.run_id else [])
    linked_previous = st.query_params.get("previous")
    if st.session_state.run_id and linked_previous and linked_previous != st.session_state.run_id:
        if registry.get(linked_previous) is not None:
            st.session_state.previous_run = {"of": st.session_state.run_id, "id": linked_previous}
        else:  # said under the chart settings (the id itself is not echoed: it came from a link)
            st.session_state.previous_run = {"of": st.session_state.run_id, "id": None}
    attached = registry.get(st.session_state.run_id)
    if attached is not None and attached.config is not None:
        st.session_state.update(widget_values(attached.config))  # the sidebar shows that run's settings

# --------------------------------------------------------------------------- sidebar

raw: dict = {}
error_slots: dict = {}
# Widgets take their first values from session state (never a value= argument too): presets
# set the same keys, and Streamlit warns when both are given.
WIDGET_DEFAULTS = default_widget_values()
for widget_key, default in WIDGET_DEFAULTS.items():
    st.session_state.setdefault(widget_key, default)

st.sidebar.header("Experiments to try")
preset_key = st.sidebar.selectbox("Preset", ["", *PRESETS], key="preset",
                                  format_func=lambda k: PRESETS[k].title if k else "— choose a lesson —")
if preset_key:
    preset = PRESETS[preset_key]
    st.sidebar.caption(preset.explanation)
    st.sidebar.caption(f"**Watch:** {preset.watch}")
st.sidebar.button(f"Run experiment ({len(PRESETS[preset_key].runs)} run{'s' * (len(PRESETS[preset_key].runs) > 1)})"
                  if preset_key else "Run experiment", key="run_preset", disabled=not preset_key,
                  on_click=start_preset, args=(preset_key,), width="stretch")



def control(name: str, value) -> None:
    """Record a widget's raw value and leave a slot under it for its validation message."""
    raw[name] = value
    error_slots[name] = st.sidebar.empty()


def draw(field: Field):
    """The widget of one setting, as the table describes it."""
    key = field.widget_key(raw)
    if field.widget == "select":
        return st.sidebar.selectbox(field.label, list(field.options), format_func=field.options.get, key=key,
                                    help=field.help)
    if field.widget == "radio":
        return st.sidebar.radio(field.label, list(field.options), format_func=field.options.get, horizontal=True,
                                key=key, help=field.help)
    if field.widget == "slider":
        return st.sidebar.slider(field.label, field.low, field.high, step=field.step, key=key, help=field.help)
    if field.widget == "number":  # no min/max: an out-of-range value gets our message, not a silent clamp
        return st.sidebar.number_input(field.label, step=field.step, format=field.number_format, key=key,
                                       help=field.help)
    return st.sidebar.text_input(field.label, key=key, help=field.help, placeholder=field.placeholder)


section = None
for field in FIELDS:
    if not field.applies(raw):
        continue
    if field.section != section:
        section = field.section
        st.sidebar.header(section)
    control(field.name, draw(field))

config, errors = parse_run_config(raw)
for name, message in errors.items():
    (error_slots.get(name) or st.sidebar).error(message)
if config is not None and config.dataset == "mnist_idx":
    try:
        used = sample_count(config)
    except (OSError, ValueError):
        used = None  # the folder's problem is reported by the preview
    if used is not None and used < config.num_samples:
        (error_slots.get("num_samples") or st.sidebar).caption(
            f"The file holds {used:,} images: all {used:,} are used.")
budget: list[str] = []  # why these settings would not fit this machine (resource_budget)
if config is not None:
    try:
        budget = budget_problems(config)
    except (OSError, ValueError):  # an unreadable MNIST folder is reported by its preview
        budget = []
    for message in budget:
        st.sidebar.error(message)
    if budget:
        errors = {**errors, "budget": " ".join(budget)}


# --------------------------------------------------------------------------- which run this page shows

with st.sidebar.expander("Runs folder", expanded=bool(runs_dir_error)):
    st.text_input("Where runs are saved", key="runs_dir",
                  help="Every run writes its settings and history here; runs found here are listed in the Runs "
                       "tab, including runs written by your own scripts (see README).")
    if runs_dir_error:
        st.error(runs_dir_error)

run = registry.get(st.session_state.run_id)
if st.session_state.run_id and run is None:
    st.warning(f"Run `{st.session_state.run_id}` is not in this server's memory or its runs folder. "
               "Press Train to start a new one.")
    st.session_state.run_id = None
    st.query_params.pop("run", None)
group = [r for r in (registry.get(i) for i in st.session_state.get("compare_ids", [])) if r is not None] or (
    [run] if run else [])
active = any(r.is_active for r in group)
waiting_for_data = run is not None and run.is_active and not ((first := run.snapshot()) is not None and first.num_steps)

buttons = st.sidebar.columns(2)
buttons[0].button(
    "Train", type="primary", key="train", width="stretch", disabled=bool(errors) or active,
    on_click=start_run, args=(config,),
    help="Fix the settings marked in red first" if errors else ("Stop the current run first" if active else None),
)
buttons[1].button("Stop", key="stop", width="stretch", disabled=not active,
                  on_click=stop_run, args=([r.run_id for r in group],))

# --------------------------------------------------------------------------- main page

st.title("Live Training Dashboard")
if run is None:
    st.info("Choose a dataset, a model and training settings in the sidebar, then press **Train** "
            "to watch the network learn — or pick one of the *Experiments to try*.")
    if config is not None:
        try:
            preview = cached_preview(config)
        except (OSError, ValueError) as error:  # e.g. an MNIST folder without its IDX files
            st.warning(f"No preview: {error}")
        else:
            draw_chart(st, charts.architecture_diagram(preview), "preview_architecture")
            st.caption(f"Preview of **{config.label()}** on {DATASETS[config.dataset]}.")
            for message in budget:  # said beside the preview too: the sidebar's end may be out of sight
                st.warning(message)
    if stored := registry.runs():
        st.caption(f"{len(stored)} earlier runs are in the runs folder `{runs_dir}`: open one from "
                   "the Runs tab after a run, or pass `?run=<id>` in the URL.")
    st.stop()

freeze_column, refresh_column = st.columns([5, 1], vertical_alignment="bottom")
paused = freeze_column.toggle("Freeze the page (training goes on)", key="paused", disabled=not active,
                              help="Stops the page's live updates only, e.g. to read a chart while its numbers stay "
                                   "put (a zoom is kept through live updates anyway). To hold training itself, use "
                                   "Pause below the progress bar.")
if st.session_state.get("refresh") not in REFRESH_CHOICES:
    st.session_state.refresh = AUTO  # (a value kept from an older page)
refresh_column.selectbox("Refresh", list(REFRESH_CHOICES), format_func=REFRESH_CHOICES.get, key="refresh",
                         help="How often the charts of a live run are redrawn. Auto: every second, slower when "
                              "several pages watch live runs on this machine or training waits for a CPU, "
                              "so training keeps the CPU.")
this_page = browser_session() or "page"
# Always one element here, a caption or nothing: an element that came and went above the live panels
# shifted their places, so Streamlit remounted every chart (a zoom lost, seen in the browser test).
refresh_note = st.empty()
refresh_seconds = None  # no live refresh: nothing trains, the page is frozen, or the first numbers are awaited
live_pages = server_pages()
if active and not paused and not waiting_for_data:
    refresh_seconds = live_pages.interval(st.session_state.refresh, this_page)
    live_pages.seen(this_page, refresh_seconds)
    if st.session_state.refresh == AUTO and refresh_seconds > 1:
        reasons = []
        if live_pages.seconds_for_pages() > 1:
            watching = live_pages.watching()
            reasons.append(f"{watching} page{'s are' if watching > 1 else ' is'} watching live runs on this "
                           f"{live_pages.cores}-core machine")
        if live_pages.seconds_for_load() > 1 and live_pages.slowed_because:
            reasons.append(live_pages.slowed_because)
        refresh_note.caption(f"Live charts refresh every {refresh_seconds:.0f} s so that training keeps the CPU: "
                             f"{' and '.join(reasons)}. **Refresh** sets a fixed interval.")
else:
    live_pages.gone(this_page)
STATUS_BOXES = {"failed": st.error, "stopped": st.warning, "finished": st.success}
SEVERITY_BOXES = {diagnostics.CRITICAL: st.error, diagnostics.WARNING: st.warning, diagnostics.INFO: st.info}
CHART_NAMES = {"loss": "Loss per epoch", "accuracy": "Accuracy per epoch", "batch_loss": "Loss per batch",
               "grad_norm": "Gradient norm", "layer_table": "Model → layer statistics", "grad_hist": "Distributions"}


def run_health(run, snapshot) -> str:
    """One run's health in a table cell: its main causes, most severe first, or all clear."""
    if not snapshot.num_steps:
        return "–"
    causes = diagnostics.explain(diagnostics.diagnose(snapshot), snapshot, run.config_dict)
    return ", ".join(f"{c.finding.title} ({c.severity})" for c in causes[:2]) or "all clear"


def shorten(text: str, limit: int = 160) -> str:
    """The first clause of an evidence line, for a consequence listed under its cause."""
    first = text.split("; ")[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def start_try(original_id: str, changed: RunConfig) -> None:
    """A doctor's remedy: train the same settings with one change, overlaid with the original."""
    st.session_state.update(widget_values(changed))
    [run] = registry.launch([("", changed)], requester=browser_session())
    watch([run.run_id, original_id])
    remember_previous(run.run_id, original_id)
    st.session_state.needs_app_rerun = True  # clicked inside the live fragment: Train/Stop must change too


def request_training(run_id: str, action: str) -> None:
    """A Pause/Resume/Step/pace click: written into the run's control file, obeyed by whoever trains it."""
    current = registry.get(run_id)
    if current is None:
        return
    if action in ("step_batch", "step_epoch"):
        previous = current.store.read_control(run_id).get("advance")
        number = previous.get("id", 0) if isinstance(previous, dict) else 0
        changes = {"advance": {"id": (number if isinstance(number, int) else 0) + 1, "unit": action[5:]}}
    else:
        changes = {"pause": {"paused": True}, "resume": {"paused": False}, "fast": {"pace": "fast"},
                   "watchable": {"pace": "watchable"}}[action]
    if problem := current.control(**changes):
        st.session_state.control_problem = problem


def training_controls(current) -> None:
    """Pause, step one batch or one epoch, and the pace of a run that is training. The buttons say
    what the page asked; the caption what training does (the writer's status.json)."""
    state = current.writer_state
    if current.status != RUNNING or state is None or not state.pausable:
        return
    asked = current.store.read_control(current.run_id)
    pause_asked = asked.get("paused") is True
    columns = st.columns([1, 1.15, 1.15, 1.25, 3.5], vertical_alignment="center")
    # Two keys, each for one idempotent request: a click that Streamlit delivers again after the
    # label changed (seen on a loaded CI machine: a Pause undone a moment later) repeats the same
    # request instead of toggling it back.
    if pause_asked:
        columns[0].button("Resume", key="resume_training", width="stretch", icon=":material/play_arrow:",
                          on_click=request_training, args=(current.run_id, "resume"),
                          help="Go on training from where it is held.")
    else:
        columns[0].button("Pause", key="pause_training", width="stretch", icon=":material/pause:",
                          on_click=request_training, args=(current.run_id, "pause"),
                          help="Hold training between two batches (not only the page); the run stays open.")
    for column, unit in zip(columns[1:3], ("batch", "epoch")):
        column.button(f"Step 1 {unit}", key=f"step_{unit}", width="stretch", disabled=not state.paused,
                      on_click=request_training, args=(current.run_id, f"step_{unit}"),
                      help=f"While paused: train exactly one more {unit} (an epoch: to its end), then hold again.")
    if state.pace_seconds:
        columns[3].button("Full speed", key="full_speed", width="stretch", icon=":material/fast_forward:",
                          on_click=request_training, args=(current.run_id, "fast"),
                          help="Drop the watchable pace: train as fast as this machine can.")
    elif current.source == "dashboard":
        columns[3].button("Watchable pace", key="watchable_pace", width="stretch",
                          on_click=request_training, args=(current.run_id, "watchable"),
                          help="Spread what is left of the run so the whole run lasts about 20 s.")
    if state.paused:
        per_epoch = state.batches_per_epoch
        where = f" (epoch {state.paused_at / per_epoch:.2f})" if per_epoch else ""
        text = f"**Paused** after batch {state.paused_at:,}{where}. Step one batch or one epoch, or resume."
    elif pause_asked:
        text = "Pausing after the current batch…"
    elif state.pace_seconds:
        text = f"Watchable pace: this run is spread over about {state.pace_seconds:.0f} s so you can watch it learn."
    else:
        text = ""
    if problem := st.session_state.pop("control_problem", ""):
        columns[4].error(problem)
    elif text:
        columns[4].markdown(text)


def health_panel(current, findings: list, snapshot, active: bool) -> None:
    missing = diagnostics.unmeasured(snapshot) if snapshot.num_steps else []
    if not findings:
        if snapshot.num_steps:
            levels = diagnostics.unit_levels(snapshot)  # "dead ReLUs over 60% of a layer (the most: 30%, in fc2)"
            checked = [levels.get(c, c) for c in ("overfitting", "dead ReLUs", "saturation")
                       if not any(m.startswith(c) for m in missing)]
            st.success("**Health: all clear.** No sign of stalled or exploding loss, exploding or vanishing gradients, "
                       "badly sized updates" + "".join(f", {c}" for c in checked) + "."
                       + (f"  \n*Not measured:* {'; '.join(missing)}." if missing else ""),
                       icon=":material/check_circle:")
        return
    # One box per cause: the cause and its evidence first, what follows from it under it, and the
    # changes to try (a button each, for the page's own runs: the same settings with that change).
    for index, cause in enumerate(diagnostics.explain(findings, snapshot, current.config_dict)):
        finding = cause.finding
        # The batch too: a script that never said its epochs' length has every batch at "epoch 0.0".
        where = (f" · from batch {finding.step:,} (epoch {finding.epoch:.1f})" if finding.step is not None
                 else f" · from epoch {finding.epoch:.1f}" if finding.epoch is not None else "")
        lines = [f"**{finding.title}** — {finding.explanation}",
                 f"*Evidence:* {finding.evidence}",
                 f"*See:* {CHART_NAMES.get(finding.chart, finding.chart)}{where}"]
        text = "  \n".join(lines)
        if cause.consequences:
            text += "\n\n*What follows from it:*\n" + "\n".join(
                f"- {c.title}: {shorten(c.evidence)}" for c in cause.consequences)
        if cause.remedies:
            text += "\n\n*Try:* " + " · ".join(r.label for r in cause.remedies)
        SEVERITY_BOXES[cause.severity](text, icon=":material/stethoscope:")
        if current.config is not None:
            tries = [r for r in cause.remedies if r.changes]
            for column, remedy in zip(st.columns(max(len(tries), 1) + 2), tries):
                try:
                    changed = dataclasses.replace(current.config, **remedy.changes)
                except TypeError:
                    continue
                if validate(changed):
                    continue
                column.button(f"Try: {remedy.label}", key=f"try_{index}_{remedy.label}", disabled=active,
                              on_click=start_try, args=(current.run_id, changed),
                              help="Train again with only this change, overlaid with this run")
    if missing:
        st.caption(f"The doctor could not check: {'; '.join(missing)}.")


# Chart settings as TensorBoard users know them. Only the open tab is drawn, and Streamlit forgets
# a widget's value when it is not drawn, so each value is also kept under "kept_<key>".
CHART_SETTINGS = {"smoothing": 0.9, "x_axis": "epoch", "y_scale": "auto", "ignore_outliers": False,
                  "hist_mode": "heatmap", "hist_scale": "layer", "show_previous": True}
X_AXIS_LABELS = {"step": "Step", "epoch": "Epoch", "time": "Time"}
Y_SCALE_LABELS = {"auto": "Auto", "linear": "Linear", "log": "Log"}


def chart_setting(key: str):
    return st.session_state.get(f"kept_{key}", CHART_SETTINGS[key])


def keep_setting(key: str) -> None:
    st.session_state[f"kept_{key}"] = st.session_state[key]
    if st.session_state.get("replay_playing"):
        st.session_state.needs_app_rerun = True  # the replay's refresh timer depends on the histogram mode


def setting_widget(widget, label: str, key: str, **kwargs):
    """A chart-setting widget that shows the kept value, wherever it was last changed."""
    st.session_state[key] = chart_setting(key)
    return widget(label, key=key, on_change=keep_setting, args=(key,), **kwargs)


def chart_options() -> charts.ChartOptions:
    return charts.ChartOptions(smoothing=float(chart_setting("smoothing")), x_axis=chart_setting("x_axis"),
                               y_scale=chart_setting("y_scale"), ignore_outliers=bool(chart_setting("ignore_outliers")))


def curve_settings() -> None:
    # Select boxes, not radios: four controls side by side must fit a 1024 px window untruncated.
    smoothing, x_axis, y_scale, outliers = st.columns([3, 2, 2, 3], vertical_alignment="bottom")
    with smoothing:
        setting_widget(st.slider, "Smoothing", "smoothing", min_value=0.0, max_value=0.99, step=0.01,
                       help="TensorBoard's smoothing: a debiased exponential moving average of the per-batch "
                            "series (0 = raw only). Runs compared in the Runs tab use it too.")
    with x_axis:
        setting_widget(st.selectbox, "X axis", "x_axis", options=list(X_AXIS_LABELS), format_func=X_AXIS_LABELS.get,
                       help="Step: batches trained. Time: seconds since the run started (relative wall time).")
    with y_scale:
        setting_widget(st.selectbox, "Y axis", "y_scale", options=list(Y_SCALE_LABELS), format_func=Y_SCALE_LABELS.get,
                       help="Auto: losses and the learning rate linear, gradient norms log.")
    with outliers:
        setting_widget(st.checkbox, "Ignore outliers", "ignore_outliers",
                       help="Scale the y-axis to the 5th-95th percentile of what is drawn, so one early spike "
                            "does not flatten the rest.")


def previous_run_curves(current) -> tuple[str, object] | None:
    """(name, history) of the run on screen when this one's Train (or a doctor's Try) was pressed,
    if it trained a batch and is still there; None otherwise (a caption says so when it is gone)."""
    previous = st.session_state.get("previous_run") or {}
    if previous.get("of") != current.run_id:
        return None
    run = registry.get(previous.get("id"))
    if run is None:
        st.caption("The run this page compared with is not in this runs folder (deleted, or not a run id): "
                   "only this run is drawn.")
        return None
    history = run.snapshot()
    if history is None or history.num_steps == 0:
        return None
    return run.name, history


def curves_tab(current, snapshot, findings, replay_of=None, replay_step=None, reel=None) -> None:
    curve_settings()
    previous = previous_run_curves(current)
    if previous is not None:
        setting_widget(st.checkbox, f"Dashed: the previous run, {charts.escape_markdown(previous[0])}",
                       "show_previous", help="The loss and accuracy curves of the run you were looking at when "
                                             "you pressed Train, faint beneath this run's, to see what your "
                                             "change did.")
        if not chart_setting("show_previous"):
            previous = None
    left, right = st.columns(2)
    keys = ("loss_chart", "accuracy_chart", "batch_loss_chart", "grad_norm_chart", "lr_chart")
    options = chart_options()
    two_d = current.config is not None and current.config.dataset not in IMAGE_DATASETS
    boundary = None  # while the browser plays a replay: (the plane at the first frame, the frames)
    if reel is not None and two_d:  # the boundary's frames first: the replay's clock starts once they are ready
        began = time.monotonic()
        try:
            dataset = dataset_for(current.config)
            boundary = boundary_frames(current, dataset, reel)
        except (OSError, ValueError):
            boundary = None
        if restarted := replay_restarted_after(time.monotonic() - began, replay_of.num_steps):
            reel = restarted
            boundary = boundary and (boundary[0], {**boundary[1], **reel})
    if reel is not None:  # the browser plays it: the whole run's charts, veiled right of each frame's cursor
        figures = charts.training_curves_figures(replay_of, [], options, replay_of, previous)
        curves_reel = {**reel, "cursor": charts.replay_cursor_x(replay_of, options.x_axis, reel["steps"])}
    else:
        figures, curves_reel = charts.training_curves_figures(snapshot, findings, options, replay_of, previous), None
    for index, (figure, key) in enumerate(zip(figures, keys)):
        draw_chart((left if index % 2 == 0 else right), figure, key, curves_reel)
    if boundary is not None:  # drawn at the first frame; the browser plays on
        draw_chart(right, boundary[0], "curves_boundary_chart", boundary[1])
    # 2-D data: the boundary bends beside the curves while it trains (TensorFlow Playground's view).
    elif two_d:
        model, step = current.inspection_model(None if replay_step is None else replay_step - 1)
        if model is not None:
            try:
                dataset = dataset_for(current.config)
            except (OSError, ValueError):
                return
            with current.inspection_lock:
                grid = inspection.decision_grid(model, dataset.x_train)
            image = charts.boundary_picture(grid[2]) if drawn_as_pictures(current, replay_step) else None
            draw_chart(right, charts.decision_boundary(*grid, dataset.x_train.numpy(), dataset.y_train.numpy(),
                                                        None if step == -1 else step, image=image), "curves_boundary_chart")


def drawn_as_pictures(current, replay_step: int | None) -> bool:
    """Whether the charts of one moment of the model (the decision boundary, the neurons) come as
    pictures: while the run trains and the page refreshes. Each refresh then swaps a picture and a
    title over data that stay put, which the browser relays out (~15 ms in the page) instead of
    redrawing every training point (~170 ms; see redrawFigure in LIVE_CHART_JS): a Predictions-tab
    refresh cost Chromium 0.47-0.58 core-s, against 0.64-0.78 with heatmaps (2-core VM, every 2 s).
    Ended, frozen or replayed, they are heatmaps whose cells say the class and confidence on hover."""
    return current.is_active and not paused and replay_step is None


def replay_restarted_after(took: float, last: int) -> dict | None:
    """Frames that took a while to prepare as a replay starts would have cost its first frames: start
    its clock again (only as it starts: never jump back later). The new reel, or None."""
    clock_began, from_step, _ = st.session_state.replay_clock
    if took > 0.2 and time.time() - clock_began < took + 1.0:
        start_replay_clock(from_step)
        return replay_reel(last)
    return None


def picture_frames(name: str, current, reel: dict, picture, first_figure) -> tuple | None:
    """A replay playing in the browser on a chart of one moment of the model (the decision
    boundary, the neurons): picture(model) -> (PNG data URL, relayout with it or None) for each
    weight snapshot the frames use, and first_figure(model, weights step, its PNG) -> the chart at
    the first frame, each computed once per run. Returns (that figure, each frame's weights step,
    the frames for the browser) or None without weights. The pictures travel once per browser page
    (draw_chart), as a payload named by the run and the snapshots."""
    try:
        stored = current.store.weight_steps(current.run_id)
    except (OSError, ValueError):
        return None
    if not stored:
        return None
    chosen = [run_store.snapshot_at(stored, step - 1) for step in reel["steps"]]
    distinct = tuple(sorted(set(chosen), key=chosen.index))
    # Kept for this run: a second play (another start, another speed) is instant, and the page's
    # reruns every 2 s while it plays reuse the frames assembled for these snapshots.
    known = st.session_state.get(f"{name}_pictures")
    if known is None or known[0] != current.run_id:
        known = st.session_state[f"{name}_pictures"] = (current.run_id, {}, {})
    _, pictures, assembled = known  # {weights: picture(...)}, {distinct snapshots: (figure, frames)}
    if distinct not in assembled:
        for weights in distinct:
            needs_figure = weights == distinct[0]
            if weights in pictures and not needs_figure:
                continue
            model, _ = current.inspection_model(weights)
            if model is None:
                return None
            with current.inspection_lock:
                if weights not in pictures:
                    pictures[weights] = picture(model)
                if needs_figure:
                    figure = first_figure(model, weights, pictures[weights][0])
        # Relayouts as few as the distinct ones: a neuron view's notes cost the browser ~110 ms to swap
        # and change only when a unit dies or revives (a picture alone: 3 ms).
        layouts = [pictures[weights][1] for weights in distinct]
        unique = [layout for index, layout in enumerate(layouts) if layout not in layouts[:index]]
        payload_id = hashlib.sha1(repr((name, current.run_id, distinct)).encode()).hexdigest()[:16]
        payload = {"id": payload_id, "data": {"images": [pictures[weights][0] for weights in distinct], **(
            {"layouts": unique, "layout_of_image": [unique.index(layout) for layout in layouts]} if any(layouts) else {})}}
        assembled.clear()  # (only the replay playing now)
        assembled[distinct] = (figure, payload)
    figure, payload = assembled[distinct]
    return figure, chosen, {"payload": payload, "image_of_frame": [distinct.index(w) for w in chosen], **reel}


def weights_title(title: str, weights: int) -> str:
    return title + (f" (weights of batch {weights})" if weights >= 0 else "")


def boundary_frames(current, dataset, reel: dict) -> tuple | None:
    """The decision boundary at each frame of a replay playing in the browser: (the figure at the
    first frame, the frames), or None without weights. Each snapshot's predicted classes are a
    64 x 64 picture in the class colours (the replay shows no confidence)."""
    def picture(model):
        return charts.boundary_picture(inspection.decision_grid(model, dataset.x_train, REPLAY_GRID_RESOLUTION)[2]), None

    def first_figure(model, weights, image):
        xs, ys, classes, _ = inspection.decision_grid(model, dataset.x_train, REPLAY_GRID_RESOLUTION)
        return charts.decision_boundary(xs, ys, classes, np.ones(classes.shape), dataset.x_train.numpy(),
                                        dataset.y_train.numpy(), None if weights == -1 else weights, image=image)

    found = picture_frames("boundary", current, reel, picture, first_figure)
    if found is None:
        return None
    figure, chosen, frames = found
    return figure, {**frames, "titles": [weights_title("Decision boundary", w) for w in chosen]}


def neuron_frames(current, dataset, reel: dict) -> tuple | None:
    """The neuron view at each frame of a replay playing in the browser, like boundary_frames: each
    snapshot's tiles as one picture (~32 kB) with its notes (which units are dead then)."""
    def picture(model):
        xs, _, layers = inspection.neuron_outputs(model, dataset.x_train)
        image, notes = charts.neuron_picture(layers, len(xs))
        return image, {"annotations": notes}

    def first_figure(model, weights, image):
        xs, ys, layers = inspection.neuron_outputs(model, dataset.x_train)
        return charts.neuron_view(xs, ys, layers, None if weights == -1 else weights, image=image)

    found = picture_frames("neurons", current, reel, picture, first_figure)
    if found is None:
        return None
    figure, chosen, frames = found
    return figure, {**frames, "titles": [weights_title(charts.NEURON_VIEW_TITLE, w) for w in chosen]}


def distributions_tab(snapshot, replay_of=None, reel=None) -> None:
    mode_column, scale_column = st.columns(2)
    with mode_column:
        setting_widget(st.radio, "Histograms", "hist_mode", options=list(charts.HISTOGRAM_MODES), horizontal=True,
                       format_func={"heatmap": "Heatmap", "offset": "Offset (ridgeline)"}.get,
                       help="Heatmap: colour = share of values at each step. Offset: one histogram per step "
                            "stacked, the newest in front (TensorBoard's offset view).")
    with scale_column:
        setting_widget(st.radio, "Scale", "hist_scale", options=list(charts.HISTOGRAM_SCALES), horizontal=True,
                       format_func={"layer": "Per layer", "shared": "Shared, log |value|"}.get,
                       help="Per layer: each layer on its own value range. Shared: every layer on one log10 "
                            "|value| axis, so a 1000x gap between layers' gradients is three decades apart.")
    mode, scale = chart_setting("hist_mode"), chart_setting("hist_scale")
    layers = histogram_layers(list((replay_of if replay_of is not None else snapshot).layer_names))
    if not layers:
        st.info("Pick one or more layers above to see their distributions.")
        return
    left, right = st.columns(2)
    for column, kind in ((left, "grad"), (right, "weight")):
        if reel is not None and mode == "heatmap":  # the browser plays it: the whole run veiled right of the cursor
            draw_chart(column, charts.histogram_heatmaps(replay_of, kind, layers, columns=1, mode=mode, scale=scale),
                       f"{kind}_hist_chart", {**reel, "cursor": charts.histogram_replay_cursor(replay_of, kind, reel["steps"])})
            figure, frames = latest_histogram_frames(replay_of, kind, scale, reel, layers)
            draw_chart(column, figure, f"{kind}_latest_chart", {**reel, **frames})
            continue
        draw_chart(column, charts.histogram_heatmaps(snapshot, kind, layers, columns=1, mode=mode, scale=scale),
                   f"{kind}_hist_chart")
        draw_chart(column, charts.latest_histograms(snapshot, kind, scale=scale, layers=layers), f"{kind}_latest_chart")


def histogram_layers(names: list[str]) -> list[int]:
    """Which layers the Distributions tab draws: all of a small model's; for more than
    charts.DEFAULT_HISTOGRAM_LAYERS, the ones picked here (at first, evenly spread from first to last)."""
    if len(names) <= charts.DEFAULT_HISTOGRAM_LAYERS:
        return list(range(len(names)))
    # One picker per set of layer names: another run's names would not be valid choices.
    key = "hist_layers_" + hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]
    picked = st.multiselect(
        f"Layers ({len(names)} in this model)", names, key=key,
        default=[names[i] for i in charts.default_histogram_layers(len(names))],
        help="A panel per layer: at first a few spread from the first layer to the last.")
    return [names.index(name) for name in picked]


def once_per_replay(name: str, whole, reel: dict, compute, *settings) -> tuple:
    """compute() -> (figure, frames) for the replay playing, kept under `name` until the run, its
    frames or `settings` change (the page reruns every 2 s while it plays). The frames' states (a
    chart's data at each moment) go to the browser page once, as a payload (draw_chart)."""
    key = (whole.history_id, whole.num_steps, tuple(reel["steps"]), settings)
    cached = st.session_state.get(name)
    if cached is None or cached[0] != key:
        figure, frames = compute()
        payload_id = hashlib.sha1(repr((name, key)).encode()).hexdigest()[:16]
        frames = {**{k: v for k, v in frames.items() if k != "states"},
                  "payload": {"id": payload_id, "data": {"states": frames["states"]}}}
        cached = st.session_state[name] = (key, (figure, frames))
    return cached[1]


def layer_table_frames(whole, architecture, reel: dict) -> tuple:
    """charts.layer_table_frames for the replay playing, with the layers the doctor flagged at each
    frame (~0.5 s for 200 frames here, once per replay)."""
    def compute():
        flagged = [{f.layer for f in diagnostics.diagnose(whole.until(step)) if f.chart == "layer_table" and f.layer}
                   for step in reel["steps"]]
        return charts.layer_table_frames(whole, architecture, reel["steps"], flagged)
    return once_per_replay("layer_table_frames", whole, reel, compute)


def latest_histogram_frames(whole, kind: str, scale: str, reel: dict, layers: list[int]) -> tuple:
    return once_per_replay(f"latest_{kind}_histogram_frames", whole, reel,
                           lambda: charts.latest_histogram_frames(whole, kind, scale, reel["steps"], layers),
                           scale, tuple(layers))


def model_tab(current, snapshot, findings, replay_of=None, reel=None) -> None:
    architecture = current.architecture
    if not architecture:
        st.info("This run did not record its architecture.")
        return
    draw_chart(st, charts.architecture_diagram(architecture), "architecture_chart")
    if reel is not None:  # the browser plays the table: each frame's statistics and the doctor's flags then
        began = time.monotonic()
        figure, frames = layer_table_frames(replay_of, architecture, reel)
        reel = replay_restarted_after(time.monotonic() - began, replay_of.num_steps) or reel
        draw_chart(st, figure, "layer_table_chart", {**reel, **frames})
        st.caption("While the replay plays, the table follows it batch by batch; health = check: the health "
                   "panel named this layer at that moment. Pause for the sortable table.")
        return
    flagged = {f.layer for f in findings if f.chart == "layer_table" and f.layer}
    table = charts.layer_table(snapshot, architecture)
    table.insert(0, "health", ["check" if name in flagged else "ok" for name in table["layer"]])
    st.dataframe(table, key="layer_table", hide_index=True, width="stretch", placeholder="–", column_config={
        "parameters": st.column_config.NumberColumn(format="localized"),
        "update/weight": st.column_config.NumberColumn(format="%.2e"),
        "dead %": st.column_config.NumberColumn(format="%.1f"),
        "saturated %": st.column_config.NumberColumn(format="%.1f"),
    })
    gaps = np.diff(snapshot.stats_steps)  # a script's run may not say its stats_every: read it off the steps
    stats_every = int(np.median(gaps)) if len(gaps) else current.config_dict.get("stats_every", "N")
    st.caption(f"Statistics from step {int(snapshot.stats_steps[-1]) if len(snapshot.stats_steps) else '–'}, "
               f"taken every {stats_every} batches. Dead: ReLU units silent for the whole batch. Saturated: "
               "tanh/sigmoid outputs within 3% of their limits. Update/weight: size of the last optimizer step "
               "relative to the weights (healthy near 1e-3). health = check: the health panel names this layer.")


NEURON_CAPTION = ("Each tile: one hidden unit's output over the same plane as the decision boundary, scaled to its own "
                  "largest value (blue positive, red negative, white zero). Grey tiles marked dead give the same output "
                  "everywhere: they pass nothing on.")


def predictions_tab(current, replay_step: int | None = None, replay_of=None, reel: dict | None = None) -> None:
    # Replayed: the weights stored at or before the replayed batch (batch k is stored as step k - 1).
    model, step = current.inspection_model(None if replay_step is None else replay_step - 1)
    if model is None:
        st.info(step)
        return
    try:
        dataset = dataset_for(current.config)
    except (OSError, ValueError) as error:
        st.error(f"Cannot load the dataset for predictions: {error}")
        return
    if reel is not None and dataset.input_shape == (2,):  # the browser plays both: one picture per weight snapshot
        began = time.monotonic()
        boundary, neurons = boundary_frames(current, dataset, reel), neuron_frames(current, dataset, reel)
        if boundary is not None and neurons is not None:
            restarted = replay_restarted_after(time.monotonic() - began, replay_of.num_steps)
            draw_chart(st, boundary[0], "boundary_chart", {**boundary[1], **(restarted or reel)})
            draw_chart(st, neurons[0], "neuron_chart", {**neurons[1], **(restarted or reel)})
            st.caption(NEURON_CAPTION + " While the replay plays, the boundary shows each class without its confidence.")
            return
    with current.inspection_lock:
        if dataset.input_shape == (2,):
            xs, ys, classes, confidence = inspection.decision_grid(model, dataset.x_train)
            points, labels = dataset.x_train.numpy(), dataset.y_train.numpy()
            neurons = inspection.neuron_outputs(model, dataset.x_train)
        else:
            predictions = inspection.predict(model, dataset.x_val)
    step = None if step == -1 else step
    if dataset.input_shape == (2,):
        pictures = drawn_as_pictures(current, replay_step)
        draw_chart(st, charts.decision_boundary(xs, ys, classes, confidence, points, labels, step,
                                                image=charts.boundary_picture(classes) if pictures else None), "boundary_chart")
        draw_chart(st, charts.neuron_view(*neurons, step, as_picture=pictures), "neuron_chart")
        st.caption(NEURON_CAPTION)
        return
    labels = dataset.y_val.numpy()
    left, right = st.columns(2)
    draw_chart(left, charts.confusion_matrix_chart(inspection.confusion_counts(labels, predictions, dataset.num_classes)), "confusion_chart")
    draw_chart(right, charts.mistakes_gallery(dataset.x_val.numpy(), labels, predictions), "gallery_chart")


def system_tab(current, snapshot) -> None:
    draw_chart(st, charts.system_metrics_chart(snapshot), "system_chart")
    if len(snapshot.system):
        memory = snapshot.system_metric("memory_mb")
        peak = f"{np.nanmax(memory):,.0f} MB" if np.isfinite(memory).any() else "not measured"
        st.caption(f"Sampled by the monitor in the training process{' on ' + charts.escape_markdown(current.device) if current.device else ''}"
                   f" about once a second ({len(snapshot.system):,} samples). Peak process memory {peak}. CPU % counts "
                   "every thread, so several busy threads read above 100.")


def confirm_delete(run_id: str) -> None:
    try:
        registry.delete(run_id)
    except ValueError as error:
        st.session_state.delete_error = str(error)
        return
    st.session_state.needs_app_rerun = True  # the header's experiment, or the run shown, may have gone
    st.session_state.compare_ids = [i for i in st.session_state.compare_ids if i != run_id]
    if st.session_state.run_id == run_id:
        st.session_state.run_id = None
        st.query_params.pop("run", None)


def label(run_id: str, what: str) -> None:
    """Callback of the name, tags and notes fields: store the change or say what is wrong."""
    value = st.session_state.get(f"{what}_{run_id}")
    try:
        registry.label(run_id, **{what: value if value is not None else ""})
    except ValueError as error:
        st.session_state.label_error = str(error)
        return
    st.session_state.needs_app_rerun = True  # the caption above the tabs shows the name, tags and notes


def open_chosen_run() -> None:
    """The selectbox's callback: it may reset its own key here, before the widget is drawn again."""
    target = st.session_state.get("open_run")
    st.session_state.open_run = ""
    if target and target != st.session_state.get("run_id"):
        watch([target])
        attached = registry.get(target)
        if attached is not None and attached.config is not None:
            st.session_state.update(widget_values(attached.config))
        st.session_state.opened_another_run = True


def compare_ticked_rows() -> None:
    """The runs table's callback: the rows ticked there are the runs compared."""
    ids = st.session_state.get("runs_table_ids", [])
    rows = st.session_state.runs_table.selection.rows
    compare(ids[i] for i in rows if 0 <= i < len(ids))


def compare(run_ids) -> None:
    """The runs compared: overlaid in the Runs tab, and as an experiment above the tabs."""
    st.session_state.compare_ids = list(run_ids)
    st.session_state.needs_app_rerun = True  # the header names the experiment's runs


FILTER_HELP = ("Words match any cell (name, tags, notes, settings). Compare a column with = != > < >= <=, "
               "spaces in its name written as _: `lr<0.01`, `optimizer=sgd`, `best_val_accuracy>=0.95`, `tags=baseline`.")


def runs_table_section(all_runs):
    """W&B's runs table: every run with its settings and final numbers, filtered, sortable (click a
    column), rows ticked to compare. Returns the whole table for the comparison below."""
    st.subheader("All runs")
    entries = [{"id": r.run_id, "name": r.name, "tags": r.tags, "notes": r.notes, "status": r.status,
                "source": r.source, "created_at": r.created_at, "config": r.config_dict, "metrics": r.final_metrics()}
               for r in reversed(all_runs)]
    table, _ = charts.runs_table(entries)
    query = st.text_input("Filter runs", key="runs_filter", help=FILTER_HELP,
                          placeholder="e.g. optimizer=sgd lr<0.01 best_val_accuracy>=0.9")
    shown, problems = charts.filter_runs(table, query)
    for problem in problems:
        st.warning(problem)
    st.session_state.runs_table_ids = shown["id"].tolist()
    st.dataframe(shown, key="runs_table", on_select=compare_ticked_rows, selection_mode="multi-row", hide_index=True,
                 width="stretch", placeholder="–", column_config={
                     "final val accuracy": st.column_config.NumberColumn(format="%.4f"),
                     "best val accuracy": st.column_config.NumberColumn(format="%.4f"),
                     "final train loss": st.column_config.NumberColumn(format="%.4g"),
                     "final val loss": st.column_config.NumberColumn(format="%.4g")})
    st.caption(f"{len(shown)} of {len(table)} runs. Click a column's name to sort by it; tick rows to compare them "
               "below.")
    return table


def runs_tab(current) -> None:
    all_runs = registry.runs()
    for warning in registry.scan_warnings + current.problems:
        st.warning(warning)
    table = runs_table_section(all_runs)
    names = {r.run_id: f"{r.name} · {r.run_id[:6]}" for r in all_runs}
    # compare_ids is the one truth (presets, "Try:", the runs table and this field all set it).
    st.session_state.compare_select = [i for i in st.session_state.get("compare_ids", []) if i in names]
    chosen = st.multiselect("Compare runs", list(names), format_func=names.get, key="compare_select",
                            on_change=lambda: compare(st.session_state.compare_select))
    labels = charts.short_labels([names[i] for i in chosen])
    entries = [(label, registry.get(i)) for label, i in zip(labels, chosen)]
    entries = [(label, r, snap) for label, r in entries if r is not None and (snap := r.snapshot()) is not None]
    if entries:
        pairs = [(label, snap) for label, _, snap in entries]
        left, right = st.columns(2)
        for index, metric in enumerate(("loss", "accuracy", "grad_norm", "lr")):
            draw_chart((left if index % 2 == 0 else right), charts.compare_chart(pairs, metric, chart_options()), f"compare_{metric}")
        compared = table[table["id"].isin([r.run_id for _, r, _ in entries])]
        settings = sorted({key for _, r, _ in entries for key in r.config_dict})
        draw_chart(st, charts.parallel_coordinates_chart(compared, settings), "compare_parallel")
        comparison, differing = charts.comparison_table([(label, r.config_dict, snap) for label, r, snap in entries],
                                                        health=[run_health(r, snap) for _, r, snap in entries])
        st.dataframe(comparison.style.set_properties(subset=differing, **{"background-color": "#fff3cd"}),
                     hide_index=True, width="stretch", key="compare_table", placeholder="–")
        st.caption("Highlighted: settings that differ between the selected runs.")

    st.subheader("This run")
    known_tags = sorted({tag for r in all_runs for tag in r.tags})
    name_column, tags_column = st.columns(2)
    name_column.text_input("Name", current.name, key=f"name_{current.run_id}", on_change=label,
                           args=(current.run_id, "name"))
    tags_column.multiselect("Tags", known_tags, default=list(current.tags), key=f"tags_{current.run_id}",
                            accept_new_options=True, on_change=label, args=(current.run_id, "tags"),
                            placeholder="type a tag and press Enter", help="Short labels to filter and group runs by.")
    st.text_area("Notes", current.notes, key=f"notes_{current.run_id}", on_change=label, args=(current.run_id, "notes"),
                 max_chars=run_store.MAX_NOTES_LENGTH, placeholder="What you tried and what you saw (saved with the run).")
    if "label_error" in st.session_state:
        st.error(st.session_state.pop("label_error"))
    columns = st.columns(3)
    meta = {"run_id": current.run_id, "name": current.name, "notes": current.notes, "tags": list(current.tags),
            "created_at": current.created_at, "source": current.source, "config": current.config_dict}
    # Callables: the files are built when clicked, from the newest history, not at every refresh.
    columns[0].download_button("History as CSV (zip)", lambda: run_store.export_csv_zip(current.snapshot(), current.name),
                               file_name=f"run-{current.run_id}.zip", mime="application/zip", key="export_csv")
    columns[1].download_button("History as JSON", lambda: run_store.export_json(current.snapshot(), meta),
                               file_name=f"run-{current.run_id}.json", mime="application/json", key="export_json")
    weights = registry.store.weights_path(current.run_id)
    if weights is not None:
        columns[2].download_button("Weights (.pt)", lambda: open(weights, "rb").read(), file_name=f"run-{current.run_id}.pt",
                                   key="export_weights", help="A state_dict: load it with "
                                   "torch.load(path, weights_only=True) into the same architecture")
    with columns[2].popover("Delete this run", disabled=current.is_active):
        st.write(f"Delete **{charts.escape_markdown(current.name)}** and its folder? This cannot be undone.")
        st.button("Yes, delete it", key="confirm_delete", type="primary", on_click=confirm_delete,
                  args=(current.run_id,))
    if "delete_error" in st.session_state:
        st.error(st.session_state.pop("delete_error"))
    st.caption(f"Saved in `{current.folder}` (settings, history, weight snapshots, and the final weights once "
               "training ends).")
    open_runs = {r.run_id: names[r.run_id] for r in reversed(all_runs)}
    st.selectbox("Open another run", ["", *open_runs], format_func=lambda i: open_runs.get(i, "—"), key="open_run",
                 on_change=open_chosen_run)
    if st.session_state.pop("opened_another_run", False):
        st.rerun(scope="app")  # the whole page shows the chosen run: its settings, caption, charts


# Replay: 200 frames per run at 1x, one every REPLAY_FRAME_SECONDS (10 frames/s: 20 s for a run).
# It plays on a clock: the step shown is where the clock says, so a slow page skips frames instead
# of slowing the replay. The Training-curves tab plays every frame in the browser (each chart gets
# the whole run and, per frame, where the cursor stands or the decision boundary); a page rerun
# per frame managed 0.55-1.35 frames/s on 2 cores. Meanwhile the page reruns every
# REPLAY_PAGE_SECONDS, for the numbers above the tabs and the other tabs.
REPLAY_FRAME_SECONDS = 0.1
REPLAY_FRAMES = 200
REPLAY_SPEEDS = {"0.5×": 0.5, "1×": 1.0, "2×": 2.0, "4×": 4.0}
REPLAY_PAGE_SECONDS = 2.0  # (each page rerun stalls the browser 100-250 ms: a frame or two skipped)
# The boundary's frames on a coarser grid than the still chart (120): 3.5x less to compute before
# it plays (the default run's 39 snapshots: ~0.9 s on one 2-vCPU EPYC, 3.2 s at 120) and to send.
REPLAY_GRID_RESOLUTION = 64


def replay_clock(last: int) -> tuple[list[int], float, float]:
    """(the steps of its frames, seconds per frame, seconds since it began) of the replay playing."""
    began, from_step, speed = st.session_state.replay_clock
    return (charts.replay_frame_steps(from_step, last, REPLAY_FRAMES), REPLAY_FRAME_SECONDS / speed,
            time.time() - began)


def replay_clock_step(last: int) -> tuple[int, bool]:
    """(the step the playing replay stands at now, whether it reached the end)."""
    steps, per_frame, elapsed = replay_clock(last)
    frame = int(elapsed / per_frame)
    return (steps[frame], False) if frame < len(steps) - 1 else (last, True)


def start_replay_clock(from_step: int) -> None:
    speed = REPLAY_SPEEDS.get(st.session_state.get("replay_speed"), 1.0)
    st.session_state.replay_clock = (time.time(), from_step, speed)


# Play and Pause are two buttons with their own keys, each an idempotent request (see training_controls).
def play_replay(last_step: int) -> None:
    if st.session_state.get("replay_playing"):
        return
    step = st.session_state.get("replay_step", last_step)
    if step >= last_step:
        step = 1  # from the start again
    st.session_state.replay_step = step
    st.session_state.replay_at_end = False
    start_replay_clock(step)
    st.session_state.replay_playing = True
    st.session_state.needs_app_rerun = True  # the refresh timer changes with it


def pause_replay(last_step: int) -> None:
    if not st.session_state.get("replay_playing"):
        return
    st.session_state.replay_step = replay_clock_step(last_step)[0]  # stays where the clock is now
    st.session_state.replay_playing = False
    st.session_state.needs_app_rerun = True


def change_replay_speed(last_step: int) -> None:
    """A new speed while it plays: it goes on from where it is, at the new speed."""
    if st.session_state.get("replay_playing"):  # (the clock still holds the old speed)
        start_replay_clock(replay_clock_step(last_step)[0])


def replay_reel(last: int) -> dict | None:
    """What the browser needs to play the replay on a chart: the frames' steps and timing (the
    charts add theirs). None unless a replay plays and the charts are drawn by live_chart."""
    if not st.session_state.get("replay_playing") or not plotly_js_served():
        return None
    steps, per_frame, _ = replay_clock(last)
    began = st.session_state.replay_clock[0]
    return {"id": f"{began:.6f}", "began": began, "steps": steps, "frame_ms": per_frame * 1000}


def replay_controls(snapshot) -> int | None:
    """The step scrubber. None: the run as it stands (live). A step: every panel as it was after that
    many batches. At the newest step it follows a training run; moved back, it stays."""
    last = snapshot.num_steps
    switch, slider, play, speed = st.columns([2, 7, 2, 2], vertical_alignment="bottom")
    on = switch.toggle("Replay", key="replay_on", disabled=last < 2,
                       help="Scrub or play the run from its first batch: curves, distributions, layer statistics, "
                            "predictions (from the weights stored along the way) and the doctor's findings as they "
                            "stood then.")
    if not on or last < 2:
        if st.session_state.pop("replay_playing", False):
            st.session_state.needs_app_rerun = True
        return None
    step = int(st.session_state.get("replay_step", last))
    moved = step != st.session_state.get("replay_shown")  # the slider was moved since the last draw
    if st.session_state.get("replay_playing"):  # the slider is disabled meanwhile: the clock says where
        step, ended = replay_clock_step(last)
        if ended:
            st.session_state.replay_playing = False
            st.session_state.needs_app_rerun = True  # stop the frame timer
    elif st.session_state.get("replay_at_end", True) and not moved:
        step = last  # it sat at the newest batch: follow the training
    st.session_state.replay_step = min(max(step, 1), last)
    # Disabled while it plays: the browser sends back the value it last showed, which lags the clock.
    playing = bool(st.session_state.get("replay_playing"))
    slider.slider("Step (batches trained)", 1, last, key="replay_step", disabled=playing,
                  help="Pause to scrub." if playing else None)
    st.session_state.replay_shown = st.session_state.replay_step
    st.session_state.replay_at_end = st.session_state.replay_step >= last and not st.session_state.get("replay_playing")
    if playing:
        play.button("Pause", key="replay_pause", icon=":material/pause:", on_click=pause_replay, args=(last,),
                    width="stretch")
    else:
        play.button("Play", key="replay_play", icon=":material/play_arrow:", on_click=play_replay, args=(last,),
                    width="stretch")
    speed.selectbox("Speed", list(REPLAY_SPEEDS), index=1, key="replay_speed", on_change=change_replay_speed,
                    args=(last,))
    return st.session_state.replay_step


def run_header(current, members: list) -> tuple | None:
    """Everything above the tabs: captions, status, health, metrics, progress, training controls.
    Returns (snapshot shown, whole snapshot, replay step, findings), or None before any data."""
    source = "your script" if current.source == "script" else DATASETS.get(current.config_dict.get("dataset"), "")
    st.caption(f"Run `{current.run_id}` · **{charts.escape_markdown(current.name)}** · {source}" + (
        f" · {current.config.summary()}" if current.config else "") + (
        f" · on {charts.escape_markdown(current.device)}" if current.device else "") + (
        " · tags: " + ", ".join(charts.escape_markdown(tag) for tag in current.tags) if current.tags else ""))
    if current.notes:
        st.caption("Notes: " + charts.escape_markdown(current.notes).replace("\n", "  \n"))
    if len(members) > 1:
        st.caption("Experiment: " + " → ".join(f"**{charts.escape_markdown(r.name)}** ({r.status})" for r in members))
    if active and config is not None and current.config is not None and config != current.config:
        st.caption("Sidebar changes apply to the next run; this one keeps its settings.")
    status = current.status
    snapshot = current.snapshot() if status not in (PREPARING, QUEUED) else None
    if snapshot is None:  # nothing written yet: queued, preparing, or ended before it began
        STATUS_BOXES.get(status, st.info)(current.message)
        return None
    if waiting_for_data and snapshot.num_steps:
        if st.session_state.get("first_data_shown") == current.run_id:
            st.rerun(scope="app")  # the first charts are on screen: back to the normal refresh rate
        st.session_state.first_data_shown = current.run_id  # draw them now; switch on the next tick
    if status in STATUS_BOXES:  # a diverged run is told by the health panel, with its evidence
        STATUS_BOXES[status](current.message)
    whole = snapshot
    replay_step = replay_controls(whole)
    if replay_step is not None:
        snapshot = whole.until(replay_step)  # every panel below shows the run as it stood then
        st.caption(f"Replaying: batch {replay_step:,} of {whole.num_steps:,} (epoch "
                   f"{float(whole.batch('epoch_progress')[replay_step - 1]):.2f}); the health panel says what "
                   "the doctor saw at that moment.")
    findings = diagnostics.diagnose(snapshot)
    health_panel(current, findings, snapshot, active)

    for column, item in zip(st.columns(5), charts.headline_metrics(snapshot)):
        column.metric(item.label, item.value, item.delta, delta_color=item.delta_color, border=True)
    progress = charts.training_progress(whole)
    if status in ENDED and whole.num_steps:
        seconds = float(whole.batch("seconds")[-1])
        st.progress(progress.fraction, text=f"{whole.num_steps:,} batches in {seconds:.2f}s "
                                            f"({whole.num_steps / max(seconds, 1e-9):,.0f} batches/s)")
    elif (writer := current.writer_state) is not None and writer.paused:
        st.progress(progress.fraction, text=f"{progress.done_text()} · paused")
    else:
        st.progress(progress.fraction, text=progress.text())
    if ranks := charts.rank_speeds_text(current.rank_speeds):
        st.caption(ranks)
    if replay_step is None:
        training_controls(current)
    return snapshot, whole, replay_step, findings


def experiment_overlay(members: list) -> None:
    """The runs of an experiment (a preset, or runs ticked to compare) overlaid, above the tabs."""
    with st.expander(f"Experiment: the {len(members)} runs overlaid", expanded=True):
        entries = [(label, r, snap) for label, r in zip(charts.short_labels([r.name for r in members]), members)
                   if (snap := r.snapshot()) is not None]
        pairs = [(label, snap) for label, _, snap in entries]
        if lesson := charts.experiment_lesson(pairs):
            st.markdown(f"**What this experiment showed:** {charts.escape_markdown(lesson)}")
        left, right = st.columns(2)
        options = chart_options()
        draw_chart(left, charts.compare_chart(pairs, "loss", options), "experiment_loss")
        draw_chart(right, charts.compare_chart(pairs, "accuracy", options), "experiment_accuracy")
        draw_chart(left, charts.compare_chart(pairs, "batch_loss", options), "experiment_batch_loss")
        table, _ = charts.comparison_table([(label, r.config_dict, snap) for label, r, snap in entries],
                                           health=[run_health(r, snap) for _, r, snap in entries])
        right.dataframe(table.drop(columns=["status"]), hide_index=True, key="experiment_table")


def replay_plays_in_browser() -> bool:
    """Whether a replay playing now is played by the browser: on the Training-curves and Model tabs,
    on the Distributions tab in heatmap mode, and on the Predictions tab of 2-D data (the ridgeline
    view and the image datasets' predictions are redrawn by the server, frame by frame)."""
    view = st.session_state.get("view")
    return plotly_js_served() and (view in (None, "Training curves", "Model") or (
        view == "Distributions" and chart_setting("hist_mode") == "heatmap") or (
        view == "Predictions" and run is not None and run.config is not None and run.config.dataset not in IMAGE_DATASETS))


def tab_changed() -> None:
    if st.session_state.get("replay_playing"):
        st.session_state.needs_app_rerun = True  # the replay's refresh timer depends on the tab


@st.fragment(run_every=(REPLAY_PAGE_SECONDS if replay_plays_in_browser() else REPLAY_FRAME_SECONDS)
             if st.session_state.get("replay_playing") else (
    FIRST_DATA_REFRESH_SECONDS if waiting_for_data and active and not paused else refresh_seconds))
def live_panels() -> None:
    if st.session_state.pop("needs_app_rerun", False):
        st.rerun(scope="app")
    if refresh_seconds is not None and not st.session_state.get("replay_playing"):
        live_pages.seen(this_page, refresh_seconds)
        if live_pages.interval(st.session_state.refresh, this_page) != refresh_seconds:
            st.rerun(scope="app")  # pages came or went: the refresh timer is set by the whole page
    current = registry.get(st.session_state.run_id)
    if current is None:
        st.rerun(scope="app")
    members = [r for r in (registry.get(i) for i in st.session_state.get("compare_ids", [])) if r is not None]
    if not current.is_active and current.status not in (QUEUED, PREPARING):
        following = next((r for r in members if r.status in (QUEUED, PREPARING, RUNNING)), None)
        if following is not None and following.run_id != current.run_id:
            st.session_state.run_id = following.run_id  # a queued run of the experiment started: show it
            st.query_params["run"] = following.run_id
            st.rerun(scope="app")
    if active and not any(r.is_active for r in members or [current]):
        st.rerun(scope="app")  # everything ended: refresh the page so Train/Stop change state

    # Above the tabs, one container: its elements come and go (a status box, an experiment, the
    # pause controls) without moving the tabs, so the charts keep their identity (and a zoom)
    # across refreshes instead of being remounted.
    with st.container():
        shown = run_header(current, members)
    if shown is not None:
        tab_panels(current, members, *shown)


# A fragment of its own, inside the live one: a tab click or a chart setting reruns only this part,
# with the moment the header above shows (the arguments of the live fragment's last run), and the
# header, its status and its doctor are neither recomputed nor sent again. Measured while one run
# trained (2-core VM, headless Chromium): a click brought 15-30 messages instead of 45-64, and the
# tab's charts were on screen after 0.57 s instead of 0.64 s (medians of 32 clicks, 4 tabs).
# What changes the header from in here asks for a whole rerun (needs_app_rerun).
@st.fragment
def tab_panels(current, members: list, snapshot, whole, replay_step, findings) -> None:
    if st.session_state.pop("needs_app_rerun", False):
        st.rerun(scope="app")
    with st.container():  # (comes and goes without moving the tabs: see live_panels)
        if len(members) > 1:
            experiment_overlay(members)
    tabs = st.tabs(["Training curves", "Distributions", "Model", "Predictions", "System", "Runs"], key="view",
                   on_change=tab_changed)
    replay_of = whole if replay_step is not None else None
    reel = replay_reel(whole.num_steps) if replay_step is not None else None
    renderers = (lambda: curves_tab(current, snapshot, findings, replay_of, replay_step, reel),
                 lambda: distributions_tab(snapshot, replay_of, reel),
                 lambda: model_tab(current, snapshot, findings, replay_of, reel), lambda: predictions_tab(current, replay_step, replay_of, reel),
                 lambda: system_tab(current, snapshot), lambda: runs_tab(current))
    for tab, render in zip(tabs, renderers):
        if tab.open:  # only the tab on screen is computed and sent
            with tab:
                render()


live_panels()
