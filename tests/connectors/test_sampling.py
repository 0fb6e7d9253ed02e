"""A log's sampling weight from each source: the files connector's `sample_rate` (both line
shapes), an OTel span's probability-sampling threshold (`ot=th:…` in its trace state), and
`[connectors.NAME] sample_rate` for stores that sample client-side without saying so per record
(Langfuse's LANGFUSE_SAMPLE_RATE, MLflow's MLFLOW_TRACE_SAMPLING_RATIO). Bad rates are refused
with the record's place and how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import log_line, make_store, write_logs
from tests.connectors.test_otel import export, span
from trimloop.connectors import files_logs
from trimloop.connectors.base import LogItem
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.otel import OtelConnector, sampling_probability
from trimloop.connectors.sync import sync, sync_connector
from trimloop.core.settings import Settings


def test_a_line_carries_its_sample_rate_on_the_fast_and_the_full_path() -> None:
    raw = log_line(1, sample_rate=0.01).encode()
    fast = files_logs._fast_path(raw, "x:1")
    assert fast is not None and fast.sample_rate == 0.01 and fast == files_logs.full_path(raw, "x:1")
    openai = json.dumps({"request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                         "response": {"id": "chatcmpl-1", "created": 1717243200, "model": "gpt-4o-mini",
                                      "choices": [{"message": {"content": "hello"}}]},
                         "prompt": "triage", "sample_rate": 0.25}).encode()
    assert files_logs.parse_line(openai, "x:2").sample_rate == 0.25
    assert files_logs.parse_line(log_line(3).encode(), "x:3").sample_rate is None


@pytest.mark.parametrize("rate", [0, -0.5, 1.5, "0.1", True])
def test_a_rate_outside_0_to_1_is_refused_with_its_line(rate: object, tmp_path: Path, engine: Engine) -> None:
    store = make_store(tmp_path / "store")
    write_logs(store / "logs" / "june.jsonl", [log_line(1), log_line(2, sample_rate=rate)])
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(store)}))
    assert report.logs_added == 1 and report.skipped_total == 1
    [problem] = report.problems
    assert "june.jsonl:2" in problem.where and "sample_rate" in problem.message


def test_otel_reads_the_probability_from_the_trace_state(tmp_path: Path) -> None:
    assert sampling_probability("ot=th:0") == 1.0
    assert sampling_probability("ot=th:8") == 0.5
    assert sampling_probability("vendor=a,ot=rv:abcdef01234567;th:c") == 0.25
    assert sampling_probability("ot=th:fd70a3d70a3d71") == pytest.approx(0.01)
    for unknown in (None, "", "ot=p:8", "ot=th:", "ot=th:xyz", "ot=th:" + "f" * 15):
        assert sampling_probability(unknown) is None
    llm = {"gen_ai.system": "openai", "gen_ai.request.model": "m", "trimloop.prompt": "triage"}
    sampled = {**span("a" * 16, llm), "traceState": "ot=th:fd70a3d70a3d71"}
    (tmp_path / "spans.jsonl").write_text(export(sampled, span("b" * 16, llm)) + "\n", encoding="utf-8")
    items = {i.external_id[-16:]: i for i in OtelConnector(name="o", options={"path": str(tmp_path)}).read_logs(
        cursor=None) if isinstance(i, LogItem)}
    assert items["a" * 16].sample_rate == pytest.approx(0.01) and items["b" * 16].sample_rate is None


def test_the_connectors_own_rate_fills_in_for_records_without_one(tmp_path: Path, engine: Engine) -> None:
    store = make_store(tmp_path / "store")
    write_logs(store / "logs" / "june.jsonl", [log_line(1), log_line(2, sample_rate=0.5)])
    settings = Settings(home=tmp_path / "home",
                        connectors={"local": {"type": "files", "path": str(store), "sample_rate": 0.2}})
    [report] = sync(engine=engine, settings=settings)
    assert report.logs_added == 2, report.to_dict()
    with engine.connect() as conn:
        rates = dict(conn.execute(text("select external_id, sample_rate from logrecord")).all())
    assert rates == {"call-1": 0.2, "call-2": 0.5}
    with pytest.raises(ValueError, match="sample_rate"):
        Settings(connectors={"local": {"type": "files", "path": str(store), "sample_rate": 2}})
