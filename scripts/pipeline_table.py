#!/usr/bin/env python3
"""Prints the README's pipeline tables (Markdown) from the JSON reports that
scripts/pipeline-table.sh writes to docs/pipeline/ (`llvq quantize --json` and
`llvq eval ppl --json`). Rows whose reports are missing are skipped."""
import json
import os
import sys

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "pipeline")

MAIN = [
    ("rtn", "RTN (uniform 2-bit grid, per-row scale)"),
    ("gptq", "GPTQ (same grid, LDLQ)"),
    ("gptq-input", "GPTQ + input rotation (QuaRot-like)"),
    ("e8p12-both", "E8P12 (QuIP#)"),
    ("ss-both", "LLVQ spherical shaping Λ24(13)"),
    ("sg1-both", "LLVQ shape-gain Λ24(12) + 1 gain bit"),
    ("sg2-both", "LLVQ shape-gain Λ24(11) + 2 gain bits"),
]
ABLATION = ["none", "input", "output", "both"]


def fmt_ppl(ppl):
    return f"{ppl:,.0f}" if ppl >= 1000 else f"{ppl:.2f}"


def load(name, kind):
    path = os.path.join(DIR, f"{name}.{kind}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def row(name):
    q, p = load(name, "quant"), load(name, "ppl")
    if q is None or p is None:
        return None
    return q, p


def main():
    f32 = load("f32", "ppl")
    out = sys.stdout
    out.write("| Method | SPEC | rotation | all-in bpw | ppl | quantization wall | peak RSS |\n")
    out.write("| --- | --- | --- | ---: | ---: | ---: | ---: |\n")
    if f32:
        out.write(f"| f32 reference | - | - | 32 | {f32['ppl']:.2f} | - | - |\n")
    for name, label in MAIN:
        r = row(name)
        if r is None:
            continue
        q, p = r
        out.write(
            f"| {label} | `{q['method']}` | {q['rotate']} | {q['bpw']:.4f} | {fmt_ppl(p['ppl'])} | "
            f"{q['timings']['total'] / 60:.1f} min | {q['peak_rss'] / 1e9:.2f} GB |\n"
        )
    out.write("\n| Phase timings (s) | load + tokenize | calibration | propagation | quantization | write | total |\n")
    out.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for name, label in MAIN:
        r = row(name)
        if r is None:
            continue
        t = r[0]["timings"]
        out.write(
            f"| {label} | {t['load'] + t['tokenize']:.1f} | {t['calibration']:.0f} | {t['propagation']:.0f} | "
            f"{t['quantization']:.0f} | {t['write']:.1f} | {t['total']:.0f} |\n"
        )
    out.write("\n| Rotation | " + " | ".join(["E8P12 ppl", "LLVQ shape-gain ppl"]) + " |\n")
    out.write("| --- | ---: | ---: |\n")
    for rot in ABLATION:
        cells = []
        for base in ("e8p12", "sg1"):
            r = row(f"{base}-{rot}")
            cells.append(fmt_ppl(r[1]['ppl']) if r else "-")
        out.write(f"| {rot} | " + " | ".join(cells) + " |\n")
    out.write("\n| Calibration mode (LLVQ shape-gain, both) | ppl | calibration + propagation | total |\n")
    out.write("| --- | ---: | ---: | ---: |\n")
    for name, label in (("sg1-both", "sequential (default)"), ("sg1-both-full", "full")):
        r = row(name)
        if r:
            t = r[0]["timings"]
            out.write(
                f"| {label} | {fmt_ppl(r[1]['ppl'])} | {(t['calibration'] + t['propagation']) / 60:.1f} min | "
                f"{t['total'] / 60:.1f} min |\n"
            )
    fps = {}
    for n in sorted(os.listdir(DIR)):
        if n.endswith(".ppl.json"):
            p = load(n[: -len(".ppl.json")], "ppl")
            fps.setdefault((p["fingerprint"], p["windows"], p["tokens_scored"]), []).append(n)
    for (fp, w, t), names in fps.items():
        out.write(f"\nfingerprint {fp}: {w} windows, {t} tokens scored ({len(names)} runs)\n")


if __name__ == "__main__":
    main()
