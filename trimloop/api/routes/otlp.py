"""`POST /v1/traces`: the OTLP/HTTP trace receiver. An app's OpenTelemetry exporter points
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` here with an `ingest` token in its headers.

- Bodies: OTLP protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`), either
  gzipped (`Content-Encoding: gzip`); the declared and the inflated size are both capped by
  `api.max_body_bytes` (413). The token is checked before the body is read (api.limits).
- The spans go through the `otel` connector's mapping (GenAI semconv, OpenInference, OpenLLMetry)
  and sync's write path (`connectors.sync.prepare_logs`, `store_logs`): logs are unique on
  (`otlp`, trace:span id), so a batch sent again adds nothing.
- Backpressure: at most `api.ingest_queue` batches are accepted and not yet stored; one writer
  at a time stores the batches waiting, together in one transaction (`IngestQueue`). One more is
  answered 429 with Retry-After before its body is read (the OTLP exporters retry it). A batch is
  answered 200 only once it is committed: nothing acknowledged is lost.
- Spans that are LLM calls but cannot be stored (no known prompt, out-of-range values) are
  counted in the response's `partialSuccess.rejectedSpans` with the first reasons.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy.engine import Engine

from trimloop.api.auth import EngineDep, Ingester, SettingsDep
from trimloop.api.errors import ApiError
from trimloop.api.limits import BodyTooLarge
from trimloop.connectors.base import LogItem, Problem
from trimloop.connectors.otel import export_items
from trimloop.connectors.otlp import decode_traces
from trimloop.connectors.sync import PushedLogs, SyncReport, prepare_logs, store_logs
from trimloop.core.settings import Settings

SOURCE = "otlp"  # the connector name the received logs are stored under
PROTOBUF, JSON = "application/x-protobuf", "application/json"

router = APIRouter(tags=["ingest"])


class IngestQueue:
    """At most `size` batches accepted and not yet stored. They are stored by one writer at a time,
    and the writer takes every batch waiting (up to `GROUP_SPANS` spans) into its transaction: one
    commit and one write of the traffic aggregates for all of them, not one per batch."""

    def __init__(self, size: int):
        self.size, self.pending = size, 0
        self._count = threading.Lock()
        self._writer = threading.Lock()
        self._waiting: list[_Job] = []

    def reserve(self) -> bool:
        with self._count:
            if self.pending >= self.size:
                return False
            self.pending += 1
            return True

    def release(self) -> None:
        with self._count:
            self.pending -= 1

    def write(self, pushed: PushedLogs, store: Callable[[list[PushedLogs]], None]) -> None:
        """Store `pushed` (alone or with the batches waiting beside it); returns once it is committed,
        raises what its transaction raised."""
        job = _Job(pushed)
        with self._count:
            self._waiting.append(job)
        with self._writer:
            if not job.done:  # no writer took it along: this thread writes it and the others waiting
                with self._count:
                    group, spans = [], 0
                    while self._waiting and (not group or spans + len(self._waiting[0].pushed) <= GROUP_SPANS):
                        group.append(self._waiting.pop(0))
                        spans += len(group[-1].pushed)
                _store(group, store)
        if job.error is not None:
            raise job.error


GROUP_SPANS = 5000  # spans stored in one transaction at most (a sync's batch): keeps each write lock short


class _Job:
    def __init__(self, pushed: PushedLogs):
        self.pushed = pushed
        self.done = False
        self.error: BaseException | None = None


def _store(group: list[_Job], store: Callable[[list[PushedLogs]], None]) -> None:
    """One transaction for the group; if it fails, each batch alone, so one batch's failure is not
    the others' (a batch whose own transaction fails gets that error). Every job leaves done."""
    try:
        store([job.pushed for job in group])
    except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
        if len(group) == 1:
            group[0].error = exc
        else:
            for job in group:
                _store([job], store)
    except BaseException:  # this thread is stopping: the batches it took are not stored, and say so
        for job in group:
            job.error = RuntimeError("the writer stopped before this batch was stored")
        raise
    finally:
        for job in group:
            job.done = True


@router.post("/v1/traces", summary="receive OTLP/HTTP spans (protobuf or JSON, gzip); role ingest",
             response_class=Response, responses={200: {"content": {PROTOBUF: {}, JSON: {}}}})
async def receive_traces(request: Request, _: Ingester, settings: SettingsDep, engine: EngineDep) -> Response:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {kind or '(none)'!r} is not OTLP",
                       where="Content-Type header", hint=f"send {PROTOBUF} or {JSON} (OTLP/HTTP)")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "unsupported_media_type", f"Content-Encoding {encoding!r} is not supported",
                       where="Content-Encoding header", hint="send gzip or no compression")
    queue: IngestQueue = request.app.state.ingest
    if not queue.reserve():
        raise ApiError(429, "ingest_queue_full", f"{queue.size} span batches are waiting to be stored",
                       where="POST /v1/traces", hint="retry after Retry-After seconds (OTLP exporters do); "
                       "raise api.ingest_queue or run more `trimloop serve` processes",
                       headers={"Retry-After": "1"})
    try:
        body = await request.body()
        # inflating, decoding, mapping and resolving a batch take tens of ms: in a worker thread, so
        # the other requests on this process are not held, and outside the writer lock, so the next
        # batches are made ready while this one is written
        pushed = await anyio.to_thread.run_sync(_prepare, engine, body, kind, encoding, settings)
        await anyio.to_thread.run_sync(queue.write, pushed, lambda group: store_logs(
            engine=engine, source=SOURCE, pushed=group, settings=settings))
    finally:
        queue.release()
    return _answer(pushed.report, kind)


def _prepare(engine: Engine, body: bytes, kind: str, encoding: str, settings: Settings) -> PushedLogs:
    """A request body's spans, decoded, mapped, resolved and checked: ready for the writer."""
    items = _items(body, kind, encoding, settings.api.max_body_bytes)
    return prepare_logs(engine=engine, source=SOURCE, items=items, settings=settings)


def _items(body: bytes, kind: str, encoding: str, limit: int) -> list[LogItem | Problem]:
    """The LogItems of one request body (400 when it does not decode, 413 when it inflates too far)."""
    if encoding == "gzip":
        body = _gunzip(body, limit)
    try:
        data = decode_traces(body, protobuf=kind == PROTOBUF)
    except ValueError as exc:
        raise ApiError(400, "invalid_otlp", str(exc), where="request body",
                       hint="send an ExportTraceServiceRequest, as the OTLP/HTTP exporters do") from None
    return list(export_items(data, "POST /v1/traces"))


def _gunzip(body: bytes, limit: int) -> bytes:
    """The inflated body, at most `limit` bytes (a small gzip can inflate to gigabytes)."""
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", f"the gzip body does not inflate: {exc}", where="request body",
                       hint="send Content-Encoding: gzip only with a gzipped body") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflate.eof:
        raise ApiError(400, "invalid_gzip", "the gzip body ends early", where="request body",
                       hint="send the whole gzipped body")
    return out


def _answer(report: SyncReport, kind: str) -> Response:
    """ExportTraceServiceResponse: empty, or partial success with the spans not stored and why."""
    rejected = report.skipped_total
    reasons = "; ".join(str(p) for p in report.problems[:5])
    if kind == PROTOBUF:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        message = ExportTraceServiceResponse()
        if rejected:
            message.partial_success.rejected_spans = rejected
            message.partial_success.error_message = reasons
        return Response(message.SerializeToString(), media_type=PROTOBUF)
    body = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": reasons}} if rejected else {}
    return Response(orjson.dumps(body), media_type=JSON)
