"""The real page in a real headless Chromium: what only a browser shows."""

import os
import re
import signal
import time
import warnings
from pathlib import Path

import pytest

from tools.live_server import CHROMIUM, dashboard_process, launch_chromium

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium missing at {CHROMIUM}: .ci/run should have installed it")
    pytest.skip(f"Chromium not installed at {CHROMIUM}", allow_module_level=True)

playwright_api = pytest.importorskip("playwright.sync_api")


# What a failing check reports beside the page's texts: the server's log and process, and what the
# browser's console said (two CI runs saw the Model tab selected and empty while the page stood still).
SERVER: dict = {}
CONSOLE: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with dashboard_process(log) as (url, process):
        SERVER.update(log=log, pid=process.pid)
        yield url


@pytest.fixture()
def page(server, runs_folder):
    CONSOLE.clear()
    with playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1600})
        page.on("console", lambda message: CONSOLE.append(f"{message.type}: {message.text[:300]}")
                if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: CONSOLE.append(f"page error: {str(error)[:300]}"))
        yield page
        browser.close()
    stop_what_still_trains(runs_folder)


def stuck_page_evidence(page) -> tuple[bool, str]:
    """Why a page may show nothing new: (whether it still changes, what the browser's console said and
    where the server's script thread is; the server dumps its threads' stacks into its log on SIGUSR1)."""
    before = page_texts(page)
    page.wait_for_timeout(5000)
    live = page_texts(page) != before
    stacks, log_tail = "", []
    if SERVER:
        size = SERVER["log"].stat().st_size
        try:
            os.kill(SERVER["pid"], signal.SIGUSR1)
        except OSError as error:  # the server is gone: that is the evidence
            stacks = f"no server process: {error}"
        time.sleep(1)
        dump = SERVER["log"].read_text(errors="replace")[size:]
        # the script thread's frames (the page's code and Streamlit's runner), innermost first
        page_frames = [line.strip() for line in dump.splitlines()
                       if "dashboard.py" in line or "live_training_dashboard" in line or "script_runner" in line]
        stacks = stacks or " | ".join(page_frames)[:1500]
        log_tail = [line for line in SERVER["log"].read_text(errors="replace")[:size].splitlines()
                    if not line.startswith(("  File ", "Thread 0x", "Current thread 0x")) and line.strip()][-8:]
    return live, (f"page {'still changing' if live else 'unchanged for 5 s'}; console: {CONSOLE[-6:]}; "
                  f"server log tail: {log_tail}; server script stacks: {stacks or 'none in the page code'}")


def stop_what_still_trains(runs_folder):
    """A test that failed before its Stop click leaves its run training: stop it, or it slows every
    later test on a 2-core machine (a CI run's second failure followed from the first this way)."""
    from live_training_dashboard.history import Status
    from live_training_dashboard.run_store import RunStore

    store = RunStore(str(runs_folder))
    for _, run_id in store.scan()[0]:
        if store.read_state(run_id).status in (Status.RUNNING, Status.PREPARING, Status.QUEUED):
            store.request_stop(run_id)


def page_texts(page) -> list[str]:
    """What the page's visible texts say (for a failing assertion's message)."""
    return [text[:100] for text in page.locator('[data-testid="stMarkdownContainer"]').filter(visible=True)
            .all_inner_texts()]


def no_exception(page):
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def open_with_epochs(page, server, epochs: int, pace: str = "As fast as possible"):
    """Open the page, choose the pace, type a number of epochs, and return the Train button once it is enabled."""
    expect = playwright_api.expect
    page.goto(server)
    train = page.get_by_role("button", name="Train", exact=True)
    expect(train).to_be_enabled(timeout=30_000)
    field, choice = page.get_by_label("Epochs", exact=True), page.get_by_role("radio", name=pace, exact=True)
    for _ in range(3):  # a rerun answering the first change can land after the second: check both settled
        page.get_by_text(pace, exact=True).click()
        expect(choice).to_be_checked()
        field.fill(str(epochs))
        field.press("Enter")
        expect(field).to_have_value(str(epochs))
        page.wait_for_timeout(700)
        if choice.is_checked() and field.input_value() == str(epochs):
            break
    expect(train).to_be_enabled()
    return train


# Charts and texts are looked for where visible: while a fragment reruns, Streamlit keeps the previous copy of
# each chart hidden in the page (seen on 2 to 6 of 6 samples of a training page here).
# While a run trains, a 2-core machine's headless Chromium (software rendering) redraws every
# chart each second: a tab or Stop click took 5-14 s to show on a 2-vCPU EPYC (the server had
# the new tab within 2 s). Generous waits, still bounded so a hang fails.
BUSY_PAGE_MS = 30_000


def test_train_watch_all_nine_panels_live_then_stop(page, server, tmp_path):
    expect = playwright_api.expect
    open_with_epochs(page, server, 1000).click()  # long enough to outlast a slow page

    # While it trains: the progress bar counts batches and their speed, and numbers change.
    progress = page.get_by_text(re.compile(r"batches/s")).filter(visible=True).first  # (a redraw may briefly show two)
    expect(progress).to_be_visible(timeout=30_000)
    first = progress.inner_text()
    # (waited for: with another process busy beside it, one refresh of this machine's page took over 2.5 s)
    expect(progress, "the page did not update while training").not_to_have_text(first, timeout=BUSY_PAGE_MS)
    expect(page).to_have_url(re.compile(r"\?run=[0-9a-f]{12}"))

    # 1 metrics bar
    expect(page.locator('[data-testid="stMetric"]')).to_have_count(5)
    assert re.search(r"\d+ / 1000", page.locator('[data-testid="stMetric"]').first.inner_text())
    # 2-5 (+ the LR schedule) on the first tab, each with a drawn trace
    for title in ("Loss per epoch", "Accuracy per epoch", "Loss per batch", "Gradient norm (global and per layer)",
                  "Learning rate schedule"):
        chart = page.locator(".js-plotly-plot:visible", has_text=title)
        expect(chart).to_have_count(1)
        # a drawn trace (waited for: a chart just re-created by a refresh draws it a moment later)
        expect(chart.locator(".scatterlayer .trace, .gl-container canvas").first).to_be_attached(timeout=BUSY_PAGE_MS)
    page.screenshot(path=tmp_path / "1-training-curves.png", full_page=True)

    # A zoom (dragged as a person drags it) survives the live updates: charts change in place.
    epochs_chart = page.locator(".js-plotly-plot:visible", has_text="Loss per epoch")
    for _ in range(3):  # the header above may grow between reading the box and the drag (a CI run missed)
        box = epochs_chart.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
        page.mouse.up()
        if epochs_chart.evaluate("gd => gd.layout.xaxis.autorange === false"):
            break
    zoomed = epochs_chart.evaluate("gd => [gd.layout.xaxis.range, gd._fullData[0]._length]")
    assert epochs_chart.evaluate("gd => gd.layout.xaxis.autorange === false"), f"the drag did not zoom: {zoomed}"
    # (waited for: a slow browser redraws each chart less often than the page refreshes)
    page.wait_for_function(f"() => [...document.querySelectorAll('.js-plotly-plot')].some(gd => gd.checkVisibility() "
                           f"&& gd.textContent.includes('Loss per epoch') && gd._fullData[0]._length > {zoomed[1]})",
                           timeout=BUSY_PAGE_MS)
    later = epochs_chart.evaluate("gd => [gd.layout.xaxis.range, gd._fullData[0]._length]")
    assert later[0] == zoomed[0] and later[1] > zoomed[1], (zoomed, later)

    # 6, 7 histograms over time and the latest snapshot
    open_tab(page, "Distributions", shows=page.locator(".js-plotly-plot:visible", has_text="Latest weights histogram"))
    for title in ("Gradient distributions over time", "Weight distributions over time",
                  "Latest gradients histogram", "Latest weights histogram"):
        expect(page.locator(".js-plotly-plot:visible", has_text=title)).to_have_count(1, timeout=BUSY_PAGE_MS)
    heatmaps = page.locator(".js-plotly-plot:visible", has_text="Weight distributions").locator(".heatmaplayer image")
    expect(heatmaps).to_have_count(4, timeout=BUSY_PAGE_MS)
    # Each panel is Plotly's picture of one pixel per snapshot (its columns evenly spaced), which the
    # browser scales; columns at mixed gaps were painted cell by cell at screen size, 2-3x slower.
    columns, widths = page.locator(".js-plotly-plot:visible", has_text="Weight distributions").evaluate("""async gd => {
        const columns = gd._fullData[0].x.length, sources = [...gd.querySelectorAll('.heatmaplayer image')].map(im => im.getAttribute('href'));
        return [columns, await Promise.all(sources.map(async source => { const i = new Image(); i.src = source; await i.decode(); return i.naturalWidth; }))];
    }""")
    assert widths == [columns] * 4, (columns, widths)
    page.screenshot(path=tmp_path / "2-distributions.png", full_page=True)

    # 8 architecture, 9 layer statistics
    architecture = page.locator(".js-plotly-plot:visible", has_text="Architecture · 33,795 parameters")
    open_tab(page, "Model", shows=architecture)
    expect(architecture).to_have_count(1)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1)
    page.screenshot(path=tmp_path / "3-model.png", full_page=True)
    no_exception(page)

    # A refresh re-attaches to the running run through the URL.
    run_url = page.url
    page.reload()
    expect(page.get_by_text(re.compile(r"batches/s")).filter(visible=True).first).to_be_visible(timeout=30_000)
    assert page.url == run_url

    # No metric is cut off at 1024, 1280 or 1600 pixels ("NNN / 1000": the widest epoch counter;
    # by now every card holds a value and a delta).
    # (A resize, not a reload per width: the cards' sizes follow the window through CSS alone.)
    expect(page.get_by_text("Val accuracy").filter(visible=True).first).to_be_visible(timeout=30_000)
    for width in (1024, 1280, 1600):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1500)
        assert metrics_cut_off(page) == [], width

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Stopped from the dashboard", exact=False).filter(visible=True).first).to_be_visible(timeout=BUSY_PAGE_MS)
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
    expect(page.locator(".js-plotly-plot:visible", has_text="Loss per epoch")).to_have_count(1)
    page.screenshot(path=tmp_path / "4-stopped.png", full_page=True)
    no_exception(page)
    print(f"screenshots in {tmp_path}")


def test_pause_holds_training_while_the_page_stays_live_and_step_trains_one_batch(page, server):
    expect = playwright_api.expect
    open_with_epochs(page, server, 20, pace="Watchable (about 20 s)").click()  # the default pace
    expect(page.get_by_text("Watchable pace", exact=False).filter(visible=True).first).to_be_visible(
        timeout=BUSY_PAGE_MS)
    page.locator(".st-key-pause_training button").filter(visible=True).first.click()
    held = page.get_by_text(re.compile(r"Paused after batch [\d,]+\b")).filter(visible=True).first
    expect(held).to_be_visible(timeout=BUSY_PAGE_MS)
    batch = int(re.search(r"batch ([\d,]+)", held.inner_text()).group(1).replace(",", ""))
    counter = page.locator('[data-testid="stMetric"]').first.inner_text()
    page.wait_for_timeout(3000)
    still = page.get_by_text(re.compile(rf"Paused after batch {batch:,}\b")).filter(visible=True).first
    expect(still, f"held still; the page says {page_texts(page)}").to_be_visible(timeout=BUSY_PAGE_MS)
    assert page.locator('[data-testid="stMetric"]').first.inner_text() == counter
    page.locator(".st-key-step_batch button").filter(visible=True).first.click()
    # the live page shows the step without a reload
    stepped = page.get_by_text(re.compile(rf"Paused after batch {batch + 1:,}\b")).filter(visible=True).first
    expect(stepped, f"one batch on; the page says {page_texts(page)}").to_be_visible(timeout=BUSY_PAGE_MS)
    page.locator(".st-key-full_speed button").filter(visible=True).first.click()
    expect(page.locator(".st-key-full_speed button").filter(visible=True)).to_have_count(0, timeout=BUSY_PAGE_MS)  # the pace is gone
    page.locator(".st-key-resume_training button").filter(visible=True).first.click()
    expect(page.get_by_text("Finished 20 epochs", exact=False).filter(visible=True).first).to_be_visible(
        timeout=60_000)
    no_exception(page)

    # The finished run replayed: the browser plays the curves frame by frame, the run veiled right of its cursor.
    page.get_by_text("Replay", exact=True).click()
    page.locator(".st-key-replay_play button").click()
    loss = page.locator(".js-plotly-plot:visible", has_text="Loss per batch")
    expect(loss).to_have_attribute("data-replay-step", re.compile(r"\d+"), timeout=BUSY_PAGE_MS)  # playing
    shown = []  # (step, the veil's left edge, where the step's x lies on the axis), frame after frame
    for _ in range(30):
        frame = loss.evaluate("gd => gd.dataset.replayStep && gd.__veil ? [Number(gd.dataset.replayStep), "
                              "parseFloat(gd.__veil.style.left), gd.__player.reel.cursor[gd.__player.frame], "
                              "gd._fullLayout._size.l + gd._fullLayout.xaxis.l2p(gd.__player.reel.cursor[gd.__player.frame])]"
                              " : null")
        if frame:
            shown.append(frame)
        page.wait_for_timeout(100)
    steps = sorted({step for step, *_ in shown})
    assert len(steps) >= 5 and max(steps) < 760, steps  # it moves on, frame after frame
    # The veil starts at the cursor (most samples: one taken just as a redraw resized the chart may precede
    # the veil's re-placing, which follows within 50 ms).
    assert sum(abs(left - at) <= 2 for _, left, _, at in shown) >= 0.8 * len(shown), shown
    lefts = [left for _, left, _, _ in shown]
    assert lefts[-1] > lefts[0], lefts
    page.locator(".st-key-replay_pause button").click()
    expect(page.locator(".st-key-replay_play button")).to_be_visible(timeout=BUSY_PAGE_MS)

    # The Distributions tab plays in the browser too (from batch 1, so a slow page still sees it move): each
    # latest histogram swapped in as the frames reach it.
    latest = page.locator(".js-plotly-plot:visible", has_text="Latest weights histogram")
    play_from_the_start(page, "Distributions", latest)
    titles = titles_while_playing(page, latest, samples=20)
    assert len(titles) >= 3 and all(re.fullmatch(r"Latest weights histogram \(step \d+\)", t) for t in titles), titles
    # And the Model tab's layer table, frame by frame.
    table = page.locator(".js-plotly-plot:visible", has_text="Layer statistics after batch")
    open_tab(page, "Model", shows=table)
    titles = titles_while_playing(page, table, samples=10)
    assert len(titles) >= 2 and all(re.fullmatch(r"Layer statistics after batch [\d,]+", t) for t in titles), titles
    page.locator(".st-key-replay_pause button").click()
    expect(page.locator(".st-key-replay_play button")).to_be_visible(timeout=BUSY_PAGE_MS)
    # And the Predictions tab's neurons, from batch 1 again: each weight snapshot's picture of the units swapped in.
    neurons = page.locator(".js-plotly-plot:visible", has_text="Neurons: each hidden unit")
    play_from_the_start(page, "Predictions", neurons)
    playwright_api.expect(neurons).to_have_attribute("data-replay-step", re.compile(r"\d+"), timeout=BUSY_PAGE_MS)
    shown = set()  # (title, its picture), sampled
    for _ in range(20):
        shown.add(tuple(neurons.evaluate("gd => [gd.layout.title.text, gd.layout.images[0].source.slice(-64)]")))
        page.wait_for_timeout(100)
    titles = {title for title, _ in shown}
    assert len(titles) >= 2 and all(re.fullmatch(r"Neurons: .* \(weights of batch \d+\)", t) for t in titles), titles
    assert len({picture for _, picture in shown}) >= 2  # the picture changes with the weights
    page.locator(".st-key-replay_pause button").click()
    expect(page.locator(".st-key-replay_play button")).to_be_visible(timeout=BUSY_PAGE_MS)
    no_exception(page)


def play_from_the_start(page, tab: str, chart) -> None:
    """Open `tab` until `chart` shows, move the paused replay to batch 1 and press Play."""
    open_tab(page, tab, shows=chart)
    page.locator('.st-key-replay_step input[type="range"]').focus()
    page.keyboard.press("Home")
    playwright_api.expect(page.locator('.st-key-replay_step [data-testid="stSliderThumbValue"]')).to_have_text(
        "1", timeout=BUSY_PAGE_MS)
    page.locator(".st-key-replay_play button").click()


def titles_while_playing(page, chart, samples: int) -> set[str]:
    """The titles a chart shows once the browser plays a replay on it, sampled every 100 ms."""
    playwright_api.expect(chart).to_have_attribute("data-replay-step", re.compile(r"\d+"), timeout=BUSY_PAGE_MS)
    titles = set()
    for _ in range(samples):
        titles.add(chart.evaluate("gd => gd.layout.title.text"))
        page.wait_for_timeout(100)
    return titles


def test_bad_input_shows_a_message_and_disables_train(page, server):
    expect = playwright_api.expect
    page.goto(server)
    hidden = page.get_by_label("Hidden layers", exact=True)
    expect(hidden).to_be_visible(timeout=30_000)
    hidden.fill("128,abc")
    hidden.press("Enter")
    expect(page.get_by_text("'abc' is not a whole number").filter(visible=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_disabled()
    no_exception(page)


def test_charts_follow_a_dark_theme_and_stay_as_they_were_on_a_light_one(page, server):
    """Streamlit follows the system's theme: on a dark page the charts were white cards."""
    expect = playwright_api.expect

    def chart_colours(a_page) -> dict:
        a_page.goto(server)
        preview = a_page.locator(".js-plotly-plot", has_text="Architecture").first
        expect(preview).to_be_visible(timeout=30_000)
        return preview.evaluate("""chart => ({
            paper: getComputedStyle(chart.querySelector("rect.bg") || chart.querySelector(".main-svg")).fill,
            title: getComputedStyle(chart.querySelector(".gtitle")).fill,
            page: getComputedStyle(document.querySelector(".stApp")).backgroundColor})""")

    def brightness(css: str) -> float:
        red, green, blue = (float(v) for v in re.findall(r"[\d.]+", css)[:3])
        return 0.299 * red + 0.587 * green + 0.114 * blue

    light = chart_colours(page)
    dark_page = page.context.browser.new_page(viewport={"width": 1500, "height": 1000}, color_scheme="dark")
    try:
        dark = chart_colours(dark_page)
        no_exception(dark_page)
    finally:
        dark_page.close()
    assert brightness(light["page"]) > 200 and brightness(light["title"]) < 100, light
    assert brightness(dark["page"]) < 50 and brightness(dark["title"]) > 200, dark  # light text on the dark page
    # the page shows through the chart: no white card (transparent, or as dark as the page)
    assert dark["paper"] in ("none", "rgba(0, 0, 0, 0)") or brightness(dark["paper"]) < 50, dark


def test_five_train_clicks_within_a_second_start_one_run(page, server, runs_folder):
    expect = playwright_api.expect
    train = open_with_epochs(page, server, 30)  # (a shorter run could end before the fifth click)
    before = {p.name for p in runs_folder.iterdir()}
    # Five clicks 100 ms apart, as an impatient user makes them while the first rerun is on its way.
    train.evaluate("button => new Promise(done => { let n = 0; const click = () => { button.click(); "
                   "if (++n < 5) setTimeout(click, 100); else done(); }; click(); })")
    expect(page).to_have_url(re.compile(r"\?run=[0-9a-f]{12}"), timeout=30_000)
    expect(page.get_by_text("Finished 30 epochs", exact=False).filter(visible=True).first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)
    new = {p.name for p in runs_folder.iterdir()} - before
    assert new == {page.url.split("run=")[1][:12]}, new
    no_exception(page)


def test_a_hostile_run_name_renders_as_text_and_fetches_nothing(page, server):
    expect = playwright_api.expect
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    open_with_epochs(page, server, 1).click()
    expect(page.get_by_text("Finished 1 epochs", exact=False).filter(visible=True).first).to_be_visible(timeout=60_000)
    name = page.get_by_label("Name", exact=True)
    open_tab(page, "Runs", shows=name)
    hostile = "![t](http://127.0.0.1:9/x.png) <img src=http://127.0.0.1:9/y.png>"
    name.fill(hostile)
    name.press("Enter")
    expect(page.get_by_text(hostile, exact=False).filter(visible=True).first).to_be_visible(timeout=10_000)
    page.wait_for_timeout(1000)
    assert page.locator('img[src*="127.0.0.1:9"]').count() == 0
    assert not [url for url in requested if "127.0.0.1:9/" in url]
    no_exception(page)


def metrics_cut_off(page) -> list[str]:
    """Metric texts running past their card, or clipped (ellipsis / hidden overflow) by their own box."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *, [data-testid="stMetricDelta"] *')]
        .filter(e => {
            const card = e.closest('[data-testid="stMetric"]').getBoundingClientRect();
            const range = document.createRange(); range.selectNodeContents(e);
            const text = range.getBoundingClientRect();
            const clips = ['hidden', 'clip'].includes(getComputedStyle(e).overflowX);
            return text.right > card.right + 1 || (clips && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1);
        })
        .map(e => e.textContent)""")


def open_tab(page, name: str, shows=None) -> None:
    """Click a tab until it is selected and, given `shows` (a locator), until that shows in it. A click can be
    lost while a busy page redraws; two CI runs saw the Model tab selected and empty, the page unchanged, for
    60 s (not seen here in 20 runs). A user's way out is allowed once per tab and recorded as a warning with
    what the page, the browser's console and the server's script thread showed (stuck_page_evidence)."""
    tab = page.get_by_role("tab", name=name, exact=True)
    for attempt in range(2):
        for _ in range(10):
            tab.click()
            try:
                playwright_api.expect(tab).to_have_attribute("aria-selected", "true", timeout=3000)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"the {name} tab never opened")
        if shows is None:
            return
        try:
            playwright_api.expect(shows.first).to_be_visible(timeout=BUSY_PAGE_MS)
            return
        except AssertionError:
            selected = page.get_by_role("tab", selected=True).all_inner_texts()
            texts = page_texts(page)
            live, evidence = stuck_page_evidence(page)
            evidence = f"the {name} tab showed nothing for {BUSY_PAGE_MS} ms (selected: {selected}; texts: {texts}; {evidence})"
            if attempt:
                raise AssertionError(evidence) from None
            # What a user does: on a page that stands still, reload it (the URL keeps the run); on an empty
            # tab of a live page, click another tab and this one again.
            warnings.warn(evidence + ("; clicked another tab and it again" if live else "; reloaded the page"), stacklevel=2)
            if not live:
                page.reload()
                playwright_api.expect(page.get_by_text(re.compile(r"batches/s")).filter(visible=True).first).to_be_visible(timeout=BUSY_PAGE_MS)
                continue
            other = page.get_by_role("tab", name=page.get_by_role("tab", selected=False).first.inner_text(), exact=True)
            other.click()
            playwright_api.expect(other).to_have_attribute("aria-selected", "true", timeout=BUSY_PAGE_MS)


def test_rows_ticked_in_the_runs_table_are_compared_with_parallel_coordinates(page, server):
    expect = playwright_api.expect
    for lr in ("0.002", "0.02"):
        train = open_with_epochs(page, server, 1)
        field = page.get_by_label("Learning rate", exact=True)
        field.fill(lr)
        field.press("Enter")
        expect(field).to_have_value(lr)
        expect(train).to_be_enabled()
        train.click()
        expect(page.get_by_text("Finished 1 epochs", exact=False).filter(visible=True).first).to_be_visible(timeout=60_000)
    grid = page.locator(".st-key-runs_table")
    open_tab(page, "Runs", shows=grid)
    chips = page.locator('.st-key-compare_select span[data-tag]')  # the compared runs' chips
    expect(page.get_by_text(re.compile(r"\d+ of \d+ runs")).filter(visible=True).first).to_be_visible(timeout=BUSY_PAGE_MS)
    page.wait_for_timeout(2000)  # the grid drawn on its canvas
    for row in (1, 2):  # the two newest runs, ticked in the selection column (35 px rows under a 35 px header)
        for _ in range(3):  # a tick can miss a grid that moved as it was clicked (seen once with a busy CPU beside it)
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 * row + 18)
            try:
                expect(chips).to_have_count(row, timeout=15_000)  # the compared runs follow the ticks
                break
            except AssertionError:
                assert chips.count() == row - 1, "a tick changed the comparison in an unexpected way"
        else:
            raise AssertionError(f"three ticks on row {row} of the runs table changed nothing")
        # the comparison drawn, so the next tick lands on a settled grid
        expect(page.locator(".js-plotly-plot:visible", has_text="Validation accuracy per epoch").filter(visible=True).first).to_be_visible(
            timeout=BUSY_PAGE_MS)  # (two compared runs show it in the experiment panel too)
        page.wait_for_timeout(4000)
    expect(page.locator(".js-plotly-plot:visible", has_text="Settings →")).to_have_count(1, timeout=BUSY_PAGE_MS)
    # What the Runs tab changes shows above the tabs too, though a click in a tab reruns only the tabs:
    # the experiment the ticked runs make, and this run's new name in its caption.
    expect(page.get_by_text("Experiment: the 2 runs overlaid")).to_be_visible(timeout=BUSY_PAGE_MS)
    name = page.get_by_label("Name", exact=True)
    name.fill("renamed in the runs tab")
    name.press("Enter")
    caption = page.locator('[data-testid="stCaptionContainer"]', has_text=re.compile(r"^Run \S+ · renamed in the runs tab"))
    expect(caption).to_have_count(1, timeout=BUSY_PAGE_MS)
    no_exception(page)


def test_a_chart_out_of_sight_is_not_redrawn_until_it_is_scrolled_into_view(page, server):
    """A laptop's window shows a few of a tab's charts: the others keep their newest figure and are
    drawn when seen (at 1280x1000, the first two charts in sight, refreshing every second, the
    renderer took 0.26-0.30 of a core instead of 0.48-0.50)."""
    expect = playwright_api.expect
    page.set_viewport_size({"width": 1280, "height": 1000})  # the first row of charts in sight, the third not
    open_with_epochs(page, server, 1000).click()  # long enough to outlast the test
    expect(page.get_by_text(re.compile(r"batches/s")).filter(visible=True).first).to_be_visible(timeout=30_000)
    page.get_by_label("Refresh", exact=True).first.click()
    page.get_by_role("option", name="Every 1 s").click()  # (not Auto: the test machine's load must not slow it)
    top, bottom = page.locator('[data-chart-key="loss_chart"]'), page.locator('[data-chart-key="lr_chart"]')
    expect(bottom).to_have_attribute("data-draws", re.compile(r"^\d+$"), timeout=BUSY_PAGE_MS)  # a first drawing waits for nothing
    page.get_by_role("heading", name="Live Training Dashboard").scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # the sight observer reports
    draws = lambda chart: int(chart.get_attribute("data-draws"))  # noqa: E731
    bottom_before, top_before = draws(bottom), draws(top)
    page.wait_for_function("n => Number(document.querySelector('[data-chart-key=\"loss_chart\"]').dataset.draws) >= n",
                           arg=top_before + 3, timeout=BUSY_PAGE_MS)
    assert draws(bottom) == bottom_before, "a chart far below the window was redrawn"
    bottom.scroll_into_view_if_needed()
    page.wait_for_function("n => Number(document.querySelector('[data-chart-key=\"lr_chart\"]').dataset.draws) > n",
                           arg=bottom_before, timeout=BUSY_PAGE_MS)
    # The decision boundary, in sight now: its live refreshes swap the picture and the title over the
    # training points, relaid out (Plotly.react redrew all 1,200 points each time: 65-70 ms here).
    boundary = page.locator('[data-chart-key="curves_boundary_chart"]')
    expect(boundary.locator(".imagelayer image")).to_have_count(1, timeout=BUSY_PAGE_MS)
    page.evaluate("""chart => { chart.__seen = {react: 0, relayout: 0};
        chart.on('plotly_react', () => chart.__seen.react++); chart.on('plotly_relayout', () => chart.__seen.relayout++); }""",
                  boundary.element_handle())
    watched_from = draws(boundary)
    page.wait_for_function("n => Number(document.querySelector('[data-chart-key=\"curves_boundary_chart\"]').dataset.draws) >= n",
                           arg=watched_from + 2, timeout=BUSY_PAGE_MS)
    seen = page.evaluate("chart => chart.__seen", boundary.element_handle())
    assert seen["react"] == 0 and seen["relayout"] >= 2, seen
    assert boundary.locator(".scatterlayer .point").count() == 1200  # the training points, all still drawn
    assert boundary.locator(".imagelayer image").get_attribute("href").startswith("data:image/png;base64,")
    # The browser tab in the background (as the page sees it): nothing is redrawn until it is back.
    set_visibility = "state => { Object.defineProperty(document, 'visibilityState', {value: state, configurable: true}); " \
                     "document.dispatchEvent(new Event('visibilitychange')); }"
    page.evaluate(set_visibility, "hidden")
    hidden_at = draws(bottom)
    page.wait_for_timeout(4000)  # four refreshes
    assert draws(bottom) == hidden_at, "a chart on a hidden browser tab was redrawn"
    page.evaluate(set_visibility, "visible")
    page.wait_for_function("n => Number(document.querySelector('[data-chart-key=\"lr_chart\"]').dataset.draws) > n",
                           arg=hidden_at, timeout=BUSY_PAGE_MS)
    page.get_by_role("button", name="Stop", exact=True).click()
    no_exception(page)
