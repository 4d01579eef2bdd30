"""The README's main job in PyTorch, for the ratio in docs/performance.md: the
34,826-parameter CNN of examples/mnist.rs (conv 32@3x3, ReLU, max-pool 2,
conv 64@3x3, ReLU, max-pool 2, linear 1600->10), Adam lr 1e-3, batch 32,
on the bundled MNIST-10k, evaluated on its 2,004 test digits each epoch.

python3 examples/mnist_pytorch.py [--epochs 1] [--device cuda]
Prints per epoch: seconds, train loss, test accuracy; then `epoch_s SECONDS`."""
import argparse
import gzip
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--device", default="cpu")
ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "datasets", "mnist-10k"))
args = ap.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def idx(name):
    with gzip.open(os.path.join(args.data_dir, name), "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def images(name):
    return ((idx(name).float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1).to(dev)


xtr, ytr = images("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz").long().to(dev)
xte, yte = images("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz").long().to(dev)
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 10),
).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")
times = []
for epoch in range(args.epochs):
    t = time.perf_counter()
    model.train()
    perm = torch.randperm(len(ytr), device=dev)
    total = 0.0
    for i in range(0, len(ytr), args.batch_size):
        b = perm[i : i + args.batch_size]
        loss = F.cross_entropy(model(xtr[b]), ytr[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(b)
    model.eval()
    with torch.no_grad():
        correct = sum((model(xte[i : i + 500]).argmax(1) == yte[i : i + 500]).sum().item() for i in range(0, len(yte), 500))
    times.append(time.perf_counter() - t)
    print(f"epoch {epoch + 1}: {times[-1]:.2f} s, train loss {total / len(ytr):.4f}, test accuracy {100 * correct / len(yte):.2f}%")
print(f"epoch_s {sum(times) / len(times):.2f}")
