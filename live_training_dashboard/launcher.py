"""Starting training processes from the page: a warm forkserver, and what the page knows of
each process it started (its runs, their reports, how it ended).

The page side only: nothing here imports torch. Each worker runs worker.main().
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from live_training_dashboard.history import Status
from live_training_dashboard.run_config import RunConfig

ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the package (a checkout)


def threads_per_run(config: RunConfig, side_by_side: int = 1) -> int:
    """CPU threads for one run's ops.

    Measured on 2 cores: an MLP's ops are too small to split (one thread is fastest: 880 vs
    415 batches/s with two); a CNN's convolutions gain from every core it may have.
    """
    if config.model != "cnn":
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, side_by_side))


@dataclass(frozen=True)
class Job:
    run_id: str
    name: str
    config: dict


# Streamlit installs the running script as sys.modules["__main__"]; multiprocessing would make
# every worker re-execute that script (the whole page) as __mp_main__ before training. Workers
# are started with this empty module as __main__ instead.
_NEUTRAL_MAIN = types.ModuleType("__main__")
_start_lock = threading.Lock()


def _start(process) -> None:
    with _start_lock:
        page_main = sys.modules.get("__main__")
        sys.modules["__main__"] = _NEUTRAL_MAIN
        try:
            process.start()
        finally:
            if page_main is not None:
                sys.modules["__main__"] = page_main


def _start_worker(*args) -> None:
    """A worker process's entry point: worker.main (already imported by the forkserver)."""
    from live_training_dashboard.worker import main

    main(*args)


def _warm() -> None:
    """Starting it makes the forkserver import torch before the first real run (a no-op there);
    spawned, it reads torch's files once so the first worker finds them in the OS cache."""
    from live_training_dashboard import worker  # noqa: F401


@dataclass
class LaunchedRun:
    """What the page knows of a run it launched, before and beside what the store says."""

    run_id: str
    name: str
    config: RunConfig
    created_at: float = field(default_factory=time.time)
    started: bool = False
    result: tuple[Status, str] | None = None
    group: LaunchedGroup | None = None

    @property
    def cancelled(self) -> bool:
        return self.group is not None and self.group.cancelled[self.run_id].is_set() and not self.started


@dataclass
class LaunchedGroup:
    """One worker process and the runs it trains in order."""

    process: multiprocessing.process.BaseProcess
    results: object  # the read end of the worker's result pipe
    runs: list[LaunchedRun]
    cancelled: dict
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self) -> None:
        """Read the worker's reports (non-blocking). Any page thread may call it."""
        with self._lock:
            by_id = {run.run_id: run for run in self.runs}
            try:
                while self.results.poll():
                    run_id, event, message = self.results.recv()
                    if event == "start":
                        by_id[run_id].started = True
                    else:
                        by_id[run_id].result = (Status(event), message)
            except (EOFError, OSError):
                pass

    @property
    def exited(self) -> bool:
        return self.process.exitcode is not None

    def exit_reason(self) -> str:
        code = self.process.exitcode
        if code is None or code == 0:
            return "its process ended"
        if code < 0:
            try:
                return f"its process was killed ({signal.Signals(-code).name})"
            except ValueError:
                return f"its process was killed by signal {-code}"
        return f"its process exited with code {code}"


START_METHOD_VARIABLE = "DASHBOARD_WORKER_START"


def gpu_visible() -> bool:
    """Whether workers may use a GPU, judged without importing torch (the page never does):
    the NVIDIA or ROCm device files exist and CUDA_VISIBLE_DEVICES does not hide them."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False
    return any(os.path.exists(path) for path in ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd"))


def start_method() -> str:
    """forkserver, warm with torch and the project imported, where no GPU can be used; else spawn.

    A forked child cannot use CUDA once its parent initialised it. On an H200 every worker of
    the warm forkserver failed ("Cannot re-initialize CUDA in forked subprocess": the warm-up's
    first optimizer step asks torch.cuda.is_available()); with that query hidden and PyTorch's
    NVML check on, still "CUDA error: initialization error". spawn is PyTorch's advice for
    CUDA: each worker imports torch itself (seconds, not the 0.9 s warm start).
    DASHBOARD_WORKER_START overrides the choice.
    """
    chosen = os.environ.get(START_METHOD_VARIABLE, "").strip()
    available = multiprocessing.get_all_start_methods()
    if chosen in ("forkserver", "spawn") and chosen in available:
        return chosen
    if chosen:  # the server's log says why the setting is not used (the page has no place for it)
        warnings.warn(f"{START_METHOD_VARIABLE}={chosen!r} is not used: this machine offers "
                      f"{', '.join(m for m in ('forkserver', 'spawn') if m in available)}; choosing by itself.",
                      RuntimeWarning, stacklevel=2)
    return "forkserver" if "forkserver" in available and not gpu_visible() else "spawn"


class WorkerPool:
    """Starts worker processes: from a warm forkserver on CPU machines, spawned where a GPU is."""

    def __init__(self, method: str | None = None):
        # The forkserver or a spawned worker imports the project by name: make a checkout
        # importable wherever the server was started from (an installed one already is).
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if str(ROOT) not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in paths if p]])
        self.method = method or start_method()
        self.context = multiprocessing.get_context(self.method)
        if self.method == "forkserver":
            self.context.set_forkserver_preload(["live_training_dashboard.worker"])
        self.groups: list[LaunchedGroup] = []
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start the forkserver (and its torch import) in the background now, not on the first Train.
        With spawn this also loads torch's files into the OS cache for the first worker."""

        def start_and_reap():
            process = self.context.Process(target=_warm, daemon=True)
            _start(process)
            process.join()

        threading.Thread(target=start_and_reap, name="forkserver-warm-up", daemon=True).start()

    def launch(self, store_url: str, runs: list[LaunchedRun]) -> list[LaunchedGroup]:
        """Train `runs`: side by side when there are cores for it, else one after another."""
        cores = os.cpu_count() or 1
        side_by_side = max(1, min(len(runs), cores // 2))
        groups = []
        for lane in range(side_by_side):
            lane_runs = runs[lane::side_by_side]
            receive, send = self.context.Pipe(duplex=False)
            cancelled = {run.run_id: self.context.Event() for run in lane_runs}
            jobs = [Job(run.run_id, run.name, run.config.to_dict()) for run in lane_runs]
            threads = max(threads_per_run(run.config, side_by_side) for run in lane_runs)
            # daemon: a worker ends with the server (after marking its run stopped) rather than
            # holding the server's shutdown until training is done.
            process = self.context.Process(target=_start_worker, args=(store_url, jobs, send, cancelled, threads),
                                           name=f"train-{lane_runs[0].run_id}", daemon=True)
            _start(process)
            send.close()
            group = LaunchedGroup(process, receive, lane_runs, cancelled)
            for run in lane_runs:
                run.group = group
            groups.append(group)
        with self._lock:
            self.groups = [g for g in self.groups if not g.exited] + groups
        return groups

