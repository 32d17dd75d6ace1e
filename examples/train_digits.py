"""Train a small ECA-ResNet on real handwritten digits, twice from one seed: with the fused
``eca_cuda.ECA`` and with the pure-PyTorch reference layer, and compare the two runs.

Data: scikit-learn's bundled ``load_digits()`` (1,797 8x8 grey-scale digits, 10 classes;
shipped inside the package, nothing is downloaded), split 75/25 stratified.
Prints per-epoch loss and test accuracy of both runs, the largest difference between them,
and seconds per epoch. Exits non-zero if either run ends below --target accuracy.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import eca_cuda


class BasicBlock(nn.Module):
    """ResNet basic block with ECA after the second BN, as in ECA-ResNet-18/34."""

    def __init__(self, in_channels: int, channels: int, stride: int, eca_layer: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.eca = eca_layer(channels=channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.eca(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class DigitsECAResNet(nn.Module):
    """(N, 1, 8, 8) -> (N, 10) logits; three stages of 32/64/128 channels at 8x8/4x4/2x2."""

    def __init__(self, eca_layer: type[nn.Module]):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.stages = nn.Sequential(
            BasicBlock(32, 32, 1, eca_layer),
            BasicBlock(32, 64, 2, eca_layer),
            BasicBlock(64, 128, 2, eca_layer),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def load_data(device: str, channels_last: bool):
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=0.25, stratify=digits.target, random_state=0
    )
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = ((images - mean) / std).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = labels.to(device)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


class Run:
    """One training run: model, optimiser and its per-epoch history."""

    def __init__(
        self,
        name: str,
        eca_layer,
        seed: int,
        device: str,
        channels_last: bool,
        lr: float,
        epochs: int,
    ):
        torch.manual_seed(seed)
        self.name = name
        self.model = DigitsECAResNet(eca_layer).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=lr, total_steps=epochs, pct_start=0.2
        )
        self.history = []

    def train_epoch(self, train, batch_size: int, order: torch.Tensor):
        images, labels = train
        self.model.train()
        start = time.perf_counter()
        total_loss = 0.0
        for begin in range(0, len(order), batch_size):
            idx = order[begin : begin + batch_size]
            loss = F.cross_entropy(self.model(images[idx]), labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item() * len(idx)
        self.scheduler.step()
        seconds = time.perf_counter() - start
        return total_loss / len(order), seconds

    @torch.no_grad()
    def accuracy(self, test) -> float:
        images, labels = test
        self.model.eval()
        return (self.model(images).argmax(1) == labels).float().mean().item()


def max_param_diff(a: Run, b: Run) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.model.parameters(), b.model.parameters())
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--target", type=float, default=0.95, help="test accuracy both runs must reach"
    )
    args = parser.parse_args(argv)

    train, test = load_data(args.device, args.channels_last)
    print(
        f"digits: {len(train[1])} train / {len(test[1])} test images (scikit-learn load_digits), "
        f"device {args.device}, torch {torch.__version__}, channels_last={args.channels_last}"
    )
    runs = [
        Run(name, layer, args.seed, args.device, args.channels_last, args.lr, args.epochs)
        for name, layer in (("eca_cuda", eca_cuda.ECA), ("reference", eca_cuda.reference.ECA))
    ]
    print(
        f"{'epoch':>5} | {'loss eca_cuda':>13} {'loss reference':>14} | {'acc eca_cuda':>12} "
        f"{'acc reference':>13} | {'s/epoch eca_cuda':>16} {'s/epoch reference':>17} | max |param diff|"
    )
    shuffle = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(train[1]), generator=shuffle).to(
            args.device
        )  # same for both runs
        row = []
        for run in runs:
            loss, seconds = run.train_epoch(train, args.batch_size, order)
            run.history.append((loss, run.accuracy(test), seconds))
            row.append(run.history[-1])
        (la, aa, sa), (lb, ab, sb) = row
        # Rounding-level differences (~1e-7) grow only through training's own sensitivity.
        param_diff = max_param_diff(*runs)
        print(
            f"{epoch:>5} | {la:>13.5f} {lb:>14.5f} | {aa:>12.2%} {ab:>13.2%} | {sa:>16.3f} "
            f"{sb:>17.3f} | {param_diff:.2e}"
        )

    ours, ref = runs
    loss_diff = max(abs(a[0] - b[0]) for a, b in zip(ours.history, ref.history))
    acc_diff = max(abs(a[1] - b[1]) for a, b in zip(ours.history, ref.history))
    print(
        f"largest difference between the runs: loss {loss_diff:.2e}, test accuracy {acc_diff:.2%}, "
        f"any parameter after training {max_param_diff(*runs):.2e}"
    )
    ok = True
    for run in runs:
        final = run.history[-1][1]
        mean_s = sum(h[2] for h in run.history) / len(run.history)
        passed = final >= args.target
        ok &= passed
        print(
            f"{run.name}: final test accuracy {final:.2%} ({'>=' if passed else '<'} {args.target:.0%}), "
            f"{mean_s:.3f} s/epoch"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
