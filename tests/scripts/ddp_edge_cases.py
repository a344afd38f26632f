"""torchrun script for tests/test_distributed.py: ranks that use the monitor unusually.

--mode rank0-only: only rank 0 creates and calls the monitor (a common pattern) -> it records
    alone after a short handshake, and no rank waits forever.
--mode broken-rank: rank 1's monitor fails inside (a bug, say) -> rank 1 keeps training and
    keeps taking part in the exchanges, so rank 0 records the whole run.
"""

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training_monitor import TrainingMonitor  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--runs-dir", required=True)
parser.add_argument("--mode", choices=["rank0-only", "broken-rank"], required=True)
parser.add_argument("--report", required=True)
args = parser.parse_args()

dist.init_process_group("gloo", timeout=timedelta(seconds=30))
rank = dist.get_rank()
torch.manual_seed(0)
model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))

monitor = None
if args.mode == "broken-rank" or rank == 0:
    monitor = TrainingMonitor(model, optimizer, device="cpu", stats_every=5)
    monitor.watch(args.runs_dir, name=args.mode, planned_epochs=3, batches_per_epoch=40, rank_handshake_seconds=3)
    if args.mode == "broken-rank" and rank == 1:
        calls = {"n": 0}
        real = monitor._grad_norms

        def fails_at_batch_30(*a):
            calls["n"] += 1
            if calls["n"] == 30:
                raise ValueError("injected monitor fault")
            return real(*a)

        monitor._grad_norms = fails_at_batch_30
answers = []
for _epoch in range(3):
    for _batch in range(40):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if monitor is not None:
            answers.append(monitor.log_batch(loss, logits, y))
    if monitor is not None:
        monitor.log_epoch()
if monitor is not None:
    monitor.finish()
Path(f"{args.report}.rank{rank}.json").write_text(json.dumps({
    "answers": answers, "status": str(monitor.status) if monitor else None, "grouped": bool(monitor and monitor.ranks)}))
dist.barrier()  # gloo aborts a rank that tears down while another still works (pytorch#190489)
dist.destroy_process_group()
# Under load (a full `make test`), gloo still aborted a rank at interpreter teardown, after all
# work and the report were done (seen once, in a clean-clone run), on the rank that never used the
# monitor: skip the teardown, the test's verdict is in the report.
os._exit(0)
