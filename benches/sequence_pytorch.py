"""PyTorch (CPU) timings of the two sequence benchmarks in benches/sequence.rs,
with the same shapes: prints one line per benchmark, `NAME ms_per_step`.

  LSTM:        input 128, hidden 256, seq 64, batch 32; forward + backward + Adam.
  Transformer: GPT of 2 pre-LN blocks, d_model 256, 4 heads, FFN 1024, seq 128,
               batch 16, vocab 256; forward + backward + AdamW.
  GPT (only when named): 12 blocks, d_model 768, 12 heads, FFN 3072, context 256,
               batch 8, vocab 256.

With --amp, each also runs as `NAME-amp`: the forward under autocast (f16) and
the loss scaled by a GradScaler.

python3 benches/sequence_pytorch.py [lstm] [transformer] [gpt] [--amp] [--steps N] [--device cuda]

On CUDA: fp32 with TF32 off, and the clock is read after a synchronize.
"""
import sys
import time

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = torch.device("cpu")


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(step, steps):
    step()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t) * 1e3 / steps


def train_step(amp, model_loss, opt):
    """One step: the loss under autocast (f16) with a GradScaler when amp."""
    scaler = torch.amp.GradScaler(DEV.type, enabled=amp)

    def step():
        with torch.autocast(DEV.type, dtype=torch.float16, enabled=amp):
            loss = model_loss()
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def lstm(steps, amp):
    m = nn.LSTM(128, 256).to(DEV)
    x = torch.randn(64, 32, 128, device=DEV)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    return timed(train_step(amp, lambda: m(x)[0].pow(2).mean(), opt), steps)


class Gpt(nn.Module):
    def __init__(self, vocab=256, context=128, layers=2, heads=4, width=256, ffn=1024):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, ffn, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids):
        L = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb.weight[:L]
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=ids.device)
        for b in self.blocks:
            x = b(x, src_mask=mask, is_causal=True)
        return self.head(self.ln_f(x))


def gpt(steps, amp, layers, width, context, batch):
    m = Gpt(context=context, layers=layers, heads=width // 64, width=width, ffn=4 * width).to(DEV)
    ids = torch.randint(0, 256, (batch, context), device=DEV)
    tgt = torch.randint(0, 256, (batch, context), device=DEV)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    loss = lambda: nn.functional.cross_entropy(m(ids).reshape(-1, 256).float(), tgt.reshape(-1))
    return timed(train_step(amp, loss, opt), steps)


BENCHES = {
    "lstm": lstm,
    "transformer": lambda steps, amp: gpt(steps, amp, 2, 256, 128, 16),
    "gpt": lambda steps, amp: gpt(steps, amp, 12, 768, 256, 8),
}


if __name__ == "__main__":
    args = sys.argv[1:]
    steps = 10
    if "--steps" in args:
        steps = int(args[args.index("--steps") + 1])
    if "--device" in args:
        DEV = torch.device(args[args.index("--device") + 1])
    names = [a for a in args if a in BENCHES] or ["lstm", "transformer"]
    print(f"torch {torch.__version__} on {DEV}, {torch.get_num_threads()} threads", flush=True)
    for n in names:
        for amp in [False, True] if "--amp" in args else [False]:
            print(n + ("-amp" if amp else ""), f"{BENCHES[n](steps, amp):.2f}", flush=True)
