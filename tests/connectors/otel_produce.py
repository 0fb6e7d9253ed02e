"""Produce real spans: the openai client, instrumented by OpenTelemetry's GenAI instrumentation
and then by OpenInference's, calls the fake OpenAI server; spans are written as OTLP JSON.

    python otel_produce.py OUT_DIR BASE_URL
Writes OUT_DIR/genai.jsonl and OUT_DIR/openinference.json (one ExportTraceServiceRequest each).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")

import openai  # noqa: E402
from google.protobuf.json_format import MessageToJson  # noqa: E402
from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

out, base_url = Path(sys.argv[1]), sys.argv[2]
SYSTEM = "You sort support tickets into billing, bug or other."
if os.environ.get("PRODUCE_LONG_SYSTEM"):  # over OpenAI's 1,024-token cache minimum: the second call hits
    SYSTEM = " ".join([SYSTEM] * 120)
TICKETS = ["I was charged twice", "The app crashes on start"]


def calls(client: openai.OpenAI, tracer=None) -> None:
    """With a tracer, each call sits in an app span that names its trimloop prompt and inputs."""
    for ticket in TICKETS:
        def call() -> None:
            client.chat.completions.create(
                model="gpt-4o-mini", temperature=0, max_tokens=4,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket: {ticket}"}])
        if tracer is None:
            call()
            continue
        with tracer.start_as_current_span("triage", attributes={
                "trimloop.prompt": "triage", "trimloop.prompt.version": "1",
                "trimloop.inputs": json.dumps({"ticket": ticket})}):
            call()


def run(instrumentor, path: Path, pretty: bool, app_spans: bool) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        calls(openai.OpenAI(base_url=base_url, api_key="test"),
              provider.get_tracer("app") if app_spans else None)
    finally:
        instrumentor.uninstrument()
    request = encode_spans(exporter.get_finished_spans())
    text = MessageToJson(request, indent=2 if pretty else None)
    path.write_text(text if pretty else text.replace("\n", "") + "\n", encoding="utf-8")


run(OpenAIInstrumentor(), out / "genai.jsonl", pretty=False, app_spans=True)
run(OpenInferenceInstrumentor(), out / "openinference.json", pretty=True, app_spans=False)
print("ok")
