"""Start the dashboard as a real server and drive it with Debian's Chromium (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


# The server runs as `python -m streamlit run dashboard.py`, and dumps every thread's stack into its
# log on SIGUSR1: the evidence a browser test records when it finds the page stuck.
SERVER_MAIN = ("import faulthandler, runpy, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
               "sys.argv[0] = 'streamlit'; runpy.run_module('streamlit', run_name='__main__', alter_sys=True)")


def run_id_of(url: str) -> str:
    """The run a page's URL shows (its ?run=<id>)."""
    return re.search(r"run=([0-9a-f]+)", url).group(1)


def run_ended(run_id: str, runs_dir: str | None = None) -> bool:
    """Whether a run in a local runs folder (DASHBOARD_RUNS_DIR by default) has ended, read from its
    status.json: a bench waits for an unwatched run this way, with no page open to pay for."""
    from live_training_dashboard.history import ENDED_STATUSES

    status = Path(runs_dir or os.environ["DASHBOARD_RUNS_DIR"]) / run_id / "status.json"
    try:
        return json.loads(status.read_text()).get("status") in ENDED_STATUSES
    except (OSError, ValueError):
        return False


def batches_per_second_after(run_id: str, seconds: float, runs_dir: str | None = None) -> float:
    """A local run's batches per second from `seconds` into it to its end, from the batch times it
    recorded: its speed once a page's first drawing (or none) is behind it."""
    from live_training_dashboard.run_store import RunReader, RunStore

    reader = RunReader.open(RunStore(runs_dir or os.environ["DASHBOARD_RUNS_DIR"]), run_id)
    reader.poll()
    times = reader.history.snapshot().batch("seconds")
    later = times[times >= seconds]
    if len(later) < 2:
        raise ValueError(f"run {run_id} trained less than {seconds} s: no speed after it")
    return (len(later) - 1) / float(later[-1] - later[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(log_path: Path | None = None, timeout: float = 60.0):
    """Yield the base URL of a fresh `streamlit run dashboard.py` on a free loopback port."""
    with dashboard_process(log_path, timeout) as (url, _):
        yield url


@contextlib.contextmanager
def dashboard_process(log_path: Path | None = None, timeout: float = 60.0):
    """Like dashboard_server, yielding (url, the server's Popen) for benchmarks that measure it."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_MAIN, "run", str(ROOT / "dashboard.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}; see {log_path}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start listening in time") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_path:
            log.close()


def launch_chromium(playwright):
    """Debian's Chromium, headless. With BENCH_BROWSER_CPUS=0 (a CPU list), every Chromium process
    is pinned to those CPUs: a stand-in for browsers on users' own machines, for benchmarks that
    say so in their output. Tests never set it."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    cpus = browser_cpus()
    for pid in chromium_pids() if cpus else ():
        try:
            os.sched_setaffinity(pid, cpus)  # renderers forked later inherit it
        except OSError:
            pass  # (a process that just ended)
    return browser


def chromium_pids() -> list[int]:
    """Every running process of Debian's Chromium (Linux /proc)."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"/usr/lib/chromium/"):
                pids.append(int(pid))
        except OSError:
            continue  # (a process that just ended)
    return pids


def browser_cpus() -> set[int]:
    text = os.environ.get("BENCH_BROWSER_CPUS", "").strip()
    return {int(cpu) for cpu in text.split(",") if cpu.strip()} if text else set()


def rss_mb(pid: int) -> float:
    """Resident memory of one process (not its children), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_tab(page, name: str) -> None:
    """Tab clicks can be lost while the page redraws (one landing as the header above grows misses
    the tab): click until the tab is the selected one (benchmarks; the tests' open_tab also waits
    for the tab's content)."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name, exact=True)
    for _ in range(10):
        tab.click()
        try:
            expect(tab).to_have_attribute("aria-selected", "true", timeout=3000)
            return
        except AssertionError:
            continue
    raise RuntimeError(f"tab {name} never opened")


def choose_full_speed(page) -> None:
    """Pick 'As fast as possible' in the sidebar (benchmarks never run at the watchable pace), and
    give the rerun it starts time to land before the next change."""
    page.get_by_text("As fast as possible", exact=True).click()
    page.wait_for_function("() => [...document.querySelectorAll('input[type=radio]')].some("
                           "r => r.checked && r.closest('label')?.innerText.includes('As fast as possible'))")
    page.wait_for_timeout(1000)
