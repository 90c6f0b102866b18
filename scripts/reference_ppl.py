#!/usr/bin/env python3
"""Independent reference for `llvq eval ppl`: numpy Llama forward + pure-Python BPE.

Shares no code with the Rust crate: the GGUF is read with llama.cpp's own `gguf` Python
package (which also dequantizes Q4_1), the Q/K row permutation is undone here, the
tokenizer is a from-scratch GPT-2 byte-level BPE with the `smollm` pre-tokenizer (digits
split one by one, then the GPT-2 regex), and the forward pass follows HF's modeling_llama.

    python3 -m venv .venv && .venv/bin/pip install numpy regex gguf
    .venv/bin/python scripts/reference_ppl.py --model data/SmolLM2-135M-Instruct.Q4_1.gguf \
        --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 512 [--max-windows N]
    .venv/bin/python scripts/reference_ppl.py --model ... --tokenize "some text"

Prints the same fields as `llvq eval ppl --json` (ppl, mean_nll, tokens_scored, windows,
fingerprint), so the two can be compared directly. Special tokens in the text are not
recognised (WikiText has none).
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import regex
from gguf import GGUFReader
from gguf.quants import dequantize

GPT2_RE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
DIGIT_RE = regex.compile(r"\p{N}")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Bpe:
    def __init__(self, tokens, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.cache = {}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        parts = list(w)
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = parts[best[1]], parts[best[1] + 1]
            out, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def pretokenize(self, text):
        # `smollm`: every digit is its own piece, then the GPT-2 regex inside the rest.
        pieces, last = [], 0
        for m in DIGIT_RE.finditer(text):
            if m.start() > last:
                pieces.append(text[last:m.start()])
            pieces.append(m.group())
            last = m.end()
        if last < len(text):
            pieces.append(text[last:])
        for p in pieces:
            yield from GPT2_RE.findall(p)

    def encode(self, text):
        ids = []
        for w in self.pretokenize(text):
            ids.extend(self.word("".join(self.b2u[b] for b in w.encode("utf-8"))))
        return ids


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def load_gguf(path):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    assert arch == "llama", f"reference supports llama GGUFs, got {arch}"
    hp = dict(
        layers=field(r, "llama.block_count"),
        hidden=field(r, "llama.embedding_length"),
        heads=field(r, "llama.attention.head_count"),
        kv_heads=field(r, "llama.attention.head_count_kv"),
        theta=float(field(r, "llama.rope.freq_base", 10000.0)),
        eps=float(field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
    )
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        w[t.name] = a.reshape(shape)
    # Undo llama.cpp's permute(): rows (head, d/2, 2) -> (head, 2, d/2).
    for name, t in list(w.items()):
        n = hp["heads"] if name.endswith("attn_q.weight") else hp["kv_heads"] if name.endswith("attn_k.weight") else None
        if n is not None:
            rows, cols = t.shape
            w[name] = t.reshape(n, rows // n // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
    tok = Bpe(field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.merges"))
    return hp, w, tok


def rmsnorm(x, g, eps):
    x64 = x.astype(np.float32)
    return (x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps)) * g


def rope(x, pos, theta):
    # x: [heads, T, d], HF rotate_half layout.
    d = x.shape[-1]
    inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float32) / d))
    ang = pos[:, None].astype(np.float32) * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    cos = np.concatenate([cos, cos], -1)
    sin = np.concatenate([sin, sin], -1)
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def forward(hp, w, ids):
    T = len(ids)
    H, nh, nkv = hp["hidden"], hp["heads"], hp["kv_heads"]
    d = H // nh
    emb = w["token_embd.weight"]
    x = emb[np.asarray(ids)]
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for l in range(hp["layers"]):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], hp["eps"])
        q = (h @ w[p + "attn_q.weight"].T).reshape(T, nh, d).transpose(1, 0, 2)
        k = (h @ w[p + "attn_k.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        q, k = rope(q, pos, hp["theta"]), rope(k, pos, hp["theta"])
        k = np.repeat(k, nh // nkv, axis=0)
        v = np.repeat(v, nh // nkv, axis=0)
        s = q @ k.transpose(0, 2, 1) * np.float32(1.0 / math.sqrt(d)) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"], hp["eps"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"], hp["eps"])
    head = w.get("output.weight", emb)
    return x @ head.T


def fnv1a(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-windows", type=int)
    ap.add_argument("--tokenize", help="print the token ids of this string and exit")
    a = ap.parse_args()
    hp, w, tok = load_gguf(a.model)
    if a.tokenize is not None:
        print(json.dumps(tok.encode(a.tokenize)))
        return
    text = open(a.text, encoding="utf-8", newline="").read().replace("\r\n", "\n").replace("\r", "\n")
    t0 = time.time()
    ids = tok.encode(text)
    print(f"tokenized {len(ids)} tokens in {time.time() - t0:.1f} s", file=sys.stderr)
    n = len(ids) // a.ctx
    if a.max_windows is not None:
        n = min(n, a.max_windows)
    h = fnv1a(0xCBF29CE484222325, a.ctx.to_bytes(8, "little"))
    total, scored = 0.0, 0
    t0 = time.time()
    for wi in range(n):
        win = ids[wi * a.ctx:(wi + 1) * a.ctx]
        logits = forward(hp, w, win).astype(np.float64)
        m = logits.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
        tgt = np.asarray(win[1:])
        total += float((lse[:-1] - logits[np.arange(len(tgt)), tgt]).sum())
        scored += len(tgt)
        for t in win[1:]:
            h = fnv1a(h, int(t).to_bytes(4, "little"))
        print(f"window {wi + 1}/{n}  running ppl {np.exp(total / scored):.4f}  {time.time() - t0:.0f} s", file=sys.stderr)
    mean = total / scored
    print(json.dumps(dict(ppl=float(np.exp(mean)), mean_nll=mean, tokens_scored=scored, windows=n,
                          ctx=a.ctx, text_tokens=len(ids), fingerprint=f"{h:016x}")))


if __name__ == "__main__":
    main()
