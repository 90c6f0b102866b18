#!/usr/bin/env python3
"""Writes the Arrow IPC stream fixtures of crates/model/tests/tasks.rs with pyarrow, an
independent implementation of the format, and beside each the JSON that pyarrow reads back.

Synthetic content only (no third-party data). Covers what `tasks::arrow` must read: several
record batches, string and large_string, list and large_list of strings, signed and unsigned
integers of every width, empty strings and lists, non-ASCII text, and a slice (non-zero list
offsets) like the MMLU columns of Hugging Face `save_to_disk`.

    python3 -m venv /tmp/arrow-venv && /tmp/arrow-venv/bin/pip install pyarrow
    /tmp/arrow-venv/bin/python scripts/tasks_arrow_fixture.py crates/model/tests/data
"""
import json
import os
import sys

import pyarrow as pa


def write(out, name, table, batch_rows):
    path = os.path.join(out, name + ".arrow")
    with pa.OSFile(path, "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        for b in table.to_batches(max_chunksize=batch_rows):
            w.write_batch(b)
    with pa.OSFile(path, "rb") as f:
        back = pa.ipc.open_stream(f).read_all()
    with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump({"names": back.schema.names, "columns": back.to_pydict()}, f, ensure_ascii=False, indent=0)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = 11
    q = [f"Question {i}: what is {i} + {i}? " + "ü∑" * (i % 3) for i in range(n)]
    choices = [[f"c{i}{j}" * (j + 1) for j in range(i % 5)] for i in range(n)]
    mmlu_like = pa.table({
        "question": pa.array(q, pa.string()),
        "subject": pa.array(["synthetic_subject"] * n, pa.string()),
        "choices": pa.array(choices, pa.list_(pa.string())),
        "answer": pa.array([i % 4 for i in range(n)], pa.int64()),
    })
    write(out, "mmlu_like", mmlu_like, 4)
    widths = pa.table({
        "i8": pa.array([-128, 127, 0, -1], pa.int8()),
        "i16": pa.array([-32768, 32767, 5, -2], pa.int16()),
        "i32": pa.array([-2**31, 2**31 - 1, 7, -3], pa.int32()),
        "u8": pa.array([0, 255, 1, 2], pa.uint8()),
        "u32": pa.array([0, 2**32 - 1, 3, 4], pa.uint32()),
        "large": pa.array(["", "a", "日本語", "x" * 40], pa.large_string()),
        "large_list": pa.array([[], ["a"], ["", "b"], ["c", "d", "e"]], pa.large_list(pa.string())),
    })
    write(out, "widths", widths, 3)
    four = pa.table({
        "question": pa.array([f"  What is {i} times two?\n" for i in range(6)], pa.string()),
        "subject": pa.array(["synthetic_subject"] * 6, pa.string()),
        "choices": pa.array([[str(2 * i + d) for d in (0, 1, -1, 2)] for i in range(6)], pa.list_(pa.string())),
        "answer": pa.array([0, 1, 2, 3, 0, 1], pa.int64()),
    })
    write(out, "mmlu_four", four, 4)
    # A slice: the batch's list offsets do not start at zero.
    write(out, "sliced", mmlu_like.slice(3, 6), 100)


if __name__ == "__main__":
    main()
