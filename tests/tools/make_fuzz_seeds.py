#!/usr/bin/env python3
"""Writes the seed corpora of the io fuzzers: small, valid files of each format.

    python3 tests/tools/make_fuzz_seeds.py            # writes fuzz/corpus/{gguf,safetensors,llama2c,hf_config}/

Every file is built byte by byte here (no third-party writer), so the output is deterministic
and the script needs nothing beyond the Python standard library.
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
              U64: "<Q", I64: "<q", F64: "<d"}


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == STRING:
        return gguf_str(v)
    if t == ARRAY:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(gguf_value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, ne (innermost first), ggml_type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gguf_str(k) + struct.pack("<I", t) + gguf_value(t, v)
    off, offsets = 0, []
    for name, ne, gt, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", gt, off)
        offsets.append(off)
        off += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    start = len(out)
    for (name, ne, gt, data), o in zip(tensors, offsets):
        out += b"\0" * (start + o - len(out)) + data
    return out


def f32s(n, scale=0.01):
    return b"".join(struct.pack("<f", scale * ((i * 7) % 13 - 6)) for i in range(n))


def gpt2_byte_tokens():
    """The 256 byte-level BPE tokens: GPT-2's printable stand-in for each byte."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def tiny_llama_gguf(arch="llama", layers=1, tied=False, tokens=True, bpe=False):
    dim, hidden, heads, kv, vocab, head = 8, 16, 2, 1, 6, 4
    if bpe:
        vocab = 256 + 5
    p = arch + "."
    kvs = [("general.architecture", STRING, arch), ("general.name", STRING, "seed"),
           (p + "block_count", U32, layers), (p + "context_length", U32, 32),
           (p + "embedding_length", U32, dim), (p + "feed_forward_length", U32, hidden),
           (p + "attention.head_count", U32, heads), (p + "attention.head_count_kv", U32, kv),
           (p + "attention.layer_norm_rms_epsilon", F32, 1e-5), (p + "rope.freq_base", F32, 10000.0),
           (p + "rope.dimension_count", U32, head)]
    if bpe:
        toks = gpt2_byte_tokens() + ["\u0120t", "he", "\u0120the", "<|im_start|>", "<|im_end|>"]
        kvs += [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "smollm"),
                ("tokenizer.ggml.tokens", ARRAY, (STRING, toks)),
                ("tokenizer.ggml.token_type", ARRAY, (I32, [1] * 259 + [3, 3])),
                ("tokenizer.ggml.merges", ARRAY, (STRING, ["\u0120 t", "h e", "\u0120t he"])),
                ("tokenizer.ggml.bos_token_id", U32, 259), ("tokenizer.ggml.eos_token_id", U32, 260),
                ("tokenizer.chat_template", STRING, "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}")]
    elif tokens:
        kvs += [("tokenizer.ggml.model", STRING, "llama"),
                ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a", "b", "\u2581c"])),
                ("tokenizer.ggml.scores", ARRAY, (F32, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0])),
                ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3, 1, 1, 1])),
                ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.add_bos_token", BOOL, 1)]
    else:
        kvs.append((p + "vocab_size", U32, vocab))
    t = [("token_embd.weight", [dim, vocab], 0, f32s(dim * vocab))]
    for l in range(layers):
        b = "blk.%d." % l
        t += [(b + "attn_norm.weight", [dim], 0, f32s(dim)),
              (b + "attn_q.weight", [dim, heads * head], 0, f32s(dim * heads * head)),
              (b + "attn_k.weight", [dim, kv * head], 0, f32s(dim * kv * head)),
              (b + "attn_v.weight", [dim, kv * head], 0, f32s(dim * kv * head))]
        if arch == "qwen2":
            t += [(b + "attn_q.bias", [heads * head], 0, f32s(heads * head)),
                  (b + "attn_k.bias", [kv * head], 0, f32s(kv * head)),
                  (b + "attn_v.bias", [kv * head], 0, f32s(kv * head))]
        t += [(b + "attn_output.weight", [heads * head, dim], 0, f32s(dim * heads * head)),
              (b + "ffn_norm.weight", [dim], 0, f32s(dim)),
              (b + "ffn_gate.weight", [dim, hidden], 1, b"\x00\x3c" * (dim * hidden)),  # f16 ones
              (b + "ffn_up.weight", [dim, hidden], 0, f32s(dim * hidden)),
              (b + "ffn_down.weight", [hidden, dim], 0, f32s(dim * hidden))]
    t.append(("output_norm.weight", [dim], 0, f32s(dim)))
    if not tied:
        t.append(("output.weight", [dim, vocab], 0, f32s(dim * vocab)))
    return gguf(kvs, t)


def all_types_gguf(version=3):
    kvs = [("general.architecture", STRING, "llama"), ("general.alignment", U32, 16),
           ("u8", U8, 200), ("i8", I8, -5), ("u16", U16, 60000), ("i16", I16, -300), ("u32", U32, 4000000000),
           ("i32", I32, -70000), ("f32", F32, 1.5), ("bool", BOOL, 1), ("str", STRING, "h\u00e9llo"),
           ("u64", U64, 2 ** 63 + 5), ("i64", I64, -(2 ** 40)), ("f64", F64, -2.25),
           ("arr.u8", ARRAY, (U8, [1, 2, 3])), ("arr.f64", ARRAY, (F64, [0.5, -1.0])),
           ("arr.bool", ARRAY, (BOOL, [0, 1])), ("arr.str", ARRAY, (STRING, ["x", "", "yz"])),
           ("arr.empty", ARRAY, (I64, []))]
    q8 = (struct.pack("<e", 0.5) + bytes(range(32)))  # one q8_0 block: f16 scale + 32 int8
    t = [("q8", [32], 8, q8), ("bf16", [2, 2], 30, b"\x80\x3f" * 4), ("i32", [3], 26, struct.pack("<3i", 1, 2, 3)),
         ("unsupported_iq2", [256], 16, b"\0" * 66)]
    return gguf(kvs, t, version=version, alignment=16)


def safetensors(entries, metadata=None, pad=True):
    """entries: [(name, dtype, shape, data bytes)] laid out consecutively."""
    header, data, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def llama2c(dim=8, hidden=12, layers=2, heads=2, kv=1, vocab=6, seq=4, shared=True):
    head = dim // heads
    kvd = head * kv
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * kvd * dim, layers * kvd * dim,
              layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, seq * head // 2, seq * head // 2]
    if not shared:
        counts.append(vocab * dim)
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
    return hdr + f32s(sum(counts))


def hf_config(arch, **extra):
    c = {"architectures": [arch], "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
         "num_attention_heads": 8, "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "max_position_embeddings": 512, "vocab_size": 512, "torch_dtype": "bfloat16", "hidden_act": "silu",
         "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
    c.update(extra)
    return json.dumps(c, indent=2).encode()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
    seeds = {
        "gguf": {
            "tiny_llama.gguf": tiny_llama_gguf(),
            "tiny_llama_tied_notok.gguf": tiny_llama_gguf(layers=2, tied=True, tokens=False),
            "tiny_qwen2.gguf": tiny_llama_gguf("qwen2"),
            "tiny_bpe.gguf": tiny_llama_gguf(bpe=True, tied=True),
            "all_types_v3.gguf": all_types_gguf(3),
            "all_types_v2.gguf": all_types_gguf(2),
            "empty_v3.gguf": gguf([], []),
        },
        "safetensors": {
            "small.safetensors": safetensors(
                [("w", "F32", [2, 3], f32s(6)), ("b", "BF16", [3], b"\x80\x3f" * 3), ("h", "F16", [1, 1, 2], b"\0\x3c" * 2),
                 ("i", "I32", [], struct.pack("<i", 7)), ("c", "I8", [4], b"\x01\xff\x02\xfe"),
                 ("u", "U8", [2], b"\x01\x02"), ("e", "F32", [0, 4], b"")],
                metadata={"format": "pt"}),
            "unpadded.safetensors": safetensors([("x", "F32", [3], f32s(3)), ("y", "F64", [1], b"\0" * 8)], pad=False),
            "empty.safetensors": safetensors([]),
            "many_dims.safetensors": safetensors([("z", "F16", [1, 2, 1, 2, 1], b"\0" * 8),
                                                  ("q", "BOOL", [2], b"\x00\x01")]),
        },
        "llama2c": {
            "tiny_shared.bin": llama2c(),
            "tiny_untied.bin": llama2c(shared=False),
            "minimal.bin": llama2c(dim=2, hidden=1, layers=1, heads=1, kv=1, vocab=1, seq=1),
        },
        "hf_config": {
            "llama.json": hf_config("LlamaForCausalLM"),
            "llama3.json": hf_config("LlamaForCausalLM", head_dim=8, rope_scaling={
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256}),
            "linear.json": hf_config("LlamaForCausalLM", rope_scaling={"type": "linear", "factor": 2.0}),
            "mistral.json": hf_config("MistralForCausalLM", sliding_window=256, rope_scaling=None),
            "qwen2.json": hf_config("Qwen2ForCausalLM", tie_word_embeddings=True, use_sliding_window=False,
                                    rope_theta=1000000.0, max_window_layers=2),
            "model_type.json": json.dumps({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                           "num_hidden_layers": 1, "num_attention_heads": 4,
                                           "vocab_size": 100}).encode(),
            "gpt2.json": json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 64}).encode(),
        },
    }
    for sub, files in seeds.items():
        d = os.path.join(out, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("wrote", sum(len(f) for f in seeds.values()), "seeds under", out)


if __name__ == "__main__":
    main()
