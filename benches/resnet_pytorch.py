"""The ResNet-20 training step of benches/resnet.rs, timed in PyTorch (CPU) for
comparison. Run by hand: python3 benches/resnet_pytorch.py [BATCH...]"""
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, "tests/fixtures")
from gen_resnet import ResNet  # noqa: E402  (the same definition as the fixture)

torch.manual_seed(0)
for batch in [int(a) for a in sys.argv[1:]] or [32, 128]:
    model = ResNet(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.arange(batch) % 10

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    step()
    t = time.perf_counter()
    for _ in range(10):
        step()
    ms = (time.perf_counter() - t) * 1e3 / 10
    print(f"batch {batch}: {ms:.1f} ms/step, {batch / ms * 1e3:.1f} img/s (torch {torch.__version__}, {torch.get_num_threads()} threads)")
