"""The mlflow connector: MLflow's prompt registry and traces over its REST API (no mlflow package).

Prompts are registered models tagged `mlflow.prompt.is_prompt`; each version keeps its template in
the `mlflow.prompt.text` tag (JSON messages when `_mlflow_prompt_type` is `chat`) and its model and
params in `_mlflow_prompt_model_config`. Labels are MLflow aliases. Traces come from
`POST /api/3.0/mlflow/traces/search` for every experiment (`experiments/search`) or the configured
ones, ordered by time, each experiment resumed from its own (timestamp, ids) cursor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import BaseModel, Field

from trimloop.connectors.base import Checkpoint, Connector, Looked, LogItem, Problem, PromptItem, WriteResult
from trimloop.connectors.http import JsonClient, secret_from_env
from trimloop.connectors.otlp import attributes
from trimloop.core.egress import Egress
from trimloop.core.errors import ConnectorError, UserError
from trimloop.core.templates import Template
from trimloop.core.usage import TokenUsage, usage_from

IS_PROMPT = "mlflow.prompt.is_prompt"
TEXT_TAG, TYPE_TAG, CONFIG_TAG = "mlflow.prompt.text", "_mlflow_prompt_type", "_mlflow_prompt_model_config"
FORMAT_TAG = "_mlflow_prompt_response_format"
CONFIG_FIELDS = ("temperature", "max_tokens", "top_p", "top_k", "frequency_penalty", "presence_penalty")
PROMPT_FILTER = f"tags.`{IS_PROMPT}` = 'true'"
MAX_TRACES_PAGE = 500  # the most MLflow's traces/search returns at once
COUNT_CAP = 1000  # traces counted in an experiment the connector was not asked to read


class MlflowConnector(Connector):
    """Prompts (registry + aliases) and traces (with usage, cost, linked prompt, assessments)."""

    type = "mlflow"

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        url: str = Field(description="tracking server, e.g. http://127.0.0.1:5000")
        experiment_ids: list[str] | None = Field(default=None, description="default: every experiment")
        token_env: str | None = Field(default=None, description="env var with a bearer token")
        default_model: str | None = Field(default=None, description="for versions with no model config")
        timeout_s: float = 30.0
        page_size: int = Field(default=100, ge=1, le=MAX_TRACES_PAGE)

    def __init__(self, *, name: str, options: dict[str, Any] | None = None,
                 transport: httpx.BaseTransport | None = None, egress: Egress | None = None) -> None:
        super().__init__(name=name, options=options, egress=egress)
        token = secret_from_env(self.options.token_env, connector=name, option="token_env")
        self.http = JsonClient(base_url=self.options.url, service="MLflow", connector=name, egress=self.egress,
                               timeout_s=self.options.timeout_s, transport=transport,
                               headers={"Authorization": f"Bearer {token}"} if token else None,
                               secrets=(token,))

    def close(self) -> None:
        self.http.close()

    # -- prompts ---------------------------------------------------------------------------
    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        for model in self._pages("/api/2.0/mlflow/registered-models/search", "registered_models",
                                 filter=PROMPT_FILTER):
            name = model.get("name")
            if not isinstance(name, str):
                raise ConnectorError("a registered model has no name", where=self._url("registered-models/search"))
            aliases: dict[str, list[str]] = {}
            for alias in model.get("aliases") or []:
                if not isinstance(alias, dict):
                    raise ConnectorError(f"MLflow answered aliases of {name!r} that are not {{alias, version}} "
                                         "objects", where=self._url("/api/2.0/mlflow/registered-models/search"))
                aliases.setdefault(str(alias.get("version")), []).append(alias.get("alias"))
            for version in self._pages("/api/2.0/mlflow/model-versions/search", "model_versions",
                                       filter=f"name='{_quote(name)}' AND {PROMPT_FILTER}"):
                yield self._prompt_item(name, version, aliases, model.get("description"))

    def _prompt_item(self, name: str, version: dict[str, Any], aliases: dict[str, list[str]],
                     description: str | None) -> PromptItem | Problem:
        number = str(version.get("version"))
        where = f"{self.options.url} prompt {name!r} version {number}"
        tags = {t.get("key"): t.get("value") for t in version.get("tags") or []}
        try:
            template = _template(tags)
            template.variables()  # refuses syntax trimloop cannot render, e.g. {{ a.b }}
            model, params = _model_and_params(tags, self.options.default_model)
        except (UserError, ValueError, TypeError) as exc:
            return Problem(where, getattr(exc, "message", str(exc)), "bad_prompt_version",
                           getattr(exc, "hint", None), prompt=name)
        return PromptItem(name=name, template=template, model=model, params=params,
                          external_version=number, external_id=name, labels=sorted(aliases.get(number, [])),
                          description=description or None, where=where)

    def write_version(self, *, prompt: str, template: Template, model: str, params: dict[str, Any],
                      label: str, description: str | None = None) -> WriteResult:
        for item in self.read_prompts():
            if isinstance(item, PromptItem) and item.name == prompt and item.template == template \
                    and item.model == model and item.params == params:
                self.move_label(prompt=prompt, external_version=item.external_version, label=label)
                return WriteResult(prompt, item.external_version, label, created=False, external_id=prompt)
        body = {"name": prompt, "source": "dummy-source", "description": description or "",
                "tags": [{"key": k, "value": v} for k, v in _version_tags(template, model, params).items()]}
        created = self.http.post("/api/2.0/mlflow/model-versions/create", body).get("model_version") or {}
        version = str(created.get("version") or "")
        if not version:
            raise ConnectorError("MLflow created a version but did not say its number",
                                 where=self._url("model-versions/create"))
        self.move_label(prompt=prompt, external_version=version, label=label)
        return WriteResult(prompt, version, label, created=True, external_id=prompt,
                           where=f"{self.options.url} prompt {prompt!r} version {version}")

    def move_label(self, *, prompt: str, external_version: str, label: str) -> None:
        self.http.post("/api/2.0/mlflow/registered-models/alias",
                       {"name": prompt, "alias": label, "version": str(external_version)})

    # -- traces ----------------------------------------------------------------------------
    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint | Looked]:
        """Traces of every experiment (or the configured ones), each resumed from its own cursor."""
        state = _cursor_state(cursor, self.options.experiment_ids or ["0"])
        experiments = {str(e.get("experiment_id")): str(e.get("name"))
                       for e in self._pages("/api/2.0/mlflow/experiments/search", "experiments")}
        wanted = self.options.experiment_ids or list(experiments)
        looked: list[Looked] = []
        fresh: list[str] = []  # experiments that never gave a record, nor in this sync
        for experiment in wanted:
            read = found = 0
            if experiment not in experiments:  # a configured id that is gone: say so, read nothing
                looked.append(Looked(self._experiment(experiment, experiments)))
                fresh.append(experiment)
                continue
            for item in self._traces(experiment, state):
                read, found = read + isinstance(item, LogItem), found + (not isinstance(item, Checkpoint))
                yield item
            yield Checkpoint(json.dumps({"experiments": state}, sort_keys=True))
            looked.append(Looked(self._experiment(experiment, experiments), read))
            if not found and state[experiment] == {"ts": 0, "ids": []}:
                fresh.append(experiment)
        if self.options.experiment_ids:
            for x, seen in zip(wanted, looked):
                if x in fresh:
                    seen.notice = self._empty_experiment(x, experiments)
        elif looked and len(fresh) == len(wanted):
            looked[0].notice = Problem(
                f"{self.options.url}", f"no traces in any of its {len(wanted)} experiments", "no_traces",
                "trace the calls, e.g. mlflow.set_experiment('my-app') and mlflow.openai.autolog(), "
                "and point them at this tracking server (mlflow.set_tracking_uri)")
        yield from looked

    def _traces(self, experiment: str, state: dict[str, dict[str, Any]]) -> Iterator[LogItem | Problem | Checkpoint]:
        """One experiment's traces in time order from its cursor; `state[experiment]` follows them."""
        mark = state.setdefault(experiment, {"ts": 0, "ids": []})
        since, seen = int(mark["ts"]), set(mark["ids"])
        body: dict[str, Any] = {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
            "filter": f"trace.timestamp_ms >= {since}", "order_by": ["timestamp_ms ASC"],
            "max_results": self.options.page_size,
        }
        while True:
            page = self.http.post("/api/3.0/mlflow/traces/search", body)
            for info in self._trace_infos(page):
                trace_id = str(info.get("trace_id"))
                try:
                    ts = _millis(info.get("request_time"))
                except (ValueError, TypeError, OverflowError):
                    yield self._log_item(info)  # a Problem naming the trace; the cursor stays put
                    continue
                if trace_id in seen and ts == since:
                    continue
                yield self._log_item(info)
                since, seen = (ts, seen | {trace_id}) if ts == since else (ts, {trace_id})
            state[experiment] = {"ts": since, "ids": sorted(seen)}
            token = page.get("next_page_token")
            if not token:
                return
            yield Checkpoint(json.dumps({"experiments": state}, sort_keys=True))
            body["page_token"] = token

    def _trace_infos(self, page: dict[str, Any]) -> list[dict[str, Any]]:
        traces = page.get("traces") or []
        if not isinstance(traces, list) or not all(isinstance(t, dict) for t in traces):
            raise ConnectorError("MLflow answered 'traces' that are not a list of objects",
                                 where=self._url("/api/3.0/mlflow/traces/search"))
        return traces

    def _empty_experiment(self, experiment: str, experiments: dict[str, str]) -> Problem:
        """A configured experiment with no traces: where the traces are instead, and the line to add."""
        where = f"{self.options.url} {self._experiment(experiment, experiments)}"
        what = "holds no traces" if experiment in experiments else "is not an experiment there (or is deleted)"
        reason = "traces_elsewhere" if experiment in experiments else "no_such_experiment"
        others = {x: n for x in experiments if x not in (self.options.experiment_ids or [])
                  if (n := self._count_traces(x))}
        if not others:
            return Problem(where, f"{what}, and no other experiment holds traces", reason,
                           "trace the calls under this experiment, e.g. mlflow.set_experiment(...) and "
                           "mlflow.openai.autolog()")
        found = ", ".join(f"{self._experiment(x, experiments)}: {_count(n)} traces" for x, n in others.items())
        return Problem(where, f"{what}; traces are in {found}", reason, self._hint(experiments, others=list(others)))

    def _hint(self, experiments: dict[str, str], *, others: list[str]) -> str:
        ids = ", ".join(f'"{x}"' for x in [*(i for i in self.options.experiment_ids or [] if i in experiments), *others])
        return (f"set experiment_ids = [{ids}] under [connectors.{self.name}], or remove experiment_ids "
                "to read every experiment")

    def _count_traces(self, experiment: str) -> int:
        """How many traces an experiment holds, counted up to COUNT_CAP."""
        body: dict[str, Any] = {"locations": [{"type": "MLFLOW_EXPERIMENT",
                                               "mlflow_experiment": {"experiment_id": experiment}}],
                                "max_results": MAX_TRACES_PAGE}
        count = 0
        while count < COUNT_CAP:
            page = self.http.post("/api/3.0/mlflow/traces/search", body)
            count += len(self._trace_infos(page))
            if not page.get("next_page_token"):
                return count
            body["page_token"] = page["next_page_token"]
        return count

    @staticmethod
    def _experiment(experiment: str, experiments: dict[str, str]) -> str:
        name = experiments.get(experiment)
        return f"experiment {name!r} (id {experiment})" if name else f"experiment {experiment}"

    def _log_item(self, info: dict[str, Any]) -> LogItem | Problem:
        trace_id = str(info.get("trace_id"))
        where = f"{self.options.url} trace {trace_id}"
        meta, tags = info.get("trace_metadata") or {}, info.get("tags") or {}
        try:
            inputs, outputs = self._io(trace_id, meta)
            usage = json.loads(meta.get("mlflow.trace.tokenUsage") or "{}")
            cost = json.loads(meta.get("mlflow.trace.cost") or "{}")
            linked = json.loads(tags.get("mlflow.linkedPrompts") or "[]")
            called_at = datetime.fromtimestamp(_millis(info.get("request_time")) / 1000, tz=timezone.utc)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            return Problem(where, f"unreadable trace: {exc}", "bad_trace", "look at the trace in the MLflow UI")
        link = linked[0] if linked and isinstance(linked[0], dict) else {}
        messages = inputs.get("messages") if isinstance(inputs, dict) else None
        variables = inputs if isinstance(inputs, dict) and messages is None else None
        return LogItem(
            external_id=trace_id, called_at=called_at, prompt=link.get("name"),
            version=str(link["version"]) if link.get("version") is not None else None,
            inputs=variables, rendered=_messages(messages), output=_output_text(outputs),
            model=(inputs.get("model") if isinstance(inputs, dict) else None) or _output_model(outputs),
            cost=cost.get("total_cost"), latency_s=_seconds(info.get("execution_duration")),
            feedback=[f for a in info.get("assessments") or [] if (f := _feedback(a))],
            meta={"trace_state": info.get("state"), "linked_prompts": linked} if len(linked) > 1
            else {"trace_state": info.get("state")},
            where=where,
        ).set_usage(_usage(usage, outputs))

    def _io(self, trace_id: str, meta: dict[str, Any]) -> tuple[Any, Any]:
        """Root span inputs/outputs: from the trace metadata, or the spans when it is truncated."""
        try:
            return json.loads(meta["mlflow.traceInputs"]), json.loads(meta.get("mlflow.traceOutputs") or "null")
        except (KeyError, ValueError):
            pass
        trace = self.http.get("/api/3.0/mlflow/traces/get", trace_id=trace_id).get("trace") or {}
        for span in trace.get("spans") or []:
            if not span.get("parent_span_id"):
                attrs = attributes(span.get("attributes"))
                return _decoded(attrs.get("mlflow.spanInputs")), _decoded(attrs.get("mlflow.spanOutputs"))
        return None, None

    # -- helpers ---------------------------------------------------------------------------
    def _pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = self.http.get(path, max_results=self.options.page_size, page_token=token, **params)
            items = page.get(key) or []
            if not isinstance(items, list):
                raise ConnectorError(f"MLflow answered an unexpected '{key}'", where=self._url(path))
            yield from items
            token = page.get("next_page_token")
            if not token:
                return

    def _url(self, path: str) -> str:
        return f"{self.options.url.rstrip('/')}/{path.lstrip('/')}"


def _cursor_state(cursor: str | None, before: list[str]) -> dict[str, dict[str, Any]]:
    """experiment id → {"ts", "ids"}. A cursor saved before cursors were per experiment is one
    {"ts", "ids"} over the experiments read then (`before`: the configured ones, else "0")."""
    if not cursor:
        return {}
    state = json.loads(cursor)
    if "experiments" in state:
        return {str(k): {"ts": int(v["ts"]), "ids": list(v["ids"])} for k, v in state["experiments"].items()}
    return {experiment: {"ts": int(state["ts"]), "ids": list(state["ids"])} for experiment in before}


def _count(n: int) -> str:
    return f"{n}+" if n >= COUNT_CAP else str(n)


def _decoded(value: Any) -> Any:
    """MLflow keeps span inputs/outputs as JSON text (even a plain string is quoted)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _template(tags: dict[str, Any]) -> Template:
    text = tags.get(TEXT_TAG)
    if not isinstance(text, str):
        raise ValueError(f"version has no '{TEXT_TAG}' tag")
    if tags.get(TYPE_TAG) == "chat":
        messages = json.loads(text)
        if not isinstance(messages, list) or not all(isinstance(m.get("content"), str) for m in messages):
            raise ValueError("chat template is not a list of {role, content: text} messages")
        return Template.chat(*((m.get("role"), m["content"]) for m in messages))
    return Template.plain(text)


def _model_and_params(tags: dict[str, Any], default_model: str | None) -> tuple[str, dict[str, Any]]:
    config = json.loads(tags.get(CONFIG_TAG) or "{}")
    model = config.get("model_name") or default_model
    if not model:
        raise UserError("version has no model", hint="register it with model_config={'model_name': ...} "
                        "or set default_model in the connector's options")
    if config.get("provider") and "/" not in model:
        model = f"{config['provider']}/{model}"
    params = {k: config[k] for k in CONFIG_FIELDS if config.get(k) is not None}
    if config.get("stop_sequences"):
        params["stop"] = config["stop_sequences"]
    params.update(config.get("extra_params") or {})
    if tags.get(FORMAT_TAG):
        params["response_format"] = json.loads(tags[FORMAT_TAG])
    return model, params


def _version_tags(template: Template, model: str, params: dict[str, Any]) -> dict[str, str]:
    provider, _, model_name = model.rpartition("/")
    config: dict[str, Any] = {"model_name": model_name}
    if provider:
        config["provider"] = provider
    extra = {}
    for key, value in params.items():
        if key in CONFIG_FIELDS:
            config[key] = value
        elif key == "stop":
            config["stop_sequences"] = value if isinstance(value, list) else [value]
        elif key != "response_format":
            extra[key] = value
    if extra:
        config["extra_params"] = extra
    tags = {IS_PROMPT: "true", CONFIG_TAG: json.dumps(config)}
    if template.kind == "chat":
        tags[TEXT_TAG] = json.dumps([{"role": m.role, "content": m.content} for m in template.messages or []])
        tags[TYPE_TAG] = "chat"
    else:
        tags[TEXT_TAG], tags[TYPE_TAG] = template.text or "", "text"
    if "response_format" in params:
        tags[FORMAT_TAG] = json.dumps(params["response_format"])
    return tags


def _feedback(assessment: dict[str, Any]) -> dict[str, Any] | None:
    if "feedback" not in assessment:
        return None
    source = assessment.get("source") or {}
    return {"name": assessment.get("assessment_name"), "value": (assessment["feedback"] or {}).get("value"),
            "source": source.get("source_id") or str(source.get("source_type", "unknown")).lower()}


def _messages(messages: Any) -> list[dict[str, Any]] | None:
    if not isinstance(messages, list):
        return None
    return [{"role": m.get("role"), "content": m.get("content")} for m in messages if isinstance(m, dict)]


def _output_text(outputs: Any) -> str | None:
    if isinstance(outputs, str) or outputs is None:
        return outputs
    if isinstance(outputs, dict) and outputs.get("choices"):
        message = outputs["choices"][0].get("message") or {}
        return message.get("content")
    return json.dumps(outputs)


def _output_model(outputs: Any) -> str | None:
    return outputs.get("model") if isinstance(outputs, dict) else None


def _millis(value: Any) -> int:
    """RFC 3339 time (what the v3 API returns) or epoch milliseconds, as epoch milliseconds."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1000)


def _seconds(value: Any) -> float | None:
    """A protobuf Duration in JSON ("0.055s") as seconds."""
    if isinstance(value, str) and value.endswith("s"):
        return float(value[:-1])
    return float(value) if isinstance(value, (int, float)) else None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _usage(token_usage: Any, outputs: Any) -> TokenUsage:
    """The trace's token classes: `mlflow.trace.tokenUsage` (input/output, and the cache keys newer MLflow
    writes), completed by the provider's own usage object in the outputs (an autologged ChatCompletion or
    Anthropic Message), which carries cached, cache-write and reasoning tokens."""
    found = usage_from(token_usage if isinstance(token_usage, dict) else None)
    raw = outputs.get("usage") if isinstance(outputs, dict) else None
    if isinstance(raw, dict):
        detail = usage_from(raw)
        merged = {f: getattr(found, f) if getattr(found, f) is not None else getattr(detail, f)
                  for f in ("input", "output", "cached", "cache_write", "reasoning")}
        if detail.input is not None and found.input is not None and detail.input > found.input:
            merged["input"] = detail.input  # Anthropic's input_tokens leaves the cache buckets out
        return TokenUsage(**merged)
    return found
