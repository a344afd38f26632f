"""Opening and refreshing a long run from the store, in fresh processes.

Writes a synthetic 1,000,000-batch run (4 layers, stats every 20, 26,316 epochs) through the
real History -> RunWriter path, once compacted (a finished run) and once as 1,000 pieces (a
killed run, never compacted). Then, each in a fresh process, repeated:
  open    RunReader.open + poll + snapshot: seconds and peak RSS added (target <= 1 s, <= 200 MB)
  refresh one Training-curves refresh of the page at 1M batches: the figures the tab draws,
          built from a snapshot, and the bytes of their JSON (target <= 50 ms, <= 600 KB)

    python bench/store_scale.py [--batches 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPEN_SECONDS, OPEN_MB, REFRESH_MS, REFRESH_KB = 1.0, 200.0, 50.0, 600.0


def write_run(folder: str, batches: int, compact: bool) -> str:
    import numpy as np

    from live_training_dashboard.history import EPOCH_COLUMNS, LAYER_STATS, History, Status
    from live_training_dashboard.run_store import RunStore

    store = RunStore(folder)
    layers, bins, per_epoch, stats_every = ["fc1", "fc2", "fc3", "fc4"], 40, 38, 20
    writer = store.create_run(name="long synthetic", config={}, layer_names=layers, source="script",
                              planned_epochs=batches // per_epoch, batches_per_epoch=per_epoch)
    writer._closed = True  # this script writes the pieces itself, one per chunk: stop the writer's thread
    writer._wake.set()
    writer._thread.join()
    history = History(layers, bins)
    history.sink = writer
    rng = np.random.default_rng(0)
    chunk = max(1, batches // 1000)  # 1,000 pieces, like a 1M-batch run flushed every 0.5 s
    for start in range(0, batches, chunk):
        rows = min(chunk, batches - start)
        steps = np.arange(start, start + rows)
        batch = np.column_stack([np.exp(-steps / 2e5) + rng.random(rows) * 0.1, rng.random(rows), rng.random(rows),
                                 np.full(rows, 1e-3), steps / per_epoch, steps * 1e-3]).astype(np.float32)
        history.append_batches(batch, rng.random((rows, len(layers))).astype(np.float32))
        for step in steps[steps % stats_every == 0]:
            counts = rng.random((len(layers), bins)).astype(np.float32)
            ranges = np.tile(np.array([-1, 1], np.float32), (len(layers), 1))
            history.append_layer_stats(int(step), rng.random((len(layers), len(LAYER_STATS))).astype(np.float32),
                                       (counts, ranges), (counts, ranges))
        for end in steps[(steps + 1) % per_epoch == 0]:
            history.append_epoch(**dict(zip(EPOCH_COLUMNS, [end // per_epoch + 1, 0.5, 0.8, 0.6, 0.7, 1e-3, end * 1e-3,
                                                            end + 1])))
        writer._write_piece()  # one piece per chunk, as a long run's writer thread would leave them
    history.set_status(Status.FINISHED, "synthetic")
    writer._write_piece()
    if compact:
        writer._compact(history.snapshot())
    writer._write_state()
    return writer.run_id


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def measure_open(folder: str, run_id: str) -> dict:
    from live_training_dashboard.run_store import RunReader, RunStore

    before = _memory_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    started = time.perf_counter()
    reader = RunReader.open(RunStore(folder), run_id)
    reader.poll()
    snapshot = reader.history.snapshot()
    seconds = time.perf_counter() - started
    peak = _memory_mb("VmHWM")
    assert snapshot.num_steps > 0
    return {"seconds": seconds, "added_mb": peak - before, "steps": snapshot.num_steps}


def measure_refresh(folder: str, run_id: str) -> dict:
    from live_training_dashboard import charts, diagnostics
    from live_training_dashboard.run_store import RunReader, RunStore

    reader = RunReader.open(RunStore(folder), run_id)
    reader.poll()
    snapshot = reader.history.snapshot()
    timings, sizes = [], []
    for _ in range(6):  # the first refresh fills caches; the page refreshes every second
        started = time.perf_counter()
        findings = diagnostics.diagnose(snapshot)
        figures = charts.training_curves_figures(snapshot, findings)
        payload = sum(len(figure.to_json()) for figure in figures)
        timings.append(time.perf_counter() - started)
        sizes.append(payload)
    return {"first_ms": timings[0] * 1e3, "ms": statistics.median(timings[1:]) * 1e3, "kb": sizes[-1] / 1024}


def child(kind: str, folder: str, run_id: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", kind, folder, run_id], capture_output=True,
                            text=True, check=True, timeout=600)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        kind, folder, run_id = args.child
        print(json.dumps(measure_open(folder, run_id) if kind == "open" else measure_refresh(folder, run_id)))
        return 0
    folder = tempfile.mkdtemp(prefix="store-scale-")
    started = time.perf_counter()
    runs = {"finished (compacted)": write_run(folder, args.batches, True),
            "killed (1,000 pieces)": write_run(folder, args.batches, False)}
    print(f"wrote two {args.batches:,}-batch runs in {time.perf_counter() - started:.1f}s to {folder}")
    ok = True
    for label, run_id in runs.items():
        opens = [child("open", folder, run_id) for _ in range(args.repeats)]
        seconds = statistics.median(o["seconds"] for o in opens)
        added = statistics.median(o["added_mb"] for o in opens)
        print(f"open {label:22s}: {seconds:.3f}s (spread {min(o['seconds'] for o in opens):.3f}-"
              f"{max(o['seconds'] for o in opens):.3f}), +{added:.0f} MB peak RSS, {opens[0]['steps']:,} steps   "
              f"targets <= {OPEN_SECONDS}s, <= {OPEN_MB:.0f} MB")
        ok &= seconds <= OPEN_SECONDS and added <= OPEN_MB
    refreshes = [child("refresh", folder, runs["finished (compacted)"]) for _ in range(args.repeats)]
    ms = statistics.median(r["ms"] for r in refreshes)
    kb = statistics.median(r["kb"] for r in refreshes)
    print(f"Training-curves refresh at {args.batches:,} batches: {ms:.1f} ms (first {statistics.median(r['first_ms'] for r in refreshes):.0f} ms), "
          f"{kb:.0f} KB of figures   targets <= {REFRESH_MS:.0f} ms, <= {REFRESH_KB:.0f} KB")
    ok &= ms <= REFRESH_MS and kb <= REFRESH_KB
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
