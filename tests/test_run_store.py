"""Runs on disk: round trips, a killed writer, corrupt files, names, export, external scripts."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import run_store
from run_config import RunConfig
from runs import RunRegistry, build_model, dataset_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "watch_my_training.py"


def train_and_wait(registry: RunRegistry, config: RunConfig):
    run = registry.start(config)
    registry.wait(run.run_id, timeout=120)
    return run


def test_a_run_round_trips_to_disk_and_back_equal(tmp_path):
    registry = RunRegistry(tmp_path)
    run = train_and_wait(registry, RunConfig(epochs=3, stats_every=5))
    original = run.snapshot()
    # A new registry on the same folder is what a restarted server sees.
    reloaded = RunRegistry(tmp_path).get(run.run_id)
    assert reloaded is not None and reloaded.tail is not None
    copy = reloaded.snapshot()
    assert copy.status == "finished" and reloaded.name == run.name
    assert np.array_equal(copy.batches, original.batches)
    assert np.array_equal(copy.layer_grad_norms, original.layer_grad_norms)
    assert np.allclose(copy.epochs, original.epochs)
    assert np.array_equal(copy.stats_steps, original.stats_steps)
    assert np.array_equal(copy.layer_stats, original.layer_stats, equal_nan=True)
    assert np.array_equal(copy.weight_histograms.counts, original.weight_histograms.counts)
    assert np.array_equal(copy.grad_histograms.ranges, original.grad_histograms.ranges)
    assert reloaded.architecture == run.architecture
    assert reloaded.config == run.config
    # The weights come back into a fresh model, tensors only.
    model = build_model(run.config, dataset_for(run.config))
    run_store.load_weights(run.folder, model)
    for name, value in run.setup.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value.cpu())


def test_weights_file_with_pickled_code_is_refused(tmp_path):
    folder = tmp_path / "0123456789ab"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": Evil()}, folder / run_store.WEIGHTS_FILE)
    with pytest.raises(Exception):
        run_store.load_weights(folder, torch.nn.Linear(1, 1))


def test_killed_writer_leaves_a_loadable_run(tmp_path, monkeypatch):
    process = subprocess.Popen([sys.executable, str(EXAMPLE), "--runs-dir", str(tmp_path), "--epochs", "100000"],
                               stdout=subprocess.PIPE, text=True)
    folder = Path(process.stdout.readline().split("writing to ", 1)[1].strip())
    deadline = time.monotonic() + 60
    while (not (folder / run_store.HISTORY_FILE).exists()
           or (folder / run_store.HISTORY_FILE).stat().st_size < 20_000):
        assert time.monotonic() < deadline, "the writer wrote nothing"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # Whatever moment the kill hit, a torn last line is possible: make sure of one.
    with open(folder / run_store.HISTORY_FILE, "a") as handle:
        handle.write('{"t": "batches", "rows": [[1.0, 0.5')
    monkeypatch.setattr(run_store, "STALE_SECONDS", 0.0)
    run = RunRegistry(tmp_path).get(folder.name)
    snapshot = run.snapshot()
    assert snapshot.num_steps > 0 and len(snapshot.epochs) > 0
    assert run.status == "stopped" and "stopped without finishing" in run.message
    assert run.tail.skipped_lines == 0  # the torn line is waiting, not misread
    assert np.isfinite(snapshot.batches).all()


def test_corrupt_and_foreign_entries_are_skipped_with_warnings(tmp_path):
    registry = RunRegistry(tmp_path)
    good = train_and_wait(registry, RunConfig(epochs=1))
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "holiday-photos").mkdir()
    broken = tmp_path / "abcdefabcdef"
    broken.mkdir()
    (broken / run_store.META_FILE).write_text("{ this is not json")
    with open(good.folder / run_store.HISTORY_FILE, "a") as handle:
        handle.write("garbage line\n")
    fresh = RunRegistry(tmp_path)
    runs = fresh.runs()
    assert [r.run_id for r in runs] == [good.run_id]
    warnings = " | ".join(fresh.scan_warnings)
    assert "notes.txt" in warnings and "holiday-photos" in warnings and "abcdefabcdef" in warnings
    assert fresh.get(good.run_id).snapshot().num_steps == good.snapshot().num_steps
    assert fresh.get(good.run_id).tail.skipped_lines == 1


def test_names_never_become_paths(tmp_path):
    for bad in ("../escape", "/etc/passwd", "0123456789ab/../x", "ABCDEF012345"):
        with pytest.raises(ValueError):
            run_store.run_folder(tmp_path, bad)
    with pytest.raises(ValueError):
        run_store.clean_name("   ")
    with pytest.raises(ValueError):
        run_store.clean_name("x" * 81)
    registry = RunRegistry(tmp_path)
    run = train_and_wait(registry, RunConfig(epochs=1))
    registry.rename(run.run_id, "../../evil\nname")
    assert sorted(p.name for p in tmp_path.iterdir()) == [run.run_id]
    assert RunRegistry(tmp_path).get(run.run_id).name == "../../evilname"
    with pytest.raises(ValueError):
        run_store.check_runs_dir(tmp_path / run.run_id / run_store.META_FILE)


def test_delete_removes_the_folder_and_refuses_a_running_run(tmp_path):
    registry = RunRegistry(tmp_path)
    run = train_and_wait(registry, RunConfig(epochs=1))
    long_run = registry.start(RunConfig(epochs=1000))
    with pytest.raises(ValueError, match="Stop the run"):
        registry.delete(long_run.run_id)
    registry.stop(long_run.run_id)
    registry.wait(long_run.run_id, timeout=30)
    registry.delete(run.run_id)
    assert not run.folder.exists() and registry.get(run.run_id) is None


def test_exports_hold_every_row(tmp_path):
    registry = RunRegistry(tmp_path)
    run = train_and_wait(registry, RunConfig(epochs=2, stats_every=10))
    snapshot = run.snapshot()
    archive = zipfile.ZipFile(io.BytesIO(run_store.export_csv_zip(snapshot, run.name)))
    assert {"batches.csv", "epochs.csv", "layer_stats.csv"} <= set(archive.namelist())
    assert archive.read("batches.csv").decode().count("\n") == snapshot.num_steps + 1
    assert archive.read("epochs.csv").decode().count("\n") == 3
    document = json.loads(run_store.export_json(snapshot, {"run_id": run.run_id, "name": run.name}))
    assert len(document["batches"]) == snapshot.num_steps and document["run"]["name"] == run.name
    assert document["layer_stats_columns"][:3] == ["step", "layer", "weight_mean"]


def test_an_external_script_shows_up_and_grows_while_it_runs(tmp_path):
    process = subprocess.Popen([sys.executable, str(EXAMPLE), "--runs-dir", str(tmp_path), "--epochs", "12",
                                "--pause", "0.4", "--name", "external"], stdout=subprocess.PIPE, text=True)
    try:
        process.stdout.readline()
        registry = RunRegistry(tmp_path)
        deadline = time.monotonic() + 60
        while not registry.runs():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run = registry.runs()[0]
        assert run.name == "external" and run.source == "script"
        seen = []
        while process.poll() is None and time.monotonic() < deadline:
            seen.append((run.snapshot().num_steps, len(run.snapshot().epochs), run.is_active))
            time.sleep(0.3)
        process.wait(timeout=30)
        steps = [s for s, _, _ in seen]
        assert len(set(steps)) >= 3 and steps == sorted(steps)  # it grew, live
        assert any(active for _, _, active in seen)
        final = run.snapshot()
        assert final.status == "finished" and len(final.epochs) == 12 and not run.is_active
    finally:
        process.kill()


def test_concurrent_readers_apply_each_line_once(tmp_path):
    import threading

    registry = RunRegistry(tmp_path)
    run = train_and_wait(registry, RunConfig(epochs=3))
    tail = run_store.RunTail.open(run.folder)
    threads = [threading.Thread(target=tail.poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tail.history.snapshot().num_steps == run.snapshot().num_steps


def test_stopping_an_experiment_stops_the_running_run_and_cancels_the_queued_ones(tmp_path):
    registry = RunRegistry(tmp_path)
    runs = registry.start_sequence([(f"run {i}", RunConfig(epochs=1000)) for i in range(3)])
    assert [r.status for r in runs[1:]] == ["queued", "queued"]
    deadline = time.monotonic() + 30
    while runs[0].status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for run in runs:
        registry.stop(run.run_id)
    registry.wait(runs[0].run_id, timeout=30)
    assert [r.status for r in runs] == ["stopped", "stopped", "stopped"]
    assert "never trained" in runs[2].message and not any(r.is_active for r in runs)
    assert runs[1].folder is None  # nothing written for a run that never started
