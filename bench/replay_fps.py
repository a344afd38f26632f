"""Replay frame rate in a real browser: frames shown per second while the default spiral run
(MLP 128x3, 20 epochs, 760 batches) plays back, on each tab that changes with the step.

The replay plays on a clock, 200 frames a run, one every 0.1 s at 1x (10 frames/s; issue target
>= 5). On these tabs the browser plays the frames itself: the page records each frame a chart has
shown, a chart's rate is its frames from its first to its last, the tab's is its slowest chart's,
and the wait from the Play click to every chart playing is printed beside it. Where the server
redraws each frame instead (the ridgeline histograms, an image dataset's predictions), a frame is
counted when the step the slider shows changes.

    python bench/replay_fps.py [--seconds 10] [--repeats 2] [--tabs Predictions ...]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tools.live_server import choose_full_speed, dashboard_server, launch_chromium, open_tab  # noqa: E402

TARGET = 5.0
TABS = ["Training curves", "Distributions", "Model", "Predictions"]


SLIDER_STEP = '() => document.querySelector(\'.st-key-replay_step [data-testid="stSliderThumbValue"]\')?.innerText'
# Frames the page drew while the browser plays a replay: [chart key, step, time (ms)] each.
DRAWN_FRAMES = "() => (window.__ltdReplayFrames || []).slice()"


def frames_per_second(page, seconds: float) -> tuple[float, str]:
    """Play from the start for `seconds`: (frames shown per second, what was counted)."""
    page.evaluate("() => { window.__ltdReplayFrames = []; }")
    clicked = page.evaluate("() => performance.now()")
    page.locator(".st-key-replay_play button").click()
    expect(page.locator(".st-key-replay_pause button")).to_be_visible(timeout=15_000)
    slider_changes, last, start = 0, None, time.monotonic()
    while time.monotonic() - start < seconds:
        slider = page.evaluate(SLIDER_STEP)
        slider_changes += last is not None and slider != last
        last = slider
        time.sleep(0.2)  # (a look at the page costs its main thread a little: not more often than frames come)
    elapsed = time.monotonic() - start
    drawn = page.evaluate(DRAWN_FRAMES)
    if seconds < 19:  # (a replay at 1x lasts 20 s: it is still playing)
        page.locator(".st-key-replay_pause button").click()
    expect(page.locator(".st-key-replay_play button")).to_be_visible(timeout=15_000)
    per_chart: dict[str, list[float]] = {}
    for key, _, at in drawn:
        per_chart.setdefault(key, []).append(at)
    if per_chart:
        # The rate a chart plays at, from its first frame to its last; the wait before the first frame apart.
        rates = {key: (len(times) - 1) / max((times[-1] - times[0]) / 1000, 1e-9) for key, times in per_chart.items()
                 if len(times) > 1}
        slowest = min(rates, key=rates.get)
        first = max(times[0] for times in per_chart.values()) - clicked
        return rates[slowest], (f"frames drawn in the browser, slowest of {len(per_chart)} charts ({slowest}); "
                                f"Play click -> every chart playing {first / 1000:.1f} s")
    return slider_changes / elapsed, "steps the slider showed (the server redraws)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tabs", nargs="+", choices=TABS, default=TABS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs, dashboard_server(Path(runs) / "server.log") as url, \
            sync_playwright() as playwright:
        import os

        os.environ["DASHBOARD_RUNS_DIR"] = runs
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        choose_full_speed(page)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Finished 20 epochs").first.wait_for(timeout=120_000)
        expect(page).to_have_url(re.compile(r"\?run=[0-9a-f]{12}"))
        run_page = page.url
        results = {tab: [] for tab in args.tabs}
        for _ in range(args.repeats):
            for tab in args.tabs:
                # A fresh page each time: Replay on starts at the last batch, so Play plays from batch 1.
                page.goto(run_page)
                page.get_by_text("Replay", exact=True).click()
                expect(page.locator('.st-key-replay_step [data-testid="stSliderThumbValue"]')).to_have_text(
                    "760", timeout=30_000)
                open_tab(page, tab)
                results[tab].append(frames_per_second(page, args.seconds))
        browser.close()
    print(f"Replay of the default spiral run, {args.seconds:.0f} s x {args.repeats} per tab (target >= {TARGET} frames/s)")
    for tab, runs in results.items():
        rates = [rate for rate, _ in runs]
        median = statistics.median(rates)
        print(f"  {tab:16s} {median:5.2f} frames/s  {'ok' if median >= TARGET else 'below target'}  (runs: "
              f"{', '.join(f'{r:.2f}' for r in rates)}; counted: {'; '.join(note for _, note in runs)})")


if __name__ == "__main__":
    main()
