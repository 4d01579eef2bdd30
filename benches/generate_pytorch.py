"""PyTorch twin of benches/generate.rs: the GPT of benches/sequence_pytorch.py
(token + learned position embeddings, pre-LN GELU blocks, final LayerNorm,
linear head) at the generation bench's sizes, decoding greedily by
recomputing the window every step (nn.TransformerEncoderLayer has no
key/value cache). Prints the torch version line, then
`recompute MS_PER_TOKEN`.

usage: python3 benches/generate_pytorch.py [NEW]
"""
import sys
import time

import torch

from sequence_pytorch import Gpt

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 65, 256, 4, 4, 128


def main():
    new = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    print(f"torch {torch.__version__} on cpu, {torch.get_num_threads()} threads")
    model = Gpt(VOCAB, CONTEXT, LAYERS, HEADS, WIDTH, 4 * WIDTH).eval()
    prompt = [(i * 7) % VOCAB for i in range(16)]

    def run(n):
        toks = list(prompt)
        with torch.no_grad():
            for _ in range(n):
                window = torch.tensor([toks[-CONTEXT:]])
                toks.append(int(model(window)[0, -1].argmax()))
        return toks

    run(4)
    t0 = time.perf_counter()
    run(new)
    print(f"recompute {(time.perf_counter() - t0) * 1000 / new:.4f}")


if __name__ == "__main__":
    main()
