"""The live refresh interval the pages of one server share (page_refresh.LivePages)."""

import threading

import pytest

from live_training_dashboard.page_refresh import (
    AUTO,
    REFRESH_CHOICES,
    LivePages,
    machine_cpu_pressure,
    machine_cpu_times,
    parse_cpu_pressure,
)


def no_load():
    return None  # as where /proc/stat and /proc/pressure cannot be read: only the pages' rule applies


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_one_page_on_two_cores_refreshes_every_second_and_four_share_the_budget():
    clock = Clock()
    pages = LivePages(cores=2, clock=clock, cpu_times=no_load, cpu_pressure=no_load)
    assert pages.interval(AUTO, "a") == 1.0  # the page asking counts before it is seen
    for page in "abcd":
        pages.seen(page, pages.interval(AUTO, page))
    assert pages.watching() == 4
    assert pages.interval(AUTO, "a") == 4.0  # 4 pages, 2 cores x 0.5 refreshes a second
    assert pages.interval(AUTO, "e") == 5.0  # a fifth about to watch
    pages.gone("d")
    assert pages.interval(AUTO, "a") == 3.0


def test_more_cores_keep_more_pages_at_one_second():
    pages = LivePages(cores=8, clock=Clock(), cpu_times=no_load, cpu_pressure=no_load)
    for page in "abcd":
        pages.seen(page, 1.0)
    assert pages.interval(AUTO, "a") == 1.0
    pages.seen("e", 1.0)
    assert pages.interval(AUTO, "a") == 2.0


def test_a_page_that_stopped_refreshing_is_forgotten_after_a_few_of_its_intervals():
    clock = Clock()
    pages = LivePages(cores=2, clock=clock, cpu_times=no_load, cpu_pressure=no_load)
    pages.seen("closed tab", 4.0)
    pages.seen("open tab", 4.0)
    clock.now += 4.0 * 2.5 + 2.9
    assert pages.watching() == 2  # still within its intervals and the margin
    pages.seen("open tab", 4.0)
    clock.now += 0.2
    assert pages.watching() == 1
    assert pages.interval(AUTO, "open tab") == 1.0


def test_a_fixed_choice_is_kept_whatever_the_load_and_bad_choices_are_refused():
    pages = LivePages(cores=1, clock=Clock(), cpu_times=no_load, cpu_pressure=no_load)
    for page in "abc":
        pages.seen(page, 6.0)
    assert pages.interval(AUTO, "a") == 6.0
    for seconds in (1.0, 2.0, 5.0, 10.0):
        assert pages.interval(seconds, "a") == seconds
    for bad in (0.5, 0, -1.0, float("nan"), "1", None, True, [1.0]):
        with pytest.raises(ValueError, match="refresh must be one of"):
            pages.interval(bad, "a")
    assert set(REFRESH_CHOICES) == {AUTO, 1.0, 2.0, 5.0, 10.0}
    with pytest.raises(ValueError, match="cores"):
        LivePages(cores=0)


def test_sessions_on_their_own_threads_are_all_counted():
    pages = LivePages(cores=2, cpu_times=no_load, cpu_pressure=no_load)
    threads = [threading.Thread(target=lambda i=i: [pages.seen(f"page {i}", 1.0) for _ in range(200)]) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pages.watching() == 8
    assert pages.interval(AUTO) == 8.0


def refreshing(pages, clock, seconds, pressure=None):
    """The intervals one page refreshing on its timer for `seconds` of machine time went through;
    `pressure` (a CpuPressure) is told the interval in force as it changes."""
    seen, end = [], clock.now + seconds
    while clock.now < end:
        interval = pages.interval(AUTO, "page")
        pages.seen("page", interval)
        if pressure is not None:
            pressure()  # (time so far at the interval that was in force)
            pressure.interval = interval
        seen.append(interval)
        clock.now += interval
    return seen


class CpuTimes:
    """A machine whose CPUs are busy `busy` of the time from now on."""

    def __init__(self, clock, cores=2):
        self.clock, self.cores, self.busy, self.ticks = clock, cores, 0.0, (0.0, 0.0)
        self.at = clock.now

    def __call__(self):
        elapsed = (self.clock.now - self.at) * self.cores * 100
        self.ticks = (self.ticks[0] + self.busy * elapsed, self.ticks[1] + elapsed)
        self.at = self.clock.now
        return self.ticks


def test_a_saturated_machine_slows_the_refresh_down_and_spare_cores_bring_it_back():
    clock = Clock()
    cpus = CpuTimes(clock)
    pages = LivePages(cores=2, clock=clock, cpu_times=cpus, cpu_pressure=no_load)  # (the busy share decides)
    cpus.busy = 0.97
    seen = refreshing(pages, clock, 30)
    assert seen[0] == 1.0 and pages.busy > 0.9
    assert seen[-1] == 8.0 and seen == sorted(seen)  # doubled while saturated, never past 8 s
    cpus.busy = 0.75  # between the thresholds: kept where it is (no flapping)
    assert set(refreshing(pages, clock, 30)) == {8.0}
    cpus.busy = 0.3
    seen = refreshing(pages, clock, 30)
    assert seen[-1] == 1.0 and seen == sorted(seen, reverse=True)
    # Samples come no more often than every LOAD_SAMPLE_SECONDS, whatever the number of pages asking.
    calls = []
    pages = LivePages(cores=2, clock=clock, cpu_times=lambda: calls.append(1) or cpus(), cpu_pressure=no_load)
    for _ in range(50):
        pages.interval(AUTO, "page")
    assert len(calls) == 1


class CpuPressure:
    """Seconds some thread waited for a CPU, growing at `share(interval in force)` of the time:
    a page whose refreshes keep training waiting in proportion to how often they come."""

    def __init__(self, clock, share):
        self.clock, self.share, self.waited, self.at, self.interval = clock, share, 0.0, clock.now, 1.0

    def __call__(self):
        self.waited += self.share(self.interval) * (self.clock.now - self.at)
        self.at = self.clock.now
        return self.waited




def test_threads_waiting_for_a_cpu_slow_the_refresh_until_they_hardly_wait():
    clock = Clock()
    # As measured on 2 cores: threads waited 26-31% of the time with a refresh every second,
    # 13-16% every 2 s, 5% every 5 s; the CPUs were 78% busy, which the busy rule let pass.
    pressure = CpuPressure(clock, lambda interval: 0.30 / interval)
    cpus = CpuTimes(clock)
    cpus.busy = 0.78
    pages = LivePages(cores=2, clock=clock, cpu_times=cpus, cpu_pressure=pressure)
    seen = refreshing(pages, clock, 60, pressure)
    # 30% is 6x the aim: after the first window (two refreshes), one step to 8 s, not a ramp.
    assert seen[:3] == [1.0, 1.0, 8.0] and set(seen[2:]) == {8.0}
    assert pages.slowed_because == "threads waited for a CPU 30% of the time"
    assert 0.03 < pages.waiting < 0.08  # 3.75% at 8 s: kept there (no flapping)
    # Waiting just over the threshold doubles it once.
    pressure = CpuPressure(clock, lambda interval: 0.09 if interval == 1.0 else 0.05)
    pages = LivePages(cores=2, clock=clock, cpu_times=cpus, cpu_pressure=pressure)
    assert set(refreshing(pages, clock, 30, pressure)[2:]) == {2.0}
    pressure.share = lambda interval: 0.0  # the run ended, or the browser went elsewhere
    pages = LivePages(cores=2, clock=clock, cpu_times=cpus, cpu_pressure=pressure)
    pages._load_seconds = 8.0
    seen = refreshing(pages, clock, 60, pressure)
    assert seen[-1] == 1.0 and seen == sorted(seen, reverse=True) and 4.0 in seen and 2.0 in seen  # halved step by step
    # The pressure decides where the kernel gives it: saturated CPUs with nobody waiting (one
    # thread per core) keep the one-second refresh.
    cpus.busy = 1.0
    assert set(refreshing(pages, clock, 20, pressure)) == {1.0}
    # A window that spans a time when no page watched is not judged: a new one starts. (Here the
    # waiting happened while nobody watched; the page's own refreshes make none.)
    pressure.share = lambda interval: 0.5
    clock.now += 600
    pressure()
    pressure.share = lambda interval: 0.0
    assert set(refreshing(pages, clock, 10, pressure)) == {1.0}


def test_cpu_pressure_is_parsed_from_the_kernels_text_or_none():
    text = "some avg10=3.50 avg60=14.81 avg300=18.37 total=4744396117\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    assert parse_cpu_pressure(text) == 4744.396117
    for bad in ("", "full avg10=0.00 total=5", "some avg10=1.0", "some total=x", "some total=-5", "\x00\x01"):
        assert parse_cpu_pressure(bad) is None, bad
    waited = machine_cpu_pressure()
    assert waited is None or waited >= 0  # (None: a kernel before 4.20, or not Linux)


def test_the_machines_cpu_times_are_read_or_none():
    times = machine_cpu_times()
    if times is not None:  # Linux
        busy, total = times
        assert 0 <= busy <= total and total > 0
