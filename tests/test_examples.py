"""The README's examples run as shown and leave a finished run a page can open."""

import subprocess
import sys
from pathlib import Path

import pytest

from live_training_dashboard.run_store import RunReader, RunStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("example, args, name", [
    ("mnist_style.py", ["--epochs", "1", "--samples", "1200"], "mnist-style"),
    ("amp_training.py", ["--epochs", "2"], "amp example"),
])
def test_example_trains_into_a_runs_folder(tmp_path, example, args, name):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / example), "--runs-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    [run_id] = [p.name for p in tmp_path.iterdir()]
    reader = RunReader.open(RunStore(tmp_path), run_id)
    reader.poll()
    history = reader.history.snapshot()
    assert reader.state.status == "finished" and history.num_steps == history.planned_epochs * history.batches_per_epoch
    assert len(history.epochs) == history.planned_epochs and RunStore(tmp_path).read_meta(run_id)["name"] == name
