#!/usr/bin/env python3
"""Encoder parity of ignis with Hugging Face transformers (run where torch + transformers are).

Random-initialised BertModel, BertForSequenceClassification, RobertaForSequenceClassification and
RobertaModel are saved with save_pretrained (safetensors; one also as
pytorch_model.bin) together with a real tokenizer.json (BertTokenizerFast / RobertaTokenizerFast
built from a small vocabulary). A batch of texts of mixed lengths -- one longer than the model's
maximum, so it is truncated -- goes through:
  HF:    tokenizer(texts, padding=True, truncation=True) -> model (padded batch, attention mask)
  ignis: `ignis embed --dump-hidden` (token ids + last hidden states, ragged) and
         `ignis classify --json` (logits)
Checked per mode: identical token ids; hidden states per token and logits per text within the
tolerance (relative: ||ignis - hf|| / ||hf||; fp32 1e-4; f16/bf16 2e-2).

With --minilm DIR (default: ~/.cache/ignis/models/all-MiniLM-L6-v2 when present), the real
all-MiniLM-L6-v2: `ignis embed --json` against sentence-transformers (or, if it is not installed,
transformers + mean pooling + L2 normalisation, which is what its modules say), cosine >= 0.9999.

    python3 tests/reference/hf_bert_parity.py --ignis build/ignis --modes cpu
    python3 tests/reference/hf_bert_parity.py --ignis build-gpu/ignis --modes cpu cuda-f32 cuda-f16
Exit status 1 if any check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import (BertConfig, BertModel, BertForSequenceClassification, BertTokenizerFast, RobertaConfig,
                          RobertaForSequenceClassification, RobertaModel, RobertaTokenizerFast)

TOL = {"cpu": 1e-4, "cuda-f32": 1e-4, "cuda-f16": 2e-2, "cuda-bf16": 3e-2}

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "Café naïve résumé -- un-believable?! 東京 is big.",
    "a",
    " ".join(["the lazy dog sleeps"] * 40),  # longer than max_position_embeddings: truncated
    "MiXeD CaSe wOrDs and numbers 12345 67",
]

WORDS = ("the quick brown fox jump ##s ##ed over lazy dog sleep hello world un ##believable cafe naive resume "
         "is big mixed case words and numbers 1 2 3 4 5 6 7 ##2 ##3 ##4 ##5 ##6 ##7 東 京 , . ! ? - a b c d e").split()


def bert_vocab(folder):
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]
    v += ["##" + chr(c) for c in range(97, 123)] + [w for w in WORDS if len(w) > 1 or not w.isalpha()]
    seen, out = set(), []
    for t in v:
        if t not in seen:
            seen.add(t)
            out.append(t)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "vocab.txt")
    open(path, "w").write("\n".join(out) + "\n")
    return path, len(out)


def roberta_vocab(folder):
    # GPT-2's byte alphabet + a few merges; RobertaTokenizerFast writes the tokenizer.json.
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = ["<s>", "<pad>", "</s>", "<unk>"] + [chr(c) for c in cs]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "l"), ("a", "z"), ("Ġl", "az"), ("o", "g"), ("Ġd", "og"),
              ("Ġ", "d"), ("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o")]
    for a, b in merges:
        vocab.append(a + b)
    vocab.append("<mask>")
    os.makedirs(folder, exist_ok=True)
    vj, mt = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    json.dump({t: i for i, t in enumerate(vocab)}, open(vj, "w"), ensure_ascii=False)
    open(mt, "w").write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vj, mt, len(vocab)


def build_cases(tmp):
    torch.manual_seed(0)
    cases = []
    vpath, nv = bert_vocab(os.path.join(tmp, "bert-vocab"))
    btok = BertTokenizerFast(vocab_file=vpath, do_lower_case=True, model_max_length=64)
    common = dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=192,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg = BertConfig(vocab_size=nv + 5, type_vocab_size=2, **common)
    cases.append(("BertModel", BertModel(cfg, add_pooling_layer=True), btok, True))
    cfg = BertConfig(vocab_size=nv + 5, num_labels=3, hidden_act="gelu_new", **common)
    cfg.id2label = {0: "neg", 1: "neu", 2: "pos"}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    cases.append(("BertForSequenceClassification", BertForSequenceClassification(cfg), btok, False))
    vj, mt, nr = roberta_vocab(os.path.join(tmp, "roberta-vocab"))
    rtok = RobertaTokenizerFast(vocab_file=vj, merges_file=mt, model_max_length=62)
    rc = dict(common, max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
              layer_norm_eps=1e-5, type_vocab_size=1)
    cases.append(("RobertaForSequenceClassification", RobertaForSequenceClassification(
        RobertaConfig(vocab_size=nr, num_labels=2, **rc)), rtok, True))
    cases.append(("RobertaModel", RobertaModel(RobertaConfig(vocab_size=nr, **rc)), rtok, False))
    for _, model, _, _ in cases:
        with torch.no_grad():  # larger than default weights: outputs far from trivial
            for n, p in model.named_parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.08)
                elif "LayerNorm.weight" in n:
                    p.uniform_(0.5, 1.5)
                else:
                    p.normal_(0, 0.05)
        model.eval()
    return cases


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def device_args(mode):
    if mode == "cpu":
        return ["--device", "cpu"]
    return ["--device", "cuda", "--dtype", mode.split("-")[1]]


def check_case(args, tmp, name, model, tok, as_bin, failures):
    folder = os.path.join(tmp, name)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if as_bin:  # the same weights as torch.save's zip + pickle (transformers 5 writes safetensors only)
        torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
        os.remove(os.path.join(folder, "model.safetensors"))
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    hidden = out.hidden_states[-1].double().numpy()
    logits = out.logits.double().numpy() if hasattr(out, "logits") else None
    mask = enc["attention_mask"].numpy().astype(bool)
    for mode in args.modes:
        tol = TOL[mode]
        dump = os.path.join(tmp, f"{name}-{mode}.f32")
        try:
            run([args.ignis, "embed", "-m", folder, "-q", "--dump-hidden", dump, *device_args(mode), "--", *TEXTS])
        except RuntimeError as e:
            print(f"  FAIL {name} [{mode}]: {e}")
            failures.append(f"{name}/{mode}")
            continue
        meta = json.load(open(dump + ".json"))
        h = np.fromfile(dump, dtype=np.float32).reshape(-1, meta["hidden"]).astype(np.float64)
        off = meta["offsets"]
        worst_h, ids_ok = 0.0, True
        for i in range(len(TEXTS)):
            ref_ids = enc["input_ids"][i][mask[i]].tolist()
            got_ids = meta["ids"][off[i]:off[i + 1]]
            if ref_ids != got_ids:
                ids_ok = False
                print(f"  token ids differ for text {i}: hf {ref_ids[:12]}... ignis {got_ids[:12]}...")
                continue
            ref = hidden[i][mask[i]]
            got = h[off[i]:off[i + 1]]
            worst_h = max(worst_h, max(rel(got[t], ref[t]) for t in range(len(ref))))
        line = f"  {name} [{mode}]: ids {'ok' if ids_ok else 'DIFFER'}, hidden max rel err {worst_h:.2e}"
        ok = ids_ok and worst_h <= tol
        if logits is not None:
            j = json.loads(run([args.ignis, "classify", "-m", folder, "-q", "--json", *device_args(mode), "--", *TEXTS]))
            got = np.array([d["logits"] for d in j["data"]])
            worst_l = max(rel(got[i], logits[i]) for i in range(len(TEXTS)))
            same_label = all(int(np.argmax(got[i])) == int(np.argmax(logits[i])) for i in range(len(TEXTS)))
            line += f", logits max rel err {worst_l:.2e}, argmax {'same' if same_label else 'DIFFERS'}"
            ok = ok and worst_l <= tol and (same_label or mode != "cpu")
        print(line + ("" if ok else f"  <-- FAIL (tolerance {tol:g})"))
        if not ok:
            failures.append(f"{name}/{mode}")


def check_minilm(args, folder, failures):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "", "Ünïcödé and 中文 text, with punctuation!?",
             " ".join(["very long input"] * 200)]
    try:
        from sentence_transformers import SentenceTransformer
        # float32 whatever the file's dtype (an f16 copy of the model checks the same arithmetic).
        st = SentenceTransformer(folder, device="cpu", model_kwargs={"torch_dtype": torch.float32})
        ref = st.encode(texts, normalize_embeddings=False, convert_to_numpy=True).astype(np.float64)
        how = "sentence-transformers"
    except ImportError:
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        ref = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        ref = torch.nn.functional.normalize(ref, dim=-1).double().numpy()
        how = "transformers + mean pooling + normalize"
    for mode in args.modes:
        j = json.loads(run([args.ignis, "embed", "-m", folder, "-q", "--json", *device_args(mode), "--", *texts]))
        got = np.array([d["embedding"] for d in j["data"]], dtype=np.float64)
        cos = [float(got[i] @ ref[i] / np.linalg.norm(got[i]) / np.linalg.norm(ref[i])) for i in range(len(texts))]
        ok = min(cos) >= 0.9999
        print(f"  all-MiniLM-L6-v2 [{mode}] vs {how}: min cosine {min(cos):.6f}" + ("" if ok else "  <-- FAIL"))
        if not ok:
            failures.append(f"minilm/{mode}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ignis", default="build/ignis")
    ap.add_argument("--modes", nargs="+", default=["cpu"], choices=list(TOL))
    ap.add_argument("--minilm", default=os.path.expanduser("~/.cache/ignis/models/all-MiniLM-L6-v2"))
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, tok, as_bin in build_cases(tmp):
            check_case(args, tmp, name, model, tok, as_bin, failures)
    if args.minilm and os.path.exists(os.path.join(args.minilm, "config.json")):
        check_minilm(args, args.minilm, failures)
    else:
        print(f"  all-MiniLM-L6-v2: not found at {args.minilm} (scripts/fetch-minilm.sh); skipped")
    print("encoder parity:", "OK" if not failures else "FAILED: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
