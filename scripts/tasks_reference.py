#!/usr/bin/env python3
"""Independent reference for `llvq eval tasks`: per-document choices on the first N documents.

Shares no code with the Rust crate: the requests are read here with gzip/json, the model and
tokenizer are those of `reference_ppl.py` (llama.cpp's `gguf` package to read and dequantize,
a from-scratch byte-level BPE, a numpy Llama forward), and every choice is run from scratch
(no KV cache). The pairing rule is lm-evaluation-harness's `_encode_pair`: trailing spaces
of the context move to the continuation, context + continuation is tokenized as one string,
and the continuation is what follows len(encode(context)) tokens.

    python3 -m venv .venv && .venv/bin/pip install numpy regex gguf
    target/debug/llvq fetch-defaults --tasks
    target/release/llvq eval tasks --limit 50 --per-doc /tmp/llvq-docs.jsonl
    .venv/bin/python scripts/tasks_reference.py --model data/SmolLM2-135M-Instruct.Q4_1.gguf \
        --data-dir data --limit 50 --compare /tmp/llvq-docs.jsonl

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
from reference_ppl import forward, load_gguf  # noqa: E402

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


def loglik(hp, w, ids, start):
    logits = forward(hp, w, ids[:-1]).astype(np.float64)
    rows = logits[start - 1:]
    m = rows.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(rows - m).sum(-1, keepdims=True)))[:, 0]
    tgt = np.asarray(ids[start:])
    return float((rows[np.arange(len(tgt)), tgt] - lse).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--tasks", default=",".join(CSR))
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--compare", help="JSON Lines from `llvq eval tasks --per-doc`")
    a = ap.parse_args()
    hp, w, tok = load_gguf(a.model)
    ours = {}
    for task in a.tasks.split(","):
        path = os.path.join(a.data_dir, "tasks", task, "rc_0shot", "requests.jsonl.gz")
        docs = read_docs(path, a.limit)
        t0 = time.time()
        hits = hits_norm = 0
        for doc_id, label, choices in docs:
            lls = [loglik(hp, w, *encode_pair(tok, c, k)) for c, k in choices]
            chars = [len(k[1:] if k.startswith(" ") else k) for _, k in choices]
            pred = int(np.argmax(lls))
            pred_norm = int(np.argmax([l / max(c, 1) for l, c in zip(lls, chars)]))
            hits += pred == label
            hits_norm += pred_norm == label
            ours.setdefault(task, []).append((doc_id, lls, pred, pred_norm))
        print(json.dumps(dict(task=task, docs=len(docs), acc=hits / len(docs), acc_norm=hits_norm / len(docs),
                              seconds=round(time.time() - t0, 1))), flush=True)
    if not a.compare:
        return
    theirs = {}
    with open(a.compare, encoding="utf-8") as f:
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
