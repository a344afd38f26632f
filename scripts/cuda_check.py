"""What only a CUDA machine can show: the page's run path and a user's AMP loop on a GPU.

    python scripts/cuda_check.py [--runs-dir DIR]

CI has no GPU, so this is run by hand (or through a lent GPU machine) and prints one line per
check, "ok" or "FAIL", then exits non-zero if any failed. Needs torch with CUDA, numpy, pandas
and fsspec; not streamlit or plotly (it drives RunCatalog, the page's model of runs, directly).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from live_training_dashboard.history import DIVERGED, FINISHED  # noqa: E402
from live_training_dashboard.run_catalog import RunCatalog  # noqa: E402
from live_training_dashboard.run_config import RunConfig  # noqa: E402
from live_training_dashboard.run_store import RunStore  # noqa: E402
from training_monitor import TrainingMonitor  # noqa: E402

failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


def launched_runs_train_on_the_gpu(runs_dir: str) -> None:
    """Train from the page: worker processes (spawned where a GPU is visible) train on the GPU;
    weights written there load on a CPU."""
    from live_training_dashboard import launcher

    print(f"info workers start by {launcher.start_method()}", flush=True)
    catalog = RunCatalog(runs_dir)
    configs = [("mlp on gpu", RunConfig(epochs=5)),
               ("cnn on gpu", RunConfig(dataset="mnist_like", num_samples=3000, model="cnn", epochs=2, stats_every=10))]
    for name, config in configs:
        clicked = time.perf_counter()
        [run] = catalog.launch([(name, config)])
        first = None
        deadline = time.monotonic() + 180
        while run.is_active and time.monotonic() < deadline:
            snapshot = run.snapshot()
            if first is None and snapshot is not None and snapshot.num_steps:
                first = time.perf_counter() - clicked
            time.sleep(0.05)
        snapshot = run.snapshot()
        steps = snapshot.num_steps if snapshot else 0
        check(f"{name}: finished", run.status == FINISHED, f"{run.status} {run.message!r} after {steps} batches")
        check(f"{name}: trained on cuda", run.device.startswith("cuda"), repr(run.device))
        check(f"{name}: first data", first is not None, f"{first:.2f} s after launch" if first else "never")
        losses = snapshot.batch("loss") if snapshot else np.zeros(0)
        check(f"{name}: losses finite and falling", len(losses) > 20 and bool(np.isfinite(losses).all())
              and losses[-10:].mean() < losses[:10].mean(), f"first {losses[:3]} last {losses[-3:]}")
        model, step = run.inspection_model()
        check(f"{name}: stored weights load on the CPU", next(model.parameters()).device.type == "cpu", f"step {step}")
        weight_steps = catalog.store.weight_steps(run.run_id)
        check(f"{name}: weight snapshots stored", len(weight_steps) > 0, f"{len(weight_steps)} snapshots")


FORKED_CHILD_USES_CUDA = """
import os, sys
sys.path.insert(0, {root!r})
{imports}
pid = os.fork()
if pid == 0:
    import torch
    try:
        torch.zeros(1, device="cuda").add_(1)
        os._exit(0)
    except Exception as error:
        os._exit(1)
print("used CUDA" if os.waitpid(pid, 0)[1] == 0 else "could NOT use CUDA")
"""


def what_a_forked_child_can_use(runs_dir: str) -> None:
    """Information, not a check: which preloads leave a forked child able to use CUDA. The
    launcher spawns workers where a GPU is visible, so a bad answer here costs warm starts only."""
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    for imports in ("import torch", "import torch; torch.cuda.is_available()",
                    "from live_training_dashboard import worker"):
        done = subprocess.run([sys.executable, "-c", FORKED_CHILD_USES_CUDA.format(root=root, imports=imports)],
                              capture_output=True, text=True, timeout=120)
        print(f"info forked after `{imports}`: the child {done.stdout.strip() or done.stderr[-300:]}", flush=True)


def users_amp_loop(runs_dir: str, device_type: str = "cuda") -> None:
    """A user's own fp16 AMP loop. GradScaler starts at scale 2**16 and halves it after each
    step whose gradients overflowed; here it starts at 2**40 so the first steps overflow for
    sure. Skipped steps are normal AMP, not a diverged run: the run must finish."""
    torch.manual_seed(0)
    device = torch.device(device_type)
    x = torch.randn(4096, 32, device=device)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 1).long()
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler(device_type, init_scale=2.0 ** 40)
    monitor = TrainingMonitor(model, optimizer, device=device, stats_every=5)
    monitor.watch(RunStore(runs_dir), name="amp loop", planned_epochs=5, batches_per_epoch=32)
    error = None
    try:
        for _ in range(5):
            for start in range(0, len(x), 128):
                inputs, labels = x[start:start + 128], y[start:start + 128]
                with torch.autocast(device_type, dtype=torch.float16):
                    logits = model(inputs)
                    loss = nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                monitor.log_batch(loss, logits, labels)
            monitor.log_epoch(loss.item(), 0.0)
        monitor.finish()
    except Exception as caught:  # the monitor must never raise into the loop
        error = caught
    check("amp loop: the monitor raised nothing", error is None, repr(error))
    check("amp loop: skipped AMP steps are not a divergence", monitor.status not in (DIVERGED,),
          f"{monitor.status} {monitor.message!r}, final scale {scaler.get_scale():.3g}")
    check("amp loop: finished", monitor.status == FINISHED, f"{monitor.status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--dry-run-on-cpu", action="store_true", help="exercise the script itself where there is no GPU")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        sys.exit("no CUDA device here")
    where = "cpu" if args.dry_run_on_cpu else "cuda"
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0) if where == 'cuda' else 'cpu'}", flush=True)
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="cuda-check-")
    parts = [launched_runs_train_on_the_gpu, lambda d: users_amp_loop(d, where)]
    if where == "cuda":
        parts.insert(0, what_a_forked_child_can_use)
    for part in parts:
        try:
            part(runs_dir)
        except Exception as error:
            check(getattr(part, "__name__", "part"), False, f"raised {error!r}")
    print(f"{len(failures)} failed" if failures else "all passed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
