"""torchrun jobs (2 ranks, gloo on CPU): one run, global numbers, every rank stops together.

Each job runs under a process-group timeout and a subprocess timeout, so a hang fails the test.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from live_training_dashboard.run_store import RunReader, RunStore

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo on Linux/macOS")


def torchrun(script: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def reports(prefix: Path) -> list[dict]:
    return [json.loads(Path(f"{prefix}.rank{rank}.json").read_text()) for rank in (0, 1)]


def the_one_run(runs: Path):
    store = RunStore(runs)
    [run_id] = [entry.name for entry in runs.iterdir()]  # one run for the whole job, not one per rank
    reader = RunReader.open(store, run_id)
    reader.poll()
    return reader, store.read_meta(run_id)


def test_a_ddp_job_is_one_run_with_the_global_epoch_loss_and_every_ranks_speed(tmp_path):
    torchrun(ROOT / "examples" / "ddp_training.py", "--runs-dir", str(tmp_path / "runs"), "--epochs", "2",
             "--timeout", "30", "--report", str(tmp_path / "seen"))
    rank0, rank1 = reports(tmp_path / "seen")
    reader, meta = the_one_run(tmp_path / "runs")
    history = reader.history.snapshot()
    assert reader.state.status == "finished" and rank0["status"] == rank1["status"] == "finished"
    assert not any(name.startswith("module.") for name in history.layer_names)
    # The monitor's epoch loss is the mean over both ranks' batches, as all_reduce computes it.
    assert rank0["epoch_losses"] == rank1["epoch_losses"]
    assert np.allclose(history.epoch("train_loss"), rank0["epoch_losses"], rtol=1e-5)
    assert len(reader.state.rank_speeds) == 2 and min(reader.state.rank_speeds) > 0
    assert history.num_steps == 2 * 64


def test_nan_on_one_rank_stops_both_ranks_at_the_same_batch(tmp_path):
    torchrun(ROOT / "examples" / "ddp_training.py", "--runs-dir", str(tmp_path / "runs"), "--epochs", "3",
             "--timeout", "30", "--report", str(tmp_path / "seen"), "--nan-at-batch", "40", "--nan-rank", "1")
    rank0, rank1 = reports(tmp_path / "seen")
    # Both at the same batch: the first exchange after the NaN (exchanges come ~4 times a second).
    assert rank0["stopped_at"] == rank1["stopped_at"] is not None and 40 < rank0["stopped_at"] <= 40 + 256
    reader, _ = the_one_run(tmp_path / "runs")
    assert reader.state.status == "diverged" and "Diverged at batch 40" in reader.state.message


def test_a_monitor_on_rank_0_only_records_alone_and_never_hangs(tmp_path):
    done = torchrun(ROOT / "tests" / "scripts" / "ddp_edge_cases.py", "--runs-dir", str(tmp_path / "runs"),
                    "--mode", "rank0-only", "--report", str(tmp_path / "seen"))
    rank0, rank1 = reports(tmp_path / "seen")
    assert rank0["status"] == "finished" and not rank0["grouped"] and all(rank0["answers"])
    assert "recording rank 0 alone" in done.stderr
    reader, _ = the_one_run(tmp_path / "runs")
    assert reader.state.status == "finished" and reader.history.snapshot().num_steps == 120


def test_a_rank_whose_monitor_fails_keeps_the_others_going(tmp_path):
    torchrun(ROOT / "tests" / "scripts" / "ddp_edge_cases.py", "--runs-dir", str(tmp_path / "runs"),
             "--mode", "broken-rank", "--report", str(tmp_path / "seen"))
    rank0, rank1 = reports(tmp_path / "seen")
    assert rank1["status"] == "failed" and all(rank1["answers"])  # training went on on the failed rank
    assert rank0["status"] == "finished" and all(rank0["answers"]) and len(rank0["answers"]) == 120
    reader, _ = the_one_run(tmp_path / "runs")
    assert reader.state.status == "finished" and reader.history.snapshot().num_steps == 120
