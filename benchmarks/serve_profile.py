"""Where one single-text request's CPU goes in ``onnxembed serve`` (issue 20, item 3). Not a test.

    .venv/bin/python benchmarks/serve_profile.py ARTIFACT_DIR [--clients 64] [--size 1] [--seconds 8]
        [--pythonpath /tmp/before_pkg] [--label before] [--json out.json]

The server runs in its own process and is driven by ``serve_load.py``'s load generator (closed loop,
pre-built OpenAI ``/v1/embeddings`` requests of real STS sentences). Two windows:

1. **No profiler**: CPU per request from ``/proc`` per thread, split into the event-loop thread (the
   process's main thread: HTTP parsing, routing, JSON, futures, answers) and every other thread
   (tokenizer, batch runner, onnxruntime's pools), in microseconds of CPU per request.
2. **py-spy** (sampling, ``--nonblocking``, Python frames): the event-loop thread's samples sorted into
   stages by the innermost frame that belongs to one: HTTP protocol (uvicorn), framework (starlette
   routing, request and response objects), request parse (``serve.schema`` parse, orjson loads), model
   layer (``serve.model``: admission, split, submit), answer encoding (``serve.schema`` responses),
   hand-offs (``serve.batcher`` deliver/futures), asyncio, and the event loop's own C code (uvloop,
   socket I/O: samples whose innermost Python frame is the loop's ``run``).

``--pythonpath`` runs the server on another checkout (the "before" code) with the same venv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_runtime import sts_sentences  # noqa: E402
from serve_load import CLK, Server, _free_port, _load, _requests  # noqa: E402

# (stage, predicate on one "function (file:line)" frame), tried from the innermost frame outwards.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("request parse (JSON, validation)", ("serve/schema.py:parse", "parse_json", "parse_openai", "parse_tei", "orjson")),
    ("answer encoding", ("openai_response", "tei_response", "_b64", "_floats", "encode_float")),
    ("model layer (admission, split, submit)", ("serve/model.py",)),
    ("hand-off to/from the batcher threads", ("serve/batcher.py",)),
    ("handlers and counters (serve/app.py, metrics)", ("serve/app.py", "serve/metrics.py", "prometheus_client")),
    ("framework (starlette routing, Request, Response)", ("starlette/",)),
    ("HTTP protocol (uvicorn)", ("uvicorn/protocols", "uvicorn/middleware", "httptools")),
    ("asyncio (futures, tasks, events)", ("asyncio/",)),
]
LOOP_C = "event loop C code (uvloop: sockets, scheduling)"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread id of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK
    return out


def stage_of(frames: list[str]) -> str:
    """The stage of one sample (frames root first, as py-spy writes them)."""
    leaf = frames[-1] if frames else ""
    if "Runner.run (asyncio" in leaf or "run_forever" in leaf or "asyncio_run" in leaf:
        return LOOP_C  # inside the loop's C code (uvloop): no Python frame of its own
    for frame in reversed(frames):
        for stage, keys in STAGES:
            if any(k in frame for k in keys):
                return stage
    return "other: " + leaf


def read_raw(path: Path, main_tid: int) -> tuple[Counter[str], Counter[str], int]:
    """py-spy ``--format raw --threads`` file -> samples per stage and per leaf on the main thread, and all samples."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        head = frames[0]
        if f"{main_tid}" not in head and f"{main_tid:#x}" not in head:
            continue
        stages[stage_of(frames[1:])] += n
        leaves[frames[-1]] += n
    return stages, leaves, total


def window(port: int, reqs: list[bytes], clients: int, size: int, seconds: float, pid: int) -> tuple[int, float, dict[int, float], float]:
    """Requests answered, wall seconds, CPU seconds per thread, and the load generator's CPU share."""
    before = thread_cpu(pid)
    # no warm-up inside (done before): the window is the whole call but for connecting and the last
    # answers, so the per-thread CPU and the requests counted cover the same work
    lat, errors, client_cpu, _server_cpu, wall = asyncio.run(_load(port, reqs, clients, size, 0.0, seconds, pid))
    after = thread_cpu(pid)
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return len(lat), wall, {t: after[t] - before.get(t, 0.0) for t in after}, client_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--size", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--pool", type=int, default=2048, help="STS sentences the requests cycle over (as serve_load.py)")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--pythonpath", default=None, help="run the server on this checkout's package (the 'before' code)")
    ap.add_argument("--serve-args", default="", help="extra flags for onnxembed serve")
    ap.add_argument("--label", default="after")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    port = _free_port()
    env = {"PYTHONPATH": args.pythonpath} if args.pythonpath else {}
    cmd = [sys.executable, "-m", "onnxembed.cli", "serve", str(args.dir), "--port", str(port), "--name", "m", *args.serve_args.split()]
    server = Server(args.label, cmd, port, health="/ready", env=env)
    logs = Path(tempfile.mkdtemp(prefix="serve_profile_"))
    texts = sts_sentences(args.pool)
    reqs = _requests(port, "/v1/embeddings", "m", texts, args.size, max(1, len(texts) // args.size))  # as serve_load.py
    server.start(logs)
    pid = server.pid
    assert pid is not None
    try:
        # 1. CPU per request without the profiler
        n, wall, cpu, client_cpu = _timed(port, reqs, args, pid)
        loop_cpu = cpu.get(pid, 0.0)
        other_cpu = sum(v for t, v in cpu.items() if t != pid)
        # 2. the event-loop thread's samples by stage
        raw = logs / "pyspy.txt"
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", str(args.rate),
                                "--duration", str(int(args.seconds + 2)), "--format", "raw", "--threads", "--nonblocking", "-o", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        asyncio.run(_load(port, reqs, args.clients, args.size, 0.5, args.seconds, pid))
        _, err = spy.communicate(timeout=120)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {err.decode()[-500:]}")
        stages, leaves, total = read_raw(raw, pid)
    finally:
        server.stop()
    main_samples = sum(stages.values())
    per_req = 1e6 / max(n, 1)
    lines = [f"{args.label}: {args.clients} clients x {args.size} texts, {n} requests in {wall:.1f} s = {n * args.size / wall:.0f} texts/s; "
             f"load generator {client_cpu:.2f} of a core; load average {os.getloadavg()[0]:.2f}",
             f"CPU per request: event-loop thread {loop_cpu * per_req:.0f} us, other threads (tokenizer, runner, onnxruntime) "
             f"{other_cpu * per_req:.0f} us, total {(loop_cpu + other_cpu) * per_req:.0f} us",
             f"event-loop thread, {main_samples} of {total} py-spy samples (share of its busy time; us per request at the CPU above):"]
    table = []
    for stage, k in stages.most_common():
        share = k / max(main_samples, 1)
        table.append({"stage": stage, "samples": k, "share": share, "us_per_request": share * loop_cpu * per_req})
        lines.append(f"  {share * 100:5.1f} %  {share * loop_cpu * per_req:6.0f} us  {stage}")
    lines.append("innermost frames on the event-loop thread (top 12):")
    for leaf, k in leaves.most_common(12):
        lines.append(f"  {k / max(main_samples, 1) * 100:5.1f} %  {leaf}")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "clients": args.clients, "size": args.size, "requests": n, "wall": wall,
                                         "loop_cpu_us": loop_cpu * per_req, "other_cpu_us": other_cpu * per_req, "stages": table,
                                         "load": os.getloadavg()}, indent=1))
    return 0


def _timed(port: int, reqs: list[bytes], args: argparse.Namespace, pid: int) -> tuple[int, float, dict[int, float], float]:
    """The no-profiler window: per-thread CPU over exactly the timed requests (warm-up done first)."""
    asyncio.run(_load(port, reqs, args.clients, args.size, 0.5, 1.0, pid))  # warm-up
    return window(port, reqs, args.clients, args.size, args.seconds, pid)


if __name__ == "__main__":
    raise SystemExit(main())
