#!/usr/bin/env python3
"""A small float64 NumPy reference of the llama2.c model and tokenizer.

Independent of the engine: it reads the llama2.c checkpoint format directly and runs the forward
pass in float64, so its logits are a reference for the engine's f32 CPU and CUDA paths.

Checkpoint layout (llama2.c "version 0" export, little-endian):
  int32 x7:   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
              (vocab_size < 0 means the classifier is NOT shared with the embedding)
  float32:    token_embedding[vocab, dim]
              rms_att[L, dim]
              wq[L, dim, dim]  wk[L, kv_dim, dim]  wv[L, kv_dim, dim]  wo[L, dim, dim]
              rms_ffn[L, dim]
              w1[L, hidden, dim]  w2[L, dim, hidden]  w3[L, hidden, dim]
              rms_final[dim]
              freq_cis_real[seq_len, head_size/2]  freq_cis_imag[seq_len, head_size/2]  (unused)
              wcls[vocab, dim]  (only when untied)
  All matrices are [out, in] (y = W x).

Forward: RMSNorm (eps 1e-5), RoPE on adjacent pairs (2i, 2i+1) of each head with
theta 10000 and frequency theta^(-2i/head_size), grouped-query attention (query head h uses
KV head h // (n_heads / n_kv_heads)), SwiGLU FFN: w2(silu(w1 x) * w3 x).

Tokenizer (tok512.bin): int32 max_token_length, then per token: float32 score, int32 len,
len bytes. Encoding follows llama2.c run.c: optional BOS (1), then the id of the piece " "
(the SentencePiece dummy prefix) when the text is non-empty, then one token per UTF-8
code point (byte fallback: byte + 3), then repeatedly merge the adjacent pair whose
concatenation is a vocab piece with the highest score (first such pair on ties).

Usage: python3 llama2c_numpy.py [--prompt "Once upon a time"] [--steps 64]
"""
import argparse
import os
import struct

import numpy as np

DATA = os.environ.get("IGNIS_SHARED_DATA", "/work/shared/data")


class Config:
    def __init__(self, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len):
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.shared = vocab_size > 0
        self.vocab_size = abs(vocab_size)
        self.seq_len = seq_len
        self.head_size = dim // n_heads
        self.kv_dim = self.head_size * n_kv_heads

    def as_dict(self):
        return {k: getattr(self, k) for k in ("dim", "hidden_dim", "n_layers", "n_heads",
                                              "n_kv_heads", "vocab_size", "seq_len", "shared")}


def load_checkpoint(path):
    """Returns (Config, dict of float64 arrays)."""
    raw = open(path, "rb").read()
    hdr = struct.unpack("<7i", raw[:28])
    cfg = Config(*hdr)
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    L, d, h, kv, V = cfg.n_layers, cfg.dim, cfg.hidden_dim, cfg.kv_dim, cfg.vocab_size
    hs = cfg.head_size
    shapes = [
        ("tok_emb", (V, d)),
        ("rms_att", (L, d)),
        ("wq", (L, d, d)),
        ("wk", (L, kv, d)),
        ("wv", (L, kv, d)),
        ("wo", (L, d, d)),
        ("rms_ffn", (L, d)),
        ("w1", (L, h, d)),
        ("w2", (L, d, h)),
        ("w3", (L, h, d)),
        ("rms_final", (d,)),
        ("freq_cis_real", (cfg.seq_len, hs // 2)),
        ("freq_cis_imag", (cfg.seq_len, hs // 2)),
    ]
    if not cfg.shared:
        shapes.append(("wcls", (V, d)))
    w = {}
    off = 0
    for name, shp in shapes:
        n = int(np.prod(shp))
        if off + n > data.size:
            raise ValueError(f"{path}: truncated at tensor {name}")
        w[name] = data[off:off + n].reshape(shp).astype(np.float64)
        off += n
    if off != data.size:
        raise ValueError(f"{path}: {data.size - off} trailing floats")
    if cfg.shared:
        w["wcls"] = w["tok_emb"]
    return cfg, w


def rmsnorm(x, weight, eps=1e-5):
    # x: [T, d]
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_interleaved(x, positions, head_size, theta=10000.0):
    """x: [T, n_heads, head_size]; rotates pairs (2i, 2i+1) by pos * theta^(-2i/head_size)."""
    i = np.arange(0, head_size, 2, dtype=np.float64)
    freq = theta ** (-i / head_size)                       # [hs/2]
    ang = positions[:, None].astype(np.float64) * freq[None, :]  # [T, hs/2]
    c = np.cos(ang)[:, None, :]
    s = np.sin(ang)[:, None, :]
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, w, tokens):
    """Logits [T, vocab] (float64) for tokens at positions 0..T-1 with causal attention."""
    tokens = np.asarray(tokens, dtype=np.int64)
    T = tokens.size
    hs, nh, nkv = cfg.head_size, cfg.n_heads, cfg.n_kv_heads
    group = nh // nkv
    pos = np.arange(T)
    x = w["tok_emb"][tokens]                                # [T, d]
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(cfg.n_layers):
        hn = rmsnorm(x, w["rms_att"][l])
        q = (hn @ w["wq"][l].T).reshape(T, nh, hs)
        k = (hn @ w["wk"][l].T).reshape(T, nkv, hs)
        v = (hn @ w["wv"][l].T).reshape(T, nkv, hs)
        q = rope_interleaved(q, pos, hs)
        k = rope_interleaved(k, pos, hs)
        att_out = np.empty((T, nh, hs))
        for hd in range(nh):
            kh = hd // group
            sc = q[:, hd, :] @ k[:, kh, :].T / np.sqrt(hs) + mask
            sc = sc - sc.max(axis=-1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=-1, keepdims=True)
            att_out[:, hd, :] = p @ v[:, kh, :]
        x = x + att_out.reshape(T, -1) @ w["wo"][l].T
        hn = rmsnorm(x, w["rms_ffn"][l])
        x = x + (silu(hn @ w["w1"][l].T) * (hn @ w["w3"][l].T)) @ w["w2"][l].T
    x = rmsnorm(x, w["rms_final"])
    return x @ w["wcls"].T


class Tokenizer:
    def __init__(self, path, vocab_size):
        raw = open(path, "rb").read()
        (self.max_token_length,) = struct.unpack_from("<i", raw, 0)
        off = 4
        self.pieces, self.scores = [], []
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", raw, off)
            off += 8
            self.pieces.append(raw[off:off + n])
            self.scores.append(score)
            off += n
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            self.lookup.setdefault(p, i)   # first id wins, as a sorted bsearch would be ambiguous

    def encode(self, text, bos=True, eos=False):
        ids = []
        if bos:
            ids.append(1)
        if text:
            ids.append(self.lookup[b" "])
        for ch in text:
            b = ch.encode("utf-8")
            if b in self.lookup:
                ids.append(self.lookup[b])
            else:
                ids.extend(x + 3 for x in b)
        start = 1 if bos else 0
        while True:
            best, best_i, best_id = -1e10, -1, -1
            for i in range(start, len(ids) - 1):
                cand = self.pieces[ids[i]] + self.pieces[ids[i + 1]]
                j = self.lookup.get(cand)
                if j is not None and self.scores[j] > best:
                    best, best_i, best_id = self.scores[j], i, j
            if best_i < 0:
                break
            ids[best_i:best_i + 2] = [best_id]
        if eos:
            ids.append(2)
        return ids

    def piece_bytes(self, prev, tok):
        """Bytes run.c prints for `tok` after `prev` (strips the leading space after BOS)."""
        p = self.pieces[tok]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            try:
                return bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        return p

    def decode(self, ids, prev=None):
        out = b""
        for t in ids:
            out += self.piece_bytes(prev, t)
            prev = t
        return out.decode("utf-8", errors="replace")


def greedy(cfg, w, prompt_ids, steps):
    """Returns (sequence ids, logits [len(prompt)+steps-1, vocab]) with full recompute."""
    seq = list(prompt_ids)
    for _ in range(steps):
        logits = forward(cfg, w, seq)
        seq.append(int(np.argmax(logits[-1])))
    return seq, forward(cfg, w, seq[:-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(DATA, "stories260K.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(DATA, "tok512.bin"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    cfg, w = load_checkpoint(a.model)
    tok = Tokenizer(a.tokenizer, cfg.vocab_size)
    ids = tok.encode(a.prompt)
    print("config", cfg.as_dict())
    print("prompt ids", ids)
    seq, _ = greedy(cfg, w, ids, a.steps)
    print("generated ids", seq[len(ids):])
    print(tok.decode(seq[1:], prev=seq[0]))


if __name__ == "__main__":
    main()
