"""PyTorch twin of benches/generate.rs: the GPT of benches/sequence_pytorch.py
(token + learned position embeddings, pre-LN GELU blocks, final LayerNorm,
linear head) at the generation bench's sizes, decoding greedily by
recomputing the window every step (nn.TransformerEncoderLayer has no
key/value cache). Prints the torch version line, then
`recompute MS_PER_TOKEN`.

usage: python3 benches/generate_pytorch.py [NEW] [--device cuda]
"""
import sys
import time

import torch

import sequence_pytorch
from sequence_pytorch import Gpt

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 65, 256, 4, 4, 128


def main():
    args = sys.argv[1:]
    dev = torch.device("cpu")
    if "--device" in args:
        i = args.index("--device")
        dev = torch.device(args[i + 1])
        del args[i : i + 2]
    sequence_pytorch.DEV = dev
    torch.backends.cuda.matmul.allow_tf32 = False
    new = int(args[0]) if args else 128
    print(f"torch {torch.__version__} on {dev}, {torch.get_num_threads()} threads")
    model = Gpt(VOCAB, CONTEXT, LAYERS, HEADS, WIDTH, 4 * WIDTH).to(dev).eval()
    prompt = [(i * 7) % VOCAB for i in range(16)]

    def run(n):
        toks = list(prompt)
        with torch.no_grad():
            for _ in range(n):
                window = torch.tensor([toks[-CONTEXT:]], device=dev)
                toks.append(int(model(window)[0, -1].argmax()))
        return toks

    run(4)
    sequence_pytorch.sync()
    t0 = time.perf_counter()
    run(new)
    sequence_pytorch.sync()
    print(f"recompute {(time.perf_counter() - t0) * 1000 / new:.4f}")


if __name__ == "__main__":
    main()
