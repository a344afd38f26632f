"""Train with your own PyTorch loop and watch it live in the dashboard.

    python examples/watch_my_training.py --runs-dir runs --epochs 30
    streamlit run dashboard.py      # the run appears in the Runs tab and updates live

The monitor only needs three calls in your loop: log_batch after optimizer.step(),
log_epoch at the end of an epoch, finish at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from live_training_dashboard.datasets import make_spiral, train_val_split  # noqa: E402
from training_monitor import TrainingMonitor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs", help="a folder or an fsspec URL")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--name", default="my own training loop")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to sleep per epoch (to watch slowly)")
    args = parser.parse_args()

    torch.manual_seed(0)
    features, labels = make_spiral(500, 3, 0.2, seed=0)
    x_train, y_train, x_val, y_val = train_val_split(features, labels, 0.2, seed=0)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    batches_per_epoch = (len(x_train) + 31) // 32

    # --- the three lines that connect your loop to the dashboard -------------------
    monitor = TrainingMonitor(model, optimizer, device="cpu", stats_every=10)
    folder = monitor.watch(args.runs_dir, name=args.name, config={"model": "64-64 relu", "lr": 5e-3, "batch_size": 32},
                           planned_epochs=args.epochs, batches_per_epoch=batches_per_epoch)
    print(f"writing to {folder}", flush=True)

    for _ in range(args.epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(x_train), 32):
            index = order[start: start + 32]
            logits = model(x_train[index])
            loss = nn.functional.cross_entropy(logits, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not monitor.log_batch(loss, logits, y_train[index]):  # False: diverged, or stopped from the page
                monitor.finish()
                print(monitor.message, flush=True)
                return
        with torch.no_grad():
            val_logits = model(x_val)
            val_loss = nn.functional.cross_entropy(val_logits, y_val).item()
            val_accuracy = (val_logits.argmax(1) == y_val).float().mean().item()
        monitor.log_epoch(val_loss, val_accuracy)
        time.sleep(args.pause)
    monitor.finish()
    print(monitor.message, flush=True)


if __name__ == "__main__":
    main()
