"""A torchrun / DistributedDataParallel job watched live in the dashboard.

    torchrun --standalone --nproc_per_node 2 examples/ddp_training.py --runs-dir runs
    streamlit run dashboard.py      # one run, written by rank 0, with every rank's batches/s

Every rank makes the same monitor calls: the ranks form one run, loss and accuracy are averaged
over all of them, and log_batch answers the same on every rank at the same batch, so no rank is
left waiting in an all-reduce when the run diverges or is stopped from the page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training_monitor import TrainingMonitor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs", help="a folder or an fsspec URL")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a stuck collective fails")
    parser.add_argument("--nan-at-batch", type=int, default=-1, help="(testing) feed one rank a NaN input here")
    parser.add_argument("--nan-rank", type=int, default=1)
    parser.add_argument("--report", default="", help="(testing) write what this rank saw to REPORT.rank<N>.json")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    data = torch.Generator().manual_seed(1)
    inputs = torch.randn(4096, 20, generator=data)
    labels = (inputs[:, :5].sum(1) > 0).long() + (inputs[:, 5] > 0.5).long()
    mine = torch.arange(rank, len(inputs), world)  # each rank trains on its own share
    x, y = inputs[mine].to(device), labels[mine].to(device)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch_size, batches = 32, len(x) // 32

    # --- the lines that connect a DDP loop to the dashboard: the same on every rank ------
    monitor = TrainingMonitor(model, optimizer, device=device, stats_every=10)
    run = monitor.watch(args.runs_dir, name="ddp example", planned_epochs=args.epochs, batches_per_epoch=batches,
                        config={"ranks": world, "lr": 3e-3, "batch_size": batch_size})

    seen = {"rank": rank, "epoch_losses": [], "stopped_at": None, "run": run.folder}
    step = 0
    with run:
        for _ in range(args.epochs):
            loss_sum = torch.zeros(2, dtype=torch.float64)
            for batch in range(batches):
                xb, yb = x[batch * batch_size:(batch + 1) * batch_size], y[batch * batch_size:(batch + 1) * batch_size]
                if step == args.nan_at_batch and rank == args.nan_rank:
                    xb = xb.clone().fill_(float("nan"))
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += torch.tensor([loss.item() * len(yb), len(yb)], dtype=torch.float64)
                step += 1
                if not monitor.log_batch(loss, logits, yb):  # the same answer on every rank
                    seen["stopped_at"] = step
                    break
            if seen["stopped_at"] is not None:
                break
            dist.all_reduce(loss_sum)  # what the monitor's epoch loss must equal
            seen["epoch_losses"].append((loss_sum[0] / loss_sum[1]).item())
            monitor.log_epoch()
    seen["status"], seen["message"] = str(monitor.status), monitor.message
    if args.report:
        Path(f"{args.report}.rank{rank}.json").write_text(json.dumps(seen))
    if rank == 0:
        print(monitor.message, flush=True)
    dist.barrier()  # gloo aborts a rank that tears down while another still works (pytorch#190489)
    dist.destroy_process_group()
    if args.report:
        os._exit(0)  # (testing) gloo can still abort at interpreter teardown under load; the report is written


if __name__ == "__main__":
    main()
