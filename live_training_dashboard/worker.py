"""Training processes: each run the page starts trains in a worker process of its own.

A worker builds the run from its RunConfig and trains it through exactly the path a user's
own script takes: `TrainingMonitor.watch(store)` then `fit()`, the monitor writing the run
store. The page never holds a model or trains; it reads the store. A worker that dies takes
only its own run with it, and its memory goes back to the OS when it exits.

On CPU machines workers are forked from a forkserver (see launcher.py) that imported this
module, so a Train click pays neither for `import torch` nor for what torch imports on first use;
where a GPU is visible they are spawned (a forked child cannot use CUDA its parent initialised).
"""

from __future__ import annotations

import os
import signal
from dataclasses import asdict

import torch

from live_training_dashboard.history import Status
from live_training_dashboard.run_config import RunConfig
from live_training_dashboard.run_store import RunStore, error_reason
from live_training_dashboard.training_setup import build_training
from training_monitor import PACES


def _import_what_torch_imports_lazily() -> None:
    """Building the first optimizer imports torch._dynamo (1.1 s measured here): do it now, once,
    in the forkserver. Tensors this small never start an OpenMP pool, so forking stays safe.
    (The forkserver is used only where no GPU is visible: see launcher.start_method.)"""
    layer = torch.nn.Linear(2, 2)
    for optimizer in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        step = optimizer(layer.parameters(), lr=1e-3)
        layer(torch.zeros(1, 2)).sum().backward()
        step.step()
    torch.optim.lr_scheduler.StepLR(step, 1)


_import_what_torch_imports_lazily()


def train_run(store: RunStore, run_id: str, name: str, config: RunConfig, threads: int | None = None,
              device: str | None = None, on_monitor=None) -> tuple[Status, str]:
    """Build and train one run into `store`; returns how it ended. Never raises for a bad run."""
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        setup = build_training(config, device)
        setup.monitor.set_pace(PACES[config.pace])
        if on_monitor is not None:
            on_monitor(setup.monitor)
        setup.monitor.watch(store, name=name, config=config.to_dict(), planned_epochs=config.epochs,
                            batches_per_epoch=len(setup.train_batches), run_id=run_id,
                            architecture=[asdict(layer) for layer in setup.architecture], source="dashboard")
    except Exception as error:  # a bad IDX file, a full disk, out of memory...
        return Status.FAILED, f"Could not start: {error_reason(error)}"
    try:
        setup.fit()
    except Exception:  # fit() recorded the failure in the run's status before re-raising
        pass
    return setup.monitor.status, setup.monitor.message



# Runs started from the page train a little below the page's own priority. Where the runs fill
# every core (four sessions training on 2 cores), a click's rerun and its drawing waited behind
# them: 1.5 s median, 4.4 s at worst. They still get every cycle the server and browser leave,
# which is nearly all of them; on a machine with a core to spare it changes nothing.
WORKER_NICENESS = 10


def _below_the_page() -> None:
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):  # (no os.nice on Windows)
        pass


def main(store_url: str, jobs: list, results, cancelled: dict, threads: int) -> None:
    """A worker process: train `jobs` one after another, reporting each start and end."""
    _below_the_page()
    current = {}

    def on_terminate(signum, frame):  # the server is shutting down: end the run cleanly
        monitor = current.get("monitor")
        if monitor is not None:
            monitor.stop("Stopped: the dashboard server shut down after {steps} batches.")
        else:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_terminate)
    store = RunStore(store_url)
    for job in jobs:
        if cancelled[job.run_id].is_set():
            continue
        results.send((job.run_id, "start", ""))
        status, message = train_run(store, job.run_id, job.name, RunConfig.from_dict(job.config), threads,
                                    on_monitor=lambda monitor: current.__setitem__("monitor", monitor))
        current.pop("monitor", None)
        results.send((job.run_id, str(status), message))
    results.close()
