"""pytorch/examples' MNIST loop, unchanged but for the lines marked `# monitor`.

    python examples/mnist_style.py --runs-dir runs --epochs 3
    live-training-dashboard --runs-dir runs      # or: streamlit run dashboard.py

Synthetic 28x28 digits stand in for MNIST so it runs offline; swap in torchvision's MNIST
and nothing else changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout; not needed after pip install

from live_training_dashboard.datasets import make_mnist_like  # noqa: E402
from training_monitor import TrainingMonitor  # noqa: E402  # monitor


class Net(nn.Module):  # pytorch/examples/mnist's network
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def train(model, device, loader, optimizer, monitor):
    model.train()
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        if not monitor.log_batch(loss, output, target):  # monitor: False = diverged or stopped from the page
            return False
    return True


def test(model, device, loader):
    model.eval()
    loss = correct = 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            loss += F.cross_entropy(output, target, reduction="sum").item()
            correct += (output.argmax(1) == target).sum().item()
    return loss / len(loader.dataset), correct / len(loader.dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs", help="a folder or an fsspec URL (s3://bucket/runs)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=6000)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(1)
    images, labels = make_mnist_like(args.samples, seed=1)
    split = int(0.9 * len(images))
    train_loader = DataLoader(TensorDataset(images[:split], labels[:split]), batch_size=64, shuffle=True)
    test_loader = DataLoader(TensorDataset(images[split:], labels[split:]), batch_size=1000)
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    monitor = TrainingMonitor(model, optimizer, device=device)  # monitor
    with monitor.watch(args.runs_dir, name="mnist-style", planned_epochs=args.epochs,  # monitor
                       batches_per_epoch=len(train_loader), config=vars(args)):  # monitor
        for _epoch in range(args.epochs):
            if not train(model, device, train_loader, optimizer, monitor):
                break
            monitor.log_epoch(*test(model, device, test_loader))  # monitor
            scheduler.step()
    print(monitor.message)


if __name__ == "__main__":
    main()
