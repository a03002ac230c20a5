#!/usr/bin/env python3
"""A float64 NumPy reference of a GGUF "llama" architecture model (e.g. SmolLM2-135M).

Weights are dequantized by the `gguf` Python package (pip install gguf), independent of the
engine's dequantization code. The forward pass:

  x = token_embd[tokens]
  per layer: h = rmsnorm(x) * attn_norm; q,k,v = h Wq, h Wk, h Wv; rope(q, k);
             x += softmax(q k^T / sqrt(hd) + causal) v Wo   (GQA: head h uses KV head h // group)
             h = rmsnorm(x) * ffn_norm; x += (silu(h Wgate) * h Wup) Wdown
  logits = (rmsnorm(x) * output_norm) Woutput   (Woutput = token_embd when output.weight absent)

RoPE: llama.cpp's converter permutes the rows of attn_q / attn_k so that the Hugging Face
"rotate_half" pairs (i, i + hd/2) become adjacent pairs (2i, 2i+1). So on the GGUF weights as
stored, RoPE rotates adjacent pairs ("interleaved"). `rope="half"` instead un-permutes q/k back
to the HF layout and rotates (i, i + hd/2): both must give the same logits (checked by
make_fixtures.py).
"""
import numpy as np


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


class GGUFLlama:
    def __init__(self, path, rope="interleaved", dtype=np.float64):
        from gguf import GGUFReader
        from gguf.quants import dequantize

        assert rope in ("interleaved", "half")
        self.rope = rope
        r = GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{path}: architecture {arch!r}, expected 'llama'")
        self.n_layers = int(_field(r, "llama.block_count"))
        self.dim = int(_field(r, "llama.embedding_length"))
        self.hidden = int(_field(r, "llama.feed_forward_length"))
        self.n_heads = int(_field(r, "llama.attention.head_count"))
        self.n_kv_heads = int(_field(r, "llama.attention.head_count_kv", self.n_heads))
        self.eps = float(_field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5))
        self.theta = float(_field(r, "llama.rope.freq_base", 10000.0))
        self.head_dim = self.dim // self.n_heads
        self.rope_dim = int(_field(r, "llama.rope.dimension_count", self.head_dim))
        if self.rope_dim != self.head_dim:
            raise ValueError("partial rotary not supported by this reference")
        w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            shape = tuple(int(s) for s in reversed(t.shape))   # numpy order: [rows, cols]
            w[t.name] = np.asarray(a, dtype=dtype).reshape(shape)
        self.vocab = w["token_embd.weight"].shape[0]
        self.tied = "output.weight" not in w
        if self.tied:
            w["output.weight"] = w["token_embd.weight"]
        if rope == "half":
            for l in range(self.n_layers):
                w[f"blk.{l}.attn_q.weight"] = self.unpermute(w[f"blk.{l}.attn_q.weight"], self.n_heads)
                w[f"blk.{l}.attn_k.weight"] = self.unpermute(w[f"blk.{l}.attn_k.weight"], self.n_kv_heads)
        self.w = w
        self.reset()

    @staticmethod
    def unpermute(m, n_head):
        """Inverse of llama.cpp convert's permute(): rows (h, i, 2) -> (h, 2, i)."""
        rows, cols = m.shape
        hd = rows // n_head
        return m.reshape(n_head, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)

    def reset(self):
        self.k_cache = [np.zeros((0, self.n_kv_heads, self.head_dim)) for _ in range(self.n_layers)]
        self.v_cache = [np.zeros((0, self.n_kv_heads, self.head_dim)) for _ in range(self.n_layers)]

    def _rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def _rope(self, x, pos):
        hd = self.head_dim
        i = np.arange(0, hd, 2, dtype=np.float64)
        freq = self.theta ** (-i / hd)
        ang = pos[:, None].astype(np.float64) * freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = np.empty_like(x)
        if self.rope == "interleaved":
            x0, x1 = x[..., 0::2], x[..., 1::2]
            out[..., 0::2] = x0 * c - x1 * s
            out[..., 1::2] = x0 * s + x1 * c
        else:
            x0, x1 = x[..., : hd // 2], x[..., hd // 2:]
            out[..., : hd // 2] = x0 * c - x1 * s
            out[..., hd // 2:] = x0 * s + x1 * c
        return out

    def forward(self, tokens):
        """Appends tokens after the cached ones; returns logits [len(tokens), vocab]."""
        w = self.w
        tokens = np.asarray(tokens, dtype=np.int64)
        T = tokens.size
        p0 = self.k_cache[0].shape[0]
        pos = np.arange(p0, p0 + T)
        nh, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        group = nh // nkv
        S = p0 + T
        mask = np.where(np.arange(S)[None, :] > pos[:, None], -np.inf, 0.0)   # [T, S]
        x = w["token_embd.weight"][tokens]
        for l in range(self.n_layers):
            b = f"blk.{l}."
            h = self._rmsnorm(x, w[b + "attn_norm.weight"])
            q = (h @ w[b + "attn_q.weight"].T).reshape(T, nh, hd)
            k = (h @ w[b + "attn_k.weight"].T).reshape(T, nkv, hd)
            v = (h @ w[b + "attn_v.weight"].T).reshape(T, nkv, hd)
            q, k = self._rope(q, pos), self._rope(k, pos)
            self.k_cache[l] = K = np.concatenate([self.k_cache[l], k])
            self.v_cache[l] = V = np.concatenate([self.v_cache[l], v])
            att = np.empty((T, nh, hd))
            for hh in range(nh):
                kv = hh // group
                sc = q[:, hh, :] @ K[:, kv, :].T / np.sqrt(hd) + mask
                sc -= sc.max(axis=-1, keepdims=True)
                pr = np.exp(sc)
                pr /= pr.sum(axis=-1, keepdims=True)
                att[:, hh, :] = pr @ V[:, kv, :]
            x = x + att.reshape(T, -1) @ w[b + "attn_output.weight"].T
            h = self._rmsnorm(x, w[b + "ffn_norm.weight"])
            g = h @ w[b + "ffn_gate.weight"].T
            u = h @ w[b + "ffn_up.weight"].T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ w[b + "ffn_down.weight"].T
        x = self._rmsnorm(x, w["output_norm.weight"])
        return x @ w["output.weight"].T

    def greedy(self, prompt_ids, n):
        """Resets the cache; returns (prompt logits [P, vocab], n greedy ids)."""
        self.reset()
        logits = self.forward(prompt_ids)
        out = []
        nxt = int(np.argmax(logits[-1]))
        for i in range(n):
            out.append(nxt)
            if i + 1 < n:
                nxt = int(np.argmax(self.forward([nxt])[-1]))
        return logits, out
