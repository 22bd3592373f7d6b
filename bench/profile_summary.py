#!/usr/bin/env python3
"""Summarise a py-spy `record -f raw --threads` file: threads, self time, inclusive time.

    .venv/bin/python bench/profile_summary.py bench/out/profile-sqlite-W1-<stamp>.txt [--top 25]

Frames look like `function (path/to/file.py:line)`; the line is dropped so one
function is one row. Percentages are of all samples (all threads) unless stated.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def func(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def load(path: Path) -> list[tuple[list[str], int]]:
    rows = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            rows.append((stack.split(";"), int(n)))
    return rows


# Leaf frames of a thread that waits (py-spy cannot always tell a blocked thread from a busy one).
IDLE_LEAVES = (
    "Condition.wait (threading.py",  # anyio / Starlette thread-pool workers waiting for work
    "Queue.get (queue.py",
    "_connection_worker_thread (aiosqlite/core.py:59)",  # aiosqlite thread waiting for a statement
    "_worker (concurrent/futures/thread.py:81)",  # executor threads waiting for work
)


def thread_kind(first: str, body: list[str]) -> str:
    name = first.split(":", 1)[1].strip() if ":" in first else first
    if name == "MainThread":
        return "MainThread (event loop + SQLAlchemy greenlets)"
    if "aiosqlite" in name or any("aiosqlite/core" in f for f in body[:4]):
        return "aiosqlite connection threads"
    if "gatehouse-hash" in name:
        return "password-hash pool"
    if any("anyio" in f for f in body[:6]):
        return "anyio worker threads (run_in_threadpool)"
    return name.split(" (")[0]


def summarize(path: Path, top: int = 25, focus: str | None = None, keep_idle: bool = False) -> str:
    rows = load(path)
    threads: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = busy = 0
    for frames, n in rows:
        first = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        body = frames[1:] if first != "?" else frames
        if not body:
            continue
        total += n
        kind = thread_kind(first, body)
        if not keep_idle and body[-1].startswith(IDLE_LEAVES):
            idle[kind] += n
            continue
        threads[kind] += n
        if focus and not any(focus in f for f in frames):
            continue
        busy += n
        leaf[func(body[-1])] += n
        for fn in {func(f) for f in body}:
            incl[fn] += n
        for mod in {m.group(1) for f in body if (m := re.search(r"\(([^:]+)\.py:", f))}:
            files[mod] += n
    total = total or 1
    busy = busy or 1
    out = [
        f"samples: {total} ({path.name}); waiting (dropped): {sum(idle.values())}; "
        f"busy{' in ' + repr(focus) if focus else ''}: {busy}. % below are of busy samples.",
        "",
        "| thread | busy samples | waiting samples |",
        "|---|---|---|",
    ]
    for k in sorted(set(threads) | set(idle), key=lambda k: -threads[k]):
        out.append(f"| {k} | {threads[k]} | {idle[k]} |")
    out += ["", "| self (leaf) function | % |", "|---|---|"]
    out += [f"| `{k}` | {100 * v / busy:.1f} |" for k, v in leaf.most_common(top)]
    out += ["", "| inclusive function | % |", "|---|---|"]
    out += [f"| `{k}` | {100 * v / busy:.1f} |" for k, v in incl.most_common(top * 2)]
    out += ["", "| inclusive by source file | % |", "|---|---|"]
    out += [f"| `{k}` | {100 * v / busy:.1f} |" for k, v in files.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--focus", help="only stacks containing this text (e.g. 'MainThread')")
    ap.add_argument("--keep-idle", action="store_true", help="keep samples of waiting threads")
    args = ap.parse_args()
    print(summarize(args.file, args.top, args.focus, args.keep_idle))


if __name__ == "__main__":
    main()
