"""Run the benches and write docs/benchmarks.md.

    python -m bench all [--with-optimize] [--with-soak]
                                            # every bench, one JSON document, docs/benchmarks.md
                                            # (--with-optimize adds the slow real-model ones,
                                            #  --with-soak the 5-minute soak of the API under load)
    python -m bench NAME [-- ARGS...]       # one bench (gateway, savings, gate, ingest, ui, api, peers, health,
                                            #   watch, optimize, peers_search, scale)
    python -m bench docs                    # rewrite docs/benchmarks.md from the last `all` results

Each bench runs as its own process (`python -m bench.NAME`) with a timeout, one after another
(never two at once: on a small machine they corrupt each other's numbers). A bench that fails,
times out or prints no JSON is reported with its error and the tail of its stderr, not dropped.
The collected document is saved to bench-output/bench-all.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
SAVED = ROOT / "bench-output" / "bench-all.json"
BY_HAND = ROOT / "docs" / "benchmarks-by-hand.md"  # measurements made by hand; the renderer appends them
BENCHES: dict[str, dict[str, Any]] = {  # in running order; timeouts in seconds
    "gateway": {"timeout": 900},
    "savings": {"timeout": 600},
    "gate": {"timeout": 2400},
    "ingest": {"timeout": 1800},
    "ui": {"timeout": 900},
    "api": {"timeout": 900, "optional": True},
    "soak": {"timeout": 1800, "soak": True},  # 5 minutes of mixed load: opt-in (--with-soak)
    "peers": {"timeout": 2400},
    "health": {"timeout": 900},
    "watch": {"timeout": 3600, "slow": True},  # its realized/projected part runs the bundled models
    "optimize": {"timeout": 7200, "slow": True},
    # after optimize: reads its sst2 store (trimloop's side of the comparison)
    "peers_search": {"timeout": 3600, "slow": True},
    # 10 million calls on SQLite and PostgreSQL (~3 GB of JSONL in a temp folder); `python -m bench scale
    # --calls 200000` for a short run
    "scale": {"timeout": 7200, "slow": True},
}


# --- running ---------------------------------------------------------------------------------------

def other_benches() -> list[str]:
    """Command lines of bench processes this run did not start (they would skew the numbers)."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        if pid not in mine and "-m bench." in cmd:
            found.append(cmd[:200])
    return found


def parse_json(stdout: str) -> Any:
    """The bench's JSON document: the whole stdout, or the last document that starts a line."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch == "{" and (i == 0 or text[i - 1] == "\n")]
    for start in reversed(starts):
        try:
            return decoder.raw_decode(text[start:])[0]
        except ValueError:
            continue
    raise ValueError("no JSON document in the bench's output")


def run_bench(name: str, extra: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"bench.{name}", *(extra or [])]
    timeout = timeout or BENCHES.get(name, {}).get("timeout", 1800)
    shown = " ".join(["python", "-m", f"bench.{name}", *map(shlex.quote, extra or [])])
    entry: dict[str, Any] = {"command": shown, "started": now_iso(), "load_avg_before": round(os.getloadavg()[0], 2)}
    others = other_benches()
    if others:
        entry["other_benches_running"] = others
    print(f"[bench] {shown} (timeout {timeout:.0f} s)", file=sys.stderr, flush=True)
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # the process group this run started: SIGTERM first, so a bench can stop the servers it
        # started in sessions of their own (bench.peers_search's llama.cpp servers), then SIGKILL
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        entry.update(seconds=round(time.perf_counter() - began, 1), error=f"timed out after {timeout:.0f} s",
                     stderr_tail=stderr[-2000:])
        return entry
    entry["seconds"] = round(time.perf_counter() - began, 1)
    entry["exit_code"] = proc.returncode
    try:
        entry["result"] = parse_json(stdout)
    except ValueError as exc:
        entry["error"] = f"exit code {proc.returncode}: {exc}"
        entry["stdout_tail"] = stdout[-1000:]
    if proc.returncode != 0:
        entry["stderr_tail"] = stderr[-2000:]
        if "result" in entry:  # e.g. bench.ui exits 1 when a target is missed, with its JSON
            entry["note"] = f"exit code {proc.returncode} (the bench's targets were not all met)"
    print(f"[bench] {name}: {entry['seconds']} s" + (f" — {entry['error']}" if "error" in entry else ""),
          file=sys.stderr, flush=True)
    return entry


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def machine() -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                out["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        git = ["git", "-C", str(ROOT)]
        out["commit"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       timeout=10).stdout.strip()
        changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, timeout=10).stdout.splitlines()
        out["uncommitted"] = [line[3:] for line in changed if not line[3:].startswith(("bench/", "docs/"))]
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# --- docs/benchmarks.md ----------------------------------------------------------------------------

def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def target_row(label: str, value: str, target: str, met: bool | None) -> list[str]:
    return [label, value, target, "—" if met is None else ("met" if met else "**missed**")]


def section_gateway(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    runs = r.get("runs", {})
    slow_spend = runs.get("50ms", {}).get("cached_rerun_spend")
    rows = [
        target_row("gateway, 50 ms latency (× ideal)", fmt(r.get("ratio_50ms")), "≥ 0.6", _ge(r.get("ratio_50ms"), 0.6)),
        target_row("gateway, 500 ms latency (× ideal)", fmt(r.get("ratio_500ms")), "≥ 0.8", _ge(r.get("ratio_500ms"), 0.8)),
        target_row("plain litellm.acompletion loop, 50 ms", fmt(r.get("litellm_ratio_50ms")), "", None),
        target_row("bare aiohttp loop, 50 ms (practical limit)", fmt(r.get("aiohttp_ratio_50ms")), "", None),
        target_row("gateway CPU per call", fmt(r.get("cpu_ms_per_call"), 3, " ms"), "", None),
        target_row(f"fully cached rerun of {fmt(r.get('calls'))} calls", fmt(r.get("cached_rerun_s"), 2, " s")
                   + f", ${fmt(slow_spend, 4)} spent", "< 2 s, $0",
                   _le(r.get("cached_rerun_s"), 2.0) and (slow_spend or 0) == 0 if r.get("cached_rerun_s") is not None else None),
    ]
    notes = []
    for label, key, goal in (("50 ms", "ratio_50ms", 0.6), ("500 ms", "ratio_500ms", 0.8)):
        if _ge(r.get(key), goal) is False:
            notes.append(f"The gateway missed its {label} target: {fmt(r.get(key))}× of ideal against ≥ {goal}.")
    aio, gw = r.get("aiohttp_ratio_50ms"), r.get("ratio_50ms")
    if aio is not None and gw is not None and gw < aio:
        notes.append(f"At 50 ms latency the gateway reaches {gw / aio:.0%} of a bare aiohttp loop's throughput on "
                     f"this machine; the gap is its own per-call work ({fmt(r.get('cpu_ms_per_call'), 2)} ms of CPU per "
                     "call, on 2 cores shared with the fake server).")
    return ["Command: `python -m bench.gateway` — 2,000 calls at concurrency 64 against a fixed-latency "
            "OpenAI-compatible server (its own process). Ratio = ideal time (N × latency ÷ concurrency) ÷ wall time.",
            "", *table(["measure", "value", "target", ""], rows)], notes


def section_gate(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    checks = r.get("checks", {})
    mc = r.get("monte_carlo_error_2se")
    rows = [
        target_row("false accepts at true delta −δ (fixed n)", fmt(r.get("false_accept_rate_at_margin"), 4),
                   f"≤ α = {r.get('alpha')} (± {mc})", checks.get("false_accept_within_alpha")),
        target_row("power at true delta 0, power helper's n", fmt(r.get("power_at_zero_exact"), 3), "≥ 0.80",
                   checks.get("power_at_zero_at_least_target")),
        target_row("sequential test: fewer items on average", fmt(r.get("sequential_item_saving"), 3), "≥ 0.30",
                   checks.get("sequential_saves_30_percent")),
        target_row("sequential test: false accepts at −δ / power at 0",
                   f"{fmt(r.get('sequential_false_accept_rate_at_margin'), 4)} / {fmt(r.get('sequential_power_at_zero'), 3)}",
                   "same error rates", checks.get("sequential_same_error_rates")),
    ]
    stop = r.get("certification_stop")
    if stop:
        rows += [
            target_row("certification's early stop for hopeless candidates: power lost at true delta 0",
                       fmt(stop.get("power_lost_at_zero"), 4), "≤ 0.02",
                       checks.get("certification_stop_costs_at_most_2_points_of_power")),
            target_row("…its share of the items used by candidates 2.7+ points behind",
                       fmt(stop.get("items_used_by_candidates_at_or_beyond_0.027_behind"), 3), "≤ 0.67",
                       checks.get("certification_stop_saves_a_third_on_hopeless_candidates")),
        ]
    notes = [f"Gate check `{k}` failed." for k, v in checks.items() if v is False]
    return [f"Command: `python -m bench.gate` — paired 0/1 outcomes simulated with known truth (α = {r.get('alpha')}, "
            f"δ = {r.get('margin')}, {fmt(r.get('reps'))} runs per cell; {r.get('method', '')}).", "",
            *table(["measure", "value", "target", ""], rows)], notes


def section_ingest(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    rate = r.get("records_per_s")
    rows = [
        target_row("records per second", fmt(rate), "≥ 20,000", _ge(rate, 20000)),
        target_row("peak RSS", fmt(r.get("peak_rss_mb"), 1, " MB"), "flat in the file size", None),
        target_row("RSS before the sync", fmt(r.get("rss_before_sync_mb"), 1, " MB"), "", None),
        target_row("seconds", fmt(r.get("seconds"), 1), "", None),
    ]
    notes = []
    if _ge(rate, 20000) is False:
        notes.append(f"Ingest missed its target: {fmt(rate)} records/s against ≥ 20,000.")
    return [f"Command: `python -m bench.ingest` — {fmt(r.get('lines'))} JSONL log lines synced into SQLite by the "
            "files connector.", "", *table(["measure", "value", "target", ""], rows)], notes


def section_ui(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    targets = r.get("targets", {})
    bytes_target, p50_target = targets.get("transferred_bytes", 300_000), targets.get("render_ms_p50", 50.0)
    rows, notes = [], []
    for name, page in r.get("pages", {}).items():
        rows.append([name, f"`{page.get('path')}`", fmt(page.get("transferred_bytes")),
                     fmt(page.get("render_ms_p50"), 1, " ms"), fmt(page.get("render_ms_p95"), 1, " ms"),
                     "met" if page.get("bytes_ok") and (page.get("render_ms_p50") or 1e9) < p50_target else "**missed**"])
        if not page.get("bytes_ok"):
            notes.append(f"UI page {name} transfers {fmt(page.get('transferred_bytes'))} bytes, over the "
                         f"{fmt(bytes_target)}-byte target.")
        if (page.get("render_ms_p50") or 0) >= p50_target:
            notes.append(f"UI page {name} renders in {fmt(page.get('render_ms_p50'), 1)} ms p50, over the "
                         f"{p50_target:.0f} ms target.")
    return [f"Command: `python -m bench.ui` — {fmt(r.get('suggestions'))} pending suggestions; bytes = HTML plus "
            f"the stylesheet and scripts it loads (target < {fmt(bytes_target)}); render time through the ASGI stack "
            f"(target p50 < {p50_target:.0f} ms).", "",
            *table(["page", "path", "bytes", "render p50", "render p95", "targets"], rows)], notes


def section_api(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    rows = [[group, fmt(r.get(f"{group}_requests")), fmt(r.get(f"{group}_p50_ms"), 1, " ms"),
             fmt(r.get(f"{group}_p99_ms"), 1, " ms")] for group in ("suggestions", "savings", "savings_csv")]
    notes = []
    if r.get("errors"):
        notes.append(f"The API bench saw {r['errors']} failed requests: {r.get('error_kinds')}.")
    slow = [(g, r.get(f"{g}_p50_ms"), r.get(f"{g}_p99_ms")) for g in ("suggestions", "savings", "savings_csv")
            if (r.get(f"{g}_p50_ms") or 0) > 1000 or (r.get(f"{g}_p99_ms") or 0) > 5000]
    for group, p50, p99 in slow:
        notes.append(f"The API's {group} endpoint is slow under {r.get('concurrency')} concurrent clients: p50 "
                     f"{fmt(p50 / 1000 if p50 else None, 1)} s, p99 {fmt(p99 / 1000 if p99 else None, 1)} s "
                     f"({fmt(r.get('requests_per_s'), 1)} requests/s in all).")
    return [f"Command: `python -m bench.api` — {fmt(r.get('suggestions_in_store'))} suggestions and "
            f"{fmt(r.get('logs_in_store'))} log records in SQLite, {r.get('concurrency')} concurrent clients for "
            f"{r.get('seconds')} s: **{fmt(r.get('requests_per_s'), 1)} requests/s**, {fmt(r.get('errors'))} errors "
            f"(load average during the run {r.get('load_avg_1m')}).", "",
            *table(["endpoint group", "requests", "p50", "p99"], rows)], notes


def section_soak(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    routes = r.get("routes", {})
    rows = [[route, fmt(v.get("requests")), fmt(v.get("errors")), fmt(v.get("p50_ms"), 1, " ms"),
             fmt(v.get("p99_ms"), 1, " ms")] for route, v in routes.items()]
    server = [s.get("rss_mb") for s in r.get("rss_mb", {}).get("server", [])]
    opt = r.get("optimization", {})
    runs = opt.get("worker_runs", [])
    api_runs = opt.get("api_runs", [])
    notes = []
    if r.get("errors"):
        notes.append(f"The soak saw {r['errors']} failed requests in {r.get('seconds')} s: {r.get('error_kinds')} "
                     f"(server log: {', '.join(list(r.get('server_log_errors', {}))[:3]) or 'nothing'}).")
    if not opt.get("finished"):
        notes.append("No optimization run by the soak's worker (`trimloop optimize` on the same database) finished.")
    if opt.get("worker_attempts_failed"):
        notes.append(f"{opt['worker_attempts_failed']} of {len(runs)} `trimloop optimize` attempts during the soak "
                     f"failed: {', '.join(sorted({str(x.get('stderr_tail', x.get('status')))[:120] for x in runs if x.get('exit_code')}))}.")
    failed_api = [a for a in api_runs if a.get("status") not in ("succeeded", "cancelled")]
    if failed_api:
        notes.append(f"{len(failed_api)} of {len(api_runs)} runs started with POST /runs during the soak ended "
                     f"{', '.join(sorted({str(a.get('status')) for a in failed_api}))}.")
    return [f"Command: `python -m bench.soak` — `trimloop serve` on SQLite with {fmt(r.get('store', {}).get('suggestions'))} "
            f"suggestions and {fmt(r.get('store', {}).get('logs'))} logs, {r.get('clients')} readers plus a UI reader, "
            "a reviewer, a log ingester, an engineer starting runs and an admin cycling tokens, for "
            f"{fmt(r.get('seconds'), 0, ' s')}, while `trimloop optimize` runs against the fake provider "
            f"({fmt(r.get('provider_latency_ms'), 0, ' ms')} a call): **{fmt(r.get('requests'))} requests, "
            f"{fmt(r.get('errors'))} errors**; server RSS {fmt(server[0] if server else None, 0)} → "
            f"{fmt(max((x for x in server if x is not None), default=None), 0)} MB (peak) → "
            f"{fmt(server[-1] if server else None, 0)} MB; first optimization "
            f"{'finished in ' + fmt(opt.get('first_success_s'), 0, ' s') if opt.get('finished') else 'did not finish'}; "
            f"worker runs {len(runs)}, POST /runs runs {len(api_runs)}; load average at the end "
            f"{r.get('load_avg_1m')}.", "",
            *table(["route", "requests", "errors", "p50", "p99"], rows)], notes


def section_optimize(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    for name, t in r.get("tasks", {}).items():
        if "skipped" in t:
            rows.append([name, t["skipped"], "", "", "", "", "", ""])
            continue
        before = t.get("accuracy_before")
        if isinstance(before, dict):  # no suggestion: the baseline's holdout score per evaluator
            before = next(iter(before.values()), None)
        rows.append([name, fmt(t.get("certified")), fmt(t.get("cost_cut"), 2), fmt(t.get("token_cut"), 2),
                     f"{fmt(before, 3)} → {fmt(t.get('accuracy_after'), 3)}",
                     fmt(t.get("delta_ci_low"), 3), f"{fmt(t.get('search_calls'))} / {fmt(t.get('certify_calls'))}",
                     fmt(t.get("wall_s"), 0, " s")])
        if name == "sst2":
            if (t.get("search_calls") or 0) > 400:
                notes.append(f"sst2 search spent {t['search_calls']} calls, over the ≤ 400 target.")
            if not t.get("certified") or (t.get("cost_cut") or 0) < 0.5:
                why = f" ({t['no_suggestion']})" if t.get("no_suggestion") else ""
                notes.append(f"sst2 did not reach a certified ≥ 50 % cost cut (certified: {t.get('certified')}, "
                             f"cost cut {fmt(t.get('cost_cut'), 2)}){why}.")
    return ["Command: `python -m bench.optimize` — real runs on the bundled models (see its docstring).", "",
            *table(["task", "certified", "cost cut", "token cut", "accuracy before → after", "Δ CI low",
                    "calls search / certify", "wall"], rows)], notes


COMMANDS = "**Commands** (from the repository root, in the project's virtualenv):"
PEER_LABELS = {"trimloop": "trimloop runner (`evaluate_items` via the Gateway)", "promptfoo": "promptfoo",
               "dspy": "DSPy `Evaluate` (threads)", "aiohttp": "bare aiohttp loop (practical limit)"}


def section_peers(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    tools = [t for t in ("trimloop", "promptfoo", "dspy", "aiohttp") if t in r]
    rows = []
    for tool in tools:
        p = r[tool]
        version = f" {p['version']}" if p.get("version") else (f" {p['dspy']}" if p.get("dspy") else "")
        if "span_s" not in p:
            rows.append([PEER_LABELS[tool] + version, f"error: {p.get('error')}", "", "", "", "", "", ""])
            continue
        rerun = p.get("rerun")
        rows.append([
            PEER_LABELS[tool] + version, fmt(p.get("calls")), fmt(p.get("peak_inflight")),
            fmt(p.get("span_s"), 2, " s"), f"**{fmt(p.get('ratio'), 2)}×**", fmt(p.get("wall_s"), 1, " s"),
            fmt(rerun.get("calls")) if rerun else "no cache", fmt(rerun.get("wall_s"), 1, " s") if rerun else "—",
        ])
    notes = []
    me = r.get("trimloop", {})
    for tool in ("promptfoo", "dspy"):
        peer = r.get(tool, {})
        if "error" in peer and "span_s" not in peer:
            notes.append(f"{tool} could not be measured here: {peer['error']}.")
            continue
        if not me.get("ratio") or not peer.get("ratio"):
            continue
        if peer["ratio"] > me["ratio"]:
            notes.append(f"trimloop's runner is behind {tool} on call throughput ({me['ratio']:.2f}× vs "
                         f"{peer['ratio']:.2f}× of ideal).")
        if (peer.get("wall_s") or 1e9) < (me.get("wall_s") or 0):
            startup = me["wall_s"] - (me.get("eval_and_close_s") or 0)
            notes.append(f"trimloop's whole process is slower than {tool}'s ({me['wall_s']:.1f} s vs "
                         f"{peer['wall_s']:.1f} s): its start-up ({startup:.1f} s before and after the evaluation) "
                         f"outweighs its faster calls at this size; of it, resolving the model imports litellm for "
                         f"its price map ({fmt(me.get('prepare_s'), 1)} s) although the model's prices are configured.")
        rerun_me, rerun_peer = me.get("rerun", {}), peer.get("rerun", {})
        if rerun_me.get("wall_s") and rerun_peer.get("wall_s") and rerun_peer["wall_s"] < rerun_me["wall_s"]:
            notes.append(f"{tool}'s cached rerun finishes sooner than trimloop's ({rerun_peer['wall_s']:.1f} s vs "
                         f"{rerun_me['wall_s']:.1f} s, process start-up included; trimloop's evaluation itself took "
                         f"{fmt(rerun_me.get('eval_s'), 2)} s).")
        if (rerun_peer.get("calls") or 0) < (rerun_me.get("calls") or 0):
            notes.append(f"{tool} repeats fewer calls on a rerun than trimloop.")
    facts = []
    aio = r.get("aiohttp", {})
    if me.get("ratio") and aio.get("ratio"):
        facts.append(f"trimloop's runner reaches {me['ratio'] / aio['ratio']:.0%} of the bare aiohttp loop's "
                     "call throughput on this machine.")
    for tool in tools:
        peak, allowed = r[tool].get("peak_inflight"), r.get("concurrency")
        if peak and allowed and peak < allowed * 0.9:
            facts.append(f"{tool} never had more than {peak} calls in flight of the {allowed} it was allowed.")
        for label, run in (("first run", r[tool]), ("rerun", r[tool].get("rerun") or {})):
            if run.get("error") and run.get("results"):
                facts.append(f"{tool}'s {label} wrote all {run['results']} results but its process ended with "
                             f"{run['error']}" + (f" (`{run['error_line']}`)" if run.get("error_line") else "") + ".")
    pf = r.get("promptfoo", {})
    if pf.get("rerun") and pf.get("cache_entries") is not None and pf["cache_entries"] < (pf.get("results") or 0):
        facts.append(f"promptfoo's rerun repeated {pf['rerun'].get('calls')} calls because its disk cache "
                     f"(one JSON file) held only {pf['cache_entries']} of the {pf.get('results')} responses it had "
                     "fetched once the first run exited.")
    lines = [
        f"Command: `python -m bench.peers` — the same evaluation ({fmt(r.get('items'))} items × {r.get('prompts')} prompts "
        f"= {fmt(r.get('calls'))} calls, a `contains`-the-label check) run by each tool against the same local "
        f"OpenAI-compatible server at {fmt(r.get('latency_ms'), 0)} ms latency, concurrency {r.get('concurrency')} "
        f"(promptfoo `maxConcurrency`, DSPy `num_threads`, trimloop gateway and runner). Ideal = N × latency ÷ "
        f"concurrency = {fmt(r.get('ideal_s'), 2)} s. Calls are counted by the server. *Span* runs from the first "
        "request the server saw to the last answer it sent (polled every 10 ms), so it leaves out each tool's "
        "start-up; ratio = ideal ÷ span. *Process* is the whole run including start-up (Node, imports, reading "
        "500 tests). The rerun is an immediate second run in a new process with the first run's cache.",
        "",
        *table(["tool", "calls", "peak in flight", "span", "ratio to ideal", "process", "rerun: calls",
                "rerun: process"], rows),
        "DSPy runs each prompt as a small `dspy.Module` calling the configured `dspy.LM` (`openai/fake`) "
        "directly: a `dspy.Predict` adapter cannot parse the fake server's echo and would add a fallback "
        "call per item. Its two prompts run as two `Evaluate` calls one after the other; trimloop runs both "
        "prompts' `evaluate_items` at once under the gateway's limit of 64; promptfoo runs its 1,000 "
        "cells in one pool.",
        "",
        *[f"- {f}" for f in facts],
        *([""] if facts else []),
    ]
    return lines, notes


def section_peers_search(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    base, tl, ds = r.get("baseline", {}), r.get("trimloop", {}), r.get("dspy", {})
    tl_test, ds_test, n = tl.get("test", {}), ds.get("test", {}), r.get("test_n")
    base_cost = base.get("cost_per_call")

    def cost(t: dict[str, Any]) -> str:
        c = t.get("cost_per_call")
        if c is None:
            return "—"
        change = f" ({c / base_cost - 1:+.0%})".replace("-", "−") if base_cost and t is not base else ""
        return f"${c * 1e6:,.2f} per 1M calls{change}"

    sc = ds.get("search_calls", {})

    def wanted(step: str) -> Any:
        """Calls trimloop asked for in a step (older stores recorded only the ones it paid for)."""
        requests = tl.get(f"{step}_requests")
        return requests if requests is not None else tl.get(f"{step}_calls")

    def asked(step: str) -> str:
        """Calls trimloop asked for, and how many reached a model when a cache answered some."""
        made = tl.get(f"{step}_calls")
        return fmt(made) if wanted(step) == made else f"{fmt(wanted(step))} ({fmt(made)} made, rest cached)"
    if "error" in tl:
        tl_change = f"missing: {tl['error']}"
    elif tl.get("certified"):
        tl_change = "certified: " + "; ".join(str(c) for c in tl.get("change") or [])
    else:
        tl_change = f"no certified suggestion ({tl.get('no_suggestion') or 'none passed'})"
    if "error" in ds:
        ds_change = f"failed: {ds['error']}"
    else:
        ds_change = (f"instruction {'rewritten' if ds.get('instruction_changed') else 'kept'}, "
                     f"{fmt(ds.get('demos'))} demos (was 6)")
    interval = tl.get("certified_delta_interval") or [None, None]
    rows = [
        ["result", "the verbose 6-shot prompt, Gemma 270M", tl_change, ds_change],
        [f"accuracy on the same {fmt(n)} held-out sentences", f"**{fmt(base.get('accuracy'), 3)}**",
         f"**{fmt(tl_test.get('accuracy'), 3)}**", f"**{fmt(ds_test.get('accuracy'), 3)}**"],
        ["cost per call (notional local price)", cost(base), f"**{cost(tl_test)}**", f"**{cost(ds_test)}**"],
        ["prompt tokens per call", fmt(base.get("input_tokens_per_call"), 0), fmt(tl_test.get("input_tokens_per_call"), 0),
         fmt(ds_test.get("input_tokens_per_call"), 0)],
        ["calls spent searching", "—", asked("search"),
         f"{fmt(sc.get('made'))} ({fmt(sc.get('task_made'))} task + {fmt(sc.get('proposer_made'))} proposer; "
         f"{fmt(sc.get('requested'))} asked, rest cached)" if sc else "—"],
        ["calls spent certifying", "—", asked("certify"), "none: no certification step"],
        ["quality evidence", "—",
         f"non-inferiority on its holdout: Δ {fmt(interval[0], 3)} … {fmt(interval[1], 3)}, n = {fmt(tl.get('certified_n'))}"
         if tl.get("certified") else "—",
         f"valset score {fmt(ds.get('val_score_before'), 1)} → {fmt(ds.get('val_score_after'), 1)} "
         f"(MIPROv2's own, {fmt(min(ds.get('val') or 0, 100))} dev sentences)" if "error" not in ds else "—"],
        ["search wall time", "—", fmt(tl.get("wall_s"), 0, " s") + (" (search + certification)" if tl.get("wall_s") else ""),
         fmt(ds.get("compile_wall_s"), 0, " s")],
        ["what it optimizes", "—", "cost per call, with quality held (certified)", "quality only"],
    ]
    notes: list[str] = []
    if "error" in tl:
        notes.append(f"The search peer bench has no trimloop side: {tl['error']}.")
    if "error" in ds:
        notes.append(f"DSPy MIPROv2 did not finish on the bundled models: {ds['error']}.")
    t_acc, d_acc = tl_test.get("accuracy"), ds_test.get("accuracy")
    if t_acc is not None and d_acc is not None and d_acc > t_acc:
        notes.append(f"DSPy MIPROv2's program is more accurate than trimloop's suggestion on the same {fmt(n)} "
                     f"held-out sentences ({d_acc:.3f} vs {t_acc:.3f}): DSPy optimizes quality only, trimloop "
                     "optimizes cost while only holding quality within its margin.")
    t_cost, d_cost = tl_test.get("cost_per_call"), ds_test.get("cost_per_call")
    if t_cost is not None and d_cost is not None and d_cost < t_cost:
        notes.append(f"DSPy MIPROv2's program is cheaper per call than trimloop's suggestion "
                     f"({d_cost * 1e6:,.2f} vs {t_cost * 1e6:,.2f} $ per 1M calls).")
    t_calls = sum(wanted(step) or 0 for step in ("search", "certify"))
    if sc.get("requested") is not None and tl.get("search_calls") is not None and sc["requested"] < t_calls:
        notes.append(f"DSPy MIPROv2 asked for fewer model calls ({fmt(sc['requested'])}) than trimloop's search and "
                     f"certification ({fmt(t_calls)}).")
    if tl and "error" not in tl and not tl.get("certified"):
        notes.append("trimloop certified no cheaper sst2 prompt in the run this comparison read.")
    facts = [
        f"Both started from `bench.optimize`'s sst2 prompt on {r.get('model')} (temperature 0, 3 tokens). "
        f"Test sentences: {fmt(n)} drawn from {r.get('test_source')}; scored by trimloop's `label` reading for all "
        "three. Cost = tokens × the bundled model's notional self-hosting price.",
        f"DSPy {ds.get('dspy', '')} ran `dspy.Predict(\"review -> sentiment\")` with the prompt's instruction and 6 "
        f"demos, compiled by `{ds.get('optimizer')}` on {fmt(ds.get('train'))} train / {fmt(ds.get('val'))} val "
        "sst2 dev sentences. Gemma 270M is a base model, so its calls use a completion-style adapter that renders "
        "the program in the prompt's own plain-text layout"
        + (" (the start program renders exactly the baseline prompt)" if ds.get("start_renders_baseline") else "")
        + f"; MIPROv2's instruction proposer is the other bundled model, {ds.get('proposer_model')}, through "
          "DSPy's ChatAdapter"
        + (f" ({fmt(ds.get('proposer_answers_without_markers'))} of its answers lacked DSPy's field markers and "
           "were taken whole)" if ds.get("proposer_answers_without_markers") else "")
        + ". Every DSPy call went through trimloop's gateway (counted, priced, cached; DSPy's own cache off).",
        (f"trimloop's numbers come from `{tl.get('store')}` (run {tl.get('run_id')}, finished {tl.get('finished_at')})"
         + (", run by this bench" if tl.get("ran_here") else "") + "; the baseline's and its candidate's answers "
         "are read from that store's response cache where it has them (the same model, prompt and params). "
         if "store" in tl else "")
        + f"This bench's own servers: {r.get('settings', {}).get('llama_threads')} llama.cpp thread(s) per model "
          "on a shared machine, so wall times are not comparable with bench.optimize's; compare calls.",
    ]
    lines = [f"Command: `python -m bench.peers_search` (run {r.get('date', '?')}, commit {r.get('commit', '?')}, "
             f"{fmt(r.get('wall_s'), 0, ' s')} in all) — sst2, the bundled models.", "",
             *table(["", "start (baseline)", "trimloop search + certification", f"DSPy {ds.get('optimizer', 'MIPROv2')}"],
                    rows),
             *[f"- {f}" for f in facts], ""]
    return lines, notes


def section_scale(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    for backend in ("sqlite", "postgresql"):
        b = r.get(backend)
        if not isinstance(b, dict):
            continue
        if "error" in b:
            notes.append(f"bench.scale failed on {backend}: {(str(b['error']).strip().splitlines() or ['?'])[-1]}")
            continue
        rate_goal = 20000 if backend == "sqlite" else None
        checks = [_ge(b.get("records_per_s"), rate_goal) if rate_goal else None, _le(b.get("peak_rss_mb"), 500),
                  _le(b.get("db_mb"), 2048), _le(b.get("report_p50_ms"), 200)]
        rows.append([backend, fmt(b.get("records_per_s")), fmt(b.get("peak_rss_mb"), 0, " MB"),
                     fmt(b.get("db_mb"), 0, " MB"),
                     f"{fmt(b.get('report_p50_ms'), 0)} / {fmt(b.get('report_p99_ms'), 0)} ms",
                     fmt(b.get("dataset_build_s"), 1, " s"), fmt(b.get("retention_sweep_s"), 1, " s"),
                     fmt(b.get("longest_write_lock_ms"), 0, " ms"),
                     "**missed**" if False in checks else "met"])
        for label, ok, value, goal in (("records/s", checks[0], b.get("records_per_s"), "≥ 20,000"),
                                       ("peak RSS", checks[1], b.get("peak_rss_mb"), "≤ 500 MB"),
                                       ("database size", checks[2], b.get("db_mb"), "≤ 2,048 MB"),
                                       ("report p50", checks[3], b.get("report_p50_ms"), "≤ 200 ms")):
            if ok is False:
                notes.append(f"bench.scale on {backend} missed {label}: {fmt(value, 0)} against {goal}.")
    first = next((r[k] for k in ("sqlite", "postgresql") if isinstance(r.get(k), dict) and "calls" in r[k]), {})
    return [f"Command: `python -m bench.scale` — {fmt(first.get('calls'))} synthetic calls (30 days, 50 prompt "
            f"versions) through {first.get('via', 'files')}; reports: the savings report and the spend series "
            "under 16 in-process clients. Targets: ≥ 20,000 records/s on SQLite, peak RSS ≤ 500 MB, "
            "database ≤ 2 GB, report p50 ≤ 200 ms.", "",
            *table(["backend", "records/s", "peak RSS", "database", "report p50 / p99", "dataset build",
                    "retention sweep", "longest write", "targets"], rows)], notes


SECTIONS = {"gateway": ("Gateway", section_gateway), "scale": ("Scale: 10 million calls", section_scale), "peers": ("Evaluation throughput against peers", section_peers),
            "gate": ("Non-inferiority gate", section_gate), "ingest": ("Ingest", section_ingest),
            "api": ("API under load", section_api), "ui": ("Web UI", section_ui),
            "soak": ("Soak: the API under mixed load for minutes", section_soak),
            "optimize": ("Optimization on real data", section_optimize),
            "peers_search": ("Search against a peer: DSPy MIPROv2", section_peers_search)}


def _ge(value: Any, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _le(value: Any, goal: float) -> bool | None:
    return None if value is None else value <= goal


def render_docs(doc: dict[str, Any], by_hand: Path | None = BY_HAND) -> str:
    m = doc.get("machine", {})
    out = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench all` on {doc.get('finished', doc.get('started'))} (UTC), commit "
        f"`{m.get('commit', '?')}`"
        + (f" with uncommitted changes to {', '.join(m['uncommitted'])}" if m.get("uncommitted") else "")
        + ". Every number below is from that run; rerun it to check them.",
        "",
        f"**Machine:** {m.get('cpus')} cores ({m.get('cpu', 'unknown CPU')}), {m.get('memory_gib', '?')} GiB, "
        f"Python {m.get('python')}, Node {m.get('node', '—')}, {m.get('platform')}. The benches ran one after "
        "another; the load average before each is listed at the end.",
        "",
        COMMANDS,
        "",
        "```",
        f"python -m bench all{' --with-optimize' if doc.get('with_optimize') else ''}"
        f"{' --with-soak' if doc.get('with_soak') else ''}",
        *[f"  {b['command']}" for b in doc.get("benches", {}).values()],
        "```",
        "",
    ]
    honest: list[str] = []
    benches = doc.get("benches", {})
    peers = benches.get("peers", {}).get("result", {})
    if peers.get("trimloop", {}).get("ratio"):
        others = ", ".join(f"{t} {peers[t]['ratio']:.2f}×" for t in ("promptfoo", "dspy", "aiohttp")
                           if peers.get(t, {}).get("ratio"))
        out[out.index(COMMANDS):out.index(COMMANDS)] = [
            f"**Headline:** the same {fmt(peers.get('calls'))}-call evaluation at {fmt(peers.get('latency_ms'), 0)} ms "
            f"latency: trimloop's runner {peers['trimloop']['ratio']:.2f}× of ideal; {others} (bare loop). "
            f"Calls repeated by an immediate rerun: trimloop {fmt(peers['trimloop'].get('rerun', {}).get('calls'))}, "
            + ", ".join(f"{t} {fmt(peers[t].get('rerun', {}).get('calls'))}" for t in ("promptfoo", "dspy")
                        if peers.get(t, {}).get("rerun")) + ".", ""]
    order = [n for n in ("peers", "peers_search", "gateway", "gate", "ingest", "scale", "api", "ui", "soak", "optimize")
             if n in benches]
    for name in order:
        entry = benches[name]
        title, build = SECTIONS[name]
        out += [f"## {title}", ""]
        if "result" not in entry:
            out += [f"**Failed:** {entry.get('error')} (after {entry.get('seconds')} s).", ""]
            tail = (entry.get("stderr_tail") or entry.get("stdout_tail") or "").strip().splitlines()[-8:]
            if tail:
                out += ["```", *tail, "```", ""]
            honest.append(f"The {name} bench failed: {entry.get('error')}.")
            continue
        try:
            lines, notes = build(entry["result"])
        except Exception as exc:  # a bench's JSON changed shape: show it, don't lose the rest
            lines, notes = [f"(could not summarize: {exc.__class__.__name__}: {exc})", ""], []
        out += lines
        if entry.get("note"):
            out += [f"*{entry['note']}.*", ""]
        if entry.get("other_benches_running"):
            notes.append(f"Another bench was running while {name} ran, so its numbers may be low.")
        if notes:
            out += [*[f"- {n}" for n in notes], ""]
        honest += notes
    skipped = doc.get("skipped", {})
    if skipped:
        out += ["## Not run", "", *[f"- {k}: {v}" for k, v in skipped.items()], ""]
    out += ["## Runs", "", *table(["bench", "seconds", "load average before", "exit code", "status"], [
        [n, fmt(b.get("seconds"), 1), fmt(b.get("load_avg_before")), fmt(b.get("exit_code")),
         "ok" if "result" in b and not b.get("note") else (b.get("note") or b.get("error"))]
        for n, b in benches.items()])]
    if honest:  # up front, before the commands
        at = out.index(COMMANDS)
        out[at:at] = ["**Where trimloop is behind or misses a target** (details in each section):", "",
                      *[f"- {n}" for n in honest], ""]
    if by_hand is not None and by_hand.exists():  # kept across regenerations: edit that file, not this page
        out += [f"<!-- from {by_hand.name}: edit it there; `python -m bench docs` copies it here -->", "",
                by_hand.read_text().strip(), ""]
    return "\n".join(out).rstrip() + "\n"


# --- entry point -----------------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(options, arguments for a single bench). Options may come before or after the name; anything
    else goes to the single bench (`python -m bench optimize --tasks sst2`, or after `--`)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("name", help="all, docs, or one of: " + ", ".join(BENCHES))
    parser.add_argument("--with-optimize", action="store_true",
                        help="include the slow real-model benches in `all` (optimize, then peers_search)")
    parser.add_argument("--with-soak", action="store_true",
                        help="include the soak in `all` (5 minutes of mixed load on the API, ~7 in all)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--timeout", type=float, help="seconds per bench (default: each bench's own)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.name in ("all", "docs") and extra:
        parser.error(f"unknown options for `{args.name}`: {' '.join(extra)} (bench arguments go with one bench: "
                     "python -m bench NAME ARGS…)")
    if args.name not in ("all", "docs") and args.name not in BENCHES:
        parser.error(f"unknown bench {args.name!r}; known: all, docs, {', '.join(BENCHES)}")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    # (An earlier version took the bench's arguments as argparse.REMAINDER, which also swallowed
    # `all --with-optimize`: the slow benches were silently skipped.)
    args, extra = parse(argv)

    if args.name == "docs":
        doc = json.loads(SAVED.read_text())
        DOCS.write_text(render_docs(doc))
        print(f"wrote {DOCS}", file=sys.stderr)
        return 0
    if args.name != "all":
        entry = run_bench(args.name, extra, args.timeout)
        print(json.dumps(entry.get("result", entry), indent=2))
        return 0 if "result" in entry else 1

    doc: dict[str, Any] = {"started": now_iso(), "machine": machine(), "with_optimize": args.with_optimize,
                           "with_soak": args.with_soak, "benches": {}, "skipped": {}}
    for name, spec in BENCHES.items():
        if spec.get("slow") and not args.with_optimize:
            doc["skipped"][name] = ("slow (10 million calls, an hour or more); run with --with-optimize" if name == "scale"
                                    else "slow (real models, 15+ min each); run with --with-optimize")
            continue
        if spec.get("soak") and not args.with_soak:
            doc["skipped"][name] = "a 5-minute soak of the API under mixed load; run with --with-soak"
            continue
        if spec.get("optional") and not (ROOT / "bench" / f"{name}.py").exists():
            doc["skipped"][name] = f"bench/{name}.py is not in this checkout"
            continue
        doc["benches"][name] = run_bench(name, None, args.timeout)
    doc["finished"] = now_iso()
    doc["failed"] = [n for n, b in doc["benches"].items() if "result" not in b]
    SAVED.parent.mkdir(parents=True, exist_ok=True)
    SAVED.write_text(json.dumps(doc, indent=2, default=str))
    if not args.no_docs:
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(render_docs(doc))
        print(f"[bench] wrote {DOCS.relative_to(ROOT)}", file=sys.stderr)
    print(json.dumps(doc, indent=2, default=str))
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
