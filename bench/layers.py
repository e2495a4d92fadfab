"""Where a worker's CPU goes, by layer, from py-spy's raw (collapsed) stacks (issue 17).

    .venv/bin/py-spy record --pid <worker> --duration 20 --rate 100 --gil \\
        --format raw -o w1.raw --nonblocking
    .venv/bin/python -m bench.layers w1.raw [w2.raw ...]

Each sample is charged to the layer of its leaf-most frame that belongs to a known package
(a frame of `threading`, `contextlib`... is skipped: the caller owns it), so the percentages
are self time per layer and add up to 100. Samples under anyio's worker thread are the batch
thread (scoring, rows, COPY, answers); the others are the event loop (HTTP, middleware,
validation, responses). With `--gil` only the thread holding the GIL is sampled: the shares
are of the worker's Python CPU, and waits on PostgreSQL do not count.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (layer, pattern on the frame's file as py-spy prints it), first match wins for a frame.
LAYERS = (
    ("our gate", r"serving/(gate|authentication|limits|errors)\.py"),
    ("batcher", r"serving/batcher\.py"),
    ("predictor: rows and answers", r"serving/predictor\.py"),
    ("persistence: COPY encoding", r"persistence/predictions\.py"),
    ("persistence: other", r"persistence/"),
    ("scoring", r"scoring/"),
    ("service.py and other serving/", r"(^service\.py|serving/)"),
    ("numpy, pandas, sklearn", r"(numpy|pandas|sklearn|scipy)/"),
    ("psycopg2, SQLAlchemy", r"(psycopg2|sqlalchemy|sqlmodel)/"),
    ("pydantic (validation, serialisation)", r"pydantic"),
    ("prometheus_client", r"prometheus_client"),
    (
        "OpenTelemetry",
        r"(opentelemetry|^asgi/__init__|^trace/|_semconv|^context/|^propagate/|^baggage/"
        r"|^_decorator|^util/http)",
    ),
    ("uvicorn (httptools protocol)", r"(uvicorn|h11|httptools)/"),
    ("Starlette", r"(starlette|fastapi)/"),
    ("BentoML", r"(bentoml|_bentoml_impl|_bentoml_sdk|simple_di)/"),
    ("anyio", r"anyio/"),
    ("uuid", r"uuid\.py"),
    ("asyncio, uvloop", r"(asyncio/|uvloop)"),
)  # fmt: skip
_FILE = re.compile(r"\(([^()]*):\d+\)$")


def layer(stack: list[str]) -> str:
    for frame in reversed(stack):
        found = _FILE.search(frame)
        path = found.group(1) if found else frame
        for name, pattern in LAYERS:
            if re.search(pattern, path):
                return name
    return "other"


def breakdown(paths: list[Path]) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per thread kind, samples per layer) over the files."""
    threads: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames, samples = stack.split(";"), int(count)
            total += samples
            batch = any("WorkerThread.run" in f for f in frames)
            threads["batch thread" if batch else "event loop"] += samples
            layers[layer(frames)] += samples
    return total, threads, layers


def main(argv: list[str]) -> None:
    total, threads, layers = breakdown([Path(a) for a in argv])
    print(f"{total} samples")
    for counts in (threads, layers):
        for name, samples in counts.most_common():
            print(f"{samples / max(total, 1) * 100:5.1f} %  {name}")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
