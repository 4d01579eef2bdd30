"""The workloads of benches/conv.rs timed in PyTorch, for the ratio printed by
that bench (run by it; by hand: python3 benches/conv_pytorch.py [--device cuda]).
Prints one header line, then `name ms` lines."""
import argparse
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cpu")
ap.add_argument("--reps", type=int, default=3)
args = ap.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_ms(f):
    f()
    sync()
    t = time.perf_counter()
    for _ in range(args.reps):
        f()
    sync()
    return (time.perf_counter() - t) * 1e3 / args.reps


torch.manual_seed(0)
x = torch.randn(32, 64, 32, 32, device=dev, requires_grad=True)
w = (torch.randn(64, 64, 3, 3, device=dev) * 0.05).requires_grad_()
gy = torch.ones(32, 64, 32, 32, device=dev)


def conv():
    F.conv2d(x, w, padding=1).backward(gy)
    x.grad = None
    w.grad = None


rm, rv = torch.zeros(64, device=dev), torch.ones(64, device=dev)
gamma = torch.ones(64, device=dev, requires_grad=True)
beta = torch.zeros(64, device=dev, requires_grad=True)


def bn():
    F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5).relu().backward(gy)
    x.grad = None


# The three products op by op at the shapes benches/conv.rs times them.
def parts(c, side):
    xs = torch.randn(32, c, side, side, device=dev)
    ws = torch.randn(c, c, 3, 3, device=dev)
    gys = torch.randn(32, c, side, side, device=dev)
    back = torch.ops.aten.convolution_backward
    common = ([c], [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    return {
        "forward": lambda: F.conv2d(xs, ws, padding=1),
        "input_grad": lambda: back(gys, xs, ws, *common, [True, False, False]),
        "weight_grad": lambda: back(gys, xs, ws, *common, [False, True, False]),
    }


print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")
print(f"conv {time_ms(conv):.2f}")
print(f"batch_norm_relu {time_ms(bn):.2f}")
for c, side in [(16, 32), (32, 16), (64, 8), (64, 32)]:
    for part, f in parts(c, side).items():
        print(f"{part} {c}@{side} {time_ms(f):.3f}")
