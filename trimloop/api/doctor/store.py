"""The doctor's checks of what trimloop sees: each connector (a dry-run sync), the prices of every
production and candidate model, and each prompt (a production version, logs, its run options)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from trimloop.connectors import registry
from trimloop.connectors.preview import Preview, preview_connector
from trimloop.core import store
from trimloop.core.catalog import resolve_model
from trimloop.core.egress import HostNotAllowed
from trimloop.core.errors import TrimloopError
from trimloop.core.findings import Finding, ok, problem, warning
from trimloop.core.settings import Settings
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, TrafficAggregate
from trimloop.optimizer import preflight
from trimloop.optimizer.config import check_run_config, default_candidate_models, run_config

SHOWN_NAMES = 8
CONNECTOR_EXAMPLE = 'add one to trimloop.toml, e.g.\n[connectors.local]\ntype = "files"\npath = "./prompt-store"'


@dataclass
class PromptFacts:
    """One prompt as the store and the connectors show it now."""

    name: str
    connector: str | None = None
    in_store: bool = False
    prompt_id: int | None = None  # in the store
    production: str | None = None  # external version labelled production
    model: str | None = None  # its model
    logs: int = 0  # stored
    calls: int = 0  # ingested, from the traffic aggregates (the reservoir and retention drop records, not counts)
    production_logs: int = 0  # stored, of the production version
    logs_with_cost: int = 0  # stored with a logged cost
    pending: int = 0  # the next sync would store
    pending_with_cost: int = 0

    @property
    def has_cost(self) -> bool:
        return self.logs_with_cost + self.pending_with_cost > 0


def connectors(settings: Settings, engine: Engine | None, *, full: bool,
               max_logs: int | None) -> tuple[list[Finding], dict[str, Preview]]:
    """Each connector built, read (prompts, then logs from its cursor, or all with `full`) and judged."""
    if not settings.connectors:
        return [problem("connectors.none", "no connectors configured: trimloop has no prompts or logs to read",
                        CONNECTOR_EXAMPLE)], {}
    findings: list[Finding] = []
    previews: dict[str, Preview] = {}
    for name, config in settings.connectors.items():
        label = f"{name} ({config.type})"
        try:
            connector = registry.create(name, config, egress=settings.egress)
        except HostNotAllowed:
            findings.append(warning("connector.not_read", f"{label}: not read, its URL is not in allowed_hosts",
                                    "see the allowed hosts finding"))
            continue
        except TrimloopError as exc:
            where = f"{exc.where}: " if exc.where else ""
            findings.append(problem("connector.invalid", f"{label}: {where}{exc.message}", exc.hint or "",
                                    connector=name))
            continue
        try:
            with connector:
                preview = previews[name] = preview_connector(connector=connector, engine=engine, full=full,
                                                             max_logs=max_logs)
        except Exception as exc:  # a connector's bug: one finding, not a doctor that fails
            findings.append(problem("connector.failed", f"{label}: reading it raised {type(exc).__name__}: {exc}",
                                    "a bug in the connector (`trimloop sync` fails the same way): report it with "
                                    "this message to whoever maintains it", connector=name))
            continue
        findings += _judge(label, preview)
    return findings, previews


def _judge(label: str, preview: Preview) -> list[Finding]:
    name = preview.connector
    if preview.error is not None:
        exc = preview.error
        where = f"{exc.where}: " if exc.where else ""
        return [problem("connector.unreachable", f"{label}: cannot be read: {where}{exc.message}",
                        exc.hint or "check its options in trimloop.toml and that the store is running",
                        connector=name)]
    prompts = preview.prompts
    production = sum(1 for p in prompts.values() if p.production)
    versions = sum(p.versions for p in prompts.values())
    findings = [ok("connector.reads", f"{label}: reachable; {len(prompts)} prompt{_s(prompts)}, "
                   f"{versions} version{_s(versions)}, {production} labelled production"
                   + (f" ({_few(sorted(prompts))})" if prompts else ""),
                   connector=name, prompts=len(prompts), production=production)]
    if preview.prompt_problems:
        first = preview.prompt_problems[0]
        findings.append(warning("connector.prompts_skipped", f"{label}: {len(preview.prompt_problems)} prompt "
                                f"version(s) cannot be read, e.g. {first.where}: {first.message}",
                                first.hint or "fix the file or record named", connector=name))
    since = "since the last sync" if preview.from_cursor else "from the start"
    matched = sum(preview.matched.values())
    per_prompt = ", ".join(f"{p} {n}" for p, n in preview.matched.most_common(SHOWN_NAMES))
    looked = "; ".join(f"{looked.where}: {looked.read}" for looked in preview.looked)
    findings.append(ok("connector.logs", f"{label}: {preview.logs_read} log record{_s(preview.logs_read)} "
                       f"{since}; {matched} would be stored" + (f" ({per_prompt})" if per_prompt else "")
                       + (f", {sum(preview.skipped.values())} skipped" if preview.skipped else "")
                       + (f"; looked in {looked}" if looked else ""),
                       connector=name, read=preview.logs_read, matched=dict(preview.matched),
                       skipped=dict(preview.skipped), since_last_sync=preview.from_cursor))
    if preview.stopped_after:
        findings.append(warning("connector.stopped", f"{label}: stopped reading after {preview.stopped_after} log "
                                "records; the rest were not checked", "raise --max-logs to read more", connector=name))
    for looked in preview.looked:
        if looked.notice is not None:
            findings.append(warning("connector.looked_elsewhere", f"{label}: {looked.notice.where}: "
                                    f"{looked.notice.message}", looked.notice.hint or "", connector=name))
    for reason, count in preview.skipped.most_common():
        example = preview.examples[reason]
        findings.append(warning("connector.logs_skipped", f"{label}: {count} log record{_s(count)} would be "
                                f"skipped ({reason}), e.g. {example.where}: {example.message}",
                                example.hint or "", connector=name, reason=reason, count=count))
    return findings


def prompt_facts(engine: Engine | None, previews: dict[str, Preview]) -> dict[str, PromptFacts]:
    """Every prompt the store holds or a connector shows, by name."""
    facts: dict[str, PromptFacts] = {}
    if engine is not None:
        with Session(engine) as session:
            prompts = {pid: (name, connector) for pid, name, connector in
                       session.exec(select(Prompt.id, Prompt.name, Prompt.connector)).all()}
            production: dict[int, tuple[int, str, str]] = {}  # prompt → its production version
            for pid in prompts:
                vid = store.production_version_id(session=session, prompt_id=pid)
                version = session.get(PromptVersion, vid) if vid is not None else None
                if version is not None:  # a version trimloop wrote itself has no external number
                    production[pid] = (vid, version.external_version or f"id {vid}", version.model)  # type: ignore[assignment]
            for pid, (name, connector) in prompts.items():
                fact = facts[name] = PromptFacts(name, connector=connector, in_store=True, prompt_id=pid)
                if pid in production:
                    _, fact.production, fact.model = production[pid]
            counts = session.exec(select(LogRecord.prompt_id, LogRecord.version_id, func.count(),
                                         func.count(LogRecord.cost))
                                  .group_by(LogRecord.prompt_id, LogRecord.version_id)).all()
            for pid, vid, n, with_cost in counts:
                fact = facts[prompts[pid][0]]
                fact.logs += n
                fact.logs_with_cost += with_cost
                if pid in production and vid == production[pid][0]:
                    fact.production_logs += n
            for pid, calls in session.exec(select(TrafficAggregate.prompt_id, func.sum(TrafficAggregate.calls))
                                           .group_by(TrafficAggregate.prompt_id)).all():
                if pid in prompts:
                    facts[prompts[pid][0]].calls = round(calls or 0)
    for connector, preview in previews.items():
        for name, seen in preview.prompts.items():
            fact = facts.setdefault(name, PromptFacts(name, connector=connector))
            if fact.connector == connector and seen.production and seen.production != fact.production:
                # the store's labels are a sync behind: its logs are of the version production was before
                fact.production, fact.model, fact.production_logs = seen.production, seen.model, 0
        for name, n in preview.matched.items():
            if name in facts:
                facts[name].pending += n
                facts[name].pending_with_cost += preview.with_cost[name]
    return dict(sorted(facts.items()))


def candidates(settings: Settings, facts: dict[str, PromptFacts]) -> dict[str, list[str]]:
    """Prompt name → the candidate models a run of it would try (a prompt with bad options: none)."""
    out = {}
    for name in facts:
        try:
            out[name] = sorted(run_config(settings, name).models or default_candidate_models(settings))
        except TrimloopError:
            out[name] = []
    return out


def roles(facts: dict[str, PromptFacts], tried: dict[str, list[str]], settings: Settings) -> dict[str, list[str]]:
    """Model → what it is to whom (["production model of triage", "candidate of triage, router"])."""
    serves: dict[str, list[str]] = {}
    for fact in facts.values():
        if fact.model:
            serves.setdefault(fact.model, []).append(fact.name)
    users: dict[str, list[str]] = {}
    for name, models in tried.items():
        for model in models:
            users.setdefault(model, []).append(name)
    if not facts:
        users = {m: [] for m in default_candidate_models(settings)}
    out: dict[str, list[str]] = {model: [f"production model of {_few(names)}"] for model, names in serves.items()}
    for model, names in users.items():
        out.setdefault(model, []).append(f"candidate of {_few(names)}" if names else "a default candidate")
    return out


def prices(settings: Settings, facts: dict[str, PromptFacts], tried: dict[str, list[str]],
           used: dict[str, list[str]]) -> list[Finding]:
    """Every production and candidate model priced, with where the price comes from."""
    findings: list[Finding] = []
    priced: set[str] = set()
    serving: dict[str, list[PromptFacts]] = {}
    for fact in facts.values():
        if fact.model:
            serving.setdefault(fact.model, []).append(fact)
    for model in sorted(used):
        role = "; ".join(used[model])
        try:
            resolved = resolve_model(settings, model)
        except TrimloopError as exc:
            findings.append(problem("prices.bad_model", f"{model}: {exc.message} ({role})", exc.hint or "", model=model))
            continue
        if resolved.has_price:
            priced.add(model)
            findings.append(ok("prices.known", f"{model}: {_per_m(resolved.input_per_token)} in, "
                               f"{_per_m(resolved.output_per_token)} out per 1M tokens — {resolved.price_source} "
                               f"({role})", model=model, source=resolved.price_source,
                               input_per_mtok=_mtok(resolved.input_per_token),
                               output_per_mtok=_mtok(resolved.output_per_token)))
            continue
        lines = _price_lines(model)
        uncosted = [f.name for f in serving.get(model, []) if not f.has_cost]
        if uncosted:
            findings.append(problem("prices.unknown", f"the price of {model} is unknown and the logs of "
                                    f"{_few(uncosted)} carry no cost, so their calls count as free and nothing can "
                                    f"be cheaper ({role})", f"set it in trimloop.toml:\n{lines}\n(or log each "
                                    "call's cost)", model=model, prompts=uncosted))
        elif model in serving:
            findings.append(warning("prices.unknown_logged", f"the price of {model} is unknown; the logged cost of "
                                    "the calls stands in for the baseline's, but a run cannot price new calls of it "
                                    f"({role})", f"set it in trimloop.toml:\n{lines}", model=model))
        else:
            findings.append(warning("prices.unknown_candidate", f"the price of {model} is unknown, so a run "
                                    f"cannot say what it would cost as a candidate ({role})",
                                    f"set it in trimloop.toml:\n{lines}", model=model))
    for model, config in settings.models.items():
        if config.api_key_env and not os.environ.get(config.api_key_env):
            findings.append(warning("prices.key_missing", f"{model}: its key variable {config.api_key_env} is not "
                                    "set, so runs leave it out of the candidates and calls to it fail",
                                    f"set {config.api_key_env} in the environment trimloop runs in (the key is never "
                                    "read from trimloop.toml)", model=model))
    for name, models in tried.items():
        if models and not priced & set(models):
            findings.append(problem("prices.no_candidate", f"{name}: none of its candidate models has a price "
                                    f"({_few(models)})", "price one of them (above), or set "
                                    f"[prompts.{name}] models = [...] to priced ones", prompt=name))
    return findings


def prompts(settings: Settings, facts: dict[str, PromptFacts], *, store_read: bool,
            engine: Engine | None = None) -> list[Finding]:
    """Each prompt: a production version, logs of it, valid run options; then the preflight's findings."""
    findings: list[Finding] = []
    if not facts:
        findings.append(warning("prompts.none", "no prompts in the store or in any connector",
                                "add a prompt to your prompt store (README: Connectors), then `trimloop sync`"))
    if not store_read and facts:
        findings.append(warning("prompts.store_not_read", "the store was not read (see the database section): "
                                "prompts and logs below are what the connectors show now",
                                "fix the database finding, then run doctor again"))
    for fact in facts.values():
        findings += _prompt(settings, fact)
        findings += _preflight(settings, fact, engine)
    for name in sorted(set(settings.prompts) - set(facts)):
        findings.append(warning("prompts.unknown_section", f"[prompts.{name}] in trimloop.toml names no prompt "
                                "the store or a connector knows", f"known prompts: {_few(list(facts)) or 'none'}; "
                                "fix the name, or sync the connector that holds it", prompt=name))
    return findings


def _preflight(settings: Settings, fact: PromptFacts, engine: Engine | None) -> list[Finding]:
    """What a run of this prompt would check before spending (optimizer.preflight): quality signals
    and data sufficiency at its margin, each named after the prompt. Prices have their own section,
    and a prompt without a production version or logs is already named above."""
    if engine is None or fact.prompt_id is None or not fact.production or not fact.production_logs:
        return []
    try:
        with Session(engine) as session:
            found = preflight.check_prompt(session, settings=settings, prompt_id=fact.prompt_id)
    except TrimloopError as exc:
        return [problem("preflight.failed", f"{fact.name}: the run's checks could not be made: {exc.message}",
                        exc.hint or "", prompt=fact.name)]
    return [Finding(f.level, f"preflight.{f.code}", f"{fact.name}: {f.message}", f.fix, {"prompt": fact.name, **f.data})
            for f in found if f.level != "ok" and "price" not in f.code
            and f.code not in ("no_production_version", "no_logs", "options_invalid")]


def _prompt(settings: Settings, fact: PromptFacts) -> list[Finding]:
    name = fact.name
    data = {"prompt": name, "logs": fact.logs, "production_logs": fact.production_logs, "pending": fact.pending,
            "calls": fact.calls}
    out: list[Finding] = []
    try:
        check_run_config(settings, name)
    except TrimloopError as exc:
        out.append(problem("prompt.bad_options", f"{name}: {exc.where}: {exc.message}" if exc.where
                           else f"{name}: {exc.message}", exc.hint or "", **data))
    waiting = f"; {fact.pending} more wait for the next sync" if fact.pending else ""
    if fact.production is None:
        out.append(warning("prompt.no_production", f"{name}: no version is labelled production, so it is not "
                           "optimized", "label the version in use `production` in the prompt store (files: "
                           "labels: [production] or labels.yaml; MLflow: the alias production; Phoenix and "
                           "Langfuse: the tag/label production), then `trimloop sync`", **data))
    elif fact.logs + fact.pending == 0:
        out.append(problem("prompt.no_logs", f"{name}: trimloop has no logged call of it, so there is nothing to "
                           "optimize on", "send its production calls where a connector reads them (files: "
                           f"logs/*.jsonl records with \"prompt\": \"{name}\"; MLflow traces; Phoenix spans; "
                           "OTel spans), check the connector findings for skipped logs, then `trimloop sync`",
                           **data))
    elif fact.logs == 0:
        out.append(warning("prompt.not_synced", f"{name}: {fact.pending} logged calls wait for the next sync",
                           "run `trimloop sync`", **data))
    elif fact.production_logs == 0 and fact.in_store:
        out.append(warning("prompt.no_production_logs", f"{name}: {fact.logs} logs, none of the production "
                           f"version {fact.production}{waiting}", "check that the calls log the production "
                           "version (or its rendered messages), then `trimloop sync`", **data))
    else:
        # the reservoir keeps a sample of each day's records: say how many calls they stand for
        counted = (f"; {fact.calls} calls counted, their full records sampled to these"
                   if fact.calls > fact.logs else "")
        out.append(ok("prompt.ready", f"{name}: production version {fact.production} on {fact.model}, "
                      f"{fact.logs} logs ({fact.production_logs} of that version{counted}){waiting}", **data))
    return out


def _price_lines(model: str) -> str:
    return (f'[models."{model}"]\ninput_per_mtok = <USD per 1M input tokens>\n'
            'output_per_mtok = <USD per 1M output tokens>\nprice_note = "where the price comes from"')


def _per_m(rate: float | None) -> str:
    return "?" if rate is None else f"${rate * 1e6:.4g}"


def _mtok(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 1e6, 9)


def _few(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def _s(count: object) -> str:
    n = len(count) if isinstance(count, dict | list) else count
    return "" if n == 1 else "s"
