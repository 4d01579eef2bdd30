"""The char_lstm and tiny_gpt examples in PyTorch, with the same flags, data
pipeline and budget, so a wgrad run can be compared with PyTorch's on the same
configuration (PyTorch is not a dependency of wgrad; this script is for
comparison only).

  python3 examples/text_lm_pytorch.py lstm [--steps 600 --hidden 256 ...]
  python3 examples/text_lm_pytorch.py gpt  [--steps 600 --width 128 ...]

Same as the Rust examples: character vocabulary sorted by code point, last 10%
held out; LSTM: --batch parallel streams, truncated BPTT of --seq-len with the
state carried (reset at each pass), Adam, clip_grad_norm_; GPT: random windows,
AdamW, linear warm-up then cosine to 10% of the peak, clipping; validation
loss as mean cross-entropy over the held-out text read the same way.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("model", choices=["lstm", "gpt"])
ap.add_argument("--text", default="datasets/shakespeare/tragedies.txt")
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--embed", type=int, default=64)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--width", type=int, default=128)
ap.add_argument("--seq-len", type=int, default=64)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--lr", type=float, default=None)
ap.add_argument("--weight-decay", type=float, default=0.01)
ap.add_argument("--warmup", type=int, default=50)
ap.add_argument("--clip", type=float, default=1.0)
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--eval-every", type=int, default=100)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
lr = a.lr if a.lr is not None else (2e-3 if a.model == "lstm" else 1e-3)

text = open(a.text, encoding="utf-8").read()
vocab = sorted(set(text))
lut = {c: i for i, c in enumerate(vocab)}
ids = torch.tensor([lut[c] for c in text], dtype=torch.long)
cut = len(ids) - round(len(ids) * 0.1)
train, val = ids[:cut], ids[cut:]
V = len(vocab)
print(f"corpus {a.text}: {len(ids)} chars, vocab {V}; train {len(train)} / val {len(val)}")


def streams(t, b):
    n = len(t) // b
    return t[: n * b].view(b, n)


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, a.embed)
        self.rnn = nn.LSTM(a.embed, a.hidden, a.layers, batch_first=True)
        self.head = nn.Linear(a.hidden, V)

    def forward(self, x, state=None):
        h, state = self.rnn(self.embedding(x), state)
        return self.head(h), state


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(V, a.width)
        self.pos_emb = nn.Embedding(a.seq_len, a.width)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(a.width, a.heads, 4 * a.width, dropout=0.0,
                                                               activation="gelu", batch_first=True, norm_first=True)
                                    for _ in range(a.layers))
        self.ln_f = nn.LayerNorm(a.width)
        self.head = nn.Linear(a.width, V, bias=False)

    def forward(self, x):
        L = x.shape[1]
        h = self.tok_emb(x) + self.pos_emb.weight[:L]
        mask = nn.Transformer.generate_square_subsequent_mask(L)
        for b in self.blocks:
            h = b(h, src_mask=mask, is_causal=True)
        return self.head(self.ln_f(h))


def ce(logits, y):
    return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


@torch.no_grad()
def val_loss(model):
    model.eval()
    total, n = 0.0, 0
    if a.model == "lstm":
        s = streams(val, min(a.batch, len(val) // 2))
        state = None
        for k in range(0, s.shape[1] - 1, a.seq_len):
            l = min(a.seq_len, s.shape[1] - 1 - k)
            x, y = s[:, k:k + l], s[:, k + 1:k + l + 1]
            logits, state = model(x, state)
            total += ce(logits, y).item() * y.numel()
            n += y.numel()
    else:
        L = min(a.seq_len, len(val) - 1)
        starts = list(range(0, (len(val) - 1) // L * L, L))
        for i in range(0, len(starts), a.batch):
            x = torch.stack([val[s:s + L] for s in starts[i:i + a.batch]])
            y = torch.stack([val[s + 1:s + L + 1] for s in starts[i:i + a.batch]])
            total += ce(model(x), y).item() * y.numel()
            n += y.numel()
    model.train()
    return total / n


model = Lstm() if a.model == "lstm" else Gpt()
print(f"model: {sum(p.numel() for p in model.parameters())} parameters")
if a.model == "lstm":
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    s = streams(train, a.batch)
    chunks = math.ceil((s.shape[1] - 1) / a.seq_len)
else:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=a.weight_decay)
    warm = torch.optim.lr_scheduler.LinearLR(opt, 0.01, 1.0, a.warmup)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(a.steps - a.warmup, 1), lr * 0.1)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], [a.warmup])
state = None
t0 = time.perf_counter()
run_loss, run_n = 0.0, 0
for step in range(1, a.steps + 1):
    if a.model == "lstm":
        k = (step - 1) % chunks
        if k == 0:
            state = None
        st = k * a.seq_len
        l = min(a.seq_len, s.shape[1] - 1 - st)
        x, y = s[:, st:st + l], s[:, st + 1:st + l + 1]
        logits, state = model(x, state)
        state = tuple(t.detach() for t in state)
    else:
        starts = torch.randint(0, len(train) - a.seq_len - 1, (a.batch,))
        x = torch.stack([train[i:i + a.seq_len] for i in starts])
        y = torch.stack([train[i + 1:i + a.seq_len + 1] for i in starts])
        logits = model(x)
    loss = ce(logits, y)
    opt.zero_grad()
    loss.backward()
    if a.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
    opt.step()
    if sched:
        sched.step()
    run_loss += loss.item() * y.numel()
    run_n += y.numel()
    if step % a.eval_every == 0 or step == a.steps:
        v = val_loss(model)
        el = time.perf_counter() - t0
        print(f"step {step}: train {run_loss / run_n:.4f}, val {v:.4f} nats/char (perplexity {math.exp(v):.3f}), "
              f"{el:.1f} s")
        run_loss, run_n = 0.0, 0
tokens = a.steps * a.batch * a.seq_len
print(f"{tokens / (time.perf_counter() - t0):.0f} characters/s (including evaluation)")
