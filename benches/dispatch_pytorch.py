"""The workloads of benches/dispatch.rs, timed in PyTorch eager (CPU) for
comparison: PyTorch's own cost per op is the mark for wgrad's host cost per
launch. benches/dispatch.rs runs it in the same run. By hand:
python3 benches/dispatch_pytorch.py [--device cuda]
Prints one header line, then `chain-op us` (per op of a 1,000-op chain on a
[64] tensor, read once) and `mlp-step ms` (the 3-layer MLP training step)."""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cpu")
args = ap.parse_args()
dev = torch.device(args.device)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")
x = torch.arange(64.0, device=dev)


def chain():
    y = x
    for _ in range(1000):
        y = y + 1.0
    return y[0].item()


chain()
reps = 5
t = time.perf_counter()
for _ in range(reps):
    chain()
print(f"chain-op {(time.perf_counter() - t) / reps / 1000 * 1e6:.2f}")

torch.manual_seed(0)
p = []
for a, b in [(64, 128), (128, 128), (128, 10)]:
    p += [(torch.rand(a, b, device=dev) * 0.2 - 0.1).requires_grad_(), torch.zeros(b, device=dev, requires_grad=True)]
xb, yb = torch.randn(32, 64, device=dev), torch.randn(32, 10, device=dev)


def step():
    h = torch.relu(xb @ p[0] + p[1])
    h = torch.relu(h @ p[2] + p[3])
    loss = ((h @ p[4] + p[5] - yb) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for w in p:
            w -= w.grad * 0.01
            w.grad = None
    return loss.item()


step()
reps = 20
t = time.perf_counter()
for _ in range(reps):
    step()
sync()
print(f"mlp-step {(time.perf_counter() - t) / reps * 1e3:.3f}")
