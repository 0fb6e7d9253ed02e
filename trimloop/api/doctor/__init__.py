"""`trimloop doctor` and `GET /doctor`: is this workspace set up to work, and if not, what to fix.

Each check yields findings (core.findings: ok / warning / problem, a message and the fix), grouped
in sections, root causes first: the config, the database, allowed_hosts, each connector (a dry-run
sync: what it sees, what the next sync would store or skip), the prices of every production and
candidate model, the bundled models, and each prompt. It reads and changes nothing a team relies
on: no migration, no sync, no LLM call (the bundled models are started only with `start_models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.api.doctor import setup, store
from trimloop.core.findings import LEVELS, Finding, Level, worst
from trimloop.core.settings import Settings

DEFAULT_MAX_LOGS = 100_000


@dataclass(frozen=True)
class Section:
    name: str  # a stable key: config, database, egress, connectors, prices, local_models, prompts
    title: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return worst(self.findings)


@dataclass(frozen=True)
class DoctorReport:
    sections: list[Section]

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.sections for f in s.findings]

    @property
    def level(self) -> Level:
        return worst(self.findings)

    @property
    def counts(self) -> dict[str, int]:
        return {level: sum(f.level == level for f in self.findings) for level in LEVELS}

    @property
    def exit_code(self) -> int:
        """1 on any problem (so CI stops), else 0: warnings do not fail."""
        return 1 if self.level == "problem" else 0

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "counts": self.counts,
                "sections": [{"name": s.name, "title": s.title, "level": s.level,
                              "findings": [_finding(f) for f in s.findings]} for s in self.sections]}


def _finding(f: Finding) -> dict[str, Any]:
    return {"level": f.level, "code": f.code, "message": f.message, "fix": f.fix, "data": f.data}


def diagnose_workspace(*, start_models: bool = False, full: bool = False,
                       max_logs: int | None = DEFAULT_MAX_LOGS) -> DoctorReport:
    """The CLI's doctor: reads trimloop.toml and the TRIMLOOP_* variables itself (a config that does
    not load is the one finding), opens the database without migrating it."""
    settings, config = setup.read_config()
    if settings is None:
        return DoctorReport([Section("config", "Configuration", config)])
    return diagnose(settings, config=config, start_models=start_models, full=full, max_logs=max_logs)


def diagnose(settings: Settings, *, engine: Engine | None = None, config: list[Finding] | None = None,
             start_models: bool = False, full: bool = False, max_logs: int | None = DEFAULT_MAX_LOGS) -> DoctorReport:
    """Every check on loaded settings; `engine`: the server's (else opened from the settings)."""
    database, store_engine = setup.database(settings, engine)
    connectors, previews = store.connectors(settings, store_engine, full=full, max_logs=max_logs)
    facts = store.prompt_facts(store_engine, previews)
    tried = store.candidates(settings, facts)
    used = store.roles(facts, tried, settings)
    return DoctorReport([
        Section("config", "Configuration", config if config is not None else setup.in_use(settings)),
        Section("database", "Database", database),
        Section("egress", "Allowed hosts", setup.egress(settings)),
        Section("connectors", "Connectors", connectors),
        Section("prices", "Prices", store.prices(settings, facts, tried, used)),
        Section("local_models", "Bundled models", setup.local_models(settings, used, start=start_models)),
        Section("prompts", "Prompts", store.prompts(settings, facts, store_read=store_engine is not None)),
    ])
