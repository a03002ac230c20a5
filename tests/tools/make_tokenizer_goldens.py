#!/usr/bin/env python3
"""Makes the tokenizer golden fixtures in tests/fixtures/tokenizer/ with the real libraries.

    pip install tokenizers==0.23.3 sentencepiece==0.2.3
    python3 tests/tools/make_tokenizer_goldens.py [--shared ../shared/data] [--smollm2 PATH]

Writes:
  hf_*.json        small tokenizer.json files, each trained here with HF `tokenizers` on a slice of
                   tinyshakespeare plus the llama.cpp vocab test strings, one per pipeline flavour
                   (byte-level BPE, Llama-3 and Qwen2 regex splits, SentencePiece-style BPE with byte
                   fallback, Metaspace, WordPiece cased/uncased, split behaviours).
  goldens.json     for every fixture and test string: HF's ids without and with special tokens,
                   and HF's decode(ids) (skip_special_tokens=False); sentencepiece's ids for
                   tok512.model / tokenizer.model (llama2.c); the SmolLM2 ids from a tokenizer that
                   HF builds from the GGUF's own vocab and merges (no tokenizer.json needed).
Everything is deterministic (fixed seed, fixed corpus).
"""
import argparse
import json
import os
import random
import struct
import sys
import unicodedata

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def read_gguf_kv(path):
    """Minimal GGUF metadata reader (little-endian, v2/v3): returns {key: value}."""
    d = open(path, "rb").read()
    p = 0

    def rd(fmt):
        nonlocal p
        v = struct.unpack_from("<" + fmt, d, p)[0]
        p += struct.calcsize("<" + fmt)
        return v

    def rstr():
        nonlocal p
        n = rd("Q")
        s = d[p:p + n]
        p += n
        return s.decode("utf-8")

    fmts = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et = rd("I")
            n = rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(fmts[t])

    assert d[:4] == b"GGUF"
    p = 4
    rd("I")
    rd("Q")
    nkv = rd("Q")
    kv = {}
    for _ in range(nkv):
        k = rstr()
        kv[k] = rval(rd("I"))
    return kv


def vocab_strings(shared):
    s = open(os.path.join(shared, "ggml-vocab-gpt-2.gguf.inp"), encoding="utf-8").read()
    return [x for x in s.split("\n__ggml_vocab_test__\n")][:-1]


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    words = ["Hello", "world", "the", "The", "capital", "of", "France", "is", "don't", "I'm", "WE'LL", "it'S",
             "'ſ", "ſ", "café", "cafe\u0301", "naïve", "Führer", "İstanbul", "ΣΊΣΥΦΟΣ", "straße", "日本語", "我想在",
             "apple", "工作", "한국어", "안녕하세요", "🦙", "😀", "👨‍👩‍👧", "🚀", "✅", "x²", "½", "٣٤٥", "१२३",
             "12345", "3.14159", "1,000,000", "$100", "<tag>", "a_b", "foo-bar", "e.g.", "...", "!!!", "«quote»",
             "“smart”", "Ａｂｃ", "ｶﾀｶﾅ", "ﬁ", "Ⅻ", "\u200b", "\u00ad", "\ufeff", "Ω", "ǅ", "ß", "ı", "\u0300x",
             "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "[CLS]", "[SEP]", "[MASK]", "##ing"]
    spaces = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u0085", "\u2028",
              "\u2003", "\x0b", "\x0c", ""]
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        s = ""
        if rng.random() < 0.2:
            s += rng.choice(spaces)
        for _ in range(k):
            r = rng.random()
            if r < 0.7:
                s += rng.choice(words)
            elif r < 0.85:
                s += "".join(random_char(rng) for _ in range(rng.randint(1, 4)))
            else:
                s += str(rng.randint(0, 10 ** rng.randint(1, 8)))
            s += rng.choice(spaces)
        out.append(s)
    return out


def random_char(rng):
    # Unassigned code points and marks are left out: their categories depend on the Unicode version,
    # and HF's BERT normaliser uses older tables than libutf8proc (see the test's notes).
    while True:
        c = chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff), rng.randint(0x3000, 0xd7ff),
                            rng.randint(0xe000, 0xffff), rng.randint(0x10000, 0x1ffff)]))
        if unicodedata.category(c) not in ("Cn", "Mn", "Mc", "Me"):
            return c


def corpus(shared):
    text = open(os.path.join(shared, "tinyshakespeare_input.txt"), encoding="utf-8").read()[:120000]
    return [text[i:i + 2000] for i in range(0, len(text), 2000)] + vocab_strings(shared) * 3 + random_strings(300, 99)


def train_bpe(tok, texts, vocab_size, special, alphabet=None):
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                             initial_alphabet=alphabet or [])
    tok.train_from_iterator(texts, tr)
    return tok


def make_fixtures(shared):
    texts = corpus(shared)
    fx = {}
    chat = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    # GPT-2 style: ByteLevel pre-tokenizer with its regex, ByteLevel decoder.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    train_bpe(t, texts, 700, chat, pre_tokenizers.ByteLevel.alphabet())
    fx["hf_bytelevel"] = t

    # SmolLM2 / StarCoder style: Digits(individual) then ByteLevel; BOS template.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    t.decoder = decoders.ByteLevel()
    train_bpe(t, texts, 700, chat, pre_tokenizers.ByteLevel.alphabet())
    t.post_processor = processors.TemplateProcessing(single="<|im_start|> $A <|im_end|>",
                                                     special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])
    fx["hf_digits_bytelevel"] = t

    # Llama-3 style: Split(regex) + ByteLevel(use_regex=False), ignore_merges.
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(LLAMA3_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    train_bpe(t, texts, 800, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], pre_tokenizers.ByteLevel.alphabet())
    t.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                     special_tokens=[("<|begin_of_text|>", 0)])
    fx["hf_llama3"] = t

    # Qwen2 style: NFC + Split(regex) + ByteLevel(use_regex=False), added non-special token.
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(QWEN2_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    train_bpe(t, texts, 800, chat, pre_tokenizers.ByteLevel.alphabet())
    t.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    fx["hf_qwen2"] = t

    # SentencePiece-style BPE (Llama-2's tokenizer.json): Prepend + Replace normalizers, byte fallback,
    # decoder Replace/ByteFallback/Fuse/Strip, <s> template.
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])
    train_bpe(t, texts, 500, ["<unk>", "<s>", "</s>"])
    j = json.loads(t.to_str())
    vocab = j["model"]["vocab"]
    # Insert the 256 byte tokens after the three specials, as Llama-2 has them.
    shifted = {}
    for k, v in vocab.items():
        shifted[k] = v if v < 3 else v + 256
    for b in range(256):
        shifted["<0x%02X>" % b] = 3 + b
    j["model"]["vocab"] = shifted
    for a in j["added_tokens"]:
        if a["id"] >= 3:
            a["id"] += 256
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    fx["hf_spm_bytefallback"] = Tokenizer.from_str(json.dumps(j))

    # Metaspace (newer Llama/Mistral files): prepend_scheme first, split, Metaspace decoder, no byte fallback.
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    train_bpe(t, texts, 600, ["<unk>", "<s>", "</s>"])
    fx["hf_metaspace"] = t

    # WordPiece, uncased (BERT base uncased style) and cased without accent stripping.
    for name, lower in (("hf_wordpiece_uncased", True), ("hf_wordpiece_cased", False)):
        t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        t.normalizer = normalizers.BertNormalizer(lowercase=lower)
        t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        t.decoder = decoders.WordPiece(prefix="##")
        tr = trainers.WordPieceTrainer(vocab_size=800, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                       show_progress=False)
        t.train_from_iterator(texts, tr)
        t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
        fx[name] = t

    # Split behaviours and the simple pre-tokenizers, on a char-level BPE.
    variants = {
        "hf_split_merged_prev": pre_tokenizers.Split(" ", behavior="merged_with_previous"),
        "hf_split_merged_next": pre_tokenizers.Split(" ", behavior="merged_with_next"),
        "hf_split_contiguous_invert": pre_tokenizers.Sequence([
            pre_tokenizers.Split(__import__("tokenizers").Regex(r"\p{L}+"), behavior="contiguous", invert=True),
            pre_tokenizers.Punctuation(behavior="isolated")]),
        "hf_whitespace_digits": pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                         pre_tokenizers.Digits(individual_digits=False)]),
        "hf_whitespacesplit_removed": pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(__import__("tokenizers").Regex(r"[aeiou]"),
                                                                   behavior="removed")]),
    }
    for name, pre in variants.items():
        t = Tokenizer(models.BPE(unk_token="<unk>"))
        t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
        t.pre_tokenizer = pre
        train_bpe(t, texts, 400, ["<unk>"])
        fx[name] = t
    return fx


def cases_for(tok, strings):
    cases = []
    for s in strings:
        a = tok.encode(s, add_special_tokens=False).ids
        b = tok.encode(s, add_special_tokens=True).ids
        c = {"text": s, "ids": a, "decoded": tok.decode(a, skip_special_tokens=False)}
        if b != a:
            c["ids_special"] = b
        cases.append(c)
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.normpath(os.path.join(ROOT, "..", "shared", "data")))
    ap.add_argument("--smollm2", default=os.path.expanduser("~/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    strings = vocab_strings(args.shared) + random_strings(150)
    goldens = {"generator": "tests/tools/make_tokenizer_goldens.py (tokenizers %s, sentencepiece %s)" % (
        __import__("tokenizers").__version__, __import__("sentencepiece").__version__), "fixtures": {}}

    for name, tok in make_fixtures(args.shared).items():
        path = os.path.join(OUT, name + ".json")
        tok.save(path, pretty=False)
        tok = Tokenizer.from_file(path)  # goldens from exactly what is committed
        goldens["fixtures"][name] = cases_for(tok, strings)

    # llama2.c tokenizer.bin vs the sentencepiece model it was exported from.
    import sentencepiece as spm
    sp_cases = {}
    for model, n in (("tok512.model", 512), ("tokenizer.model", 32000)):
        sp = spm.SentencePieceProcessor(model_file=os.path.join(args.shared, model))
        assert sp.vocab_size() == n
        ss = ["Once upon a time", "Once upon a time, there was a little girl named Lily.", "", " ", "Hello  world",
              "\tTabs\nand newlines\n", "naïve café 日本語 🦙", "123 4567"] + vocab_strings(args.shared)
        # run.c (and so ignis' llama2.c loader) does not collapse or strip whitespace the way
        # sentencepiece's remove_extra_whitespaces does (on in tok512.model): mark the strings where
        # that normalisation changes nothing, which are the ones the two must agree on.
        sp_cases[model] = [{"text": s, "ids": sp.encode(s),
                            "comparable": sp.normalize(s) == ("\u2581" + s.replace(" ", "\u2581") if s else "")}
                           for s in ss]
    goldens["sentencepiece"] = sp_cases

    # SmolLM2: HF BPE built from the GGUF's vocab and merges with SmolLM2's pre-tokenizer
    # (Digits(individual) + ByteLevel), specials from the control tokens.
    if os.path.exists(args.smollm2):
        kv = read_gguf_kv(args.smollm2)
        toks = kv["tokenizer.ggml.tokens"]
        types = kv["tokenizer.ggml.token_type"]
        merges = [tuple(m.split(" ", 1)) for m in kv["tokenizer.ggml.merges"]]
        t = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(toks)}, merges=merges))
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False)])
        t.decoder = decoders.ByteLevel()
        t.add_special_tokens([AddedToken(toks[i], special=True, normalized=False) for i in range(len(toks)) if types[i] == 3])
        ss = ["The capital of France is", "<|im_start|>user\nHello<|im_end|>",
              "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
              "<|im_start|>user\nWhat is 2+2? Answer in 12345 words.<|im_end|>\n<|im_start|>assistant\n"] + strings
        goldens["smollm2"] = [{"text": s, "ids": t.encode(s, add_special_tokens=False).ids} for s in ss]

    with open(os.path.join(OUT, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, separators=(",", ":"))
    print("wrote", OUT)


if __name__ == "__main__":
    sys.exit(main())
