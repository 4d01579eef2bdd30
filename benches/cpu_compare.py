"""The CPU backend beside PyTorch CPU: the medians of alternated runs that
docs/performance.md's CPU table reports (issue 45's measure).

python3 benches/cpu_compare.py [--rounds 5] [--only resnet,conv,sequence,matmul,mnist]
    [--checkout DIR=TARGET_DIR ...] [--isa avx2]

Each round runs every bench once (in turn, so a slow spell of a shared VM
falls on all of them), and each bench already times wgrad and then its
PyTorch twin in the same run. Prints, per workload, the median wgrad and
PyTorch figures, the median of the per-run ratios and their range. Needs
`python3` with torch (the benches call their PyTorch scripts) and builds
the release benches first; WGRAD_DEVICE=cpu is set for the runs.

`--checkout DIR=TARGET_DIR` (repeatable) measures other checkouts too,
each with its own target directory (cargo must not share one between
worktrees), in the same rounds: a before/after table from one session.

`--isa avx2` measures an AVX2 host on an AVX-512 one: both sides capped
at AVX2 + FMA (wgrad: `WGRAD_CPU_SIMD=avx2`, and `matrixmultiply` built
with `MMTEST_FEATURE`, a compile-time switch, so in `<target>-isa-avx2`;
PyTorch: `ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA`,
`MKL_ENABLE_INSTRUCTIONS`). On a Zen 4 host both widths have the same
multiply-add throughput (AVX-512 runs as two 256-bit halves), so this
stands in for a Zen 3 class AVX2 host, not for an older, slower one.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--only", default="resnet,conv,sequence,matmul,mnist")
ap.add_argument("--checkout", action="append", default=[])
ap.add_argument("--isa", choices=["host", "avx2"], default="host")
args = ap.parse_args()
only = args.only.split(",")
env = dict(os.environ, WGRAD_DEVICE="cpu")
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if args.isa == "avx2":
    env.update(
        WGRAD_CPU_SIMD="avx2",
        MMTEST_FEATURE="sse,sse2,avx,avx2,fma",
        CARGO_TARGET_DIR=env.get("CARGO_TARGET_DIR", os.path.join(here, "target")) + "-isa-avx2",
        ATEN_CPU_CAPABILITY="avx2",
        ONEDNN_MAX_CPU_ISA="AVX2",
        MKL_ENABLE_INSTRUCTIONS="AVX2",
    )
# (label, directory, environment) of every checkout measured.
checkouts = [("this checkout", here, env)] + [
    (d, d, dict(env, CARGO_TARGET_DIR=t + ("-isa-avx2" if args.isa == "avx2" else ""))) for d, t in (c.split("=", 1) for c in args.checkout)
]
cwd, cur_env = here, env


def run(cmd):
    out = subprocess.run(cmd, env=cur_env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return out.stdout + out.stderr


def floats(line):
    return [float(t.rstrip("x")) for t in line.split() if re.fullmatch(r"-?[0-9.]+x?", t)]


def resnet():
    # batch mode gpu compiled first dispatches rec all texture peak cpu pytorch ...
    for line in run(["cargo", "bench", "-q", "--bench", "resnet", "--", "32"]).splitlines():
        if line.startswith("32 "):
            v = floats(line)
            yield "ResNet-20 step, batch 32 (ms)", v[9], v[10]


def conv():
    text = run(["cargo", "bench", "-q", "--bench", "conv"])
    for line in text.splitlines():
        for key, name in [("conv2d 3x3", "conv 3x3 64->64 32x32 N=32, fwd+bwd (ms)"), ("batch_norm + relu", "batch norm + ReLU, fwd+bwd (ms)")]:
            if line.startswith(key):
                # ... gpu dispatches cpu pytorch gpu/torch cpu/torch
                v = floats(line)
                yield name, v[-4], v[-3]


def sequence():
    for line in run(["cargo", "bench", "-q", "--bench", "sequence", "--", "--steps", "5"]).splitlines():
        # bench, wgrad ms, compiled ms, first step s, pytorch ms, ratio (the
        # host-cost table below it has no ratio column).
        m = re.match(r"^(lstm|transformer) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +[0-9.]+x", line)
        if m:
            yield f"{'LSTM' if m[1] == 'lstm' else 'Transformer'} step (ms)", float(m[2]), float(m[5])


def matmul():
    for line in run(["cargo", "bench", "-q", "--bench", "matmul"]).splitlines():
        m = re.match(r"^ +([0-9]+x[0-9]+x[0-9]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) ", line)
        if m:
            # GFLOP/s: higher is better, so the ratio is PyTorch's over ours.
            yield f"matmul {m[1]} (GFLOP/s)", float(m[3]), float(m[4])


def mnist():
    ours = run(["cargo", "run", "-q", "--release", "--example", "mnist", "--", "--epochs", "2", "--out-dir", "target/cpu_compare_mnist"])
    # The epoch summary ends "... samples/s  12.3s".
    secs = [float(m[1]) for m in re.finditer(r"^epoch +[0-9]+/[0-9]+ .* samples/s +([0-9.]+)s$", ours, re.M)]
    theirs = run([sys.executable, "examples/mnist_pytorch.py", "--epochs", "2"])
    torch_s = [float(m[1]) for m in re.finditer(r"^epoch [0-9]+: ([0-9.]+) s", theirs, re.M)]
    if secs and torch_s:
        # The second epoch: the first pays for start-up on both sides.
        yield "MNIST CNN epoch, the README's main job (s)", secs[-1], torch_s[-1]


benches = {"resnet": resnet, "conv": conv, "sequence": sequence, "matmul": matmul, "mnist": mnist}
results = {}
for label, cwd, cur_env in checkouts:
    build = ["cargo", "bench", "--no-run", "-q", "--bench", "resnet", "--bench", "conv", "--bench", "sequence", "--bench", "matmul"]
    subprocess.run(build, env=cur_env, cwd=cwd, check=True)
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "mnist"], env=cur_env, cwd=cwd, check=True)
for r in range(args.rounds):
    for label, cwd, cur_env in checkouts:
        for name in only:
            for workload, ours, theirs in benches[name]():
                results.setdefault(workload, {}).setdefault(label, []).append((ours, theirs))
    print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)

lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
isa = "" if args.isa == "host" else f", both sides capped at {args.isa}"
print(f"host: {model}, {os.cpu_count()} cores{isa}; medians of {args.rounds} alternated runs")
# The ratio is wgrad's time over PyTorch's (for GFLOP/s rows PyTorch's
# throughput over wgrad's): below 1 wgrad is faster.
print(f"{'workload':<44} {'checkout':<16} {'wgrad':>9} {'PyTorch':>9} {'ratio':>7} {'ratio range':>13}")
med = statistics.median
for workload, by_checkout in results.items():
    for label, pairs in by_checkout.items():
        # GFLOP/s: higher is better, so the ratio is PyTorch's over ours.
        ratios = [(t / o if "GFLOP/s" in workload else o / t) for o, t in pairs]
        row = f"{med([o for o, _ in pairs]):>9.1f} {med([t for _, t in pairs]):>9.1f} {med(ratios):>6.2f}x"
        print(f"{workload:<44} {label[-16:]:<16} {row} {min(ratios):>6.2f}-{max(ratios):.2f}x")
