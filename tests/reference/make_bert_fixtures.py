#!/usr/bin/env python3
"""Writes the encoder fixtures under tests/fixtures/bert/ (NumPy only, deterministic, ~100 KB):

  python3 tests/reference/make_bert_fixtures.py

  bert/      BertForSequenceClassification, hidden 24, 3 heads, 2 layers, erf GELU, 3 labels;
             model.safetensors (F32), vocab.txt + tokenizer_config.json (model_max_length 32)
  roberta/   RobertaForSequenceClassification, gelu_new, pad_token_id 1, 2 labels; written as a
             torch.save zip checkpoint (pytorch_model.bin, BF16 weights, shared and transposed
             storages) without torch, vocab.json + merges.txt (byte-level BPE)
  reference.json  per model: the token id sequences, and in float64 NumPy the last hidden states,
             the sequence-classification logits and (bert) the logits of a token-classification
             head that reuses classifier.weight; WordPiece ids of a few texts (bert).

The forward pass below follows Hugging Face's modeling_bert.py / modeling_roberta.py line by line
(RoBERTa position ids included); it is the independent reference the C++ test compares with.
"""
import collections
import io
import json
import math
import os
import pickle
import struct
import sys
import types
import unicodedata
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "fixtures", "bert")


# ---- weights --------------------------------------------------------------------------------------
def bf16_round(a):
    """Rounds float32 values to bfloat16 (nearest even); returns float32 and the uint16 bits."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = u.astype(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32), bits


def random_encoder(rng, cfg, head, n_labels):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    w = {}
    def mat(*shape, s=0.2):
        return (rng.standard_normal(shape) * s).astype(np.float32)
    w["embeddings.word_embeddings.weight"] = mat(V, H, s=0.5)
    w["embeddings.position_embeddings.weight"] = mat(cfg["max_position_embeddings"], H, s=0.5)
    w["embeddings.token_type_embeddings.weight"] = mat(cfg["type_vocab_size"], H, s=0.5)
    w["embeddings.LayerNorm.weight"] = 1 + mat(H, s=0.1)
    w["embeddings.LayerNorm.bias"] = mat(H, s=0.1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            w[p + m + ".weight"] = mat(H, H, s=1 / math.sqrt(H) * 1.5)
            w[p + m + ".bias"] = mat(H, s=0.1)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + m + ".weight"] = 1 + mat(H, s=0.1)
            w[p + m + ".bias"] = mat(H, s=0.1)
        w[p + "intermediate.dense.weight"] = mat(I, H, s=1 / math.sqrt(H))
        w[p + "intermediate.dense.bias"] = mat(I, s=0.1)
        w[p + "output.dense.weight"] = mat(H, I, s=1 / math.sqrt(I))
        w[p + "output.dense.bias"] = mat(H, s=0.1)
    if head == "bert":
        w["pooler.dense.weight"] = mat(H, H, s=1 / math.sqrt(H))
        w["pooler.dense.bias"] = mat(H, s=0.1)
        w["classifier.weight"] = mat(n_labels, H, s=0.5)
        w["classifier.bias"] = mat(n_labels, s=0.1)
    else:
        w["classifier.dense.weight"] = mat(H, H, s=1 / math.sqrt(H))
        w["classifier.dense.bias"] = mat(H, s=0.1)
        w["classifier.out_proj.weight"] = mat(n_labels, H, s=0.5)
        w["classifier.out_proj.bias"] = mat(n_labels, s=0.1)
    return w


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- a torch.save checkpoint without torch ---------------------------------------------------------
# torch writes a zip (stored) with ARCHIVE/data.pkl (protocol 2) and ARCHIVE/data/KEY per storage; the
# pickle names torch._utils._rebuild_tensor_v2 and torch.<Type>Storage. Stand-in modules with those
# names let Python's pickle write exactly those opcodes.
def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    def _rebuild_tensor_v2(*a):
        raise RuntimeError("never called")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    class BFloat16Storage: pass
    class FloatStorage: pass
    for c in (BFloat16Storage, FloatStorage):
        c.__module__ = "torch"
        c.__qualname__ = c.__name__
        setattr(torch, c.__name__, c)
    torch._utils = utils
    sys.modules.setdefault("torch", torch)
    sys.modules.setdefault("torch._utils", utils)
    return torch, utils


class _Storage:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, proto):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def write_torch_bin(path, tensors_bits):
    """tensors_bits: name -> uint16 array (bf16 bits). LayerNorm parameters share one storage
    (offsets), classifier.out_proj.weight is stored transposed (strides (1, rows))."""
    torch, _ = _fake_torch()
    storages, sd = {}, collections.OrderedDict()
    ln = [n for n in tensors_bits if "LayerNorm" in n]
    shared = np.concatenate([tensors_bits[n].ravel() for n in ln])
    storages["0"] = shared
    s0 = _Storage("0", torch.BFloat16Storage, shared.size)
    off = 0
    key = 1
    for name, bits in tensors_bits.items():
        if name in ln:
            sd[name] = _Tensor(s0, off, bits.shape, (1,))
            off += bits.size
            continue
        k = str(key)
        key += 1
        if name == "classifier.out_proj.weight":
            r, c = bits.shape
            storages[k] = np.ascontiguousarray(bits.T)
            sd[name] = _Tensor(_Storage(k, torch.BFloat16Storage, bits.size), 0, (r, c), (1, r))
        else:
            storages[k] = np.ascontiguousarray(bits)
            strides = tuple(int(np.prod(bits.shape[i + 1:])) for i in range(bits.ndim))
            sd[name] = _Tensor(_Storage(k, torch.BFloat16Storage, bits.size), 0, bits.shape, strides)
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(sd)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("pytorch_model/data.pkl", buf.getvalue())
        for k, a in storages.items():
            z.writestr(f"pytorch_model/data/{k}", a.astype("<u2").tobytes())
        z.writestr("pytorch_model/version", "3\n")
        z.writestr("pytorch_model/byteorder", "little")


# ---- the reference forward pass (float64) ------------------------------------------------------------
def layer_norm(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def gelu(x, kind):
    if kind == "gelu":
        from math import erf
        return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(w, cfg, ids, family):
    """One sequence (no padding). Returns (hidden [L, H], seq-cls logits, token-cls logits)."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = H // nh
    eps = cfg["layer_norm_eps"]
    ids = np.asarray(ids)
    if family == "roberta":  # create_position_ids_from_input_ids
        pad = cfg["pad_token_id"]
        mask = (ids != pad).astype(np.int64)
        pos = np.cumsum(mask) * mask + pad
    else:
        pos = np.arange(len(ids))
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][pos] + \
        W["embeddings.token_type_embeddings.weight"][np.zeros_like(ids)]
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    lin = lambda x, p: x @ W[p + ".weight"].T + W[p + ".bias"]
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q = lin(x, p + "attention.self.query").reshape(-1, nh, d).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(-1, nh, d).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(-1, nh, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(-1, H)
        x = layer_norm(lin(ctx, p + "attention.output.dense") + x, W[p + "attention.output.LayerNorm.weight"],
                       W[p + "attention.output.LayerNorm.bias"], eps)
        f = gelu(lin(x, p + "intermediate.dense"), cfg["hidden_act"])
        x = layer_norm(lin(f, p + "output.dense") + x, W[p + "output.LayerNorm.weight"],
                       W[p + "output.LayerNorm.bias"], eps)
    if family == "bert":
        pooled = np.tanh(lin(x[0], "pooler.dense"))
        logits = lin(pooled, "classifier")
        token_logits = lin(x, "classifier")
    else:
        logits = lin(np.tanh(lin(x[0], "classifier.dense")), "classifier.out_proj")
        token_logits = None
    return x, logits, token_logits


# ---- tokenizers ----------------------------------------------------------------------------------------
BERT_WORDS = ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "##ing", "over", "lazy", "dog", "hello",
              "world", "un", "##able", "cafe", "naive", "!", ",", ".", "?", "'", "-", "##a", "##e", "##o"]


def bert_vocab():
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    v += [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    v += [t for t in BERT_WORDS if t not in v]
    return v


def wordpiece(text, vocab):
    """HF BertTokenizer (lowercase, strip accents, split punctuation) + greedy WordPiece."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words, cur = [], ""
    for c in text:
        if c.isspace():
            if cur: words.append(cur)
            cur = ""
        elif unicodedata.category(c).startswith("P") or c in "$+<=>^`|~":
            if cur: words.append(cur)
            words.append(c)
            cur = ""
        else:
            cur += c
    if cur: words.append(cur)
    idx = {t: i for i, t in enumerate(vocab)}
    out = []
    for w in words:
        pieces, start, bad = [], 0, False
        while start < len(w):
            end, found = len(w), None
            while start < end:
                s = ("##" if start else "") + w[start:end]
                if s in idx:
                    found = idx[s]
                    break
                end -= 1
            if found is None:
                bad = True
                break
            pieces.append(found)
            start = end
        out += [idx["[UNK]"]] if bad else pieces
    return out


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    ref = {"command": "python3 tests/reference/make_bert_fixtures.py"}

    # ---- BERT ----
    vocab = bert_vocab()
    bcfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": len(vocab) + 3,
            "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 48,
            "hidden_act": "gelu", "max_position_embeddings": 40, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "pad_token_id": 0, "position_embedding_type": "absolute",
            "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
            "label2id": {"negative": 0, "neutral": 1, "positive": 2}}
    bw = random_encoder(rng, bcfg, "bert", 3)
    d = os.path.join(OUT, "bert")
    os.makedirs(d, exist_ok=True)
    json.dump(bcfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    write_safetensors(os.path.join(d, "model.safetensors"), bw)
    open(os.path.join(d, "vocab.txt"), "w").write("\n".join(vocab) + "\n")
    json.dump({"do_lower_case": True, "model_max_length": 32, "tokenizer_class": "BertTokenizer"},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    V = bcfg["vocab_size"]
    seqs = [[2] + list(rng.integers(5, V, 5)) + [3], [2, 3], list(rng.integers(0, V, 19)),
            [2] + list(rng.integers(5, V, 38)) + [3]]
    seqs = [[int(t) for t in s] for s in seqs]
    r = {"sequences": seqs, "hidden": [], "logits": [], "token_logits": []}
    for s in seqs:
        h, lg, tl = forward(bw, bcfg, s, "bert")
        r["hidden"].append([float(v) for v in h.ravel()])
        r["logits"].append([float(v) for v in lg])
        r["token_logits"].append([float(v) for v in tl.ravel()])
    texts = ["Hello, world!", "The quick brown fox jumped over the lazy dog.", "Café naïve - unable?",
             "HELLO   World's", "xyzzy"]
    r["texts"] = texts
    r["text_ids"] = [[2] + wordpiece(t, vocab) + [3] for t in texts]
    ref["bert"] = r

    # ---- RoBERTa (pytorch_model.bin, BF16, vocab.json + merges.txt) ----
    b2u = bytes_to_unicode()
    rv = ["<s>", "<pad>", "</s>", "<unk>"] + [b2u[b] for b in range(256)]
    merges = [("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "w")]
    for a, b in merges:
        rv.append(a + b)
    rv.append("<mask>")
    rcfg = {"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta", "vocab_size": len(rv),
            "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 40,
            "hidden_act": "gelu_new", "max_position_embeddings": 34, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    rw = random_encoder(rng, rcfg, "roberta", 2)
    bits = {}
    for k in list(rw):
        rw[k], bits[k] = bf16_round(rw[k])
    d = os.path.join(OUT, "roberta")
    os.makedirs(d, exist_ok=True)
    json.dump(rcfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    write_torch_bin(os.path.join(d, "pytorch_model.bin"), bits)
    json.dump({t: i for i, t in enumerate(rv)}, open(os.path.join(d, "vocab.json"), "w"), ensure_ascii=False)
    open(os.path.join(d, "merges.txt"), "w").write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    RV = rcfg["vocab_size"]
    seqs = [[0] + list(rng.integers(4, RV, 9)) + [2], [0, 2], [0, 50, 1, 60, 1, 70, 2],
            [0] + list(rng.integers(3, RV, 30)) + [2]]
    seqs = [[int(t) for t in s] for s in seqs]
    r = {"sequences": seqs, "hidden": [], "logits": []}
    for s in seqs:
        h, lg, _ = forward(rw, rcfg, s, "roberta")
        r["hidden"].append([float(v) for v in h.ravel()])
        r["logits"].append([float(v) for v in lg])
    hello = rv.index("hello")
    r["texts"] = ["hello", "hello hello"]
    r["text_ids"] = [[0, hello, 2], [0, hello, rv.index("Ġ"), hello, 2]]
    ref["roberta"] = r

    def fmt(o):
        return json.dumps(o, separators=(",", ":"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        f.write(json.dumps(json.loads(fmt(ref), parse_float=lambda s: float("%.9g" % float(s))),
                           separators=(",", ":")))
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
