"""Evaluation throughput against peers: the same 500-item, 2-prompt evaluation (1,000 calls).

Run by (a) trimloop's runner (`evaluate_items` through the Gateway, a fresh SQLite cache),
(b) promptfoo (npm package, installed under `bench-output/peers/promptfoo/`, `openai:chat`
provider pointed at the local server), (c) DSPy's `Evaluate` (threads) with a `dspy.LM`, and
(d) a bare aiohttp loop (the practical limit), all at concurrency 64 against the same
fixed-latency OpenAI-compatible server (its own process). Each run is its own process with a
timeout; an immediate second run (same cache folder, new process) shows what each tool caches.

Calls are counted at the server (`GET /_stats`, reset with `POST /_reset` between runs), which
is also polled every 10 ms: `span_s` runs from the first request the server saw to the last answer
it sent, so it leaves out each tool's start-up (imports, Node, reading the config). `wall_s` is the
whole process. Ratio = ideal time (N × latency ÷ concurrency) ÷ `span_s`. Prints JSON.

    python -m bench.peers [--items 500] [--latency-ms 50] [--concurrency 64] [--timeout 300]
                          [--tools trimloop,promptfoo,dspy,aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._util import fake_openai, machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-output" / "peers"
MODEL = "bench/fake"
MAX_TOKENS = 8
PROMPTS = (
    "Classify the sentiment of this movie review as positive or negative. Answer with one word.\n\n"
    "Review: {{text}}\nSentiment:",
    "Sentiment (positive or negative) of: {{text}}",
)
ADJECTIVES = ("gripping", "dull", "charming", "clumsy", "moving", "tedious", "sharp", "bloated")
SUBJECTS = ("plot", "cast", "script", "score", "pacing", "ending", "camera work", "dialogue")
TOOLS = ("trimloop", "promptfoo", "dspy", "aiohttp")


def items(n: int) -> list[dict[str, str]]:
    """Deterministic reviews with a label; each text is distinct, so no call repeats within a run."""
    out = []
    for i in range(n):
        adjective = ADJECTIVES[i % len(ADJECTIVES)]
        subject = SUBJECTS[(i // len(ADJECTIVES)) % len(SUBJECTS)]
        out.append({"text": f"Review {i}: the {subject} was {adjective}, and I said so to friends.",
                    "label": "positive" if i % len(ADJECTIVES) % 2 == 0 else "negative"})
    return out


def fill(prompt: str, text: str) -> str:
    return prompt.replace("{{text}}", text)


# --- workers: each runs in its own process and prints one JSON line -------------------------------

def worker_trimloop(base: str, folder: Path, n: int, concurrency: int) -> dict[str, Any]:
    from trimloop.core.db import make_engine, upgrade
    from trimloop.core.gateway import Gateway
    from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
    from trimloop.core.templates import Template
    from trimloop.evals.evaluators import build_evaluators
    from trimloop.evals.runner import EvalItem, evaluate_items

    url = f"sqlite:///{folder / 'cache.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = Settings(home=folder, gateway=GatewaySettings(concurrency=concurrency),
                        models={MODEL: ModelConfig(api_base=base, input_per_mtok=0.15, output_per_mtok=0.6)})
    templates = [Template.chat(("user", p)) for p in PROMPTS]
    data = [EvalItem(i, {"text": row["text"]}, expected=row["label"]) for i, row in enumerate(items(n))]
    evaluators = build_evaluators(["contains"])

    async def run() -> tuple[float, float, float, list[Any]]:
        began = time.perf_counter()
        async with Gateway(settings, engine=engine) as gateway:
            # resolving the model imports litellm for its price map (seconds, once per process);
            # done before the clock starts, as DSPy's import of litellm is
            gateway.model(MODEL)
            prepare_s = time.perf_counter() - began
            began = time.perf_counter()
            results = await asyncio.gather(*(
                evaluate_items(template=t, model=MODEL, params={"temperature": 0, "max_tokens": MAX_TOKENS},
                               items=data, evaluators=evaluators, gateway=gateway, concurrency=concurrency)
                for t in templates))
            eval_s = time.perf_counter() - began
        return prepare_s, eval_s, time.perf_counter() - began, [r for batch in results for r in batch]

    prepare_s, eval_s, closed_s, results = asyncio.run(run())
    engine.dispose()
    return {"prepare_s": round(prepare_s, 3), "eval_s": round(eval_s, 3), "eval_and_close_s": round(closed_s, 3),
            "results": len(results),
            "errors": sum(r.error is not None for r in results), "cached": sum(r.cached for r in results),
            "spent": round(sum(r.cost for r in results if not r.cached), 6)}


def worker_dspy(base: str, folder: Path, n: int, concurrency: int) -> dict[str, Any]:
    os.environ["DSPY_CACHEDIR"] = str(folder / "cache")  # before dspy is imported: a cache of its own
    import dspy

    lm = dspy.LM("openai/fake", api_base=base, api_key="none", temperature=0, max_tokens=MAX_TOKENS)
    dspy.configure(lm=lm)

    class Prompted(dspy.Module):  # type: ignore[misc]
        """One fixed prompt through the configured dspy.LM (the fake server cannot answer in the
        field format a dspy.Predict adapter parses, which would add a fallback call per item)."""

        def __init__(self, prompt: str) -> None:
            super().__init__()
            self.prompt = prompt

        def forward(self, text: str) -> Any:
            out = dspy.settings.lm(messages=[{"role": "user", "content": fill(self.prompt, text)}])
            answer = out[0] if isinstance(out[0], str) else out[0].get("text", "")
            return dspy.Prediction(answer=answer)

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        return example.label.lower() in prediction.answer.lower()

    devset = [dspy.Example(text=row["text"], label=row["label"]).with_inputs("text") for row in items(n)]
    evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=concurrency, display_progress=False,
                             max_errors=len(devset) * len(PROMPTS), provide_traceback=False)
    began = time.perf_counter()
    scores = [evaluate(Prompted(p)) for p in PROMPTS]
    eval_s = time.perf_counter() - began
    return {"eval_s": round(eval_s, 3), "results": sum(len(s.results) for s in scores),
            "score": [float(s.score) for s in scores], "dspy": dspy.__version__}


def worker_aiohttp(base: str, folder: Path, n: int, concurrency: int) -> dict[str, Any]:
    import aiohttp

    messages = [[{"role": "user", "content": fill(p, row["text"])}] for p in PROMPTS for row in items(n)]

    async def run() -> tuple[float, int]:
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(m: list[dict[str, str]]) -> str:
                async with limit:
                    async with session.post(f"{base}/chat/completions", json={
                            "model": "fake", "messages": m, "max_tokens": MAX_TOKENS, "temperature": 0}) as resp:
                        body = await resp.json()
                        return str(body["choices"][0]["message"]["content"])

            began = time.perf_counter()
            outs = await asyncio.gather(*(one(m) for m in messages))
            return time.perf_counter() - began, len(outs)

    eval_s, count = asyncio.run(run())
    return {"eval_s": round(eval_s, 3), "results": count}


WORKERS = {"trimloop": worker_trimloop, "dspy": worker_dspy, "aiohttp": worker_aiohttp}


# --- the parent: server, stats polling, subprocesses with timeouts ----------------------------------

class StatsPoller:
    """Polls the fake server's /_stats: when the first request arrived and the last answer left."""

    def __init__(self, root: str, every_s: float = 0.01) -> None:
        self.root, self.every_s = root, every_s
        self.first: float | None = None
        self.last: float | None = None
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                try:
                    stats = client.get(f"{self.root}/_stats").json()
                except httpx.HTTPError:
                    stats = None
                now = time.perf_counter()
                if stats:
                    if self.first is None and stats["requests"] > 0:
                        self.first = now
                    if stats["answered"] != self.answered:
                        self.answered, self.last = stats["answered"], now
                self._stop.wait(self.every_s)

    def __enter__(self) -> "StatsPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def span(self) -> float | None:
        return None if self.first is None or self.last is None else self.last - self.first


def run_process(cmd: list[str], *, env: dict[str, str] | None, cwd: Path | None, timeout: float,
                root: str) -> dict[str, Any]:
    """Run one peer process with the stats poller; calls and peak in-flight come from the server."""
    httpx.post(f"{root}/_reset", timeout=5).raise_for_status()
    began = time.perf_counter()
    with StatsPoller(root) as poller:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this run started
            stdout, stderr = proc.communicate()
            wall = time.perf_counter() - began
            return {"error": f"timed out after {timeout:.0f} s", "wall_s": round(wall, 3),
                    **_stats(root), "stderr_tail": stderr[-800:]}
        wall = time.perf_counter() - began
        time.sleep(0.05)  # one more poll after the process is gone
    out: dict[str, Any] = {"wall_s": round(wall, 3), "span_s": round(poller.span, 3) if poller.span else None,
                           **_stats(root)}
    if proc.returncode != 0:
        out["error"] = f"exit code {proc.returncode}"
        first = [line.strip() for line in stderr.splitlines() if "Error" in line or "error" in line.lower()]
        if first:
            out["error_line"] = first[0][:300]
        out["stderr_tail"] = stderr[-1500:]
    out["stdout"] = stdout
    return out


def _stats(root: str) -> dict[str, Any]:
    stats = httpx.get(f"{root}/_stats", timeout=5).json()
    return {"calls": stats["requests"], "answered": stats["answered"], "peak_inflight": stats["peak_inflight"]}


def python_peer(tool: str, base: str, folder: Path, args: argparse.Namespace, root: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.peers", "--worker", tool, "--base", base, "--folder", str(folder),
           "--items", str(args.items), "--concurrency", str(args.concurrency)]
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    out = run_process(cmd, env=env, cwd=ROOT, timeout=args.timeout, root=root)
    stdout = out.pop("stdout", "")
    if "error" not in out:
        try:
            out.update(json.loads(stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            out["error"] = "no JSON from the worker"
            out["stdout_tail"] = stdout[-800:]
    return out


def promptfoo_config(base: str, n: int, concurrency: int) -> str:
    """promptfooconfig.yaml (JSON is valid YAML): 2 prompts × n tests on one openai:chat provider."""
    config = {
        "description": "trimloop bench: 500 items x 2 prompts",
        "prompts": list(PROMPTS),
        "providers": [{"id": "openai:chat:fake", "config": {
            "apiBaseUrl": base, "apiKey": "none", "temperature": 0, "max_tokens": MAX_TOKENS}}],
        "defaultTest": {"assert": [{"type": "icontains", "value": "{{label}}"}]},
        "tests": [{"vars": row} for row in items(n)],
        "evaluateOptions": {"maxConcurrency": concurrency, "showProgressBar": False},
    }
    return json.dumps(config, indent=1)


def promptfoo_peer(base: str, folder: Path, args: argparse.Namespace, root: str, run: int) -> dict[str, Any]:
    binary = OUT / "promptfoo" / "node_modules" / ".bin" / "promptfoo"
    if not binary.exists():
        if not shutil.which("npm"):
            return {"error": "npm is not installed"}
        install = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "promptfoo"], cwd=binary.parents[2],
                                 capture_output=True, text=True, timeout=900) if _npm_init(binary.parents[2]) else None
        if install is None or install.returncode != 0 or not binary.exists():
            return {"error": "npm install promptfoo failed: " + (install.stderr[-800:] if install else "npm init")}
    config = folder / "promptfooconfig.yaml"
    config.write_text(promptfoo_config(base, args.items, args.concurrency))
    env = dict(os.environ, PROMPTFOO_CONFIG_DIR=str(folder / "home"), PROMPTFOO_CACHE_PATH=str(folder / "cache"),
               PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1", OPENAI_API_KEY="none",
               PROMPTFOO_DISABLE_SHARING="1", NO_COLOR="1")
    output = folder / f"results-{run}.json"
    output.unlink(missing_ok=True)  # never read an earlier run's results
    cmd = [str(binary), "eval", "-c", str(config), "--no-table", "--no-progress-bar", "--no-share",
           "-j", str(args.concurrency), "-o", str(output)]
    out = run_process(cmd, env=env, cwd=folder, timeout=args.timeout, root=root)
    stdout = out.pop("stdout", "")
    if "error" in out:
        out.setdefault("stdout_tail", stdout[-800:])
    if output.exists():
        try:
            stats = json.loads(output.read_text())["results"]["stats"]
            out["results"] = stats.get("successes", 0) + stats.get("failures", 0) + stats.get("errors", 0)
            out["errors"] = stats.get("errors", 0)
            if out.get("error") == "exit code 100":  # promptfoo's exit code when some assertions fail
                out.pop("error")
                out.pop("stderr_tail", None)
                out.pop("stdout_tail", None)
        except (ValueError, KeyError, TypeError) as exc:
            out["results_parse_error"] = str(exc)
    try:  # how many responses promptfoo's disk cache holds once the process has exited
        out["cache_entries"] = len(json.loads((folder / "cache" / "cache.json").read_text())["cache"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def _npm_init(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        return subprocess.run(["npm", "init", "-y"], cwd=folder, capture_output=True, timeout=120).returncode == 0
    return True


def promptfoo_version() -> str | None:
    try:
        return json.loads((OUT / "promptfoo" / "node_modules" / "promptfoo" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def summarize(tool: str, first: dict[str, Any], second: dict[str, Any] | None, ideal: float) -> dict[str, Any]:
    out = dict(first)
    if first.get("span_s"):
        out["ratio"] = round(ideal / first["span_s"], 3)
    if first.get("wall_s"):
        out["ratio_wall"] = round(ideal / first["wall_s"], 3)
    if second is not None:
        out["rerun"] = {k: v for k, v in second.items() if k in (
            "wall_s", "span_s", "eval_s", "calls", "results", "cached", "spent", "cache_entries", "error",
            "error_line", "stderr_tail")}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="evaluation throughput against peers")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per peer run")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](args.base, Path(args.folder), args.items, args.concurrency)
        print(json.dumps(result))
        return result

    calls = args.items * len(PROMPTS)
    ideal = calls * args.latency_ms / 1000 / args.concurrency
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    result: dict[str, Any] = {
        "bench": "peers", "items": args.items, "prompts": len(PROMPTS), "calls": calls,
        "latency_ms": args.latency_ms, "concurrency": args.concurrency, "ideal_s": round(ideal, 3),
        "ratio_is": "ideal_s / span_s (server saw the first request → sent the last answer)",
    }
    began = time.perf_counter()
    with fake_openai(args.latency_ms) as base:
        root = base.rsplit("/v1", 1)[0]
        for tool in tools:
            folder = OUT / tool
            if tool != "promptfoo":
                shutil.rmtree(folder, ignore_errors=True)
            else:  # keep the installed package; clear its cache, home and results
                for sub in ("cache", "home"):
                    shutil.rmtree(folder / sub, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                if tool == "promptfoo":
                    first = promptfoo_peer(base, folder, args, root, 1)
                    second = promptfoo_peer(base, folder, args, root, 2) if "span_s" in first else None
                    first["version"] = promptfoo_version()
                else:
                    first = python_peer(tool, base, folder, args, root)
                    # a bare loop has no cache: its second run would only repeat the first
                    second = python_peer(tool, base, folder, args, root) if tool != "aiohttp" else None
            except Exception as exc:  # report, never hide: one peer failing keeps the others
                first, second = {"error": f"{exc.__class__.__name__}: {exc}"}, None
            result[tool] = summarize(tool, first, second, ideal)
    result["summary"] = {
        tool: {"ratio": result[tool].get("ratio"), "span_s": result[tool].get("span_s"),
               "wall_s": result[tool].get("wall_s"), "calls": result[tool].get("calls"),
               "rerun_calls": result[tool].get("rerun", {}).get("calls"),
               "rerun_wall_s": result[tool].get("rerun", {}).get("wall_s"),
               "error": result[tool].get("error")}
        for tool in tools
    }
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["machine"] = machine()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
