"""The doctor's checks of the installation: the config file, the database and its migrations,
`allowed_hosts`, and the bundled local models."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from trimloop.core.catalog import BUNDLED
from trimloop.core.db import get_engine, safe_url, schema_state
from trimloop.core.egress import ENV as EGRESS_ENV
from trimloop.core.egress import SETTING as EGRESS_SETTING
from trimloop.core.egress import HostNotAllowed
from trimloop.core.errors import ConfigError, TrimloopError
from trimloop.core.findings import Finding, ok, problem, warning
from trimloop.core.local_models import KEY_FILE, answers, base_url, check_installed, ensure_running, is_ours
from trimloop.core.settings import Settings, config_path, egress_targets, load_settings

LLAMA_IMPORT_TIMEOUT_S = 120.0
MIGRATE_FIX = ("every trimloop command except doctor migrates the database when it starts: run `trimloop init` "
               "(it keeps an existing trimloop.toml), or restart `trimloop serve`; back the database up first")


def read_config() -> tuple[Settings | None, list[Finding]]:
    """The settings (URLs outside allowed_hosts let through: `egress` reports them) and what was read."""
    path = config_path()
    try:
        settings = load_settings(check_egress=False)
    except ConfigError as exc:
        where = f"{exc.where}: " if exc.where else ""
        return None, [problem("config.invalid", f"{where}{exc.message} (the other checks need settings that load)",
                              exc.hint or "fix the named key", where=exc.where)]
    if not path.exists():
        return settings, [warning("config.missing", f"no config file at {path}: defaults and TRIMLOOP_* variables "
                                  "are in use", "run `trimloop init` to write a commented trimloop.toml, or point "
                                  "TRIMLOOP_CONFIG at yours", path=str(path))]
    return settings, [ok("config.read", f"read {path}: {_summary(settings)}", path=str(path))]


def in_use(settings: Settings) -> list[Finding]:
    """For the server: the settings it read when it started."""
    return [ok("config.in_use", f"the settings this server read when it started: {_summary(settings)}",
               "edits to trimloop.toml apply after a restart")]


def _summary(settings: Settings) -> str:
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"
    return (f"environment {settings.environment}, {n(len(settings.connectors), 'connector')}, "
            f"{n(len(settings.models), 'configured model')}, {n(len(settings.prompts), 'prompt section')}")


def database(settings: Settings, engine: Engine | None) -> tuple[list[Finding], Engine | None]:
    """Reachable, and at the newest schema? The engine the store checks may read (None: they may not).
    Opens but never creates or migrates the database."""
    url = settings.db_url
    shown = safe_url(url)
    if engine is None:
        database_file = make_url(url).database if url.startswith("sqlite") else None
        if database_file and database_file != ":memory:" and not Path(database_file).exists():
            return [warning("database.missing", f"no database yet at {shown}",
                            "`trimloop init` (or any command but doctor) creates it", url=shown)], None
        engine = get_engine(settings)
    try:
        state = schema_state(engine)
    except (SQLAlchemyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [problem("database.unreachable", f"cannot open the database {shown}: {exc.__class__.__name__}: {first}",
                        "check database_url (or TRIMLOOP_DATABASE_URL), that the server is running and "
                        "reachable, and that the user may connect", url=shown)], None
    data = {"url": shown, "current": list(state.current), "head": list(state.head)}
    if state.unknown:
        return [problem("database.newer", f"the database {shown} is at revision {', '.join(state.unknown)}, which "
                        "this trimloop does not know: a newer trimloop migrated it",
                        "upgrade trimloop to the version that migrated it (pip install -U trimloop)", **data)], None
    if not state.current:
        return [warning("database.empty", f"the database {shown} holds no trimloop schema yet",
                        "`trimloop init` creates it (so does any command but doctor)", **data)], None
    if state.behind:
        return [problem("database.migrations_behind",
                        f"the database {shown} is at revision {', '.join(state.current)}; this trimloop needs "
                        f"{', '.join(state.head)} ({state.behind} migration{'s' if state.behind != 1 else ''} "
                        "to apply)", MIGRATE_FIX, behind=state.behind, **data)], None
    found = [ok("database.ok", f"{shown}: reachable, schema at {', '.join(state.current)} (the newest)", **data)]
    return found + _autovacuum(engine, shown), engine


def _autovacuum(engine: Engine, shown: str) -> list[Finding]:
    """PostgreSQL with autovacuum off: the reservoir deletes records and every ingest rewrites aggregate
    rows, and nothing reclaims their dead rows, so the database grows and reads slow down."""
    if engine.dialect.name != "postgresql":
        return []
    try:
        with engine.connect() as conn:
            setting = conn.exec_driver_sql("SHOW autovacuum").scalar()
    except SQLAlchemyError:  # a server that hides its settings: nothing to say
        return []
    if setting != "off":
        return []
    return [warning("database.autovacuum_off",
                    f"{shown}: the PostgreSQL server runs with autovacuum off, so the rows trimloop deletes "
                    "(records past the reservoir and retention) and rewrites (traffic aggregates, on every "
                    "ingest) are never reclaimed: the database grows and reports slow down",
                    "set `autovacuum = on` in postgresql.conf (PostgreSQL's default) and reload, or run "
                    "VACUUM (ANALYZE) on the trimloop database regularly, e.g. daily from cron", url=shown)]


def egress(settings: Settings) -> list[Finding]:
    """Every configured URL (connectors, model api_bases, webhooks) against allowed_hosts."""
    rules = settings.egress
    targets = egress_targets(settings)
    findings = []
    for who, key, url in targets:
        try:
            rules.check(url, who=who, where=key)
        except HostNotAllowed as exc:
            findings.append(problem("egress.refused", f"{key}: {exc.message}", exc.hint or "", key=key))
    if not findings:
        what = (f"the {len(targets)} configured URL{'s are' if len(targets) != 1 else ' is'} inside it" if targets
                else "no connector, model or webhook URL is configured")
        findings.append(ok("egress.ok", f"{EGRESS_SETTING}: {rules.describe()}; {what}",
                           f"set {EGRESS_SETTING} (or {EGRESS_ENV}) to add hosts" if not rules.explicit else ""))
    return findings


def local_models(settings: Settings, used: dict[str, list[str]], *, start: bool) -> list[Finding]:
    """The bundled models: the llama.cpp server importable, each GGUF package installed, its port free
    or held by this home's server; with `start`, each started once and stopped. Failures of a model
    no prompt uses are warnings."""
    findings = []
    llama = _llama_importable()
    users = {m for m in BUNDLED if used.get(m)}
    key_file = settings.home / KEY_FILE  # read, not made: a server of this home would have made it
    key = key_file.read_text().strip() if key_file.exists() else ""
    if llama is not None:
        level = problem if users else warning
        findings.append(level("local_models.llama_cpp", f"llama.cpp's server cannot be imported: {llama}",
                              "pip install 'llama-cpp-python[server]' (or reinstall trimloop)"))
    for model_id, model in BUNDLED.items():
        level = problem if model_id in users else warning
        role = "; ".join(used.get(model_id, [])) or "no prompt uses it"
        try:
            path = check_installed(model)
        except TrimloopError as exc:
            findings.append(level("local_models.not_installed", f"{model_id}: {exc.message} ({role})", exc.hint or ""))
            continue
        url = base_url(settings, model_id)
        if answers(url):
            if not is_ours(url, model.alias, key):
                findings.append(level(
                    "local_models.port_taken", f"{model_id}: {url} answers, but not as the server trimloop starts "
                    f"for this home, so trimloop will not send prompts there ({role})",
                    "stop what listens there, or set local_models.port (TRIMLOOP_LOCAL_MODELS__PORT) to a free port "
                    f"(this model uses port + {model.port_offset})", url=url))
                continue
            findings.append(ok("local_models.running", f"{model_id}: running at {url} ({role})", url=url))
            continue
        where = f"GGUF {path}" if path else f"GGUF assembled from {model.package} on first start"
        if not start or llama is not None:
            findings.append(ok("local_models.installed", f"{model_id}: startable ({where}; {role})",
                               "" if start else "`trimloop doctor --start-models` starts it once to be sure"))
            continue
        findings.append(_start(settings, model_id, role, level))
    return findings


def _start(settings: Settings, model_id: str, role: str, level: Callable[..., Finding]) -> Finding:
    began = time.monotonic()
    try:
        with ensure_running(settings, [model_id]):
            took = time.monotonic() - began
    except TrimloopError as exc:
        return level("local_models.start_failed", f"{model_id}: {exc.message} ({role})", exc.hint or "")
    return ok("local_models.started", f"{model_id}: started and answered in {took:.1f} s, then stopped ({role})",
              seconds=round(took, 2))


_llama_imported = False  # once it imported, it keeps importing for this process's life


def _llama_importable() -> str | None:
    """None when llama.cpp's server imports (in a child process: a broken native library must not
    take this one down), else why not."""
    global _llama_imported
    if _llama_imported:
        return None
    try:
        done = subprocess.run([sys.executable, "-c", "import llama_cpp.server.app"], capture_output=True, text=True,
                              timeout=LLAMA_IMPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"importing it took over {LLAMA_IMPORT_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        _llama_imported = True
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"
