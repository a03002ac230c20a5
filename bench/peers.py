#!/usr/bin/env python3
"""Peer benchmark for Llama-shaped decoders on one GPU: ignis vs Hugging Face eager vs a
gpt-fast style torch.compile decoder, plus the device's copy bandwidth and matmul rate.

  python3 bench/peers.py --shape llama-2-7b --ignis build/ignis --out bench-out
  python3 bench/peers.py --model /path/to/hf-llama-folder --ignis build/ignis --out bench-out
  python3 bench/peers.py --shape smollm2-135m --device cpu --new-tokens 4   # smoke test, no GPU

Everything runs in one process (ignis as a subprocess) with random bf16 weights built on the
device (no download, no network). Stages, in order:
  1. device copy bandwidth: a large device-to-device copy, (bytes read + written) / time, median
  2. cuBLAS bf16 matmul rate: 8192^3, 2*n^3 / time, median
  3. ignis: `IGNIS bench --synthetic SHAPE --json` (or `bench -m MODEL --json`), JSON read back
  4. HF transformers eager (default attention, usually sdpa): greedy generate, batch 1 and 8
  5. a small Llama written here in PyTorch, gpt-fast recipe: static KV cache updated with
     index_copy_, decode step compiled with torch.compile(mode="reduce-overhead",
     fullgraph=True), coordinate-descent tuning, CUDA graphs; same weights as 4
For each engine: decode tok/s (batch x new tokens / wall time of one generate call, 8-token
prompt), time to first token of a 512-token prompt, warm-up (first call minus a warm call: the
compile time for torch.compile), peak torch.cuda.max_memory_allocated.
Every stage is time-bounded (SIGALRM) and a failing stage prints its error and the run goes on.
"""
import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback

T_START = time.time()

SHAPES = {
    # name: hidden, layers, heads, kv heads, ffn, vocab, rope theta, context, tied
    "llama-2-7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                       rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=False),
    "llama-3-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                       rope_theta=500000.0, max_position_embeddings=8192, tie_word_embeddings=False),
    "llama-2-13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                        num_key_value_heads=40, intermediate_size=13824, vocab_size=32000,
                        rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=False),
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                         rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True),
}

ENGINE_HF = "HF eager"
ENGINE_TC = "torch.compile (gpt-fast)"
ENGINE_IGNIS = "ignis"


def log(msg):
    print(f"[{time.time() - T_START:6.1f}s] {msg}", flush=True)


class StageTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds):
    """Raises StageTimeout in the main thread after `seconds` (between Python bytecodes)."""
    def on_alarm(signum, frame):
        raise StageTimeout(f"time limit of {seconds:.0f}s reached")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Runner:
    """Runs stages under a per-stage limit and an overall budget; records errors."""

    def __init__(self, budget_s):
        self.end = T_START + budget_s
        self.errors = []

    def remaining(self):
        return self.end - time.time()

    def stage(self, name, limit_s, fn, *args, min_needed=5.0, **kw):
        left = self.remaining()
        if left < min_needed:
            msg = f"{name}: skipped, {left:.0f}s left of the time budget"
            log(msg)
            self.errors.append(msg)
            return None
        lim = min(limit_s, left)
        log(f"{name}: start (limit {lim:.0f}s)")
        t0 = time.time()
        try:
            with deadline(lim):
                out = fn(*args, **kw)
            log(f"{name}: done in {time.time() - t0:.1f}s")
            return out
        except Exception as e:  # noqa: BLE001 -- a failing peer must not stop the others
            msg = f"{name}: FAILED after {time.time() - t0:.1f}s: {type(e).__name__}: {e}"
            log(msg)
            tb = traceback.format_exc().strip().splitlines()
            print("    " + "\n    ".join(tb[-8:]), flush=True)
            self.errors.append(msg[:2000])
            free_memory()
            return None


def free_memory():
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# ----------------------------------------------------------------------------- timing helpers

def sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def wall(dev, fn):
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t, out


def reset_peak(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev):
    import torch
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return None


# ----------------------------------------------------------------------------- 1, 2: device rates

def copy_bandwidth(dev, mib, reps):
    import torch
    n = mib * 2**20 // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=dev).normal_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    inner = 10 if dev.type == "cuda" else 1     # several copies per sample: sync overhead << time

    def copies():
        for _ in range(inner):
            dst.copy_(src)
    times = [wall(dev, copies)[0] / inner for _ in range(reps)]
    src = dst = None
    med = statistics.median(times)
    gbps = 2 * n * 2 / med / 1e9
    log(f"copy bandwidth: {gbps:.0f} GB/s ({mib} MiB buffer, median of {reps})")
    return {"copy_gbps": gbps, "buffer_mib": mib, "reps": reps}


def matmul_rate(dev, size, dtype, reps):
    import torch
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    c = torch.empty(size, size, device=dev, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    inner = 10 if dev.type == "cuda" else 1

    def mms():
        for _ in range(inner):
            torch.matmul(a, b, out=c)
    times = [wall(dev, mms)[0] / inner for _ in range(reps)]
    a = b = c = None
    med = statistics.median(times)
    tflops = 2 * size**3 / med / 1e12
    log(f"matmul {size}^3 {str(dtype).replace('torch.', '')}: {tflops:.1f} TFLOP/s (median of {reps})")
    return {"matmul_tflops": tflops, "size": size, "reps": reps}


# ----------------------------------------------------------------------------- 3: ignis

def parse_json_output(text):
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    i, j = text.find("{"), text.rfind("}")
    if i >= 0 and j > i:
        return json.loads(text[i:j + 1])
    raise ValueError("no JSON object in the output")


def run_ignis(args, timeout_s, errors):
    exe = args.ignis
    if not exe:
        log("ignis: no --ignis PATH given, skipped")
        return None
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        log(f"ignis: {exe} is missing or not executable, skipped")
        errors.append(f"ignis: {exe} is missing or not executable")
        return None
    cmd = [exe, "bench"]
    cmd += ["--synthetic", args.shape] if args.shape else ["-m", args.model]
    cmd += ["--json"] + shlex.split(args.ignis_args or "")
    log("ignis: " + " ".join(shlex.quote(c) for c in cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        log(f"ignis: timed out after {timeout_s:.0f}s; stderr tail:\n{err[-3000:]}")
        errors.append(f"ignis: timed out after {timeout_s:.0f}s")
        return None
    if p.returncode != 0:
        log(f"ignis: exit status {p.returncode}; stderr:\n{p.stderr[-4000:]}\nstdout tail:\n{p.stdout[-1000:]}")
        last = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        errors.append(f"ignis: exit status {p.returncode}: {last[:300]}")
        return None
    try:
        j = parse_json_output(p.stdout)
    except ValueError as e:
        log(f"ignis: could not read its JSON ({e}); stdout tail:\n{p.stdout[-2000:]}\nstderr tail:\n{p.stderr[-2000:]}")
        errors.append(f"ignis: no JSON in its output ({e})")
        return None
    log("ignis: " + json.dumps(j)[:600])
    return {"cmd": cmd, "result": j}


# ----------------------------------------------------------------------------- model setup

def hf_rope_theta(cfg):
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict) and rp.get("rope_theta") is not None:
        return float(rp["rope_theta"])
    t = getattr(cfg, "rope_theta", None)
    return float(t) if t is not None else 10000.0


def hf_rope_scaling(cfg):
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        t = rp.get("rope_type", "default")
        return None if t in (None, "default") else t
    rs = getattr(cfg, "rope_scaling", None)
    return (rs or {}).get("rope_type", (rs or {}).get("type")) if rs else None


def build_hf_model(args, dev, dtype):
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    if args.model:
        cfg = AutoConfig.from_pretrained(args.model)
        kw = {}
        major, minor = (int(x) for x in __import__("transformers").__version__.split(".")[:2])
        kw["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = dtype
        model = LlamaForCausalLM.from_pretrained(args.model, **kw).to(dev)
    else:
        cfg = LlamaConfig(**SHAPES[args.shape], rms_norm_eps=1e-5, bos_token_id=1,
                          eos_token_id=2, pad_token_id=0, hidden_act="silu",
                          attention_bias=False, mlp_bias=False)
        torch.manual_seed(0)
        prev = torch.get_default_dtype()
        try:
            torch.set_default_dtype(dtype)   # initialise directly in bf16 on the device
            with torch.device(dev):
                model = LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(prev)
        model = model.to(device=dev, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    seen, n_bytes, emb_bytes = set(), 0, 0
    for name, p in model.named_parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        n_bytes += p.numel() * p.element_size()
        if name.endswith("embed_tokens.weight"):
            emb_bytes = p.numel() * p.element_size()
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    c = model.config
    info = {
        "params_gib": n_bytes / 2**30,
        # Read per decode step: every matrix once (the tied embedding doubles as the output
        # head); an untied embedding table contributes only the looked-up rows.
        "weight_read_bytes": n_bytes - (0 if tied else emb_bytes),
        "tied": tied,
        "n_layers": c.num_hidden_layers, "dim": c.hidden_size, "n_heads": c.num_attention_heads,
        "n_kv_heads": c.num_key_value_heads or c.num_attention_heads,
        "head_dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        "ffn": c.intermediate_size, "vocab": c.vocab_size, "rope_theta": hf_rope_theta(c),
        "rope_scaling": hf_rope_scaling(c), "norm_eps": c.rms_norm_eps,
        "attn_implementation": getattr(c, "_attn_implementation", None),
    }
    # Random weights may pick EOS: never stop early.
    try:
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
    except Exception:  # noqa: BLE001
        pass
    log(f"model: {info['params_gib']:.2f} GiB of {str(dtype).replace('torch.', '')} weights, "
        f"{info['n_layers']} layers, dim {info['dim']}, heads {info['n_heads']}/{info['n_kv_heads']}, "
        f"vocab {info['vocab']}, theta {info['rope_theta']:g}, attention {info['attn_implementation']}")
    return model, info


def shape_info(shape, elt=2):
    """Sizes of a named shape without building it (used when the HF model could not be built)."""
    s = SHAPES[shape]
    d, L, nh, nkv = s["hidden_size"], s["num_hidden_layers"], s["num_attention_heads"], s["num_key_value_heads"]
    hd, f, V = d // nh, s["intermediate_size"], s["vocab_size"]
    per_layer = d * nh * hd + 2 * d * nkv * hd + nh * hd * d + 3 * d * f + 2 * d
    total = L * per_layer + d + V * d * (1 if s["tie_word_embeddings"] else 2)
    return {"params_gib": total * elt / 2**30,
            "weight_read_bytes": (L * per_layer + d + V * d) * elt,
            "tied": s["tie_word_embeddings"], "n_layers": L, "dim": d, "n_heads": nh,
            "n_kv_heads": nkv, "head_dim": hd, "ffn": f, "vocab": V, "rope_theta": s["rope_theta"],
            "rope_scaling": None, "norm_eps": 1e-5, "attn_implementation": None}


def random_prompt(batch, n, vocab, dev, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, max(101, vocab - 100), (batch, n), generator=g).to(dev)


# ----------------------------------------------------------------------------- 4: HF eager

def hf_generate_fn(model, ids, n_new):
    import torch
    from transformers import GenerationConfig

    gc_ = GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                           num_beams=1, pad_token_id=0, eos_token_id=None)
    mask = torch.ones_like(ids)

    def run():
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=mask, generation_config=gc_)
    return run


def hf_decode(model, info, dev, batch, args):
    ids = random_prompt(batch, args.prompt_tokens, info["vocab"], dev, seed=batch)
    run = hf_generate_fn(model, ids, args.new_tokens)
    reset_peak(dev)
    first, out = wall(dev, run)
    n_new = out.shape[1] - ids.shape[1]
    if n_new != args.new_tokens:
        log(f"{ENGINE_HF} b{batch}: generated {n_new} tokens, asked for {args.new_tokens}")
    log(f"{ENGINE_HF} b{batch}: first call {first:.2f}s")
    times = []
    for _ in range(args.hf_reps):
        t, out = wall(dev, run)
        times.append(t)
    med = statistics.median(times)
    r = {"engine": ENGINE_HF, "batch": batch, "tok_s": batch * n_new / med,
         "warmup_s": max(0.0, first - med), "first_call_s": first, "call_s": times,
         "new_tokens": int(n_new), "peak_mem_gib": peak_gib(dev)}
    log(f"{ENGINE_HF} b{batch}: {r['tok_s']:.1f} tok/s (median of {len(times)} x {n_new} tokens)")
    return r


def hf_ttft(model, info, dev, args):
    ids = random_prompt(1, args.ttft_tokens, info["vocab"], dev, seed=512)
    run = hf_generate_fn(model, ids, 1)
    reset_peak(dev)
    wall(dev, run)
    times = [wall(dev, run)[0] for _ in range(args.ttft_reps)]
    med = statistics.median(times)
    log(f"{ENGINE_HF} TTFT {args.ttft_tokens}: {med * 1e3:.1f} ms")
    return {"ttft_ms": med * 1e3, "prefill_tok_s": args.ttft_tokens / med,
            "ttft_peak_mem_gib": peak_gib(dev)}


# ----------------------------------------------------------------------------- 5: gpt-fast style

def sdpa_supports_gqa():
    import torch
    import torch.nn.functional as F
    try:
        q = torch.zeros(1, 4, 1, 8)
        k = torch.zeros(1, 2, 3, 8)
        F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def make_fast_llama_classes():
    """A small Llama in plain PyTorch, in the style of gpt-fast (written for this benchmark)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    use_gqa_flag = sdpa_supports_gqa()

    class KVCache(nn.Module):
        def __init__(self, batch, n_kv, max_seq, head_dim, dtype, device):
            super().__init__()
            shape = (batch, n_kv, max_seq, head_dim)
            self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
            self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

        def update(self, input_pos, k, v):
            # k, v: [B, n_kv, S, D] written at positions input_pos [S] of the static cache.
            self.k_cache.index_copy_(2, input_pos, k)
            self.v_cache.index_copy_(2, input_pos, v)
            return self.k_cache, self.v_cache

    def rmsnorm(x, w, eps):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * w

    def rope(x, cos, sin):
        # Half-split pairs (i, i + D/2), the Hugging Face layout of q_proj / k_proj rows.
        # x: [B, S, H, D]; cos, sin: [S, D/2] float32.
        d2 = x.shape[-1] // 2
        xf = x.float()
        x1, x2 = xf[..., :d2], xf[..., d2:]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).type_as(x)

    class Block(nn.Module):
        def __init__(self, p, cfg):
            super().__init__()
            self.cfg = cfg
            for k, v in p.items():
                setattr(self, k, nn.Parameter(v, requires_grad=False))
            self.kv_cache = None

        def forward(self, x, cos, sin, mask, input_pos):
            c = self.cfg
            B, S, _ = x.shape
            nh, nkv, hd = c["n_heads"], c["n_kv_heads"], c["head_dim"]
            h = rmsnorm(x, self.attn_norm, c["eps"])
            q, k, v = F.linear(h, self.wqkv).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
            q = rope(q.view(B, S, nh, hd), cos, sin).transpose(1, 2)
            k = rope(k.view(B, S, nkv, hd), cos, sin).transpose(1, 2)
            v = v.view(B, S, nkv, hd).transpose(1, 2)
            k, v = self.kv_cache.update(input_pos, k, v)
            if nkv != nh and use_gqa_flag:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            else:
                if nkv != nh:
                    k = k.repeat_interleave(nh // nkv, dim=1)
                    v = v.repeat_interleave(nh // nkv, dim=1)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + F.linear(y.transpose(1, 2).reshape(B, S, nh * hd), self.wo)
            h = rmsnorm(x, self.ffn_norm, c["eps"])
            return x + F.linear(F.silu(F.linear(h, self.w1)) * F.linear(h, self.w3), self.w2)

    class FastLlama(nn.Module):
        def __init__(self, tok_emb, out_w, out_norm, blocks, cfg):
            super().__init__()
            self.cfg = cfg
            self.tok_emb = nn.Parameter(tok_emb, requires_grad=False)
            self.out_w = out_w if out_w is tok_emb else nn.Parameter(out_w, requires_grad=False)
            self.out_norm = nn.Parameter(out_norm, requires_grad=False)
            self.layers = nn.ModuleList([Block(p, cfg) for p in blocks])
            self.max_batch = self.max_seq = -1

        def setup_caches(self, batch, max_seq):
            c = self.cfg
            dev, dt = self.tok_emb.device, self.tok_emb.dtype
            for layer in self.layers:
                layer.kv_cache = None
            free_memory()
            for layer in self.layers:
                layer.kv_cache = KVCache(batch, c["n_kv_heads"], max_seq, c["head_dim"], dt, dev)
            hd = c["head_dim"]
            inv = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd))
            ang = torch.outer(torch.arange(max_seq, device=dev, dtype=torch.float32), inv)
            self.register_buffer("cos", ang.cos(), persistent=False)
            self.register_buffer("sin", ang.sin(), persistent=False)
            self.register_buffer("causal_mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=dev)),
                                 persistent=False)
            self.max_batch, self.max_seq = batch, max_seq

        def forward(self, idx, input_pos, last_only=False):
            mask = self.causal_mask[None, None, input_pos]          # [1, 1, S, max_seq]
            cos, sin = self.cos[input_pos], self.sin[input_pos]
            x = F.embedding(idx, self.tok_emb)
            for layer in self.layers:
                x = layer(x, cos, sin, mask, input_pos)
            if last_only:
                x = x[:, -1:]
            return F.linear(rmsnorm(x, self.out_norm, self.cfg["eps"]), self.out_w)

    return FastLlama


def fast_from_hf(hf, info):
    """Builds the gpt-fast style model on the HF weights (shared, except the fused wqkv)."""
    import torch
    FastLlama = make_fast_llama_classes()
    m = hf.model
    blocks = []
    for layer in m.layers:
        a, f = layer.self_attn, layer.mlp
        if getattr(a.q_proj, "bias", None) is not None:
            raise ValueError("q/k/v biases (qwen2-style) are not supported by this peer")
        blocks.append({
            "attn_norm": layer.input_layernorm.weight.data,
            "wqkv": torch.cat([a.q_proj.weight.data, a.k_proj.weight.data, a.v_proj.weight.data], 0),
            "wo": a.o_proj.weight.data,
            "ffn_norm": layer.post_attention_layernorm.weight.data,
            "w1": f.gate_proj.weight.data, "w3": f.up_proj.weight.data, "w2": f.down_proj.weight.data,
        })
    emb = m.embed_tokens.weight.data
    out = emb if info["tied"] else hf.lm_head.weight.data
    cfg = {"n_heads": info["n_heads"], "n_kv_heads": info["n_kv_heads"], "head_dim": info["head_dim"],
           "eps": float(info["norm_eps"]), "theta": float(info["rope_theta"])}
    if info["rope_scaling"]:
        log(f"note: rope scaling {info['rope_scaling']!r} ignored by the compiled peer (speed is unaffected)")
    return FastLlama(emb, out, m.norm.weight.data, blocks, cfg).eval()


def sdpa_math_ctx():
    import torch
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel([SDPBackend.MATH])
    except Exception:  # noqa: BLE001
        try:
            return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True)
        except Exception:  # noqa: BLE001
            return contextlib.nullcontext()


def decode_one_token(model, cur, input_pos):
    import torch
    logits = model(cur, input_pos)
    return torch.argmax(logits[:, -1], dim=-1, keepdim=True).to(torch.int64)


def fast_generate(model, prompt, n_new, decode):
    """gpt-fast loop: eager prefill, then n_new - 1 compiled single-token steps."""
    import torch
    B, T = prompt.shape
    dev = prompt.device
    with torch.no_grad():
        input_pos = torch.arange(0, T, device=dev)
        logits = model(prompt, input_pos, last_only=True)
        cur = torch.argmax(logits[:, -1], dim=-1, keepdim=True).to(torch.int64)
        out = [cur]
        input_pos = torch.tensor([T], device=dev, dtype=torch.int64)
        for _ in range(n_new - 1):
            with sdpa_math_ctx():
                nxt = decode(model, cur, input_pos)
            input_pos += 1
            out.append(nxt.clone())
            cur = nxt.clone()
    return torch.cat(out, dim=1)


def configure_inductor():
    import torch._inductor.config as ic
    settings = {}
    for key, val in (("coordinate_descent_tuning", True), ("triton.unique_kernel_names", True),
                     ("triton.cudagraphs", True), ("fx_graph_cache", True)):
        obj, attr = ic, key
        if "." in key:
            sub, attr = key.split(".")
            obj = getattr(ic, sub, None)
        if obj is not None and hasattr(obj, attr):
            setattr(obj, attr, val)
            settings[key] = val
    return settings


def cudagraph_skips():
    try:
        from torch._dynamo.utils import counters
        return int(counters["inductor"].get("cudagraph_skips", 0))
    except Exception:  # noqa: BLE001
        return None


def fast_decode(model, info, dev, batch, args):
    import torch
    torch._dynamo.reset()          # frees the previous batch size's graphs; compiles afresh
    free_memory()
    max_seq = int(math.ceil((args.prompt_tokens + args.new_tokens + 1) / 16) * 16)
    model.setup_caches(batch, max_seq)
    decode = torch.compile(decode_one_token, mode=args.compile_mode, fullgraph=True)
    ids = random_prompt(batch, args.prompt_tokens, info["vocab"], dev, seed=batch)
    skips0 = cudagraph_skips()
    reset_peak(dev)
    first, out = wall(dev, lambda: fast_generate(model, ids, args.new_tokens, decode))
    log(f"{ENGINE_TC} b{batch}: first call (compile + capture) {first:.1f}s")
    wall(dev, lambda: fast_generate(model, ids, args.new_tokens, decode))   # settle cudagraph trees
    times = []
    for _ in range(args.reps):
        t, out = wall(dev, lambda: fast_generate(model, ids, args.new_tokens, decode))
        times.append(t)
    med = statistics.median(times)
    n_new = out.shape[1]
    skips = cudagraph_skips()
    r = {"engine": ENGINE_TC, "batch": batch, "tok_s": batch * n_new / med,
         "warmup_s": max(0.0, first - med), "first_call_s": first, "call_s": times,
         "new_tokens": int(n_new), "peak_mem_gib": peak_gib(dev), "kv_max_seq": max_seq,
         "cudagraph_skips": (skips - skips0) if (skips is not None and skips0 is not None) else None}
    log(f"{ENGINE_TC} b{batch}: {r['tok_s']:.1f} tok/s (median of {len(times)} x {n_new} tokens), "
        f"cudagraph skips {r['cudagraph_skips']}")
    return r


def fast_ttft(model, info, dev, args):
    import torch
    torch._dynamo.reset()
    model.setup_caches(1, int(math.ceil((args.ttft_tokens + 1) / 16) * 16))
    ids = random_prompt(1, args.ttft_tokens, info["vocab"], dev, seed=512)

    def prefill():
        with torch.no_grad():
            pos = torch.arange(0, ids.shape[1], device=dev)
            return torch.argmax(model(ids, pos, last_only=True)[:, -1], dim=-1)
    reset_peak(dev)
    wall(dev, prefill)
    times = [wall(dev, prefill)[0] for _ in range(args.ttft_reps)]
    med = statistics.median(times)
    log(f"{ENGINE_TC} TTFT {args.ttft_tokens}: {med * 1e3:.1f} ms (eager prefill, as gpt-fast by default)")
    return {"ttft_ms": med * 1e3, "prefill_tok_s": args.ttft_tokens / med, "ttft_peak_mem_gib": peak_gib(dev)}


def fast_vs_hf(fast, hf, info, dev, args):
    """Sanity check: both models on the same prompt give (nearly) the same last logits."""
    import torch
    ids = random_prompt(1, 16, info["vocab"], dev, seed=7)
    fast.setup_caches(1, 32)
    with torch.no_grad():
        a = fast(ids, torch.arange(16, device=dev))[0].float()
        b = hf(input_ids=ids).logits[0].float()
    d = (a - b).abs().max().item()
    scale = b.abs().max().item()
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    log(f"compiled-peer model vs HF on 16 tokens: max abs diff {d:.3g} (max |logit| {scale:.3g}), "
        f"argmax agree {agree * 100:.0f}%")
    return {"max_abs_diff": d, "max_abs_logit": scale, "argmax_agree": agree}


# ----------------------------------------------------------------------------- report

def kv_read_bytes(info, batch, args, elt=2):
    avg_ctx = args.prompt_tokens + args.new_tokens / 2
    return 2 * info["n_layers"] * info["n_kv_heads"] * info["head_dim"] * elt * batch * avg_ctx


def add_bandwidth(row, info, args, copy_gbps, weight_bytes=None):
    if row.get("tok_s") is None or not info:
        return
    wb = weight_bytes if weight_bytes is not None else info["weight_read_bytes"]
    steps_s = row["tok_s"] / row["batch"]
    row["gb_s"] = (wb + kv_read_bytes(info, row["batch"], args)) * steps_s / 1e9
    if copy_gbps:
        row["pct_copy_bw"] = 100.0 * row["gb_s"] / copy_gbps


def ignis_rows(ig, batches):
    j = ig["result"]
    rows = []
    keys = {1: "decode_tok_s", 8: "decode_tok_s_batch8"}
    for b in batches:
        k = keys.get(b, f"decode_tok_s_batch{b}")
        if j.get(k) is None:
            continue
        rows.append({"engine": ENGINE_IGNIS, "batch": b, "tok_s": float(j[k]),
                     "warmup_s": j.get("warmup_s"), "peak_mem_gib": j.get("peak_mem_gib"),
                     "ttft_ms": j.get("ttft_ms_512") if b == min(batches) else None,
                     "prefill_tok_s": j.get("prefill_tok_s") if b == min(batches) else None})
    return rows


def fmt(v, spec):
    if v is None:
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


COLUMNS = [("engine", "engine", "s"), ("batch", "batch", "d"), ("tok/s", "tok_s", ",.1f"),
           ("GB/s", "gb_s", ",.0f"), ("% of copy BW", "pct_copy_bw", ".1f"),
           ("TTFT 512 (ms)", "ttft_ms", ",.1f"), ("warm-up (s)", "warmup_s", ".1f"),
           ("peak mem (GiB)", "peak_mem_gib", ".2f")]


def table_lines(rows, markdown=False, ttft_tokens=512):
    cells = [[fmt(r.get(k), spec) for _, k, spec in COLUMNS] for r in rows]
    heads = [h.replace("512", str(ttft_tokens)) for h, _, _ in COLUMNS]
    if markdown:
        out = ["| " + " | ".join(heads) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in cells]
        return out
    w = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    line = lambda xs: "  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(xs))  # noqa: E731
    return [line(heads), "  ".join("-" * x for x in w)] + [line(c) for c in cells]


def versions():
    v = {"python": platform.python_version()}
    for m in ("torch", "transformers", "triton"):
        try:
            v[m] = __import__(m).__version__
        except Exception:  # noqa: BLE001
            v[m] = None
    try:
        import torch
        v["cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return v


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--shape", choices=sorted(SHAPES), help="random-weight model of this shape")
    src.add_argument("--model", help="a Hugging Face Llama folder (config.json + safetensors)")
    ap.add_argument("--ignis", default=None, help="path to the ignis binary (skipped if absent)")
    ap.add_argument("--ignis-args", default="", help="extra arguments for `ignis bench`")
    ap.add_argument("--ignis-timeout", type=float, default=150.0)
    ap.add_argument("--out", default="peers-out", help="folder for the JSON and markdown results")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--new-tokens", type=int, default=128, help="greedy tokens per generate call")
    ap.add_argument("--prompt-tokens", type=int, default=8)
    ap.add_argument("--ttft-tokens", type=int, default=512)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--reps", type=int, default=5, help="timed runs of the compiled decoder")
    ap.add_argument("--hf-reps", type=int, default=2, help="timed runs of the (slow) HF eager path")
    ap.add_argument("--ttft-reps", type=int, default=3)
    ap.add_argument("--copy-mib", type=int, default=None, help="copy buffer (default 2048 on GPU, 256 on CPU)")
    ap.add_argument("--matmul-size", type=int, default=None, help="default 8192 on GPU, 1024 on CPU")
    ap.add_argument("--compile-mode", default="reduce-overhead")
    ap.add_argument("--budget", type=float, default=480.0, help="overall time budget in seconds")
    ap.add_argument("--skip", default="", help="comma list of stages to skip: copy,matmul,ignis,hf,compile")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    R = Runner(args.budget)
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    what = args.shape or os.path.basename(os.path.normpath(args.model))

    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        log("CUDA is not available: use --device cpu for a smoke test")
        sys.exit(2)
    dev = torch.device(args.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dev_name = torch.cuda.get_device_name(dev)
        props = torch.cuda.get_device_properties(dev)
        dev_desc = f"{dev_name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"
    else:
        dev_name = dev_desc = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    vers = versions()
    log(f"peers: {what} on {dev_desc}; torch {vers['torch']}, transformers {vers['transformers']}, "
        f"triton {vers['triton']}, CUDA {vers.get('cuda')}")
    try:
        import transformers
        transformers.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass
    torch.backends.cuda.matmul.allow_tf32 = True

    result = {"date": date, "device": dev_desc, "versions": vers, "what": what,
              "args": vars(args), "rows": [], "errors": R.errors}
    on_gpu = dev.type == "cuda"

    # 1, 2: device rates
    cp = mm = None
    if "copy" not in skip:
        cp = R.stage("copy bandwidth", 60, copy_bandwidth, dev, args.copy_mib or (2048 if on_gpu else 256),
                     20 if on_gpu else 5)
    if "matmul" not in skip:
        mm = R.stage("matmul", 90, matmul_rate, dev, args.matmul_size or (8192 if on_gpu else 1024),
                     dtype, 20 if on_gpu else 3)
    free_memory()
    copy_gbps = cp["copy_gbps"] if cp else None
    result["copy"], result["matmul"] = cp, mm

    # 3: ignis first, while this process holds almost no device memory
    ig = None
    if "ignis" not in skip:
        ig = R.stage("ignis", args.ignis_timeout + 15, run_ignis, args,
                     max(10.0, min(args.ignis_timeout, R.remaining() - 10)), R.errors)
    result["ignis"] = ig

    # 4: HF eager
    hf, info = None, None
    if not ({"hf", "compile"} <= skip):
        built = R.stage("build HF model", 240, build_hf_model, args, dev, dtype)
        if built:
            hf, info = built
        built = None     # the only references to the HF model are `hf` (dropped after stage 4)
    result["model"] = info
    rows = {}
    if hf is not None and "hf" not in skip:
        for b in batches:
            r = R.stage(f"{ENGINE_HF} batch {b}", 150, hf_decode, hf, info, dev, b, args)
            rows[(ENGINE_HF, b)] = r or {"engine": ENGINE_HF, "batch": b}
        t = R.stage(f"{ENGINE_HF} TTFT", 60, hf_ttft, hf, info, dev, args)
        if t:
            rows[(ENGINE_HF, min(batches))].update(t)

    # 5: the compiled gpt-fast style decoder on the same weights
    if hf is not None and "compile" not in skip:
        fast = R.stage("build compiled-peer model", 60, fast_from_hf, hf, info)
        if fast is not None:
            result["compiled_vs_hf"] = R.stage("compiled-peer check vs HF", 30, fast_vs_hf, fast, hf, info, dev, args)
            del hf
            hf = None
            free_memory()
            result["inductor_settings"] = configure_inductor()
            for b in batches:
                r = R.stage(f"{ENGINE_TC} batch {b}", 300, fast_decode, fast, info, dev, b, args,
                            min_needed=20)
                rows[(ENGINE_TC, b)] = r or {"engine": ENGINE_TC, "batch": b}
            t = R.stage(f"{ENGINE_TC} TTFT", 60, fast_ttft, fast, info, dev, args)
            if t:
                rows[(ENGINE_TC, min(batches))].update(t)
            del fast
    hf = None
    free_memory()

    # report
    ig_rows = ignis_rows(ig, batches) if ig else []
    if not ig_rows and args.ignis and "ignis" not in skip:
        ig_rows = [{"engine": ENGINE_IGNIS, "batch": b} for b in batches]   # shown as "-"
    ig_wb = None
    if ig and ig["result"].get("weight_gib") is not None:
        ig_wb = float(ig["result"]["weight_gib"]) * 2**30
    ordered = ig_rows + [rows[k] for k in sorted(rows, key=lambda k: (k[0] != ENGINE_HF, k[1]))]
    if info is None and args.shape:
        elt = {"bf16": 2, "fp16": 2, "fp32": 4}[args.dtype]
        info = result["model"] = shape_info(args.shape, elt)
    for r in ordered:
        add_bandwidth(r, info, args, copy_gbps, ig_wb if r["engine"] == ENGINE_IGNIS else None)
    result["rows"] = ordered

    head = [f"peers: {what}, {args.dtype}, prompt {args.prompt_tokens} + {args.new_tokens} greedy tokens; "
            f"TTFT with a {args.ttft_tokens}-token prompt",
            f"device: {dev_desc}",
            f"torch {vers['torch']}, transformers {vers['transformers']}, triton {vers['triton']}, "
            f"CUDA {vers.get('cuda')}; {date}",
            f"copy bandwidth: {fmt(copy_gbps, ',.0f')} GB/s; matmul {mm['size'] if mm else '-'}^3 "
            f"{args.dtype}: {fmt(mm['matmul_tflops'] if mm else None, ',.1f')} TFLOP/s"]
    if info:
        head.append(f"weights: {info['params_gib']:.2f} GiB ({info['weight_read_bytes'] / 2**30:.2f} GiB read "
                    f"per decode step); attention: {info['attn_implementation']}")
    notes = ["tok/s = batch x new tokens / wall time of one generate call (8-token prompt, greedy).",
             "GB/s = (weights read per step + KV cache at the mean context) x steps/s; "
             "% of copy BW = GB/s / measured copy bandwidth.",
             "warm-up = first call minus a warm call (compile + CUDA graph capture for torch.compile); "
             "ignis reports its own.",
             "peak mem = torch.cuda.max_memory_allocated during that measurement (weights included)."]
    text = "\n".join(head + [""] + table_lines(ordered, ttft_tokens=args.ttft_tokens) + [""] + ["  " + n for n in notes])
    if R.errors:
        text += "\n\nerrors:\n" + "\n".join("  " + e.splitlines()[0][:300] for e in R.errors)
    print("\n" + text, flush=True)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"peers-{what}-{dev_name.replace(' ', '_').replace('/', '_')[:40]}"
                                  f"-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1, default=str)
    md = ["# " + head[0], ""] + ["- " + h for h in head[1:]] + [""] + table_lines(ordered, markdown=True, ttft_tokens=args.ttft_tokens) \
        + [""] + ["- " + n for n in notes]
    if R.errors:
        md += ["", "Errors:", ""] + ["- `" + e.splitlines()[0][:300].replace("`", "'") + "`" for e in R.errors]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    log(f"wrote {stem}.json and {stem}.md (total {time.time() - T_START:.0f}s)")
    if any("time limit" in e for e in R.errors):
        # A stage interrupted inside torch.compile may leave compile workers or a CUDA graph
        # capture behind; do not let them hold the process open at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
