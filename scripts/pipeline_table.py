#!/usr/bin/env python3
"""Prints the README's pipeline tables (Markdown) from the JSON reports that
scripts/pipeline-table.sh writes to docs/pipeline/ (`llvq quantize --json` and
`llvq eval ppl --json`), scripts/tuned-table.sh (`NAME-tuned.finetune.json`, `NAME-tuned.ppl.json`)
and the task reports in docs/tasks/ (`llvq eval tasks --json`: CSR six at 500 documents, MMLU
0- and 5-shot at 4 questions per subject). Rows whose reports are missing are skipped; missing
cells are "-"."""
import json
import math
import os
import sys

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "pipeline")
TASKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "tasks")
# The task reports of each row: CSR at 500 documents (one report, or several whose tasks are
# pooled), MMLU 0-shot and 5-shot.
TASK_REPORTS = {
    "f32": (["f32-arc_easy", "f32-arc_challenge", "f32-l500-rest"], "f32-mmlu-l4", "f32-mmlu5-l4"),
    "sg1-both": (["sg-l500"], "sg1-both-mmlu-l4", "sg1-both-mmlu5-l4"),
    "ss-both": (["ss-l500"], "ss-mmlu-l4", "ss-mmlu5-l4"),
    "e8p12-both": (["e8p12-l500"], "e8p12-mmlu-l4", "e8p12-mmlu5-l4"),
    "gptq-input": (["gptq-in-l500"], "gptq-in-mmlu-l4", "gptq-in-mmlu5-l4"),
}
# LLVQ rows whose reports predate the exact-search fix of issue 10 (b9e946c): today's files
# differ (marked † in the tables; scripts/pipeline-table.sh regenerates them once their
# reports are removed).
STALE = {"sg2-both", "sg1-none", "sg1-input", "sg1-output"}
CSR = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "winogrande"]

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
# GLVQ rows (issue 12), in table order; their settings are read from the reports. With both
# rotations SDBA moves no group, so SDBA off gives the same weights (d = 8 checks it end to end);
# the pair without rotation is where it moves bits.
GLVQ = [
    "glvq8-ldlq",
    "glvq8-ldlq-mu0",
    "glvq8-ldlq-mu0-nosdba",
    "glvq24-ldlq",
    "glvq24-ldlq-mu0",
    "glvq8",
    "glvq8-mu0",
    "glvq24-mu0",
    "glvq24",
    "glvq8-ldlq-mu0-none",
    "glvq8-ldlq-mu0-nosdba-none",
]
# The LLVQ shape-gain rows the GLVQ tables are compared with (same calibration and seed).
GLVQ_REFS = ["sg1-both", "sg1-none"]


def fmt_ppl(ppl, name=None):
    mark = " †" if name in STALE else ""
    return (f"{ppl:,.0f}" if ppl >= 1000 else f"{ppl:.2f}") + mark


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load(name, kind):
    return read_json(os.path.join(DIR, f"{name}.{kind}.json"))


def task_report(name):
    return read_json(os.path.join(TASKS, f"{name}.tasks.json"))


def csr(name):
    """Mean `acc` over the six CSR tasks, or None unless all six are there."""
    accs = {}
    for rep in TASK_REPORTS.get(name, ([], None, None))[0]:
        r = task_report(rep)
        for t in (r or {}).get("tasks", []):
            accs[t["task"]] = t["acc"]
    if not all(t in accs for t in CSR):
        return None
    return 100 * sum(accs[t] for t in CSR) / len(CSR)


def mmlu(name, shots):
    reps = TASK_REPORTS.get(name)
    r = task_report(reps[1 if shots == 0 else 2]) if reps else None
    if not r or not r.get("mmlu"):
        return None
    return 100 * r["mmlu"][0]["micro_acc"]


def cell(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def tuned(name):
    """(ppl, all-in bpw, minutes, tokens) of the tuned file, or None."""
    f, p = load(f"{name}-tuned", "finetune"), load(f"{name}-tuned", "ppl")
    if f is None or p is None:
        return None
    return p["ppl"], f["bpw"], f["seconds"] / 60, f["tokens"]


def code_fields(q):
    """The `key=value` fields of a report's expanded code string (`glvq:d=8,bits=2,...`)."""
    return dict(kv.split("=") for kv in q["code"].split(":", 1)[1].split(","))


def per_layer(q):
    """Seconds of code fitting (`timings.quantization`) per layer this run quantized: comparable
    between a whole run and one resumed from its finished layers."""
    layers = {s["name"].split(".layers.")[1].split(".")[0] for s in q["stats"]}
    return q["timings"]["quantization"] / (len(layers) - q["layers_resumed"])


def row(name):
    q, p = load(name, "quant"), load(name, "ppl")
    if q is None or p is None:
        return None
    return q, p


KINDS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def glvq_proxy(out):
    """The GLVQ rows' relative proxy loss tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) (the files' `stats`, each on
    its own run's Hessians): geometric mean over all linears and per kind of linear, and the
    worst linear. Shows where a row's perplexity comes from (a tail, or every linear)."""
    out.write("\n| file | all linears | " + " | ".join(KINDS) + " | worst linear |\n")
    out.write("| --- |" + " ---: |" * (len(KINDS) + 1) + " --- |\n")
    geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))
    for name in GLVQ + GLVQ_REFS:
        q = load(name, "quant")
        if q is None or load(name, "ppl") is None:
            continue
        by = {}
        for st in q["stats"]:
            by.setdefault(st["name"].split(".")[-2], []).append(st["proxy_rel"])
        worst = max(q["stats"], key=lambda st: st["proxy_rel"])
        where = worst["name"].removeprefix("model.").removesuffix(".weight")
        cells = " | ".join(f"{geo(by[k]):.4f}" for k in KINDS)
        out.write(
            f"| {name} | {geo([st['proxy_rel'] for st in q['stats']]):.4f} | {cells} | "
            f"{where}: {worst['proxy_rel']:.3f} |\n"
        )


def main():
    f32 = load("f32", "ppl")
    out = sys.stdout
    out.write(
        "| Method | SPEC | rotation | all-in bpw | ppl | ppl tuned (all-in bpw, tuning time) "
        "| quantization wall | peak RSS | CSR acc (500/task) | MMLU 0-shot | MMLU 5-shot |\n"
    )
    out.write("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    if f32:
        out.write(
            f"| f32 reference | - | - | 32 | {f32['ppl']:.2f} | - | - | - | {cell(csr('f32'))} | "
            f"{cell(mmlu('f32', 0))} | {cell(mmlu('f32', 5))} |\n"
        )
    for name, label in MAIN:
        r = row(name)
        if r is None:
            continue
        q, p = r
        t = tuned(name)
        tc = "-" if t is None else f"**{fmt_ppl(t[0])}** ({t[1]:.4f}, {t[2]:.1f} min)"
        out.write(
            f"| {label} | `{q['method']}` | {q['rotate']} | {q['bpw']:.4f} | {fmt_ppl(p['ppl'], name)} | {tc} | "
            f"{q['timings']['total'] / 60:.1f} min | {q['peak_rss'] / 1e9:.2f} GB | {cell(csr(name))} | "
            f"{cell(mmlu(name, 0))} | {cell(mmlu(name, 5))} |\n"
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
            cells.append(fmt_ppl(r[1]["ppl"], f"{base}-{rot}") if r else "-")
        out.write(f"| {rot} | " + " | ".join(cells) + " |\n")
    out.write("\n| Calibration mode (LLVQ shape-gain, both) | ppl | calibration + propagation | total |\n")
    out.write("| --- | ---: | ---: | ---: |\n")
    for name, label in (("sg1-both", "sequential (default)"), ("sg1-both-full", "full")):
        r = row(name)
        if r:
            t = r[0]["timings"]
            out.write(
                f"| {label} | {fmt_ppl(r[1]['ppl'], name)} | {(t['calibration'] + t['propagation']) / 60:.1f} min | "
                f"{t['total'] / 60:.1f} min |\n"
            )
    out.write(
        "\n| GLVQ | rotation | d | LDLQ | µ-law | SDBA | all-in bpw | ppl | fitting per layer "
        "| fitting | quantization wall |\n"
    )
    out.write("| --- | --- | ---: | :---: | :---: | :---: | ---: | ---: | ---: | ---: | ---: |\n")
    yes = lambda v: "yes" if v == "1" else "no"
    for name in GLVQ:
        r = row(name)
        if r is None:
            continue
        q, p = r
        t = q["timings"]
        c = code_fields(q)
        part = f" ({q['layers_resumed']} layers resumed)" if q["layers_resumed"] else ""
        out.write(
            f"| `{q['method']}` | {q['rotate']} | {c['d']} | {yes(c['ldlq'])} | {yes(c['mu'])} | "
            f"{yes(c['sdba'])} | {q['bpw']:.4f} | "
            f"{fmt_ppl(p['ppl'])} | {per_layer(q):.0f} s | {t['quantization'] / 60:.1f} min{part} | "
            f"{t['total'] / 60:.1f} min{part} |\n"
        )
    for ref in GLVQ_REFS:
        r = row(ref)
        if r:
            q, p = r
            t = q["timings"]
            out.write(
                f"| LLVQ shape-gain `{q['method']}` | {q['rotate']} | 24 | yes | - | - | {q['bpw']:.4f} | {fmt_ppl(p['ppl'], ref)} | "
                f"{per_layer(q):.0f} s | {t['quantization'] / 60:.1f} min (search + LDLQ) | {t['total'] / 60:.1f} min |\n"
            )
    glvq_proxy(out)
    out.write(
        "\n| Tuned input scales (16,384 tokens, KL) | all-in bpw | ppl | ppl tuned | change "
        "| held-out KL before → after | tuning wall | training tokens/s |\n"
    )
    out.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for name, label in MAIN:
        r, f = row(name), load(f"{name}-tuned", "finetune")
        t = tuned(name)
        if r is None or f is None or t is None:
            continue
        before = r[1]["ppl"]
        out.write(
            f"| {label} | {r[0]['bpw']:.4f} → {f['bpw']:.4f} | {fmt_ppl(before)} | **{fmt_ppl(t[0])}** | "
            f"{100 * (t[0] / before - 1):+.1f}% | {f['held_out_before']:.3f} → {f['held_out_after']:.3f} | "
            f"{f['seconds'] / 60:.1f} min | {f['tokens_per_s']:.0f} |\n"
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
