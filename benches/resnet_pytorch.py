"""The ResNet-20 training step of benches/resnet.rs, timed in PyTorch (CPU) for
comparison; benches/resnet.rs runs it in the same run. By hand:
python3 benches/resnet_pytorch.py [BATCH...] [--device cuda] [--amp]
Prints one header line, then `bBATCH ms` lines (and `bBATCH-amp ms` lines for
the autocast f16 + GradScaler step with --amp)."""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, "tests/fixtures")
from gen_resnet import ResNet  # noqa: E402  (the same definition as the fixture)

ap = argparse.ArgumentParser()
ap.add_argument("batches", nargs="*", type=int)
ap.add_argument("--device", default="cpu")
ap.add_argument("--amp", action="store_true")
args = ap.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


torch.manual_seed(0)
print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")
for batch, amp in [(b, a) for b in (args.batches or [32, 128]) for a in ([False, True] if args.amp else [False])]:
    model = ResNet(3).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.arange(batch, device=dev) % 10
    scaler = torch.amp.GradScaler(dev.type, enabled=amp)

    def step():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()

    step()
    sync()
    t = time.perf_counter()
    for _ in range(10):
        step()
    sync()
    ms = (time.perf_counter() - t) * 1e3 / 10
    print(f"b{batch}{'-amp' if amp else ''} {ms:.2f}")
