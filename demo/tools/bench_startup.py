"""The bench's start-up section: `python app.py`'s start-up in a fresh process (server.start, exactly as the app
runs it: checks, weights, the default comparison sampled before the first visitor, UI and server), then a few
comparisons over HTTP at the app's defaults (new seeds); resident memory afterwards. Needs gradio.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap

from demo.engine.config import ROOT

STARTUP = textwrap.dedent('''
    import functools, json, os, shutil, sys, time
    t0 = time.perf_counter()
    import app
    from demo.serving import server
    from demo.tools import launcher
    t1 = time.perf_counter()
    port, num_samples, num_steps, calls = sys.argv[1:]
    settings = {k: int(v) for k, v in (("num_samples", num_samples), ("num_steps", num_steps)) if v != "-"}
    done = {}

    def timed(name, fn):                   # when each part of server.start finished
        @functools.wraps(fn)
        def part(*args, **kwargs):
            out = fn(*args, **kwargs)
            done[name] = time.perf_counter()
            return out
        return part
    parts = server.AppParts(serve=timed("serve", app.serve), prepare=timed("prepare", app.prepare),
                            attach=timed("attach", app.attach))
    blocks, root = server.start(parts, ["--port", port], os.environ)     # exactly what `python app.py` does
    http = []                              # the whole round trip through Gradio (queue, events, PNG files)
    client = launcher.client(f"http://127.0.0.1:{port}/")   # download_files=False, as a browser: no re-downloads
    for seed in range(int(calls)):
        start = time.perf_counter()
        launcher.call(client, launcher.defaults(seed=1 + seed, **settings))
        http.append(time.perf_counter() - start)
    rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:")) \\
        if os.path.exists("/proc/self/status") else float("nan")
    blocks.close()
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"imports_seconds": t1 - t0, "weights_seconds": done["attach"] - t1,
                      "first_comparison_seconds": done["prepare"] - done["attach"],
                      "ui_and_server_seconds": done["serve"] - done["prepare"],
                      "ready_after_imports_seconds": done["serve"] - t1, "rss_mb_after_comparisons": rss,
                      "app_http_comparison_seconds": sorted(http)[len(http) // 2]}))
''')


def startup(repeats: int, num_samples: int | None = None, num_steps: int | None = None, calls: int = 5) -> dict:
    """Medians over `repeats` fresh processes (module docstring); `calls` comparisons over HTTP in each (None
    samples or steps: the app's defaults). {"error": ...} if the process failed."""
    from demo.tools.launcher import free_port
    results = []
    for _ in range(repeats):
        argv = [str(free_port()), "-" if num_samples is None else str(num_samples),
                "-" if num_steps is None else str(num_steps), str(calls)]
        out = subprocess.run([sys.executable, "-c", STARTUP, *argv], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}
