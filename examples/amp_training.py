"""Mixed precision (torch.autocast + GradScaler) watched live.

    python examples/amp_training.py --runs-dir runs

GradScaler skips a step whose fp16 gradients overflowed and lowers its scale: normal while it
finds its scale. The monitor records such batches as skipped (marked on the dashboard's loss
per batch, counted by the health panel), never as a diverged run. On a CPU, autocast uses
bfloat16 and nothing overflows; on a GPU it uses float16.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout; not needed after pip install

from training_monitor import TrainingMonitor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs", help="a folder or an fsspec URL")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = torch.float16 if device == "cuda" else torch.bfloat16
    torch.manual_seed(0)
    x = torch.randn(8192, 64, device=device)
    y = (x[:, :8].sum(1) > 0).long() + (x[:, 8] > 1).long()
    model = nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 3)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device, enabled=half == torch.float16)
    batches = len(x) // 128

    monitor = TrainingMonitor(model, optimizer, device=device)
    with monitor.watch(args.runs_dir, name="amp example", planned_epochs=args.epochs, batches_per_epoch=batches):
        for _epoch in range(args.epochs):
            for batch in range(batches):
                xb, yb = x[batch * 128:(batch + 1) * 128], y[batch * 128:(batch + 1) * 128]
                with torch.autocast(device, dtype=half):
                    logits = model(xb)
                    loss = nn.functional.cross_entropy(logits, yb)
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # unscales the gradients first: the monitor reads true norms
                scaler.update()
                if not monitor.log_batch(loss, logits, yb):
                    break
            monitor.log_epoch()
    print(monitor.message)


if __name__ == "__main__":
    main()
