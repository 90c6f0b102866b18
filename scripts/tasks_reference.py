#!/usr/bin/env python3
"""Independent reference for `llvq eval tasks`: per-document choices on the first N documents.

Shares no code with the Rust crate: the requests are read here with gzip/json, the model and
tokenizer are those of `reference_ppl.py` (llama.cpp's `gguf` package to read and dequantize,
a from-scratch byte-level BPE), the forward is a numpy Llama here, and every choice is run from
scratch: the choices of a document are right-padded into one batch (causal attention keeps the
padding out of every scored position), no KV cache, no shared prefix. The pairing rule is lm-evaluation-harness's `_encode_pair`: trailing spaces
of the context move to the continuation, context + continuation is tokenized as one string,
and the continuation is what follows len(encode(context)) tokens.

    python3 -m venv .venv && .venv/bin/pip install numpy regex gguf
    target/release/llvq fetch-defaults --tasks
    target/release/llvq eval tasks --limit 50 --per-doc /tmp/llvq-docs.jsonl
    .venv/bin/python scripts/tasks_reference.py --model data/SmolLM2-135M-Instruct.Q4_1.gguf \
        --data-dir data --limit 50 --compare /tmp/llvq-docs.jsonl
    # or score first (--save F), compare later without the model: --load F --compare G

Prints one JSON line per task (docs, acc, acc_norm, and with --compare the number of documents
whose acc / acc_norm choice differs and the largest log-likelihood difference); exits 1 when
any choice differs.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import math  # noqa: E402

from reference_ppl import load_gguf, rmsnorm, rope  # noqa: E402

CSR = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "winogrande"]


def read_docs(path, limit):
    docs = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] >= 1_000_000:
                continue
            d = docs.setdefault(r["doc_id"], {"label": r["label"], "choices": {}})
            d["choices"][r["idx"]] = (r["request"]["context"], r["request"]["continuation"])
    ids = sorted(docs)[:limit]
    return [(i, docs[i]["label"], [docs[i]["choices"][k] for k in sorted(docs[i]["choices"])]) for i in ids]


def encode_pair(tok, context, continuation):
    if context == "":
        return [0] + tok.encode(continuation), 1  # <|endoftext|> is id 0 in SmolLM2
    n = len(context) - len(context.rstrip())
    if n:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = tok.encode(context + continuation)
    return whole, len(tok.encode(context))


def forward_batch(hp, w, seqs, starts):
    """Hidden states of several sequences, each on its own (right-padded into one batch so the
    linear layers run as one matrix product; causal attention keeps padding out of every real
    position), then the LM head on the rows from start - 1 on. Returns one logits array each."""
    B, T = len(seqs), max(len(s) for s in seqs)
    H, nh, nkv = hp["hidden"], hp["heads"], hp["kv_heads"]
    d = H // nh
    ids = np.zeros((B, T), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    emb = w["token_embd.weight"]
    x = emb[ids].reshape(B * T, H)
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    heads = lambda y, n: y.reshape(B, T, n, d).transpose(0, 2, 1, 3)  # noqa: E731
    for l in range(hp["layers"]):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], hp["eps"])
        q = rope(heads(h @ w[p + "attn_q.weight"].T, nh), pos, hp["theta"])
        k = rope(heads(h @ w[p + "attn_k.weight"].T, nkv), pos, hp["theta"])
        v = heads(h @ w[p + "attn_v.weight"].T, nkv)
        k = np.repeat(k, nh // nkv, axis=1)
        v = np.repeat(v, nh // nkv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) * np.float32(1.0 / math.sqrt(d)) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B * T, nh * d)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"], hp["eps"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    x = x.reshape(B, T, H)
    head = w.get("output.weight", emb)
    out = []
    for b, (seq, start) in enumerate(zip(seqs, starts)):
        rows = rmsnorm(x[b, start - 1: len(seq) - 1], w["output_norm.weight"], hp["eps"])
        out.append(rows @ head.T)
    return out


def logliks(hp, w, pairs):
    """Sum of log p(continuation token | prefix) for each (ids, start), all in one batch."""
    seqs = [ids for ids, _ in pairs]
    starts = [start for _, start in pairs]
    res = []
    for logits, ids, start in zip(forward_batch(hp, w, seqs, starts), seqs, starts):
        rows = logits.astype(np.float64)
        m = rows.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(rows - m).sum(-1, keepdims=True)))[:, 0]
        tgt = np.asarray(ids[start:])
        res.append(float((rows[np.arange(len(tgt)), tgt] - lse).sum()))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--tasks", default=",".join(CSR))
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--compare", help="JSON Lines from `llvq eval tasks --per-doc`")
    ap.add_argument("--save", help="write this script's per-document scores here (JSON Lines)")
    ap.add_argument("--load", help="compare scores saved by --save instead of computing them")
    a = ap.parse_args()
    ours = {}
    if a.load:
        with open(a.load, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                ours.setdefault(r["task"], []).append((r["doc_id"], r["lls"], r["pred"], r["pred_norm"]))
        compare(ours, a.compare)
        return
    hp, w, tok = load_gguf(a.model)
    save = open(a.save + ".tmp", "w", encoding="utf-8") if a.save else None
    for task in a.tasks.split(","):
        path = os.path.join(a.data_dir, "tasks", task, "rc_0shot", "requests.jsonl.gz")
        docs = read_docs(path, a.limit)
        t0 = time.time()
        hits = hits_norm = 0
        for doc_id, label, choices in docs:
            lls = logliks(hp, w, [encode_pair(tok, c, k) for c, k in choices])
            chars = [len(k[1:] if k.startswith(" ") else k) for _, k in choices]
            pred = int(np.argmax(lls))
            pred_norm = int(np.argmax([l / max(c, 1) for l, c in zip(lls, chars)]))
            hits += pred == label
            hits_norm += pred_norm == label
            ours.setdefault(task, []).append((doc_id, lls, pred, pred_norm))
            if save:
                save.write(json.dumps(dict(task=task, doc_id=doc_id, lls=lls, pred=pred, pred_norm=pred_norm)) + "\n")
                save.flush()
        print(json.dumps(dict(task=task, docs=len(docs), acc=hits / len(docs), acc_norm=hits_norm / len(docs),
                              seconds=round(time.time() - t0, 1))), flush=True)
    if save:
        save.close()
        os.replace(a.save + ".tmp", a.save)
    if a.compare:
        compare(ours, a.compare)


def compare(ours, path):
    theirs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            theirs[(r["task"], r["doc_id"])] = r
    bad = 0
    for task, rows in ours.items():
        diff = diff_norm = missing = 0
        max_dll = 0.0
        for doc_id, lls, pred, pred_norm in rows:
            r = theirs.get((task, doc_id))
            if r is None:
                missing += 1
            else:
                diff += r["pred"] != pred
                diff_norm += r["pred_norm"] != pred_norm
                max_dll = max(max_dll, max(abs(x - y) for x, y in zip(r["lls"], lls)))
        print(json.dumps(dict(task=task, compared=len(rows), differ_acc=diff, differ_acc_norm=diff_norm,
                              missing=missing, max_abs_dll=max_dll)), flush=True)
        bad += diff + diff_norm + missing
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
