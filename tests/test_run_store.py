"""The run store: pieces round trip, tails, compaction, hostile folders, a killed or starved writer."""

import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from live_training_dashboard import run_store
from live_training_dashboard.history import FAILED, FINISHED, History
from live_training_dashboard.run_config import RunConfig
from live_training_dashboard.run_store import RunReader, RunStore, StoreError
from live_training_dashboard.training_setup import build_model, data_shape
from live_training_dashboard.worker import train_run
from training_monitor import TrainingMonitor

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "watch_my_training.py"


def fast_config(**settings) -> RunConfig:
    """Settings trained as fast as they go (the sidebar's watchable pace spreads a run over ~20 s)."""
    return RunConfig(pace="fast", **settings)


def trained(store: RunStore, config: RunConfig, run_id: str = "0123456789ab"):
    """Train in this process into `store`; returns (monitor, status, message)."""
    captured = {}
    status, message = train_run(store, run_id, "test run", config, on_monitor=lambda m: captured.setdefault("m", m))
    return captured["m"], status, message


def read_all(store: RunStore, run_id: str = "0123456789ab") -> RunReader:
    reader = RunReader.open(store, run_id)
    reader.poll()
    return reader


@pytest.mark.parametrize("url", ["local", "memory://round-trip-runs"])
def test_a_run_round_trips_through_the_store_equal(tmp_path, url):
    store = RunStore(tmp_path if url == "local" else url)
    monitor, status, _ = trained(store, fast_config(epochs=3, stats_every=5))
    original = monitor.history.snapshot()
    reader = read_all(store)
    copy = reader.history.snapshot()
    assert status == FINISHED and reader.state.status == FINISHED and reader.complete
    assert np.array_equal(copy.batches, original.batches)
    assert np.array_equal(copy.layer_grad_norms, original.layer_grad_norms)
    assert np.allclose(copy.epochs, original.epochs)
    assert np.array_equal(copy.stats_steps, original.stats_steps)
    assert np.array_equal(copy.layer_stats, original.layer_stats, equal_nan=True)
    assert np.array_equal(copy.weight_histograms.steps, original.weight_histograms.steps)
    assert np.array_equal(copy.weight_histograms.counts, original.weight_histograms.counts)
    assert np.array_equal(copy.grad_histograms.ranges, original.grad_histograms.ranges)
    assert RunConfig.from_dict(reader.meta["config"]) == fast_config(epochs=3, stats_every=5)
    # A finished run is one compacted piece: reopening it reads a single file.
    assert store.list_names(store.path("0123456789ab", run_store.CHUNKS)) == [
        name for name in store.list_names(store.path("0123456789ab", run_store.CHUNKS)) if name.startswith("full-")]
    # The final weights come back into a fresh model, tensors only.
    config = fast_config(epochs=3, stats_every=5)
    step, state = store.load_weights("0123456789ab")
    model = build_model(config, *data_shape(config))
    model.load_state_dict(state)
    for name, value in monitor.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value.cpu())
    assert step == -1


def _noting_weight_paths(function, paths: list):
    """`function(path, ...)` that first notes `path` in `paths` when it is a weight file."""
    def noted(path, *args, **kwargs):
        if f"/{run_store.WEIGHTS}/" in path:
            paths.append(path)
        return function(path, *args, **kwargs)
    return noted


def _snapshot_files_written_and_removed(store: RunStore, monkeypatch) -> tuple[list, list]:
    """Lists that fill with the paths of the weight files `store` writes and removes."""
    written, removed = [], []
    monkeypatch.setattr(store, "write_bytes", _noting_weight_paths(store.write_bytes, written))
    monkeypatch.setattr(store.fs, "rm", _noting_weight_paths(store.fs.rm, removed))
    return written, removed


def test_weight_snapshots_are_bounded_and_thinned_evenly(tmp_path, monkeypatch):
    monkeypatch.setattr(run_store, "MAX_WEIGHT_SNAPSHOTS", 8)
    store = RunStore(tmp_path)
    written, removed = _snapshot_files_written_and_removed(store, monkeypatch)
    trained(store, fast_config(epochs=10, stats_every=5))  # 380 batches, 76 stats batches
    steps = [s for s in store.weight_steps("0123456789ab") if s >= 0]
    assert 4 <= len(steps) < 8
    gaps = set(np.diff(steps))
    assert len(gaps) == 1, steps  # evenly spaced across the run
    assert steps[0] == 0 and steps[-1] > 300
    # The run's length was known: it wrote only the snapshots it keeps (and its final weights).
    assert len(written) == len(steps) + 1 and removed == []
    # A snapshot is the weights at that step: an earlier one differs from the final weights.
    _, early = store.load_weights("0123456789ab", steps[1])
    _, final = store.load_weights("0123456789ab")
    assert not torch.equal(early["fc1.weight"], final["fc1.weight"])


def test_a_script_of_unknown_length_thins_its_snapshots_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(run_store, "MAX_WEIGHT_SNAPSHOTS", 8)
    store = RunStore(tmp_path)
    written, removed = _snapshot_files_written_and_removed(store, monkeypatch)
    taken = []  # the steps of the snapshots the monitor handed over
    on_weights = run_store.RunWriter.on_weights

    def noting_step(writer, step, *args):
        taken.append(step)
        return on_weights(writer, step, *args)

    monkeypatch.setattr(run_store.RunWriter, "on_weights", noting_step)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = TrainingMonitor(model, optimizer, stats_every=2)
    inputs, labels = torch.randn(16, 2), torch.randint(0, 3, (16,))
    with monitor.watch(store, name="script") as run:  # no planned length
        for _ in range(60):  # 30 stats batches
            loss = nn.functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.log_batch(loss, model(inputs), labels)
    run_id = run.folder.rstrip("/").rsplit("/", 1)[-1]
    steps = [s for s in store.weight_steps(run_id) if s >= 0]
    assert 4 <= len(steps) < 8 and len(set(np.diff(steps))) == 1, steps
    # It took 8 snapshots, then every other one as thinning dropped half (written or not yet).
    assert len(taken) > len(steps) and steps == sorted(set(steps) & set(taken))
    assert len(written) == len(steps) + len(removed) + 1  # what is gone was removed; + the final weights


def test_a_reader_tails_a_run_while_it_is_written_and_each_piece_applies_once(tmp_path, monkeypatch):
    # Pieces every 20 ms: even on a machine that trains this run in well under a second, the
    # reader sees it grow in several steps.
    monkeypatch.setattr(run_store, "PIECE_SECONDS", 0.02)
    store = RunStore(tmp_path)
    config = fast_config(epochs=60)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (trained(store, config), done.set()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not store.exists(store.path("0123456789ab", run_store.META_FILE)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reader = RunReader.open(store, "0123456789ab")
    seen = []
    while not done.is_set() and time.monotonic() < deadline:
        pollers = [threading.Thread(target=reader.poll) for _ in range(4)]  # sessions polling at once
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()
        seen.append(reader.history.num_steps)
        time.sleep(0.05)
    thread.join(60)
    reader.poll()
    assert len(set(seen)) >= 3 and seen == sorted(seen)  # it grew, live
    final = reader.history.snapshot()
    assert final.num_steps == 60 * 38 and len(final.epochs) == 60 and reader.state.status == FINISHED
    assert np.array_equal(final.batch("epoch_progress")[37::38], np.arange(1, 61, dtype=np.float32))


def hostile_run(store: RunStore, run_id: str, meta: dict | None = None, piece: dict | None = None):
    folder = Path(store.path(run_id))
    (folder / run_store.CHUNKS).mkdir(parents=True)
    base = {"format": 2, "run_id": run_id, "name": "hostile", "created_at": time.time(), "source": "script",
            "config": {}, "layer_names": ["fc1", "fc2"], "histogram_bins": 4}
    (folder / run_store.META_FILE).write_text(json.dumps({**base, **(meta or {})}))
    if piece is not None:
        name, data = ("00000000.piece", piece) if isinstance(piece, bytes) else ("00000000.npz", npz_piece(piece))
        (folder / run_store.CHUNKS / name).write_bytes(data)
    return folder


def npz_piece(arrays: dict) -> bytes:
    """A piece as runs written before 2026-12-07 hold them (and any array type a hostile one may)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def good_piece(rows: int = 3) -> dict:
    return {"batches": np.ones((rows, 6), np.float32), "layer_grad_norms": np.ones((rows, 2), np.float32)}


@pytest.mark.parametrize("meta, reason", [
    ({"created_at": 1e308}, "created_at"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"layer_names": "fc1"}, "layer names"),
    ({"layer_names": [1, 2]}, "layer names"),
    ({"run_id": "ffffffffffff"}, "another run"),
    ({"histogram_bins": 10**9}, "histogram_bins"),
])
def test_hostile_run_json_is_skipped_with_a_warning(tmp_path, meta, reason):
    store = RunStore(tmp_path)
    hostile_run(store, "abcdefabcdef", meta, good_piece())
    runs, warnings = store.scan()
    assert runs == [] and len(warnings) == 1 and "abcdefabcdef" in warnings[0] and reason in warnings[0]


@pytest.mark.parametrize("piece, reason", [
    ({"batches": np.ones((3, 6)), "layer_grad_norms": np.ones((2, 2))}, "disagree"),
    ({"batches": np.ones((3, 5)), "layer_grad_norms": np.ones((3, 2))}, "shape"),
    ({"stats_steps": np.array([1e400]), "layer_stats": np.ones((1, 2, 10))}, "whole numbers"),
    ({"stats_steps": np.array([-3]), "layer_stats": np.ones((1, 2, 10))}, "whole numbers"),
    ({"batches": np.array(["a"] * 18).reshape(3, 6), "layer_grad_norms": np.ones((3, 2))}, "shape"),
])
def test_a_hostile_history_piece_is_skipped_and_the_rest_still_reads(tmp_path, piece, reason):
    store = RunStore(tmp_path)
    folder = hostile_run(store, "abcdefabcdef", piece=piece)  # an older run's .npz piece, then a current one
    (folder / run_store.CHUNKS / "00000001.piece").write_bytes(run_store.encode_piece(good_piece(5)))
    reader = read_all(store, "abcdefabcdef")
    assert reader.skipped_pieces == 1 and reason in reader.problems[0]
    assert reader.history.num_steps == 5


def _raw_piece(entries, body: bytes = b"", header: bytes | None = None) -> bytes:
    header = json.dumps(entries).encode() if header is None else header
    return run_store.PIECE_MAGIC + len(header).to_bytes(8, "little") + header + body


@pytest.mark.parametrize("data, reason", [
    (run_store.PIECE_MAGIC + b"\x01", "truncated"),
    (run_store.PIECE_MAGIC + (10**6).to_bytes(8, "little") + b"[]", "longer than the file"),
    (_raw_piece(None, header=b"{not json"), "unreadable"),
    (_raw_piece({"batches": 1}), "not a list"),
    (_raw_piece([{"name": "x", "dtype": "float32", "shape": [1], "offset": 0, "nbytes": 4}] * 65, bytes(4)), "not a list"),
    (_raw_piece([{"name": "batches", "dtype": "object", "shape": [1], "offset": 0, "nbytes": 8}], bytes(8)), "malformed"),
    (_raw_piece([{"name": "x", "dtype": "float32", "shape": [1], "offset": 0, "nbytes": 4}] * 2, bytes(4)), "malformed"),
    (_raw_piece([{"name": "batches", "dtype": "float32", "shape": [10**9, 6], "offset": 0, "nbytes": 24 * 10**9}],
                bytes(24)), "extent"),
    (_raw_piece([{"name": "batches", "dtype": "float32", "shape": [2, 6], "offset": 8, "nbytes": 48}], bytes(48)), "extent"),
    (_raw_piece([{"name": "batches", "dtype": "float32", "shape": [2, -6], "offset": 0, "nbytes": 48}], bytes(48)), "extent"),
    (_raw_piece([{"name": "batches", "dtype": "float32", "shape": [3, 6], "offset": 0, "nbytes": 48}], bytes(48)),
     "does not match"),
])
def test_a_corrupt_or_hostile_piece_is_skipped_without_allocating_what_it_claims(tmp_path, data, reason):
    store = RunStore(tmp_path)
    folder = hostile_run(store, "abcdefabcdef", piece=data)
    (folder / run_store.CHUNKS / "00000001.piece").write_bytes(run_store.encode_piece(good_piece(5)))
    reader = read_all(store, "abcdefabcdef")
    assert reader.skipped_pieces == 1 and reason in reader.problems[0], reader.problems
    assert reader.history.num_steps == 5


def test_pieces_round_trip_every_array_exactly_and_refuse_what_is_not_numbers():
    arrays = {"batches": np.arange(18, dtype=np.float32).reshape(3, 6), "epochs": np.array([[1.5] * 8]),
              "stats_steps": np.array([0, 20], dtype=np.int64), "weight_counts": np.zeros((0, 2, 4), np.float32),
              "odd": np.arange(3, dtype=np.int32), "after_odd": np.array([2.0 ** -40])}
    decoded = run_store.decode_piece(run_store.encode_piece(arrays))
    assert list(decoded) == list(arrays)
    for name, array in arrays.items():
        assert decoded[name].dtype == array.dtype and np.array_equal(decoded[name], array)
        assert decoded[name].ctypes.data % 8 == 0 or decoded[name].size == 0  # aligned views, no copies
    with pytest.raises(ValueError, match="numbers only"):
        run_store.encode_piece({"names": np.array(["fc1"])})
    legacy = run_store.decode_piece(npz_piece(arrays))  # an older run's piece reads the same
    assert all(np.array_equal(legacy[name], arrays[name]) for name in arrays)


def test_garbage_pieces_status_and_links_are_refused(tmp_path):
    store = RunStore(tmp_path)
    folder = hostile_run(store, "abcdefabcdef", piece=good_piece())
    (folder / run_store.CHUNKS / "00000001.npz").write_bytes(b"PK\x03\x04 not really a zip")  # an older run's
    (folder / run_store.STATUS_FILE).write_text(json.dumps({"status": "running", "heartbeat": 1e400, "step": 5}))
    reader = read_all(store, "abcdefabcdef")
    assert reader.history.num_steps == 3 and reader.skipped_pieces == 1
    assert reader.state.status == FAILED and "status.json" in reader.state.message
    # A run.json that is a symbolic link to a file elsewhere is never followed.
    secret = tmp_path.parent / "secret.json"
    secret.write_text(json.dumps({"run_id": "bbbbbbbbbbbb"}))
    linked = Path(store.path("bbbbbbbbbbbb"))
    linked.mkdir()
    (linked / run_store.META_FILE).symlink_to(secret)
    runs, warnings = store.scan()
    assert [r for _, r in runs] == ["abcdefabcdef"]
    assert any("bbbbbbbbbbbb" in w and "symbolic link" in w for w in warnings)
    # A run folder that is itself a link is skipped, and deleting it removes the link only.
    target = tmp_path.parent / "elsewhere"
    target.mkdir(exist_ok=True)
    (target / "keep.txt").write_text("keep me")
    os.symlink(target, Path(store.path("cccccccccccc")))
    _, warnings = store.scan()
    assert any("cccccccccccc" in w for w in warnings)
    store.delete("cccccccccccc")
    assert (target / "keep.txt").exists()


@pytest.mark.parametrize("payload", [
    {"output_shapes": {"fc1": [-1]}}, {"output_shapes": {"fc1": [1.5]}}, {"output_shapes": {"fc1": [1] * 9}},
    {"output_shapes": {"fc1": "12x32"}}, {"output_shapes": {"fc1": [True]}}, {"output_shapes": [[1, 2]]},
    {"output_shapes": {f"l{i}": [1] for i in range(run_store.MAX_LAYERS + 1)}}, [1, 2], "text",
])
def test_hostile_output_shapes_are_ignored_whole(tmp_path, payload):
    store = RunStore(tmp_path)
    folder = Path(store.path("abcdefabcdef"))
    folder.mkdir()
    (folder / run_store.SHAPES_FILE).write_text(json.dumps(payload))
    assert store.read_shapes("abcdefabcdef") == {}


def test_output_shapes_round_trip_and_a_linked_file_is_not_read(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create_run(name="shapes", config={}, layer_names=["fc1", "fc2"], source="script")
    assert store.read_shapes(writer.run_id) == {}  # before the first batch
    writer.on_shapes({"fc1": (12, 32), "fc2": (3,)})
    writer.close()
    assert store.read_shapes(writer.run_id) == {"fc1": (12, 32), "fc2": (3,)}
    elsewhere = tmp_path.parent / "shapes-elsewhere.json"
    elsewhere.write_text(json.dumps({"output_shapes": {"fc1": [1]}}))
    linked = Path(store.path("bbbbbbbbbbbb"))
    linked.mkdir()
    (linked / run_store.SHAPES_FILE).symlink_to(elsewhere)
    assert store.read_shapes("bbbbbbbbbbbb") == {}


def test_weights_with_pickled_code_are_refused(tmp_path):
    store = RunStore(tmp_path)
    hostile_run(store, "abcdefabcdef", piece=good_piece())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    weights = Path(store.path("abcdefabcdef", run_store.WEIGHTS, run_store.FINAL_WEIGHTS))
    weights.parent.mkdir(parents=True)
    torch.save({"weight": Evil()}, weights)
    with pytest.raises(StoreError, match="unreadable weights"):
        store.load_weights("abcdefabcdef")


def test_names_never_become_paths(tmp_path):
    store = RunStore(tmp_path)
    for bad in ("../escape", "/etc/passwd", "0123456789ab/../x", "ABCDEF012345"):
        with pytest.raises(ValueError):
            store.path(bad)
    with pytest.raises(ValueError):
        run_store.clean_name("   ")
    with pytest.raises(ValueError):
        run_store.clean_name("x" * 81)
    trained(store, fast_config(epochs=1))
    store.rename("0123456789ab", "../../evil\nname")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0123456789ab"]
    assert store.read_name("0123456789ab", store.read_meta("0123456789ab")) == "../../evilname"


def test_an_unusable_runs_folder_is_a_clear_error_and_typing_one_creates_nothing(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        RunStore(tmp_path / "file.txt").check_usable()
    with pytest.raises(StoreError, match="1024 characters"):
        RunStore("x" * 2000)
    with pytest.raises(StoreError, match="empty"):
        RunStore("  ")
    RunStore(tmp_path / "a" / "b").check_usable()
    assert not (tmp_path / "a").exists()


def test_a_full_disk_fails_the_run_with_the_reason_and_never_raises_into_the_loop(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    writes = {"count": 0}
    original = RunStore.write_bytes

    def filling_up(self, path, data):
        writes["count"] += 1
        if writes["count"] > 6:
            raise OSError(28, "No space left on device")
        original(self, path, data)

    monkeypatch.setattr(RunStore, "write_bytes", filling_up)
    monitor, status, message = trained(store, fast_config(epochs=200))
    assert status == FAILED and "no space left on device" in message
    assert monitor.step < 200 * 38  # it stopped training instead of running on unrecorded


def test_exports_hold_every_row(tmp_path):
    store = RunStore(tmp_path)
    monitor, _, _ = trained(store, fast_config(epochs=2, stats_every=10))
    snapshot = monitor.history.snapshot()
    archive = zipfile.ZipFile(io.BytesIO(run_store.export_csv_zip(snapshot, "n")))
    assert {"batches.csv", "epochs.csv", "layer_stats.csv"} <= set(archive.namelist())
    assert archive.read("batches.csv").decode().count("\n") == snapshot.num_steps + 1
    assert archive.read("epochs.csv").decode().count("\n") == 3
    document = json.loads(run_store.export_json(snapshot, {"run_id": "0123456789ab", "name": "n"}))
    assert len(document["batches"]) == snapshot.num_steps and document["status"] == "finished"
    assert document["layer_stats_columns"][:3] == ["step", "layer", "weight_mean"]


def test_history_pieces_validate_against_the_history_they_join():
    history = History(["a", "b"], histogram_bins=4)
    run_store.apply_piece(history, good_piece(2))
    with pytest.raises(StoreError):
        run_store.apply_piece(history, {"batches": np.ones((2, 6)), "layer_grad_norms": np.ones((2, 3))})
    assert history.num_steps == 2  # a refused piece adds nothing
    with pytest.raises(StoreError):  # system samples have their six columns
        run_store.apply_piece(history, {**good_piece(1), "system": np.ones((1, 5))})
    assert history.num_steps == 2
    run_store.apply_piece(history, {"system": np.array([[1.0, 10, 95.0, 300.0, np.nan, 50.0]])})
    assert history.snapshot().system_metric("memory_mb").tolist() == [300.0]


def test_rank_speeds_in_status_are_validated_not_trusted():
    from live_training_dashboard.run_store import RunState

    base = {"status": "running", "heartbeat": __import__("time").time()}
    assert RunState.parse({**base, "rank_speeds": [640.5, 628]}).rank_speeds == (640.5, 628.0)
    for hostile in ("fast", [1, "x"], [float("inf")], [-1], [True, 2], [1e400], list(range(5000))):
        assert RunState.parse({**base, "rank_speeds": hostile}).rank_speeds == ()
    assert RunState.parse(base).rank_speeds == ()  # a run from one process says nothing


def test_weight_snapshot_files_round_trip_every_dtype_and_shape():
    state = {
        "fc.weight": torch.randn(3, 4), "half": torch.randn(5).half(), "brain": torch.randn(2, 2).bfloat16(),
        "steps": torch.tensor(7), "mask": torch.tensor([True, False]), "empty": torch.zeros(0, 3),
        "transposed": torch.randn(4, 3).t(),  # not contiguous
    }
    copy = run_store.decode_tensors(run_store.encode_tensors(state))
    assert list(copy) == list(state)
    for name, tensor in state.items():
        assert copy[name].dtype == tensor.dtype and copy[name].shape == tensor.shape and torch.equal(copy[name], tensor)
    copy["fc.weight"].add_(1)  # the loaded tensors own writable memory


@pytest.mark.parametrize("corrupt", [
    lambda data: b"PK" + data[2:],  # not this format
    lambda data: data[:12] + (10**9).to_bytes(8, "little") + data[20:],  # header longer than the file
    lambda data: data.replace(b'"nbytes":48', b'"nbytes":4800'),  # extent past the end
    lambda data: data.replace(b'"shape":[3,4]', b'"shape":[3,5]'),  # shape disagrees with the bytes
    lambda data: data.replace(b'"float32"', b'"object1"'),  # not a tensor dtype
    lambda data: data.replace(b'"shape":[3,4]', b'"shape":[3,-4]'),
    lambda data: data[:40],  # cut short
])
def test_corrupt_weight_snapshots_are_a_store_error_not_a_crash(corrupt):
    data = run_store.encode_tensors({"fc.weight": torch.randn(3, 4)})
    with pytest.raises(StoreError):
        run_store.decode_tensors(corrupt(data))


def test_snapshots_saved_with_torch_save_by_earlier_versions_still_load(tmp_path):
    store = RunStore(tmp_path)
    monitor, _, _ = trained(store, fast_config(epochs=2, stats_every=5))
    folder = Path(store.path("0123456789ab", run_store.WEIGHTS))
    first = sorted(folder.glob(f"*{run_store.SNAPSHOT_SUFFIX}"))[0]
    state = run_store.decode_tensors(first.read_bytes())
    first.unlink()
    torch.save(state, folder / f"{first.stem}.pt")  # how the snapshot was written before
    step, loaded = store.load_weights("0123456789ab", int(first.stem))
    assert step == int(first.stem) and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_labels_keep_name_notes_and_tags_and_each_bad_part_falls_back_alone(tmp_path):
    from live_training_dashboard.run_store import LABELS_FILE, MAX_NOTES_LENGTH, Labels

    store = RunStore(tmp_path)
    writer = store.create_run(name="first", config={}, layer_names=("fc1",), source="script")
    run_id = writer.run_id
    writer.close()
    meta = store.read_meta(run_id)
    assert store.read_labels(run_id, meta) == Labels("first")
    store.write_labels(run_id, meta, notes="tried lr 0.1\nloss exploded", tags=["baseline", " lr sweep ", "baseline", ""])
    store.rename(run_id, "renamed")  # a rename keeps the notes and tags
    assert store.read_labels(run_id, meta) == Labels("renamed", "tried lr 0.1\nloss exploded", ("baseline", "lr sweep"))
    for bad in ({"notes": "x" * (MAX_NOTES_LENGTH + 1)}, {"tags": ["t" * 41]}, {"tags": [str(i) for i in range(21)]},
                {"name": "  "}):
        with pytest.raises(ValueError):
            store.write_labels(run_id, meta, **bad)
    assert store.read_labels(run_id, meta).name == "renamed"  # nothing was written by a refused change
    # a hand-edited file: the readable parts are kept, the others fall back one by one
    (tmp_path / run_id / LABELS_FILE).write_text('{"name": 5, "notes": "ok\\u0007", "tags": ["a", 3, "b\\nc"]}')
    labels = store.read_labels(run_id, meta)
    assert labels.name == "first" and labels.notes == "ok" and labels.tags == ()
    (tmp_path / run_id / LABELS_FILE).write_text('{"tags": ["a", "b\\nc"]}')
    assert store.read_labels(run_id, meta).tags == ("a", "bc")


def test_stats_rows_appended_in_blocks_are_kept_and_thinned_as_one_by_one():
    """A reader appends a piece's stats rows in one block; the histograms it keeps (thinned as the
    run grows) must be the ones the writer's history kept row by row."""
    rng = np.random.default_rng(3)
    one_by_one, in_blocks = History(["a", "b"], 4, 6), History(["a", "b"], 4, 6)
    steps = np.arange(0, 400, 5)
    stats = rng.random((len(steps), 2, 10)).astype(np.float32)
    with_histograms = rng.random(len(steps)) < 0.7
    histograms = {row: ((rng.random((2, 4)).astype(np.float32), rng.random((2, 2)).astype(np.float32)),
                        (rng.random((2, 4)).astype(np.float32), rng.random((2, 2)).astype(np.float32)))
                  for row in np.flatnonzero(with_histograms)}
    for row, step in enumerate(steps):
        one_by_one.append_layer_stats(int(step), stats[row], *histograms.get(row, (None, None)))
    start = 0
    for size in (1, 7, 30, 2, 40):
        block = {row - start: value for row, value in histograms.items() if start <= row < start + size}
        in_blocks.append_layer_stats_rows(steps[start:start + size], stats[start:start + size], block)
        start += size
    expected, got = one_by_one.snapshot(), in_blocks.snapshot()
    assert np.array_equal(expected.stats_steps, got.stats_steps) and np.array_equal(expected.layer_stats, got.layer_stats)
    assert 3 <= len(got.weight_histograms.steps) < 6  # thinned
    for series in ("weight_histograms", "grad_histograms"):
        for field in ("steps", "counts", "ranges"):
            assert np.array_equal(getattr(getattr(expected, series), field), getattr(getattr(got, series), field))
