"""Decode OTLP JSON values (`AnyValue`, attribute lists) in both the camelCase of the OTLP/JSON
spec (`stringValue`) and the snake_case that MLflow's REST API returns (`string_value`)."""

from __future__ import annotations

import json
from typing import Any


def any_value(value: Any) -> Any:
    """A plain Python value from an OTLP AnyValue object."""
    if not isinstance(value, dict) or not value:
        return None
    key, inner = next(iter(value.items()))
    kind = key.replace("_", "").lower()
    if kind == "stringvalue":
        return inner
    if kind == "intvalue":
        return int(inner)  # OTLP/JSON encodes 64-bit ints as strings
    if kind in ("doublevalue", "boolvalue", "bytesvalue"):
        return inner
    if kind == "arrayvalue":
        return [any_value(v) for v in (inner or {}).get("values", [])]
    if kind == "kvlistvalue":
        return attributes((inner or {}).get("values", []))
    return None


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    """`[{"key": k, "value": AnyValue}]` as a dict."""
    return {item.get("key"): any_value(item.get("value")) for item in items or [] if isinstance(item, dict)}


def maybe_json(value: Any) -> Any:
    """Attributes often hold JSON text; decode it when it is JSON, keep it otherwise."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def decode_traces(body: bytes, *, protobuf: bool) -> dict[str, Any]:
    """An ExportTraceServiceRequest as the OTLP/JSON dict the otel mapping reads: protobuf (ids
    become base64, 64-bit ints strings — the mapping reads both) or JSON. ValueError when it is
    neither a readable message nor a JSON object."""
    if protobuf:
        from google.protobuf.json_format import MessageToDict
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise ValueError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        return MessageToDict(message)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not an OTLP/JSON ExportTraceServiceRequest (expected an object with resourceSpans)")
    return data
