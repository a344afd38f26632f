"""The Streamlit script end to end, through Streamlit's AppTest (no browser)."""

import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

SCRIPT = str(Path(__file__).resolve().parent.parent / "dashboard.py")


@pytest.fixture(autouse=True)
def no_run_outlives_its_test(runs_folder):
    """Every AppTest session has the same id ("test session id"), and a Train click gets back that
    session's previous launch while it still trains (five quick clicks start one run): a run one
    test leaves training (a doctor's Try) was what the next test's Train click got in this process,
    and that test then waited for the wrong run. Stop every run still training when a test ends."""
    yield
    from live_training_dashboard import run_catalog
    from live_training_dashboard.run_store import RunStore

    pool = run_catalog._pool
    if pool is None:
        return
    store = RunStore(str(runs_folder))
    for group in [g for g in pool.groups if not g.exited]:
        for run in group.runs:
            group.cancelled[run.run_id].set()  # a run still queued never starts
            if store.exists(store.path(run.run_id)):  # (a run in another test's folder: killed below)
                store.request_stop(run.run_id)
        group.process.join(timeout=30)
        if not group.exited:
            group.process.kill()
            group.process.join(timeout=10)


def new_app(pace: str = "fast", **query) -> AppTest:
    """The page, as a fresh browser tab opens it; runs at full speed unless a test watches the pace."""
    app = AppTest.from_file(SCRIPT, default_timeout=60)
    for key, value in query.items():
        app.query_params[key] = value
    app.run()
    if pace != "watchable" and not query and not app.exception:  # (a page opened on a run shows its pace)
        app.radio(key="pace").set_value(pace).run()
    return app


def rerun_until(app: AppTest, condition, timeout: float = 60.0) -> AppTest:
    deadline = time.monotonic() + timeout
    while True:
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        if condition(app):
            return app
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached; page shows: " + " | ".join(
                m.value for m in list(app.info) + list(app.error) + list(app.warning) + list(app.success)))
        time.sleep(0.2)


def train_in_app(app: AppTest, epochs: int) -> str:
    """Press Train with `epochs` and wait until the run finished; returns its id."""
    app.number_input(key="epochs").set_value(epochs).run()
    app.button(key="train").click().run()
    # 120 s: a hang guard, not a speed check. The runs here take 3-25 s, but beside two other
    # multi-process tests on 2 cores one may have gone past 60 s (a failure seen once, not reproduced).
    rerun_until(app, lambda a: any(f"Finished {epochs} epochs" in s.value for s in a.success), timeout=120)
    return app.session_state.run_id


def sidebar_errors(app: AppTest) -> list[str]:
    return [e.value for e in app.sidebar.error]


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def script_run(runs_folder, model, inputs, labels, name: str, epochs: int, batches: int, stats_every: int) -> str:
    """A user's own loop (Adam, cross-entropy, the same batch each step) watched into runs_folder;
    returns the run's id."""
    import torch
    from torch import nn

    from training_monitor import TrainingMonitor

    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    monitor = TrainingMonitor(model, optimizer, device="cpu", stats_every=stats_every)
    with monitor.watch(runs_folder, name=name, planned_epochs=epochs, batches_per_epoch=batches) as run:
        for _epoch in range(epochs):
            for _batch in range(batches):
                logits = model(inputs)
                loss = nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                monitor.log_batch(loss, logits, labels)
            monitor.log_epoch()
    return Path(run.folder).name


def test_first_page_shows_the_model_preview_without_errors():
    app = new_app()
    assert not app.exception
    assert sidebar_errors(app) == []
    assert not app.button(key="train").disabled and app.button(key="stop").disabled
    assert len(plotly_figures(app)) == 1  # the architecture preview


@pytest.mark.parametrize(
    "widget, key, value, message",
    [
        ("text_input", "hidden_sizes", "128,abc", "'abc' is not a whole number"),
        ("text_input", "hidden_sizes", "", "empty"),
        ("text_input", "hidden_sizes", "0", "at least 1"),
        ("text_input", "lr", "0", "at least 1e-08"),
        ("text_input", "lr", "-5", "at least 1e-08"),
        ("text_input", "lr", "", "empty"),
        ("number_input", "batch_size", -5, "at least 1"),
        ("number_input", "batch_size", 4096, "larger than the training set"),
        ("number_input", "epochs", 0, "at least 1"),
    ],
)
def test_bad_sidebar_values_show_a_message_and_disable_train(widget, key, value, message):
    app = new_app()
    getattr(app, widget)(key=key).set_value(value).run()
    assert not app.exception
    assert any(message in text for text in sidebar_errors(app)), sidebar_errors(app)
    assert app.button(key="train").disabled
    assert plotly_figures(app) == []


def test_a_short_run_through_the_train_button_fills_every_panel():
    app = new_app()
    app.number_input(key="epochs").set_value(2).run()
    app.button(key="train").click().run()
    run_id = app.session_state.run_id
    assert run_id and app.query_params["run"] == run_id
    rerun_until(app, lambda a: any("Finished 2 epochs" in s.value for s in a.success))
    assert metrics(app)["Epoch"] == "2 / 2"
    assert float(metrics(app)["Val accuracy"].rstrip("%")) > 50
    titles = list(chart_specs(app))  # the Training curves tab: five curves and, for 2-D data, the boundary
    assert len(titles) == 6 and "Decision boundary" in titles  # (the final weights: no batch in its title)
    assert not app.button(key="train").disabled and app.button(key="stop").disabled
    app.session_state["view"] = "System"
    app.run()
    system = chart_specs(app)["System (the training process)"]  # sampled in the worker, read from its store
    assert {t["name"] for t in system["data"]} >= {"CPU % (100 = one core)", "Process memory (MB)", "Batches / s"}
    assert any("Peak process memory" in c.value for c in app.caption)


def test_stop_ends_the_run_and_keeps_what_was_trained():
    app = new_app()
    app.number_input(key="epochs").set_value(500).run()
    app.button(key="train").click().run()
    rerun_until(app, lambda a: metrics(a).get("Epoch", "0 / 500") not in ("0 / 500", "–"), timeout=60)
    assert not app.button(key="stop").disabled
    app.button(key="stop").click().run()
    rerun_until(app, lambda a: any("Stopped from the dashboard" in w.value for w in a.warning), timeout=10)
    epochs_done = int(metrics(app)["Epoch"].split("/")[0])
    assert 1 <= epochs_done < 500
    assert len(plotly_figures(app)) == 6


def test_sidebar_changes_during_a_run_do_not_touch_it_and_refresh_reattaches():
    app = new_app()
    app.number_input(key="epochs").set_value(500).run()
    app.button(key="train").click().run()
    run_id = app.session_state.run_id
    rerun_until(app, lambda a: len(a.metric) > 0)
    app.text_input(key="lr").set_value("0.1").run()
    app.text_input(key="hidden_sizes").set_value("8").run()
    assert not app.exception
    assert any("apply to the next run" in c.value for c in app.caption)
    assert any("Adam 5e-3" in c.value and "128×3" in c.value for c in app.caption)
    # A browser refresh is a new session that only has the URL: it finds the same run, still going.
    refreshed = new_app(run=run_id)
    assert refreshed.session_state.run_id == run_id
    assert refreshed.number_input(key="epochs").value == 500  # the sidebar shows the run's own settings
    assert not refreshed.button(key="stop").disabled
    assert any(run_id in c.value for c in refreshed.caption)
    # Another browser session without the id sees no run at all.
    stranger = new_app()
    assert not stranger.get("metric") or len(stranger.metric) == 0
    refreshed.button(key="stop").click().run()
    rerun_until(refreshed, lambda a: any("Stopped" in w.value for w in a.warning), timeout=10)


def test_unknown_run_id_in_the_url_is_a_message_not_a_crash():
    app = new_app(run="doesnotexist")
    assert not app.exception
    assert any("not in this server" in w.value for w in app.warning)


def test_an_unreadable_mnist_folder_fails_with_a_message(tmp_path):
    app = new_app()
    app.selectbox(key="dataset").set_value("mnist_idx").run()
    app.text_input(key="mnist_path").set_value(str(tmp_path)).run()
    app.number_input(key="mnist_images").set_value(100).run()
    app.number_input(key="batch_size").set_value(16).run()
    app.button(key="train").click().run()
    rerun_until(app, lambda a: any("Could not start" in e.value for e in a.error), timeout=20)
    assert any("train-images" in e.value for e in app.error)


def plotly_figures(app: AppTest) -> list[dict]:
    """Every Plotly figure on the page: drawn by the in-place live chart, or st.plotly_chart where
    static serving is off."""
    import json

    figures = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    for element in app.get("bidi_component"):
        if element.proto.component_name == "live_chart":
            figures.append(json.loads(json.loads(element.proto.json)["spec"]))
    return figures


def chart_specs(app: AppTest) -> dict[str, dict]:
    return {spec["layout"].get("title", {}).get("text", ""): spec for spec in plotly_figures(app)}


def finished_count(app: AppTest) -> int:
    return " ".join(c.value for c in app.caption).count("(finished)")


def test_learning_rate_preset_runs_three_runs_and_overlays_them():
    app = new_app()
    app.selectbox(key="preset").set_value("learning_rate").run()
    assert any("0.001, 0.01 and 0.1" in c.value for c in app.sidebar.caption)
    app.button(key="run_preset").click().run()
    assert len(app.session_state.compare_ids) == 3 and "compare" in app.query_params
    assert app.text_input(key="lr").value == "0.1"  # the sidebar shows the experiment's settings
    rerun_until(app, lambda a: finished_count(a) == 3, timeout=120)
    [lesson] = [m.value for m in app.markdown if "What this experiment showed" in m.value]
    assert all(f"lr {lr}" in lesson for lr in ("0.001", "0.01", "0.1"))  # every run's numbers, in words
    app.session_state["view"] = "Runs"
    app.run()
    specs = chart_specs(app)
    runs_per_chart = {title.split(" (")[0]: len(spec["data"]) for title, spec in specs.items()}
    assert runs_per_chart["Validation accuracy per epoch"] == 3
    assert runs_per_chart["Gradient norm"] == 3 and runs_per_chart["Learning rate"] == 3
    assert runs_per_chart["Loss per epoch"] == 6  # train and val for each run
    names = [trace["name"] for trace in specs["Validation accuracy per epoch"]["data"]]
    assert [n.split(" · ")[0] for n in names] == ["lr 0.001", "lr 0.01", "lr 0.1"]
    [table] = [d.value for d in app.dataframe if "health" in d.value.columns and "status" in d.value.columns]
    assert list(table["lr"]) == [0.001, 0.01, 0.1] and "hidden_sizes" not in table.columns
    assert {"final val accuracy", "best val accuracy", "health"} <= set(table.columns)
    # The doctor names the lesson on the last run (lr 0.1). Not its severity: 90-94% of units
    # dead measured here sits on the 90% line between warning and critical, and an AMD CPU's
    # float results put it below (issue 11), where a run with 95% accuracy shows it as
    # information; the finding itself needs 60%, far below.
    assert any("Dead ReLUs" in e.value for e in [*app.error, *app.warning, *app.info])


def test_health_panel_is_green_for_a_healthy_run_and_names_divergence():
    app = new_app()
    app.number_input(key="epochs").set_value(5).run()
    app.button(key="train").click().run()
    rerun_until(app, lambda a: any("Finished" in s.value for s in a.success))
    [clear] = [s.value for s in app.success if "Health: all clear" in s.value]
    # It says how many units it found dead, from the run (a few are normal): never "no dead ReLUs" beside a dead unit.
    assert re.search(r"dead ReLUs (\(none in any layer\)|over 60% of a layer \(the most: (\d+%|under 1%), in fc\d\))", clear), clear
    app.text_input(key="lr").set_value("10").run()
    app.button(key="train").click().run()
    rerun_until(app, lambda a: any("Training diverged" in e.value for e in a.error), timeout=30)
    assert not any("all clear" in s.value for s in app.success)
    [diverged] = [e.value for e in app.error if "Training diverged" in e.value]
    assert re.search(r"Loss per batch · from batch \d+ \(epoch \d+\.\d\)", diverged), diverged


def test_predictions_tab_draws_the_decision_boundary():
    app = new_app()
    app.number_input(key="epochs").set_value(3).run()
    app.button(key="train").click().run()
    rerun_until(app, lambda a: any("Finished" in s.value for s in a.success))
    app.session_state["view"] = "Predictions"
    app.run()
    specs = chart_specs(app)
    boundary = next(spec for title, spec in specs.items() if title.startswith("Decision boundary"))
    assert boundary["data"][0]["type"] == "heatmap" and len(boundary["data"]) == 4  # grid + 3 classes
    neurons = next(spec for title, spec in specs.items() if title.startswith("Neurons"))
    notes = [a["text"] for a in neurons["layout"]["annotations"] if a["text"].startswith("<b>")]
    assert [n.split(":")[0] for n in notes] == ["<b>fc1</b>", "<b>fc2</b>", "<b>fc3</b>"]  # the 128x3 MLP's layers
    assert all("128 units (first 64 shown)" in n for n in notes)


def test_runs_survive_a_server_restart_and_can_be_renamed_and_deleted(runs_folder):
    app = new_app()
    app.number_input(key="epochs").set_value(2).run()
    app.button(key="train").click().run()
    run_id = app.session_state.run_id
    rerun_until(app, lambda a: any("Finished" in s.value for s in a.success))
    st_cache_clear()  # what a restarted server has: nothing in memory, only the runs folder
    (runs_folder / "stray-file.txt").write_text("not a run")
    restarted = new_app(run=run_id)
    assert any(run_id in c.value for c in restarted.caption)
    assert restarted.metric[0].value == "2 / 2"
    # Replay reads everything from the folder: scrubbed back to the first epoch, the metrics and the
    # predictions are the run's then (its weights stored before that batch).
    restarted.toggle(key="replay_on").set_value(True).run()
    restarted.slider(key="replay_step").set_value(38).run()
    assert restarted.metric[0].value == "1 / 2" and any("Replaying: batch 38 of 76" in c.value for c in restarted.caption)
    restarted.session_state["view"] = "Predictions"
    restarted.run()
    title = next(t for t in chart_specs(restarted) if t.startswith("Decision boundary"))
    assert int(title.rsplit(" ", 1)[1].rstrip(")")) < 38, title
    restarted.toggle(key="replay_on").set_value(False).run()
    restarted.session_state["view"] = "Runs"
    restarted.run()
    assert any("stray-file.txt" in w.value for w in restarted.warning)
    assert {b.label for b in restarted.get("download_button")} >= {"History as CSV (zip)", "History as JSON"}
    restarted.text_input(key=f"name_{run_id}").set_value("my best run").run()
    assert any("my best run" in c.value for c in restarted.caption)
    restarted.button(key="confirm_delete").click().run()
    assert not (runs_folder / run_id).exists()
    assert restarted.session_state.run_id is None


def st_cache_clear():
    import streamlit as st

    st.cache_resource.clear()


def test_a_runs_folder_that_is_a_file_is_a_message(tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    app = new_app()
    app.text_input(key="runs_dir").set_value(str(not_a_folder)).run()
    assert not app.exception
    assert any("is a file, not a folder" in e.value for e in app.sidebar.error)
    app.number_input(key="epochs").set_value(1).run()
    app.button(key="train").click().run()  # still trains, in memory only
    rerun_until(app, lambda a: any("Finished" in s.value for s in a.success))


def test_a_users_script_is_shown_live_and_the_page_stops_it(runs_folder):
    import subprocess
    import sys

    example = Path(SCRIPT).parent / "examples" / "watch_my_training.py"
    process = subprocess.Popen([sys.executable, str(example), "--runs-dir", str(runs_folder), "--epochs", "100000",
                                "--pause", "0.05", "--name", "script on the page"], stdout=subprocess.PIPE, text=True)
    try:
        run_id = Path(process.stdout.readline().split("writing to ", 1)[1].strip()).name
        app = new_app(run=run_id)
        rerun_until(app, lambda a: int(metrics(a).get("Epoch", "0 /").split("/")[0] or 0) >= 2, timeout=60)
        first = int(metrics(app)["Epoch"].split("/")[0])
        assert any("script on the page" in c.value and "your script" in c.value for c in app.caption)
        rerun_until(app, lambda a: int(metrics(a)["Epoch"].split("/")[0]) > first, timeout=30)  # live
        assert not app.button(key="stop").disabled
        app.button(key="stop").click().run()
        assert process.wait(timeout=15) == 0
        rerun_until(app, lambda a: any("Stopped from the dashboard" in w.value for w in a.warning), timeout=15)
    finally:
        process.kill()


def test_an_empty_mnist_folder_shows_a_message_instead_of_a_preview(tmp_path):
    app = new_app()
    app.selectbox(key="dataset").set_value("mnist_idx").run()
    app.text_input(key="mnist_path").set_value(str(tmp_path)).run()
    assert not app.exception
    assert any("train-images" in m.value for m in list(app.warning) + list(app.sidebar.error) + list(app.info))


def test_slider_ranges_are_the_ranges_validation_accepts():
    from live_training_dashboard.run_config import MAX_DROPOUT, MAX_NOISE, RunConfig, validate

    app = new_app()
    assert app.slider(key="dropout").max == MAX_DROPOUT and app.slider(key="spiral_noise").max == MAX_NOISE["spiral"]
    assert not validate(RunConfig(dropout=MAX_DROPOUT, noise=MAX_NOISE["spiral"]))
    assert "dropout" in validate(RunConfig(dropout=MAX_DROPOUT + 0.01))
    assert "noise" in validate(RunConfig(noise=MAX_NOISE["spiral"] + 0.01))
    app.selectbox(key="dataset").set_value("mnist_like").run()
    assert app.slider(key="digits_noise").max == MAX_NOISE["mnist_like"]


def test_opening_another_run_and_renaming_twice_from_the_runs_tab():
    app = new_app()
    first = train_in_app(app, 1)
    second = train_in_app(app, 2)
    app.session_state["view"] = "Runs"
    app.run()
    for name in ("renamed once", "renamed twice"):
        app.text_input(key=f"name_{second}").set_value(name).run()
        assert not app.exception
    assert any("renamed twice" in c.value for c in app.caption)
    app.selectbox(key="open_run").set_value(first).run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.session_state.run_id == first and app.query_params["run"] == first
    assert app.number_input(key="epochs").value == 1  # the sidebar shows the opened run's settings
    assert metrics(app)["Epoch"] == "1 / 1"


@pytest.mark.parametrize("widget_key, value, where", [
    ("runs_dir", "r" * 300, "runs folder"),
    ("runs_dir", "memory://runs", "runs folder"),
    ("runs_dir", "nosuch://x/y", "runs folder"),
    ("runs_dir", "runs\x00evil", "runs folder"),  # os.stat raises ValueError on a NUL
    ("mnist_path", "m" * 5000, "mnist"),
    ("mnist_path", "/tmp\x00/mnist", "mnist"),
])
def test_unusable_folders_are_messages_not_tracebacks(widget_key, value, where):
    app = new_app()
    if where == "mnist":
        app.selectbox(key="dataset").set_value("mnist_idx").run()
    app.text_input(key=widget_key).set_value(value).run()
    assert not app.exception, [e.value for e in app.exception]
    messages = [e.value for e in app.sidebar.error] + [w.value for w in app.warning]
    assert messages and all(len(m) < 1500 for m in messages), messages


def test_a_run_name_with_markdown_and_html_is_shown_as_plain_text():
    app = new_app()
    run_id = train_in_app(app, 1)
    app.session_state["view"] = "Runs"
    app.run()
    app.text_input(key=f"name_{run_id}").set_value("![t](http://host/x) <img src=x>").run()
    caption = next(c.value for c in app.caption if run_id in c.value)
    assert "\\!\\[t\\]\\(http\\://host/x\\)" in caption and "\\<img src=x\\>" in caption
    assert "![t](" not in caption


def test_a_plain_modules_run_fills_every_tab_and_says_what_was_not_measured(runs_folder):
    """A user's own nn.Module (embedding, attention, LayerNorm; F.relu inside forward)."""
    import torch
    from test_training_monitor import TinyTransformer as Tokens

    torch.manual_seed(0)
    run_id = script_run(runs_folder, Tokens(), torch.randint(0, 20, (64, 6)), torch.randint(0, 3, (64,)),
                        name="my transformer", epochs=3, batches=10, stats_every=5)
    app = new_app(run=run_id)
    assert not app.exception
    panel = " ".join(m.value for m in [*app.success, *app.caption])
    assert "dead ReLUs (no ReLU modules seen)" in panel  # never an "all clear" for what was not measured
    for view in ("Distributions", "Model", "Predictions", "System", "Runs"):
        app.session_state["view"] = view
        app.run()
        assert not app.exception, (view, [e.value for e in app.exception])
        if view == "Model":
            table = app.dataframe[0].value
            assert {"embed", "attention", "attention.out_proj", "norm", "head"} <= set(table["layer"])
            shapes = dict(zip(table["layer"], table["output shape"]))  # from the script's first batch
            assert shapes["embed"] == "6×16" and shapes["head"] == "3"
            assert any("taken every 5 batches" in c.value for c in app.caption)


def test_a_deep_scripts_distributions_show_a_few_layers_and_let_you_pick_others(runs_folder):
    """A 12-layer module tree: 8 panels spread from the first layer to the last, not 24 panels."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(*[block for _ in range(11) for block in (nn.Linear(8, 8), nn.ReLU())], nn.Linear(8, 3))
    run_id = script_run(runs_folder, model, torch.randn(32, 8), torch.randint(0, 3, (32,)),
                        name="twelve layers", epochs=1, batches=6, stats_every=2)
    app = new_app(run=run_id)
    app.session_state["view"] = "Distributions"
    app.run()
    assert not app.exception
    [picker] = app.multiselect
    assert len(picker.options) == 12 and len(picker.value) == 8
    assert picker.value[0] == picker.options[0] and picker.value[-1] == picker.options[-1]

    def panels(kind):
        spec = chart_specs(app)[f"{kind} distributions over time (per layer)"]
        return [a["text"] for a in spec["layout"]["annotations"]]

    assert panels("Gradient") == [f"<b>{name}</b>" for name in picker.value]
    picker.set_value([picker.options[1], picker.options[5]]).run()
    assert panels("Weight") == [f"<b>{picker.options[1]}</b>", f"<b>{picker.options[5]}</b>"]
    latest = chart_specs(app)
    assert [t["name"] for t in next(v for k, v in latest.items() if k.startswith("Latest weights"))["data"]] == \
        [picker.options[1], picker.options[5]]
    app.multiselect[0].set_value([]).run()
    assert any("Pick one or more layers" in m.value for m in app.info) and not app.exception


def test_settings_over_the_memory_budget_are_a_message_and_train_waits(monkeypatch):
    monkeypatch.setenv("DASHBOARD_MEMORY_BUDGET_MB", "100")
    app = new_app()
    assert sidebar_errors(app) == [] and not app.button(key="train").disabled
    app.text_input(key="hidden_sizes").set_value("4096,4096").run()
    [message] = sidebar_errors(app)
    assert "over the budget of 100.0 MB" in message and "narrower layers" in message
    assert app.button(key="train").disabled
    assert any(w.value == message for w in app.main.warning)  # beside the preview too
    app.text_input(key="hidden_sizes").set_value("128,128").run()
    assert sidebar_errors(app) == [] and not app.button(key="train").disabled


def test_the_doctor_names_one_cause_with_its_consequences_and_a_remedy_runs_with_one_click():
    """The issue's case: MLP 128x6 relu, SGD momentum 0.9, LR 1: the last layer dies (100% of its
    units, far from any threshold) and starves the others; one cause, not four contradicting boxes."""
    app = new_app()
    app.text_input(key="hidden_sizes").set_value("128,128,128,128,128,128").run()
    app.selectbox(key="optimizer").set_value("sgd").run()
    app.text_input(key="lr").set_value("1").run()
    first = train_in_app(app, epochs=10)
    boxes = [b.value for b in [*app.error, *app.warning, *app.info] if "Dead ReLUs" in b.value]
    assert len(boxes) == 1 and "*Try:* lr 1 → 0.1 · relu → leaky_relu" in boxes[0]
    assert not any("Loss is not decreasing" in b.value and "Dead" not in b.value for b in [*app.warning, *app.error])
    assert not any("lr 1 → 10" in b.value for b in [*app.error, *app.warning, *app.info])  # never "raise the LR" too
    [try_lower] = [b for b in app.button if b.label == "Try: lr 1 → 0.1"]
    try_lower.click().run()
    # (until the new run's first numbers are in: before them there are no charts to look at)
    rerun_until(app, lambda a: a.session_state.run_id != first and "Loss per epoch" in chart_specs(a))
    assert app.session_state.compare_ids == [app.session_state.run_id, first]  # overlaid with the original
    beneath = [t["name"] for t in chart_specs(app)["Loss per epoch"]["data"][:2]]  # and beneath its curves
    assert beneath == ["train, previous run", "val, previous run"]
    assert app.text_input(key="lr").value == "0.1" and app.text_input(key="hidden_sizes").value.count("128") == 6


def test_an_mnist_folder_with_fewer_images_than_asked_says_how_many_are_used(tmp_path):
    import numpy as np

    from live_training_dashboard.datasets import write_idx

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (120, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, 120).astype(np.uint8))
    app = new_app()
    app.selectbox(key="dataset").set_value("mnist_idx").run()
    app.text_input(key="mnist_path").set_value(str(tmp_path)).run()
    app.number_input(key="mnist_images").set_value(60000).run()
    assert any("The file holds 120 images: all 120 are used." in c.value for c in app.sidebar.caption)
    app.number_input(key="mnist_images").set_value(100).run()
    assert not any("The file holds" in c.value for c in app.sidebar.caption)


def test_tf_playground_datasets_train_and_draw_their_boundary():
    app = new_app()
    app.selectbox(key="dataset").set_value("circle").run()
    labels = [s.label for s in app.sidebar.slider]
    assert "Points" in labels and "Noise" in labels and "Classes (arms)" not in labels
    assert app.slider(key="points_noise").value == 0.05
    train_in_app(app, epochs=3)
    assert any("Circle (2-D)" in c.value for c in app.caption)
    app.session_state["view"] = "Predictions"
    app.run()
    assert not app.exception and any("Decision boundary" in t for t in chart_specs(app))


def test_image_datasets_start_from_their_own_learning_rate_and_epochs_and_each_keeps_what_was_typed():
    app = new_app()
    assert app.text_input(key="lr").value == "0.005" and app.number_input(key="epochs").value == 20
    app.text_input(key="lr").set_value("0.02").run()
    app.selectbox(key="dataset").set_value("mnist_like").run()
    assert not app.exception and sidebar_errors(app) == []
    assert app.text_input(key="lr_images").value == "0.001" and app.number_input(key="epochs_images").value == 10
    app.selectbox(key="dataset").set_value("spiral").run()
    assert app.text_input(key="lr").value == "0.02"  # what was typed for the points is still there


def test_tensorboard_chart_settings_change_the_charts_and_survive_a_tab_switch():
    app = new_app()
    train_in_app(app, 2)
    batch = chart_specs(app)["Loss per batch"]
    assert [t["name"] for t in batch["data"]] == ["batch loss", "smoothed (0.9)"]
    app.slider(key="smoothing").set_value(0.95).run()
    smoothed = chart_specs(app)["Loss per batch"]["data"][1]
    assert smoothed["name"] == "smoothed (0.95)" and smoothed["y"] != batch["data"][1]["y"]
    app.slider(key="smoothing").set_value(0.0).run()
    assert [t["name"] for t in chart_specs(app)["Loss per batch"]["data"]] == ["batch loss"]
    assert chart_specs(app)["Loss per epoch"]["layout"]["yaxis"]["type"] == "linear"
    app.selectbox(key="y_scale").set_value("log").run()
    app.selectbox(key="x_axis").set_value("step").run()
    app.checkbox(key="ignore_outliers").check().run()
    specs = chart_specs(app)
    assert specs["Loss per epoch"]["layout"]["yaxis"]["type"] == "log"
    assert specs["Loss per batch"]["layout"]["xaxis"]["title"]["text"].startswith("step")
    assert len(specs["Loss per batch"]["layout"]["yaxis"]["range"]) == 2  # set from the bulk of the values
    # Distributions: offset mode on the shared log scale; then back, and every choice is still there
    app.session_state["view"] = "Distributions"
    app.run()
    app.radio(key="hist_mode").set_value("offset").run()
    app.radio(key="hist_scale").set_value("shared").run()
    assert not app.exception, [e.value for e in app.exception]
    titles = list(chart_specs(app))
    assert any(t.startswith("Gradient distributions over time (|value| on one log scale)") for t in titles), titles
    app.session_state["view"] = "Training curves"
    app.run()
    assert app.slider(key="smoothing").value == 0.0 and app.selectbox(key="y_scale").value == "log"
    assert chart_specs(app)["Loss per epoch"]["layout"]["yaxis"]["type"] == "log"
    app.session_state["view"] = "Distributions"
    app.run()
    assert app.radio(key="hist_mode").value == "offset"


def test_the_run_before_a_train_click_stays_faint_beneath_the_new_runs_epoch_curves():
    app = new_app()
    first = train_in_app(app, 2)
    assert not [box for box in app.checkbox if box.key == "show_previous"]  # nothing trained before it
    first_loss = chart_specs(app)["Loss per epoch"]["data"]
    app.text_input(key="lr").set_value("0.03").run()
    second = train_in_app(app, 2)
    assert second != first
    label = next(box.label for box in app.checkbox if box.key == "show_previous")
    for title in ("Loss per epoch", "Accuracy per epoch"):
        traces = chart_specs(app)[title]["data"]
        assert [t["name"] for t in traces] == ["train, previous run", "val, previous run", "train", "val"], title
        for trace in traces[:2]:  # dashed, and its hover names the run the checkbox names
            assert trace["line"]["dash"] == "dash" and trace["meta"] and trace["meta"] in label.replace("\\", "")
    loss = chart_specs(app)["Loss per epoch"]["data"]
    assert loss[1]["y"] == first_loss[1]["y"] and loss[3]["y"] != loss[1]["y"]  # the first run's val loss, and this one's
    batch = chart_specs(app)["Loss per batch"]["data"]
    assert [t["name"] for t in batch] == ["previous run (smoothed 0.9)", "batch loss", "smoothed (0.9)"]
    app.checkbox(key="show_previous").uncheck().run()
    assert [t["name"] for t in chart_specs(app)["Loss per epoch"]["data"]] == ["train", "val"]
    assert len(chart_specs(app)["Loss per batch"]["data"]) == 2
    app.checkbox(key="show_previous").check().run()
    assert len(chart_specs(app)["Loss per epoch"]["data"]) == 4
    # The URL keeps it: a refresh (or the link, shared) shows the same charts; a bad or circular one nothing.
    assert app.query_params["previous"] == first and app.query_params["run"] == second
    assert len(chart_specs(new_app(run=second, previous=first))["Loss per epoch"]["data"]) == 4
    for bad in (second, "../../etc", "0" * 5000, "ab\x00cd"):
        reopened = new_app(run=second, previous=bad)
        assert not reopened.exception and len(chart_specs(reopened)["Loss per epoch"]["data"]) == 2
        said = any("not in this runs folder" in c.value for c in reopened.caption)
        assert said == (bad != second)  # an unknown id is said; the run itself is simply not drawn twice


def test_runs_table_filters_runs_and_tags_notes_and_parallel_coordinates_work(runs_folder):
    from live_training_dashboard.run_store import RunStore

    app = new_app()
    app.text_input(key="lr").set_value("0.002").run()
    first = train_in_app(app, 1)
    app.text_input(key="lr").set_value("0.02").run()
    second = train_in_app(app, 1)
    app.session_state["view"] = "Runs"
    app.run()
    hostile = "![x](http://host/y)"
    app.multiselect(key=f"tags_{second}").set_value(["sweep", hostile]).run()
    app.text_area(key=f"notes_{second}").set_value("0.02 learned fastest\n<b>not bold</b>").run()
    assert not app.exception, [e.value for e in app.exception]
    store = RunStore(runs_folder)
    labels = store.read_labels(second, store.read_meta(second))
    assert labels.tags == ("sweep", hostile) and labels.notes == "0.02 learned fastest\n<b>not bold</b>"
    captions = " ".join(c.value for c in app.caption)
    assert "tags: sweep, \\!\\[x\\]\\(http\\://host/y\\)" in captions and "\\<b\\>not bold\\</b\\>" in captions

    def runs_table():
        [table] = [d.value for d in app.dataframe if "best val accuracy" in d.value.columns and "id" in d.value.columns]
        return table

    assert {first, second} <= set(runs_table()["id"])
    assert runs_table().set_index("id").loc[second, "tags"] == f"sweep, {hostile}"
    app.text_input(key="runs_filter").set_value("tags=sweep").run()
    assert runs_table()["id"].tolist() == [second]
    app.text_input(key="runs_filter").set_value(f"lr<0.01 id={first}").run()
    assert runs_table()["id"].tolist() == [first]
    app.text_input(key="runs_filter").set_value("no_such_column>3").run()
    assert any("No column 'no_such_column'" in w.value for w in app.warning)

    app.multiselect(key="compare_select").set_value([first, second]).run()
    parallel = chart_specs(app)["Settings → final val accuracy"]
    dimensions = {d["label"]: d["values"] for d in parallel["data"][0]["dimensions"]}
    assert sorted(dimensions["lr"]) == [0.002, 0.02] and "final val accuracy" in dimensions


def plotted(values) -> list:
    """A trace's numbers as Plotly's JSON sends them: a list, or typed binary ({'dtype', 'bdata'})."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_replay_scrubs_every_panel_back_in_time_and_plays_forward():
    app = new_app()
    app.number_input(key="stats_every").set_value(5).run()
    train_in_app(app, 6)  # 228 batches
    whole = plotted(chart_specs(app)["Loss per batch"]["data"][0]["x"])
    assert metrics(app)["Epoch"] == "6 / 6"
    app.toggle(key="replay_on").set_value(True).run()
    app.slider(key="replay_step").set_value(114).run()  # the end of epoch 3
    assert not app.exception, [e.value for e in app.exception]
    assert metrics(app)["Epoch"] == "3 / 6"  # the metrics as they stood then
    assert any("Replaying: batch 114 of 228" in c.value for c in app.caption)
    batch = chart_specs(app)["Loss per batch"]
    shown = plotted(batch["data"][0]["x"])
    assert len(shown) == 114 < len(whole)  # the curve stops at the cursor...
    assert batch["layout"]["xaxis"]["range"][1] >= max(whole)  # ...on the whole run's axis
    assert any(abs(shape.get("x0", -1) - shown[-1]) < 1e-6 for shape in batch["layout"]["shapes"])
    app.session_state["view"] = "Predictions"
    app.run()
    title = next(t for t in chart_specs(app) if t.startswith("Decision boundary"))
    replayed = int(title.rsplit(" ", 1)[1].rstrip(")"))
    assert replayed <= 113  # the weights stored at or before batch 114, not the final ones
    app.session_state["view"] = "Distributions"
    app.run()
    heatmap = chart_specs(app)["Gradient distributions over time (per layer)"]["data"][0]
    assert max(plotted(heatmap["x"])) < 114
    # Play: the replay moves on with the clock (200 frames a run, 10 a second at 1x); paused, it stays put.
    app.button(key="replay_play").click().run()
    assert app.session_state.replay_playing and not [b for b in app.button if b.key == "replay_play"]
    before = app.slider(key="replay_step").value
    time.sleep(0.6)  # three frames at least
    app.run()
    assert app.slider(key="replay_step").value > before
    app.button(key="replay_pause").click().run()
    paused_at = app.slider(key="replay_step").value
    time.sleep(0.4)
    app.run()
    assert app.slider(key="replay_step").value == paused_at and not app.session_state.replay_playing
    app.toggle(key="replay_on").set_value(False).run()
    assert metrics(app)["Epoch"] == "6 / 6"


def live_chart_data(app: AppTest) -> dict[str, dict]:
    """What each live_chart element hands the browser (spec, config, and a reel while a replay plays), by key."""
    import json

    return {element.proto.id.rsplit("-", 1)[-1]: json.loads(element.proto.json) for element in app.get("bidi_component")
            if element.proto.component_name == "live_chart"}


def test_a_playing_replay_hands_the_browser_every_frame_of_the_curves_and_the_boundary():
    import json

    from conftest import png_pixels

    from live_training_dashboard import charts

    app = new_app()
    train_in_app(app, 4)  # 152 batches
    app.toggle(key="replay_on").set_value(True).run()
    app.slider(key="replay_step").set_value(30).run()
    app.button(key="replay_play").click().run()
    assert not app.exception, [e.value for e in app.exception]
    charts_now = {key: data for key, data in live_chart_data(app).items() if key.endswith("_chart")}
    loss, boundary = charts_now["loss_chart"], charts_now["curves_boundary_chart"]
    reel = loss["reel"]
    steps = reel["steps"]
    assert steps[0] == 30 and steps[-1] == 152 and all(b > a for a, b in zip(steps, steps[1:]))
    assert len(steps) == len(range(30, 152)) + 1 and reel["frame_ms"] == 100  # 200 frames a run, 10 a second
    assert len(reel["cursor"]) == len(steps) and all(b > a for a, b in zip(reel["cursor"], reel["cursor"][1:]))
    assert abs(reel["cursor"][-1] - 4.0) < 1e-6  # epochs on the x-axis: the last frame at the end of epoch 4
    # The chart itself is the whole run (the browser cuts it at each frame's cursor), with a cursor to move.
    spec = json.loads(loss["spec"])
    assert any(shape.get("name") == "replay-cursor" for shape in spec["layout"]["shapes"])
    assert all(charts_now[key]["reel"]["id"] == reel["id"] for key in ("accuracy_chart", "batch_loss_chart",
                                                                        "grad_norm_chart", "lr_chart"))
    # The boundary: one picture of the predicted classes per weight snapshot the frames use, weights
    # from before each frame's step, titled with their batch.
    frames = boundary["reel"]
    pictures, used = frames["payload"]["data"]["images"], sorted(set(frames["image_of_frame"]))
    assert used == list(range(len(pictures))) and 3 <= len(pictures) <= len(steps)
    classes = np.stack([png_pixels(picture)[0] for picture in pictures])
    palette = png_pixels(pictures[0])[1]
    assert classes.shape[1:] == (64, 64) and classes.max() < 3 <= len(palette)  # a colour for each of 3 classes
    assert {alpha for *_, alpha in palette} == {round(255 * charts.BOUNDARY_OPACITY)}  # the live chart's opacity
    assert (classes[0] != classes[-1]).any()  # the boundary moves while it plays
    spec = json.loads(boundary["spec"])  # drawn at the first frame: its picture over the plane, in place of the heatmap
    assert spec["layout"]["images"][0]["source"] == pictures[frames["image_of_frame"][0]]
    assert [trace["type"] for trace in spec["data"]] == ["scatter"] * 3  # the training points of the 3 classes
    batches = [int(t.rsplit(" ", 1)[1].rstrip(")")) for t in frames["titles"]]
    assert len(batches) == len(steps) and all(b < step for b, step in zip(batches, steps))
    assert batches == sorted(batches)
    # The Predictions tab plays in the browser too: the same boundary pictures, named by their id only
    # (this browser page has them), and one picture of every hidden unit per snapshot.
    app.session_state["view"] = "Predictions"
    app.run()
    charts_now = live_chart_data(app)
    assert charts_now["boundary_chart"]["reel"]["payload"] == {"id": frames["payload"]["id"]}
    neurons = charts_now["neuron_chart"]["reel"]
    assert neurons["image_of_frame"] == frames["image_of_frame"] and len(neurons["titles"]) == len(steps)
    tiles = neurons["payload"]["data"]
    assert len(tiles["images"]) == len(pictures) == len(tiles["layout_of_image"]) and tiles["images"][0] != tiles["images"][-1]
    assert len(tiles["layouts"]) == len({repr(layout) for layout in tiles["layouts"]})  # each distinct set of notes once
    for picture, layout in zip(tiles["images"], tiles["layout_of_image"]):
        levels, _ = png_pixels(picture)
        dead = [note for note in tiles["layouts"][layout]["annotations"] if note["text"] == "dead"]  # at its tile's centre
        for note in dead:
            tile = levels[int(note["y"]) - 14:int(note["y"]) + 14, int(note["x"]) - 14:int(note["x"]) + 14]
            assert (tile[1:-1, 1:-1] == charts.NEURON_LEVELS + 1).all() and (tile[0] == charts.NEURON_LEVELS + 2).all()
        assert (levels == charts.NEURON_LEVELS + 1).sum() == len(dead) * 26 * 26  # only the units labelled dead are grey
        assert (levels == 0).mean() < 0.5 and ((levels >= 1) & (levels <= charts.NEURON_LEVELS)).any()
    app.run()  # the next rerun: the pictures are not sent again
    assert live_chart_data(app)["neuron_chart"]["reel"]["payload"] == {"id": neurons["payload"]["id"]}
    app.session_state["sent_payloads"] = set()  # what the page does when the browser asks for them again
    app.run()
    assert live_chart_data(app)["neuron_chart"]["reel"]["payload"]["data"] == tiles
    # The Distributions tab plays in the browser too: the whole run's heatmaps veiled right of the cursor, and
    # each latest histogram the frames reach.
    app.session_state["view"] = "Distributions"
    app.run()
    charts_now = live_chart_data(app)
    for kind in ("grad", "weight"):
        over_time, latest = charts_now[f"{kind}_hist_chart"]["reel"], charts_now[f"{kind}_latest_chart"]["reel"]
        assert over_time["id"] == latest["id"] and over_time["steps"] == latest["steps"]
        assert len(over_time["cursor"]) == len(over_time["steps"]) and over_time["cursor"] == sorted(over_time["cursor"])
        states = latest["payload"]["data"]["states"]  # (sent to the browser page once)
        assert len(latest["state_of_frame"]) == len(latest["steps"]) and len(states) > 3
        titles = [state["layout"]["title.text"] for state in states]
        assert len(set(titles)) == len(titles)
    # The Model tab: the layer table played frame by frame (the sortable table is back once paused).
    app.session_state["view"] = "Model"
    app.run()
    table = live_chart_data(app)["layer_table_chart"]["reel"]
    states = table["payload"]["data"]["states"]
    assert len(states) == len(table["steps"]) and not app.dataframe
    assert states[-1]["layout"]["title.text"] == "Layer statistics after batch 152"
    app.run()  # the next rerun names the states only
    assert live_chart_data(app)["layer_table_chart"]["reel"]["payload"] == {"id": table["payload"]["id"]}
    app.button(key="replay_pause").click().run()
    assert "layer_table_chart" not in live_chart_data(app) and len(app.dataframe) == 1
    # Paused: the sortable table, where a statistic that does not apply (fc4's dead %) reads "–", not "None".
    assert app.dataframe[0].value["dead %"].isna().iloc[-1] and app.dataframe[0].proto.placeholder == "–"
    app.session_state["view"] = "Distributions"
    app.run()
    assert "reel" not in live_chart_data(app)["weight_latest_chart"]
    app.session_state["view"] = "Training curves"
    app.run()
    assert "reel" not in live_chart_data(app)["loss_chart"]


def test_a_training_runs_boundary_and_neurons_are_pictures_and_heatmaps_again_once_the_page_is_frozen(runs_folder):
    """While a run trains and the page refreshes, the decision boundary and the neuron tiles come as
    pictures over data that stay put (the browser relays them out instead of redrawing every
    training point); frozen, they are heatmaps again, the boundary's with its hover, of the same classes."""
    import json

    from conftest import png_pixels

    app = new_app(pace="watchable")
    app.button(key="train").click().run()
    rerun_until(app, lambda a: "curves_boundary_chart" in live_chart_data(a))
    app.button(key="pause_training").click().run()  # the weights hold still: the two views can be compared
    rerun_until(app, lambda a: any(m.value.startswith("**Paused** after batch") for m in a.markdown), timeout=20)
    spec = lambda a, key: json.loads(live_chart_data(a)[key]["spec"])  # noqa: E731
    titles = []  # the last weights written before the pause have reached the page once its title holds still
    rerun_until(app, lambda a: titles.append(spec(a, "curves_boundary_chart")["layout"]["title"]["text"])
                or titles[-2:] == [titles[-1]] * 2, timeout=20)
    live = spec(app, "curves_boundary_chart")
    assert [trace["type"] for trace in live["data"]] == ["scatter"] * 3  # the training points of 3 classes, no heatmap
    pictured, palette = png_pixels(live["layout"]["images"][0]["source"])
    assert pictured.shape == (120, 120) and pictured.max() < 3 <= len(palette)
    app.session_state["view"] = "Predictions"
    app.run()
    assert [trace["type"] for trace in spec(app, "boundary_chart")["data"]] == ["scatter"] * 3
    neurons = spec(app, "neuron_chart")
    assert neurons["data"][0]["z"] == [[None]] and not neurons["layout"].get("shapes")  # the tiles are the picture
    neuron_picture = png_pixels(neurons["layout"]["images"][0]["source"])[0]

    app.toggle(key="paused").set_value(True).run()  # the page frozen: no refreshes to pay for
    frozen = spec(app, "boundary_chart")
    heatmap = frozen["data"][0]
    assert heatmap["type"] == "heatmap" and "confidence" in heatmap["hovertemplate"] and "images" not in frozen["layout"]
    assert frozen["layout"]["title"]["text"] == live["layout"]["title"]["text"]  # the same weights ...
    z = np.asarray(plotted(heatmap["z"])).reshape(120, 120)
    assert (np.rint(z * 3 - 0.5) == np.flipud(pictured)).all()  # ... the same classes (the picture's top row is the highest y)
    tiles = spec(app, "neuron_chart")
    canvas = tiles["data"][0]["z"]
    assert "images" not in tiles["layout"] and neuron_picture.shape == tuple(int(n) for n in canvas["shape"].split(","))
    app.toggle(key="paused").set_value(False).run()
    app.button(key="stop").click().run()


def test_training_is_paused_stepped_one_batch_and_resumed_from_the_page_and_a_refresh_sees_it(runs_folder):
    from live_training_dashboard.run_store import RunStore

    app = new_app(pace="watchable")  # the default pace: a learner's first run lasts ~20 s
    assert app.radio(key="pace").value == "watchable"
    app.button(key="train").click().run()
    run_id = app.session_state.run_id
    rerun_until(app, lambda a: any("Watchable pace" in m.value for m in a.markdown))
    app.button(key="pause_training").click().run()
    assert RunStore(str(runs_folder)).read_control(run_id)["paused"] is True
    paused_text = lambda a: next((m.value for m in a.markdown if m.value.startswith("**Paused** after batch")), "")
    rerun_until(app, lambda a: paused_text(a), timeout=20)
    held = int(paused_text(app).split("batch ")[1].split()[0].replace(",", ""))
    assert app.button(key="resume_training").label == "Resume" and not app.button(key="step_batch").disabled
    assert not [b for b in app.button if b.key == "pause_training"]  # a repeated Pause click cannot undo it
    time.sleep(1.5)
    app.run()
    assert paused_text(app).startswith(f"**Paused** after batch {held:,} ")  # held still

    app.button(key="step_batch").click().run()
    rerun_until(app, lambda a: f"after batch {held + 1:,} " in paused_text(a), timeout=20)
    refreshed = new_app(run=run_id)  # a refresh finds it paused, with the same controls
    assert f"after batch {held + 1:,} " in paused_text(refreshed)
    assert refreshed.button(key="resume_training").label == "Resume"

    app.button(key="full_speed").click().run()
    app.button(key="resume_training").click().run()
    rerun_until(app, lambda a: any("Finished 20 epochs" in s.value for s in a.success), timeout=60)
    assert app.session_state.run_id == run_id


def test_pages_watching_live_runs_share_the_cores_and_a_fixed_refresh_is_kept(runs_folder, monkeypatch):
    from live_training_dashboard import page_refresh

    pages = page_refresh.server_pages()
    monkeypatch.setattr(pages, "cores", 2)
    others = [f"another browser {i}" for i in range(3)]
    monkeypatch.setattr(pages, "seconds_for_load", lambda: 1.0)  # (the test machine's own load aside)
    shared = "refresh every 4 s so that training keeps the CPU: 4 pages are watching live runs on this 2-core machine"
    captions = lambda a: " ".join(c.value for c in a.caption)  # noqa: E731
    try:
        app = new_app(pace="watchable")  # a run of ~20 s: live long enough to look at
        app.button(key="train").click().run()
        rerun_until(app, lambda a: any("Watchable pace" in m.value for m in a.markdown))
        assert app.selectbox(key="refresh").value == page_refresh.AUTO
        assert "refresh every" not in captions(app)  # alone on 2 cores: every second, nothing to say
        places = len(app.main.children)
        for other in others:
            pages.seen(other, 4.0)
        app.run()  # the live refresh sees the new pages and reruns the whole page with the new timer
        rerun_until(app, lambda a: shared in captions(a), timeout=20)
        # The caption takes a place that is always there: the panels below keep theirs (and their
        # charts, a zoom), instead of being remounted one place further down.
        assert len(app.main.children) == places
        app.selectbox(key="refresh").set_value(1.0).run()
        assert "refresh every" not in captions(app)
        assert pages.interval(app.session_state.refresh) == 1.0
        for other in others:
            pages.gone(other)
        # Threads kept waiting for a CPU: the page says what its last slowing-down saw.
        monkeypatch.setattr(pages, "seconds_for_load", lambda: 8.0)
        monkeypatch.setattr(pages, "slowed_because", "threads waited for a CPU 30% of the time")
        app.selectbox(key="refresh").set_value(page_refresh.AUTO).run()
        rerun_until(app, lambda a: "refresh every 8 s so that training keeps the CPU: threads waited for a CPU 30% "
                                   "of the time" in captions(a), timeout=20)
        app.button(key="stop").click().run()
        rerun_until(app, lambda a: any("Stopped from the dashboard" in w.value for w in a.warning))
        assert pages.watching() == 0  # an ended run's page does not count
    finally:
        for other in others:
            pages.gone(other)
