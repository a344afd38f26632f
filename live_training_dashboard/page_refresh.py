"""How often a page watching a live run refreshes.

Every refresh costs the machine twice: the server computes the page's charts, and the browser
(on a laptop, the same machine) decodes and draws them. Measured on a 2-vCPU VM, one page on
the Training-curves tab refreshing every second took ~1 core (Chromium's renderer 0.74-0.83,
the server 0.14-0.18) beside a run that wants a whole core, which then got 0.76-0.81 of one;
refreshing every 10 s, the renderer took 0.07. With four pages at once, their four runs got
28% of their fair share and a tab click waited 4.5 s.

So by default ("auto") the refresh yields to training, by two rules, the slower one winning:
- the pages of one server share a budget of REFRESHES_PER_CORE refreshes a second per core;
- while threads wait for a CPU (Linux's CPU pressure: the share of time some runnable thread of
  this machine or container was kept waiting), the interval grows, in doublings, to what should
  bring the waiting to PRESSURE_AIM, up to SLOWEST_AUTO_SECONDS; it halves again once they hardly
  wait. Waiting is what the page costs training: measured with one page and one run on 2 cores,
  refreshing every 1 / 2 / 5 s, threads waited 26-31% / 13-16% / 5% of the time and the run got
  0.83 / 0.90-0.92 / 0.97 of a core; frozen, 1%. The CPUs' busy share missed it (78% busy at
  1 s, under any sensible threshold). Where the kernel gives no pressure figures, the busy share
  decides (BUSY_HIGH, BUSY_LOW). A machine with cores to spare keeps the one-second refresh.
A click (a tab, a setting) is answered at once anyway: it reruns the page, on no timer. A page
may also ask for a fixed interval.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

AUTO = "auto"
# Choices of the page's "Refresh" setting: AUTO, or seconds between live refreshes.
REFRESH_CHOICES: dict[str | float, str] = {AUTO: "Auto", 1.0: "Every 1 s", 2.0: "Every 2 s", 5.0: "Every 5 s",
                                           10.0: "Every 10 s"}
FASTEST_SECONDS = 1.0
SLOWEST_AUTO_SECONDS = 8.0
REFRESHES_PER_CORE = 0.5
PRESSURE_HIGH, PRESSURE_LOW = 0.08, 0.03  # share of time some thread waited for a CPU
# Waiting falls about in proportion to the refreshes (see above), so a high reading multiplies the
# interval at once by what should bring it to this share, in doublings: one step, not a ramp
# through 2 and 4 s that the run pays for.
PRESSURE_AIM = 0.05
BUSY_HIGH, BUSY_LOW = 0.90, 0.60  # share of CPU time busy, where the kernel gives no pressure
# The load is judged over windows of at least this long, and of at least two refreshes at the
# interval in force, so that a window after a change sees the change's effect.
LOAD_SAMPLE_SECONDS = 2.0
LOAD_SAMPLE_INTERVALS = 2
# A page that has not refreshed for this many of its intervals (plus a margin for a slow server)
# is no longer watching: its tab was closed, or its run ended.
FORGET_AFTER_INTERVALS = 2.5
FORGET_MARGIN_SECONDS = 3.0


def machine_cores() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not Linux
        return max(os.cpu_count() or 1, 1)


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine since boot, in ticks (Linux /proc/stat);
    None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        if fields[0] != "cpu":
            return None
        ticks = [float(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, IndexError):
        return None
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def _own_cgroup_pressure_files() -> list[str]:
    """cgroup v2 CPU pressure files of this process's own cgroup (a container's), if any."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as cgroups:
            path = next((line.strip()[3:] for line in cgroups if line.startswith("0::")), "/")
    except OSError:
        return []
    if path in ("", "/"):
        return []
    return [f"/sys/fs/cgroup{path}/cpu.pressure", f"/sys/fs/cgroup/unified{path}/cpu.pressure"]


def parse_cpu_pressure(text: str) -> float | None:
    """Seconds in all that some runnable thread waited for a CPU, from a Linux PSI file's text
    ("some avg10=1.00 avg60=2.00 avg300=3.00 total=123456" in microseconds); None if unreadable."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "some":
            for field in fields[1:]:
                if field.startswith("total="):
                    try:
                        total = int(field[len("total="):])
                    except ValueError:
                        return None
                    return total / 1e6 if total >= 0 else None
    return None


def machine_cpu_pressure() -> float | None:
    """Seconds some thread of this container (its own cgroup's file), or else of this machine,
    waited for a CPU since boot (Linux >= 4.20); None where the kernel does not say."""
    for path in [*_own_cgroup_pressure_files(), "/proc/pressure/cpu"]:
        try:
            with open(path, encoding="ascii") as pressure:
                waited = parse_cpu_pressure(pressure.read())
        except (OSError, UnicodeDecodeError):
            continue
        if waited is not None:
            return waited
    return None


class LivePages:
    """The pages of one server that are watching a live run, each by its browser session id, and
    the refresh interval that shares the machine's cores between them (see the module's text).
    Thread-safe: each browser session runs its script on its own thread."""

    def __init__(self, cores: int | None = None, clock: Callable[[], float] = time.monotonic,
                 cpu_times: Callable[[], tuple[float, float] | None] = machine_cpu_times,
                 cpu_pressure: Callable[[], float | None] = machine_cpu_pressure):
        self.cores = cores if cores is not None else machine_cores()
        if self.cores < 1:
            raise ValueError(f"cores must be at least 1, got {self.cores}")
        self._clock, self._cpu_times, self._cpu_pressure = clock, cpu_times, cpu_pressure
        self._lock = threading.Lock()
        self._last_seen: dict[str, tuple[float, float]] = {}  # page -> (when it refreshed, its interval then)
        self._load_seconds = FASTEST_SECONDS  # the busy machine's rule (see the module's text)
        # (when, CPU times then, seconds waited then)
        self._load_sample: tuple[float, tuple[float, float] | None, float | None] | None = None
        self.busy: float | None = None  # the CPUs' busy share over the last window, once measured
        self.waiting: float | None = None  # the share of the last window some thread waited for a CPU
        self.slowed_because = ""  # what the last doubling saw, for the page to say

    def seen(self, page: str, interval: float) -> None:
        """`page` refreshed now and will again in about `interval` seconds."""
        with self._lock:
            self._last_seen[page] = (self._clock(), interval)

    def gone(self, page: str) -> None:
        """`page` stopped refreshing (its run ended, the page was frozen)."""
        with self._lock:
            self._last_seen.pop(page, None)

    def watching(self, page: str | None = None) -> int:
        """How many pages are watching, `page` included when given (it is about to)."""
        now = self._clock()
        with self._lock:
            for other, (when, interval) in list(self._last_seen.items()):
                if now - when > FORGET_AFTER_INTERVALS * interval + FORGET_MARGIN_SECONDS:
                    del self._last_seen[other]
            return len(self._last_seen) + (page is not None and page not in self._last_seen)

    def seconds_for_pages(self, page: str | None = None) -> float:
        """Whole seconds between refreshes, the same for every watching page, so that their
        refreshes together stay within REFRESHES_PER_CORE a second per core."""
        return max(FASTEST_SECONDS, float(math.ceil(self.watching(page) / (self.cores * REFRESHES_PER_CORE))))

    def seconds_for_load(self) -> float:
        """The loaded machine's rule: grown while threads waited for a CPU (or, without pressure
        figures, doubled while the CPUs were saturated) over the last window, halved once they
        hardly did, between FASTEST_SECONDS and SLOWEST_AUTO_SECONDS."""
        now = self._clock()
        with self._lock:
            window = max(LOAD_SAMPLE_SECONDS, LOAD_SAMPLE_INTERVALS * self._load_seconds)
            if self._load_sample is not None and now - self._load_sample[0] < window:
                return self._load_seconds
            times, waited, previous = self._cpu_times(), self._cpu_pressure(), self._load_sample
            self._load_sample = (now, times, waited)
            if previous is None or now - previous[0] > 2 * window:
                # Nothing to compare with yet, or a window from before no page watched (the load
                # of another time): the judgment waits for a window of this one.
                return self._load_seconds
            then, times_then, waited_then = previous
            high = low = False
            self.waiting = None
            if waited is not None and waited_then is not None and waited >= waited_then:
                self.waiting = min((waited - waited_then) / (now - then), 1.0)
                high, low = self.waiting >= PRESSURE_HIGH, self.waiting <= PRESSURE_LOW
            if times is not None and times_then is not None and times[1] > times_then[1]:
                self.busy = min(max((times[0] - times_then[0]) / (times[1] - times_then[1]), 0.0), 1.0)
                if self.waiting is None:  # (no pressure figures: the busy share decides)
                    high, low = self.busy >= BUSY_HIGH, self.busy <= BUSY_LOW
            if high:
                factor = 2.0 if self.waiting is None else max(2.0, 2.0 ** math.ceil(math.log2(self.waiting / PRESSURE_AIM)))
                self._load_seconds = min(self._load_seconds * factor, SLOWEST_AUTO_SECONDS)
                self.slowed_because = (f"threads waited for a CPU {self.waiting:.0%} of the time"
                                       if self.waiting is not None else f"its CPUs were {self.busy:.0%} busy")
            elif low:
                self._load_seconds = max(self._load_seconds / 2, FASTEST_SECONDS)
            return self._load_seconds

    def auto_seconds(self, page: str | None = None) -> float:
        return max(self.seconds_for_pages(page), self.seconds_for_load())

    def interval(self, choice, page: str | None = None) -> float:
        """Seconds between `page`'s refreshes for a "Refresh" setting: AUTO, or a number of seconds.
        ValueError for anything else (a value kept from an older page, a hand-edited state)."""
        if choice == AUTO:
            return self.auto_seconds(page)
        if isinstance(choice, bool) or not isinstance(choice, (int, float)) or choice not in REFRESH_CHOICES:
            raise ValueError(f"refresh must be one of {list(REFRESH_CHOICES)}, got {choice!r}")
        return float(choice)


_server_pages: LivePages | None = None
_server_pages_lock = threading.Lock()


def server_pages() -> LivePages:
    """The one LivePages of this process: a Streamlit server's sessions all count in it."""
    global _server_pages
    with _server_pages_lock:
        if _server_pages is None:
            _server_pages = LivePages()
        return _server_pages
