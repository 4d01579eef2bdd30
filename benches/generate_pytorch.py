"""PyTorch twin of benches/generate.rs: the same GPT (token + learned
position embeddings, pre-LN GELU nn.TransformerEncoder blocks, final
LayerNorm, linear head) decoding greedily by recomputing the window every
step (nn.TransformerEncoder has no key/value cache). Prints the torch
version line, then `recompute MS_PER_TOKEN`.

usage: python3 benches/generate_pytorch.py [NEW]
"""
import sys
import time

import torch
import torch.nn as nn

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 65, 256, 4, 4, 128


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Embedding(CONTEXT, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, ids):
        n = ids.shape[1]
        x = self.tok(ids) + self.pos.weight[:n]
        mask = nn.Transformer.generate_square_subsequent_mask(n)
        return self.head(self.ln(self.blocks(x, mask=mask, is_causal=True)))


def main():
    new = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    print(f"torch {torch.__version__} on cpu, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    model = Gpt().eval()
    tokens = [(i * 7) % VOCAB for i in range(16)]

    def run(n, toks):
        toks = list(toks)
        with torch.no_grad():
            for _ in range(n):
                window = torch.tensor([toks[-CONTEXT:]])
                toks.append(int(model(window)[0, -1].argmax()))
        return toks

    run(4, tokens)
    t0 = time.perf_counter()
    run(new, tokens)
    print(f"recompute {(time.perf_counter() - t0) * 1000 / new:.4f}")


if __name__ == "__main__":
    main()
