#!/usr/bin/env python3
"""Writes the golden reference fixtures under tests/fixtures/reference/.

  python3 tests/reference/make_fixtures.py                 # everything
  python3 tests/reference/make_fixtures.py --only stories  # stories260K only (NumPy, seconds)
  python3 tests/reference/make_fixtures.py --only smollm2  # SmolLM2 only (HF transformers, ~2 min)

Needs: numpy, sentencepiece (stories); torch, transformers, accelerate, gguf (smollm2; all CPU, fp32).
Inputs (read-only): /work/shared/data (or $IGNIS_SHARED_DATA) and the SmolLM2 GGUF at
~/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf (or --smollm2 PATH).
The format is described in tests/fixtures/reference/README.md.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import llama2c_numpy  # noqa: E402

DATA = os.environ.get("IGNIS_SHARED_DATA", "/work/shared/data")
SMOL_DEFAULT = os.path.expanduser("~/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def log(*a):
    print(*a, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(mods):
    v = {"python": platform.python_version()}
    for m in mods:
        try:
            v[m] = __import__(m).__version__
        except Exception:  # noqa: BLE001
            try:
                from importlib.metadata import version
                v[m] = version(m)
            except Exception:  # noqa: BLE001
                v[m] = None
    return v


def command_line():
    args = [a if (a and " " not in a) else json.dumps(a) for a in sys.argv[1:]]
    return " ".join(["python3", "tests/reference/make_fixtures.py"] + args)


def write_case(out_dir, name, meta, logits):
    logits = np.ascontiguousarray(logits, dtype="<f4")
    bin_name = name + ".logits.bin"
    logits.tofile(os.path.join(out_dir, bin_name))
    meta["logits"].update({
        "file": bin_name,
        "dtype": "float32",
        "byte_order": "little",
        "layout": "row-major [rows, vocab]",
        "shape": list(logits.shape),
        "sha256": sha256(os.path.join(out_dir, bin_name)),
    })
    with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
        f.write(dump_json(meta))
    log(f"wrote {name}.json + {bin_name} {logits.shape}")


def dump_json(obj):
    """Indented JSON with lists of numbers (token ids, shapes, [id, logit] pairs) on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    num = r"-?[0-9][0-9.eE+-]*"
    flat = re.compile(r"\[\s*(?:%s|\[\s*%s\s*,\s*%s\s*\])(?:\s*,\s*(?:%s|\[\s*%s\s*,\s*%s\s*\]))*\s*\]"
                      % ((num,) * 6))
    return flat.sub(lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text) + "\n"


def top_k(row, k=5):
    idx = np.argsort(-row, kind="stable")[:k]
    return [[int(i), float(row[i])] for i in idx]


def margins(rows):
    s = np.sort(rows, axis=-1)
    return s[:, -1] - s[:, -2]


# ---------------------------------------------------------------- stories260K (llama2.c)

def hf_from_llama2c(cfg, w):
    """Cross-check: the same weights in HF LlamaForCausalLM (q/k rows permuted to half-split)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hc = LlamaConfig(hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
                     num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                     num_key_value_heads=cfg.n_kv_heads, vocab_size=cfg.vocab_size,
                     max_position_embeddings=cfg.seq_len, rms_norm_eps=1e-5, rope_theta=10000.0,
                     tie_word_embeddings=cfg.shared, bos_token_id=1, eos_token_id=2)
    m = LlamaForCausalLM(hc).to(torch.float64).eval()

    def perm(a, nh):
        rows, cols = a.shape
        hd = rows // nh
        return a.reshape(nh, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        m.model.embed_tokens.weight.copy_(t(w["tok_emb"]))
        for l, layer in enumerate(m.model.layers):
            layer.input_layernorm.weight.copy_(t(w["rms_att"][l]))
            layer.self_attn.q_proj.weight.copy_(t(perm(w["wq"][l], cfg.n_heads)))
            layer.self_attn.k_proj.weight.copy_(t(perm(w["wk"][l], cfg.n_kv_heads)))
            layer.self_attn.v_proj.weight.copy_(t(w["wv"][l]))
            layer.self_attn.o_proj.weight.copy_(t(w["wo"][l]))
            layer.post_attention_layernorm.weight.copy_(t(w["rms_ffn"][l]))
            layer.mlp.gate_proj.weight.copy_(t(w["w1"][l]))
            layer.mlp.down_proj.weight.copy_(t(w["w2"][l]))
            layer.mlp.up_proj.weight.copy_(t(w["w3"][l]))
        m.model.norm.weight.copy_(t(w["rms_final"]))
        m.lm_head.weight.copy_(t(w["wcls"]))
    return m


def make_stories(out_dir, n_greedy=64, n_logit_steps=8):
    model = os.path.join(DATA, "stories260K.bin")
    tok_bin = os.path.join(DATA, "tok512.bin")
    tok_model = os.path.join(DATA, "tok512.model")
    prompt = "Once upon a time"
    cfg, w = llama2c_numpy.load_checkpoint(model)
    tok = llama2c_numpy.Tokenizer(tok_bin, cfg.vocab_size)
    ids = tok.encode(prompt, bos=True)
    # llama2.c's encoder (dummy prefix " " then score-ordered merges) must agree with SentencePiece.
    sp_ids = None
    try:
        import sentencepiece as spm
        sp_ids = [1] + spm.SentencePieceProcessor(model_file=tok_model).encode(prompt)
        if sp_ids != ids:
            raise SystemExit(f"tokenizer mismatch: llama2.c-style {ids} vs sentencepiece {sp_ids}")
    except ImportError:
        log("sentencepiece not installed: skipping the tokenizer cross-check")
    P = len(ids)
    seq, all_logits = llama2c_numpy.greedy(cfg, w, ids, n_greedy)
    gen = seq[P:]
    rows = P + n_logit_steps       # positions 0 .. P+7: the prompt and the first 8 greedy steps
    logits = all_logits[:rows]
    assert all(int(np.argmax(all_logits[i])) == seq[i + 1] for i in range(P - 1, len(seq) - 1))
    full_text = tok.decode(seq[1:], prev=seq[0])
    gen_text = tok.decode(gen, prev=seq[P - 1])
    log("stories260K:", repr(full_text))
    if "Lily" not in full_text:
        raise SystemExit("stories260K greedy text does not mention Lily: the reference is wrong")

    cross = {}
    try:
        import torch
        hf = hf_from_llama2c(cfg, w)
        with torch.no_grad():
            hl = hf(torch.tensor([seq[:-1]])).logits[0].numpy()
        d = np.abs(hl - all_logits)
        cross = {
            "what": "HF transformers LlamaForCausalLM (float64) with the same weights, q/k rows "
                    "permuted to the half-split RoPE layout, on all %d positions" % (len(seq) - 1),
            "max_abs_diff": float(d.max()),
            "argmax_agree": int((hl.argmax(-1) == all_logits.argmax(-1)).sum()),
            "rows": len(seq) - 1,
        }
        log("stories260K HF cross-check:", cross)
    except ImportError:
        log("torch/transformers not installed: skipping the HF cross-check for stories260K")

    meta = {
        "name": "stories260k_once_upon_a_time",
        "description": "llama2.c stories260K, prompt tokenized as llama2.c run.c does (BOS + "
                       "dummy-prefix SentencePiece BPE), greedy decoding without any stop token.",
        "reference": "tests/reference/llama2c_numpy.py (NumPy float64 forward pass)",
        "model": {"path": "shared/data/stories260K.bin", "sha256": sha256(model),
                  "format": "llama2.c", "config": cfg.as_dict()},
        "tokenizer": {"path": "shared/data/tok512.bin", "sha256": sha256(tok_bin),
                      "sentencepiece_model": "shared/data/tok512.model",
                      "sentencepiece_ids_with_bos": sp_ids},
        "prompt": prompt,
        "tokens": ids,
        "n_prompt_tokens": P,
        "logits": {
            "positions": list(range(rows)),
            "rows_meaning": "row i = logits after feeding sequence[i] at position i (KV cache "
                            "holds sequence[0..i]); rows 0..n_prompt-1 cover the prompt, rows "
                            "n_prompt..n_prompt+7 the first 8 greedy steps; argmax(row i) == "
                            "sequence[i+1] for i >= n_prompt-1",
        },
        "sequence": seq,
        "greedy": {
            "n": n_greedy,
            "ids": gen,
            "text": gen_text,
            "full_text": full_text,
            "text_note": "decoded as run.c prints: pieces are bytes, '<0xNN>' pieces are raw "
                         "bytes, the leading space of the piece after BOS is dropped",
            "stop_tokens_in_ids": [i for i, t in enumerate(gen) if t in (1, 2)],
            "top2_margins": [round(float(x), 4) for x in margins(all_logits[P - 1:])],
        },
        "last_prompt_top5": top_k(all_logits[P - 1]),
        "cross_check": cross,
        "command": command_line(),
        "versions": versions(["numpy", "sentencepiece", "torch", "transformers"]),
        "created": time.strftime("%Y-%m-%d"),
    }
    write_case(out_dir, "stories260k_once_upon_a_time", meta, logits)


# ---------------------------------------------------------------- SmolLM2-135M (GGUF Q4_1)

def wiki_paragraph():
    with open(os.path.join(DATA, "wikitext2_test.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(" Du Fu ("):
                return line.strip()
    raise SystemExit("wikitext2_test.txt: the ' Du Fu (' paragraph was not found")


def make_smollm2(out_dir, gguf_path, n_greedy=32):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gguf_llama_numpy import GGUFLlama

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    log(f"HF model loaded in {time.time() - t0:.1f}s")
    t0 = time.time()
    ref = GGUFLlama(gguf_path, rope="interleaved")
    log(f"NumPy model loaded in {time.time() - t0:.1f}s")
    model_meta = {"path": "~/.cache/ignis/models/" + f, "sha256": sha256(gguf_path),
                  "format": "gguf", "arch": "llama", "n_layers": ref.n_layers, "dim": ref.dim,
                  "n_heads": ref.n_heads, "n_kv_heads": ref.n_kv_heads, "hidden_dim": ref.hidden,
                  "vocab_size": ref.vocab, "rope_theta": ref.theta, "norm_eps": ref.eps,
                  "tied_embeddings": ref.tied}
    vers = versions(["numpy", "torch", "transformers", "gguf", "tokenizers", "accelerate"])
    eos = int(hf.config.eos_token_id) if hf.config.eos_token_id is not None else 2

    cases = [
        ("smollm2_capital_of_france", "The capital of France is", "all"),
        ("smollm2_chatml_2plus2",
         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", "last"),
        ("smollm2_wikitext_du_fu", wiki_paragraph(), "last"),
    ]
    report = []
    for name, prompt, which in cases:
        t0 = time.time()
        ids = tok(prompt).input_ids
        P = len(ids)
        seq = list(ids)
        with torch.no_grad():
            out = hf(torch.tensor([seq]), use_cache=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
            for i in range(n_greedy):
                seq.append(nxt)
                if i + 1 == n_greedy:
                    break
                out = hf(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = int(out.logits[0, -1].argmax())
            # One pass over the whole sequence: prompt logits, greedy margins, the cross-check.
            full = hf(torch.tensor([seq[:-1]])).logits[0].double().numpy()
        gen = seq[P:]
        tf_greedy = [int(x) for x in full[P - 1:].argmax(-1)]
        if tf_greedy != gen:
            log(f"{name}: note: full-sequence argmax differs from cached greedy "
                f"(near-tie); cached {gen} vs full {tf_greedy}")
        rows = full[:P] if which == "all" else full[P - 1:P]
        positions = list(range(P)) if which == "all" else [P - 1]

        # Independent NumPy float64 forward on the same GGUF (gguf-package dequantization).
        ref.reset()
        npl = ref.forward(seq[:-1])
        dd = np.abs(npl - full)
        scale = float(np.abs(full).max())
        np_greedy = [int(x) for x in npl[P - 1:].argmax(-1)]
        cross = {
            "what": "NumPy float64 forward (tests/reference/gguf_llama_numpy.py, interleaved RoPE "
                    "on the GGUF q/k as stored) vs HF (un-permuted q/k, rotate_half RoPE, fp32), "
                    f"all {len(seq) - 1} positions of prompt + greedy",
            "max_abs_diff": float(dd.max()),
            "max_abs_diff_prompt_rows": float(dd[:P].max()),
            "mean_abs_diff": float(dd.mean()),
            "max_abs_logit": scale,
            "argmax_agree": int((npl.argmax(-1) == full.argmax(-1)).sum()),
            "rows": len(seq) - 1,
            "greedy_ids_equal": np_greedy == gen,
        }
        report.append((name, cross))
        log(f"{name}: P={P} HF vs NumPy {cross}")
        text = tok.decode(gen, skip_special_tokens=False)
        stop = [i for i, t in enumerate(gen) if t == eos]
        meta = {
            "name": name,
            "description": "SmolLM2-135M-Instruct Q4_1 GGUF as loaded (dequantized to fp32) by "
                           "Hugging Face transformers; greedy decoding without stopping at EOS.",
            "reference": "transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file=...), "
                         "fp32, CPU",
            "model": model_meta,
            "tokenizer": "transformers AutoTokenizer.from_pretrained(dir, gguf_file=...) "
                         "(no BOS added: tokenizer.ggml.add_bos_token = false)",
            "prompt": prompt,
            "tokens": ids,
            "n_prompt_tokens": P,
            "logits": {
                "positions": positions,
                "rows_meaning": "row r = logits after feeding tokens[positions[r]] at that "
                                "position, the whole prompt before it in the KV cache",
            },
            "greedy": {
                "n": n_greedy,
                "ids": gen,
                "text": text,
                "full_text": tok.decode(seq, skip_special_tokens=False),
                "eos_id": eos,
                "eos_indices": stop,
                "text_until_eos": tok.decode(gen[:stop[0]] if stop else gen,
                                             skip_special_tokens=False),
                "top2_margins": [round(float(x), 4) for x in margins(full[P - 1:])],
            },
            "last_prompt_top5": top_k(full[P - 1]),
            "cross_check": cross,
            "command": command_line(),
            "versions": vers,
            "created": time.strftime("%Y-%m-%d"),
        }
        write_case(out_dir, name, meta, rows)
        log(f"{name}: {time.time() - t0:.1f}s; greedy: {text!r}")

    # Both RoPE conventions on the NumPy side must agree with each other too.
    half = GGUFLlama(gguf_path, rope="half")
    ids = tok(cases[0][1]).input_ids
    ref.reset()
    a = ref.forward(ids)
    b = half.forward(ids)
    log(f"NumPy interleaved-vs-half-split RoPE max abs diff: {np.abs(a - b).max():.3e}")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["stories", "smollm2"])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "reference"))
    ap.add_argument("--smollm2", default=SMOL_DEFAULT, help="SmolLM2-135M-Instruct Q4_1 GGUF")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.only in (None, "stories"):
        make_stories(a.out)
    if a.only in (None, "smollm2"):
        if not os.path.exists(a.smollm2):
            raise SystemExit(f"{a.smollm2}: not found (pass --smollm2 PATH)")
        make_smollm2(a.out, a.smollm2)
    total = sum(os.path.getsize(os.path.join(a.out, x)) for x in os.listdir(a.out))
    log(f"fixtures in {a.out}: {total / 1e6:.2f} MB total")


if __name__ == "__main__":
    main()
