#!/usr/bin/env python3
"""BIOT in plain PyTorch: the independent reference for `src/models/biot.rs`.

Written from BIOT's `model/biot.py` (ycq091044/BIOT, MIT) and lucidrains'
`linear_attention_transformer` (the global, non-causal `linear_attn` path), without either
package: `torch.stft(center=False, onesided=True)` with no window (= rectangular, as BIOT calls
it), Linear(n_fft/2+1 -> d), learned channel embedding, sinusoidal positions per channel, all
channels concatenated, pre-LayerNorm linear-attention blocks, mean pooling, ELU + Linear head.
Parameter names match the Rust model's var store, so its safetensors load strictly.

Usage:
  biot_torch.py logits --config M.toml --weights W.safetensors --input X.safetensors --out Y.safetensors
      reads tensor "x" [B, C, L] (and optional int "channel_offset"), writes "logits",
      "embedding" and "stft" (eval mode, fp32).
  biot_torch.py bench --config M.toml --batch B --channels C --samples L [--steps S --warmup W]
      times full training steps (forward, cross-entropy, backward, Adam) on random data on the CPU;
      prints one JSON line {"samples_per_s": ...}.
"""
import argparse
import json
import math
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(d_model=256, n_layer=4, n_head=8, n_fft=200, hop=100, n_channels=18,
                n_classes=2, ff_mult=4, attn_dropout=0.2, pos_dropout=0.1, max_frames=1000)


def load_config(path):
    with open(path, "rb") as f:
        cfg = dict(DEFAULTS)
        cfg.update(tomllib.load(f))
    return cfg


class Block(nn.Module):
    def __init__(self, d, heads, mult, dropout):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.ModuleDict(dict(
            to_q=nn.Linear(d, d, bias=False), to_k=nn.Linear(d, d, bias=False),
            to_v=nn.Linear(d, d, bias=False), to_out=nn.Linear(d, d)))
        self.drop = nn.Dropout(dropout)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = nn.ModuleDict(dict(w1=nn.Linear(d, mult * d), w2=nn.Linear(mult * d, d)))

    def forward(self, x):
        b, n, d = x.shape
        h = self.attn_norm(x)
        split = lambda t: t.reshape(b, n, self.heads, -1).transpose(1, 2)
        q, k, v = (split(self.attn[name](h)) for name in ("to_q", "to_k", "to_v"))
        # lucidrains linear_attn
        dh = q.shape[-1]
        q = q.softmax(dim=-1) * dh ** -0.5
        k = k.softmax(dim=-2)
        context = torch.einsum("bhnd,bhne->bhde", k, v)
        a = torch.einsum("bhnd,bhde->bhne", q, context)
        a = a.transpose(1, 2).reshape(b, n, d)
        x = x + self.drop(self.attn["to_out"](a))
        return x + self.ff["w2"](F.gelu(self.ff["w1"](self.ff_norm(x))))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.n_fft, self.hop = c["n_fft"], c["hop"]
        self.patch_embedding = nn.Linear(self.n_fft // 2 + 1, d)
        self.channel_tokens = nn.Embedding(c["n_channels"], d)
        pe = torch.zeros(c["max_frames"], d)
        position = torch.arange(0, c["max_frames"]).unsqueeze(1).float()
        div_term = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe, persistent=False)
        self.pos_drop = nn.Dropout(c["pos_dropout"])
        self.layers = nn.ModuleList(
            Block(d, c["n_head"], c["ff_mult"], c["attn_dropout"]) for _ in range(c["n_layer"]))

    def stft(self, sample):
        spec = torch.stft(sample, n_fft=self.n_fft, hop_length=self.hop, center=False,
                          onesided=True, return_complex=True)
        return torch.abs(spec)  # [B, F, T]

    def forward(self, x, channel_offset=0, keep_stft=None):
        seq = []
        for i in range(x.shape[1]):
            spec = self.stft(x[:, i, :])
            if keep_stft is not None:
                keep_stft.append(spec.permute(0, 2, 1))
            e = self.patch_embedding(spec.permute(0, 2, 1))
            e = e + self.channel_tokens.weight[i + channel_offset][None, None, :]
            e = self.pos_drop(e + self.pe[None, : e.shape[1]])
            seq.append(e)
        h = torch.cat(seq, dim=1)
        for layer in self.layers:
            h = layer(h)
        return h.mean(dim=1)


class Biot(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.encoder = Encoder(c)
        self.head = nn.Linear(c["d_model"], c["n_classes"])

    def forward(self, x, channel_offset=0, keep_stft=None):
        emb = self.encoder(x, channel_offset, keep_stft)
        return self.head(F.elu(emb)), emb


def cmd_logits(a):
    from safetensors.torch import load_file, save_file
    cfg = load_config(a.config)
    model = Biot(cfg)
    model.load_state_dict(load_file(a.weights), strict=True)
    model.eval()
    inp = load_file(a.input)
    off = int(inp["channel_offset"].item()) if "channel_offset" in inp else 0
    stft = []
    with torch.no_grad():
        logits, emb = model(inp["x"].float(), off, stft)
    save_file({"logits": logits.contiguous(), "embedding": emb.contiguous(),
               "stft": torch.stack(stft, 1).contiguous()}, a.out)


def cmd_bench(a):
    cfg = load_config(a.config)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Biot(cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(a.batch, a.channels, a.samples)
    y = torch.randint(0, cfg["n_classes"], (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps(dict(samples_per_s=a.batch * a.steps / dt, seconds=dt, steps=a.steps,
                          threads=torch.get_num_threads(), torch=torch.__version__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits")
    for k in ("config", "weights", "input", "out"):
        lg.add_argument("--" + k, required=True)
    bn = sub.add_parser("bench")
    bn.add_argument("--config", required=True)
    for k, v in (("batch", 8), ("channels", 16), ("samples", 2000), ("steps", 5), ("warmup", 2), ("threads", 0)):
        bn.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    {"logits": cmd_logits, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
