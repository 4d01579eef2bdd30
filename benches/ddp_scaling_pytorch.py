"""PyTorch's twin of benches/ddp_scaling.rs: ResNet-20 training steps under
DistributedDataParallel (gloo, CPU), each rank one thread pinned to one
core, one rank against two at the same per-rank batch. By hand:
python3 benches/ddp_scaling_pytorch.py BATCH STEPS
Prints one header line, then `ranksN IMAGES_PER_SECOND` lines."""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, "tests/fixtures")
from gen_resnet import ResNet  # noqa: E402  (the same definition as the fixture)

WARMUP = 2


def rank_main(rank, world, batch, steps, port, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[rank % len(cores)]})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(ResNet(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.manual_seed(1 + rank)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.arange(batch) % 10

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(WARMUP):
        step()
    dist.barrier()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    secs = time.perf_counter() - t
    if rank == 0:
        results.put(batch * steps * world / secs)
    dist.destroy_process_group()


def main():
    batch, steps = int(sys.argv[1]), int(sys.argv[2])
    print(f"torch {torch.__version__}, DDP gloo on CPU, 1 thread per rank")
    ctx = mp.get_context("spawn")
    for world in (1, 2):
        results = ctx.SimpleQueue()
        mp.spawn(rank_main, args=(world, batch, steps, 29500 + world, results), nprocs=world, join=True)
        print(f"ranks{world} {results.get():.2f}")


if __name__ == "__main__":
    main()
