"""Runs as the page sees them: launched into worker processes, stopped, killed, starved of disk.

Every wait has a deadline, so a hang fails the test instead of stalling the suite.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from live_training_dashboard import run_store
from live_training_dashboard.history import FAILED, FINISHED, RUNNING, STOPPED
from live_training_dashboard.run_catalog import RunCatalog
from live_training_dashboard.run_config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "watch_my_training.py"
LONG = RunConfig(epochs=1000)  # (no pace: 1000 epochs outlast it)


def fast_config(**settings) -> RunConfig:
    """Settings trained as fast as they go (the sidebar's watchable pace spreads a run over ~20 s)."""
    return RunConfig(pace="fast", **settings)


def until(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(0.05)


def test_a_launched_run_trains_in_its_own_process_and_gives_its_memory_back(tmp_path):
    catalog = RunCatalog(str(tmp_path))
    [run] = catalog.launch([("short", fast_config(epochs=3))])
    catalog.wait(run.run_id, timeout=120)
    assert run.status == FINISHED and run.snapshot().num_steps == 3 * 38
    state = catalog.store.read_state(run.run_id)
    assert state.pid not in (0, os.getpid())  # trained elsewhere
    group = run.launched.group
    until(lambda: group.exited, 10, "the worker exiting")
    assert group.process.exitcode == 0
    # A new catalog (a restarted server) reads the same run from the store alone.
    again = RunCatalog(str(tmp_path)).get(run.run_id)
    assert again.status == FINISHED and again.config == fast_config(epochs=3) and again.name == "short"
    assert again.snapshot().num_steps == 3 * 38
    model, step = again.inspection_model()
    assert step == -1 and isinstance(model, torch.nn.Module)


def test_where_a_gpu_is_visible_workers_are_spawned_and_still_train(tmp_path, monkeypatch):
    """A forked child cannot use CUDA its parent initialised, so GPU machines spawn workers."""
    from live_training_dashboard import launcher, run_catalog

    monkeypatch.setattr(launcher, "gpu_visible", lambda: True)
    assert launcher.start_method() == "spawn"
    monkeypatch.setenv(launcher.START_METHOD_VARIABLE, "forkserver")
    assert launcher.start_method() == "forkserver"  # the override wins
    monkeypatch.setenv(launcher.START_METHOD_VARIABLE, "fork-please")
    with pytest.warns(RuntimeWarning, match="'fork-please' is not used"):
        assert launcher.start_method() == "spawn"  # a typo is said, and the machine's choice stands
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not launcher.gpu_visible()

    monkeypatch.setattr(run_catalog, "_pool", launcher.WorkerPool("spawn"))
    catalog = RunCatalog(str(tmp_path), warm_up=False)
    [run] = catalog.launch([("spawned", fast_config(epochs=2))])
    catalog.wait(run.run_id, timeout=120)
    assert run.status == FINISHED and run.snapshot().num_steps == 2 * 38
    until(lambda: run.launched.group.exited, 10, "the worker exiting")
    assert run.launched.group.process.exitcode == 0


def test_a_killed_worker_is_told_within_seconds_and_other_runs_go_on(tmp_path):
    catalog = RunCatalog(str(tmp_path))
    [victim] = catalog.launch([("victim", LONG)])
    [bystander] = catalog.launch([("bystander", fast_config(epochs=100))])
    until(lambda: victim.status == RUNNING and (victim.snapshot().num_steps or 0) > 0, 60, "the victim training")
    os.kill(victim.launched.group.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    until(lambda: victim.status == STOPPED, 10, "the kill being noticed")
    assert time.monotonic() - killed_at < 10
    assert "Stopped unexpectedly" in victim.message and "SIGKILL" in victim.message
    assert victim.snapshot().num_steps > 0  # what it wrote is kept
    catalog.wait(bystander.run_id, timeout=120)
    assert bystander.status == FINISHED


def test_stopping_an_experiment_stops_the_running_run_and_cancels_the_queued_ones(tmp_path):
    catalog = RunCatalog(str(tmp_path))
    runs = catalog.launch([(f"run {i}", LONG) for i in range(3)])
    if runs[0].launched.group is not runs[1].launched.group:
        pytest.skip("enough cores to train the runs side by side: nothing is queued")
    assert [r.status for r in runs[1:]] == ["queued", "queued"]
    until(lambda: runs[0].status == RUNNING, 60, "the first run training")
    for run in runs:
        catalog.stop(run.run_id)
    until(lambda: not any(r.is_active for r in runs), 15, "every run ending")
    assert [r.status for r in runs] == [STOPPED, STOPPED, STOPPED]
    assert "Stopped from the dashboard" in runs[0].message
    assert "never trained" in runs[2].message
    assert not Path(catalog.store.path(runs[1].run_id)).exists()  # nothing written for a run that never started


def test_the_page_stops_a_users_own_script(tmp_path):
    process = subprocess.Popen([sys.executable, str(EXAMPLE), "--runs-dir", str(tmp_path), "--epochs", "100000",
                                "--name", "my script"], stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(process.stdout.readline().split("writing to ", 1)[1].strip())
        catalog = RunCatalog(str(tmp_path))
        until(lambda: catalog.runs() and catalog.runs()[0].status == RUNNING, 60, "the script's run")
        run = catalog.runs()[0]
        assert run.run_id == folder.name and run.source == "script" and run.name == "my script"
        until(lambda: run.snapshot().num_steps > 50, 60, "batches from the script")
        catalog.stop(run.run_id)
        assert process.wait(timeout=15) == 0  # its loop saw log_batch return False and ended normally
        assert "Stopped from the dashboard" in process.stdout.read()
        until(lambda: run.status == STOPPED, 10, "the stopped status")
        assert run.snapshot().num_steps < 100000
    finally:
        process.kill()


def test_a_script_killed_mid_run_is_shown_as_stopped_once_its_heartbeat_is_old(tmp_path, monkeypatch):
    process = subprocess.Popen([sys.executable, str(EXAMPLE), "--runs-dir", str(tmp_path), "--epochs", "100000"],
                               stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(process.stdout.readline().split("writing to ", 1)[1].strip())
        catalog = RunCatalog(str(tmp_path))
        run = catalog.get(folder.name)
        until(lambda: run.status == RUNNING and run.snapshot().num_steps > 0, 60, "the script training")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    monkeypatch.setattr(run_store, "HEARTBEAT_TIMEOUT_SECONDS", 0.5)
    until(lambda: run.status == STOPPED, 10, "the lost heartbeat")
    assert "Stopped unexpectedly" in run.message and run.snapshot().num_steps > 0


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 1 MB tmpfs: a runs folder that really fills up. Needs root (mount), as CI and devs have here."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_fails_every_run_of_an_experiment_with_the_reason(tiny_disk):
    catalog = RunCatalog(str(tiny_disk))
    runs = catalog.launch([(f"lr {lr}", RunConfig(lr=lr, epochs=400, stats_every=1)) for lr in (0.001, 0.01, 0.1)])
    started = time.monotonic()
    until(lambda: not any(r.is_active for r in runs), 60, "every run ending")
    assert all(r.status == FAILED for r in runs), [(r.status, r.message) for r in runs]
    assert all("no space left on device" in r.message for r in runs), [r.message for r in runs]
    assert time.monotonic() - started < 60


def test_bad_settings_and_wrong_weights_give_messages_not_tracebacks(tmp_path):
    catalog = RunCatalog(str(tmp_path))
    [run] = catalog.launch([("ok", fast_config(epochs=1))])
    catalog.wait(run.run_id, timeout=120)
    # Weights of another shape under the final weights' name.
    torch.save({"fc1.weight": torch.zeros(3, 3)}, catalog.store.path(run.run_id, run_store.WEIGHTS, run_store.FINAL_WEIGHTS))
    fresh = RunCatalog(str(tmp_path)).get(run.run_id)
    model, message = fresh.inspection_model()
    assert model is None and "Cannot load this run's weights" in message
    # Settings out of range: the run still lists and shows its history; predictions say why not.
    meta_path = Path(catalog.store.path(run.run_id, run_store.META_FILE))
    meta = __import__("json").loads(meta_path.read_text())
    meta["config"]["lr"] = -5
    meta_path.write_text(__import__("json").dumps(meta))
    fresh = RunCatalog(str(tmp_path)).get(run.run_id)
    assert fresh.config is None and fresh.snapshot().num_steps == 38
    assert fresh.inspection_model()[0] is None


def test_the_runs_of_a_big_folder_say_how_they_ended_without_reopening_their_histories(tmp_path):
    """The catalog closes ended runs' readers beyond MAX_OPEN_ENDED_READERS to bound memory; the runs
    table then reopened every one at each refresh just to read its status (300 runs: 1.3 s)."""
    from torch import nn

    from live_training_dashboard import run_catalog
    from training_monitor import TrainingMonitor

    count = run_catalog.MAX_OPEN_ENDED_READERS + 4
    for index in range(count):
        model = nn.Linear(2, 3)
        monitor = TrainingMonitor(model, torch.optim.SGD(model.parameters(), 0.1), device="cpu")
        with monitor.watch(tmp_path, name=f"run {index}"):
            loss = model(torch.randn(4, 2)).pow(2).mean()
            loss.backward()
            monitor.log_batch(loss)
    catalog = RunCatalog(str(tmp_path), warm_up=False)
    runs = catalog.runs()
    assert [r.status for r in runs] == [FINISHED] * count  # each read once
    runs = catalog.runs()  # closes the readers of all but MAX_OPEN_ENDED_READERS
    assert sum(r.has_reader for r in runs) == run_catalog.MAX_OPEN_ENDED_READERS
    assert [r.status for r in runs] == [FINISHED] * count and "Finished" in runs[0].message
    assert sum(r.has_reader for r in runs) == run_catalog.MAX_OPEN_ENDED_READERS  # none reopened
    assert runs[0].snapshot().num_steps == 1  # its history still reads on demand
