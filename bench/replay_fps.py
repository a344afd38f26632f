"""Replay frame rate in a real browser: frames shown per second while the default spiral run
(MLP 128x3, 20 epochs, 760 batches) plays back, on each tab that changes with the step.

A frame is counted when the step the slider shows changes. The page asks for one frame every
0.2 s (5 frames/s, issue target >= 5); what a browser shows depends on how fast the server
draws the panels and Chromium renders them on this machine's cores.

    python bench/replay_fps.py [--seconds 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tools.live_server import choose_full_speed, dashboard_server, launch_chromium  # noqa: E402

TARGET = 5.0
TABS = ["Training curves", "Distributions", "Model", "Predictions"]


def open_tab(page, name: str) -> None:
    """Tab clicks can be lost while the page redraws: click until the tab is the selected one."""
    tab = page.get_by_role("tab", name=name, exact=True)
    for _ in range(10):
        tab.click()
        try:
            expect(tab).to_have_attribute("aria-selected", "true", timeout=3000)
            return
        except AssertionError:
            continue
    raise RuntimeError(f"tab {name} never opened")


def frames_per_second(page, seconds: float) -> float:
    """Play from the start and count the distinct steps the slider shows for `seconds`."""
    value = page.locator('.st-key-replay_step [data-testid="stSliderThumbValue"]')
    button = page.locator(".st-key-replay_play button")  # the Play/Pause button, by its widget key
    button.click()
    expect(button).to_contain_text("Pause", timeout=15_000)
    seen, last, start = 0, value.inner_text(), time.monotonic()
    while time.monotonic() - start < seconds:
        now = value.inner_text()
        if now != last:
            seen, last = seen + 1, now
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    button.click()
    expect(button).to_contain_text("Play", timeout=15_000)
    return seen / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
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
        page.get_by_text("Replay", exact=True).click()
        expect(page.locator('.st-key-replay_step [data-testid="stSliderThumbValue"]')).to_be_visible(timeout=15_000)
        results = {}
        for tab in TABS:
            open_tab(page, tab)
            results[tab] = [frames_per_second(page, args.seconds) for _ in range(args.repeats)]
        browser.close()
    print(f"Replay of the default spiral run, {args.seconds:.0f} s x {args.repeats} per tab (target >= {TARGET} frames/s)")
    for tab, rates in results.items():
        median = statistics.median(rates)
        print(f"  {tab:16s} {median:5.2f} frames/s  (runs: {', '.join(f'{r:.2f}' for r in rates)})"
              f"  {'ok' if median >= TARGET else 'below target'}")


if __name__ == "__main__":
    main()
