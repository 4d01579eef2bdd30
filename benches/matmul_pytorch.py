"""The products of benches/matmul.rs timed in PyTorch (f32, TF32 off), for
the ratio printed by that bench (run by it; by hand:
python3 benches/matmul_pytorch.py [--device cuda] [--dtype f16]; f16 is
what autocast runs, on tensor cores on CUDA).
Prints one header line, then `MxKxN gflops` lines (best of two batches of
about a second, after a warm-up, as the bench does)."""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cpu")
ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
args = ap.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(a, b, iters):
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    return time.perf_counter() - t


torch.manual_seed(7)
for m, k, n in [(256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048)]:
    dtype = torch.float16 if args.dtype == "f16" else torch.float32
    a = (torch.rand(m, k, device=dev) * 2 - 1).to(dtype)
    b = (torch.rand(k, n, device=dev) * 2 - 1).to(dtype)
    timed(a, b, 1)
    once = max(timed(a, b, 1), 1e-6)
    iters = min(max(int(1.0 / once), 1), 500)
    t = min(timed(a, b, iters), timed(a, b, iters))
    print(f"{m}x{k}x{n} {2 * m * k * n * iters / t / 1e9:.3f}")
