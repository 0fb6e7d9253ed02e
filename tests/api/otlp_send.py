"""Real spans to a real receiver: the openai client, instrumented by OpenTelemetry's GenAI
instrumentation (`genai`, each call in an app span naming its trimloop prompt) or OpenInference's
(`openinference`, matched to the prompt by its messages), calls the fake OpenAI server; the SDK's
OTLP/HTTP span exporter — protobuf (`opentelemetry-exporter-otlp-proto-http`) or JSON
(`opentelemetry-exporter-otlp-json-http`) — configured only by the OTEL_EXPORTER_OTLP_TRACES_*
variables the docs show, sends the spans `times` times.

`genai-batched` is the docs' setup as an app runs it: a BatchSpanProcessor exporting one span per
request (so each call's span leaves before the app span around it), message content not recorded,
and the docs' TrimloopAttributes processor copying trimloop.* onto the call's span at its start.

    python otlp_send.py BASE_URL protobuf|json genai|genai-batched|openinference TIMES
Prints a JSON line: {"spans": n, "results": ["SUCCESS" | "FAILURE", ...]}.
"""

import json
import os
import sys

base_url, protocol, instrumentation, times = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                      "false" if instrumentation == "genai-batched" else "true")

import openai  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TICKETS = ["I was charged twice", "The app crashes on start", "Where is my invoice?"]

if protocol == "protobuf":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
if instrumentation.startswith("genai"):
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
else:
    from openinference.instrumentation.openai import OpenAIInstrumentor


class TrimloopAttributes(SpanProcessor):  # as in docs/connectors.md
    """Copies trimloop.* attributes from the current span onto every span started inside it."""

    def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
        parent = trace.get_current_span(parent_context)
        span.set_attributes({k: v for k, v in (getattr(parent, "attributes", None) or {}).items()
                             if k.startswith("trimloop.")})


class Counted(OTLPSpanExporter):
    """The exporter, counting its requests and their results."""

    results: list[str] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = super().export(spans)
        self.results.append(f"{len(spans)}:{result.name}")
        return result


memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
if instrumentation == "genai-batched":
    provider.add_span_processor(TrimloopAttributes())
    provider.add_span_processor(BatchSpanProcessor(Counted(), max_export_batch_size=1))
OpenAIInstrumentor().instrument(tracer_provider=provider)
client, tracer = openai.OpenAI(base_url=base_url, api_key="test"), provider.get_tracer("app")
for ticket in TICKETS:
    messages = [{"role": "system", "content": "You sort support tickets into billing, bug or other."},
                {"role": "user", "content": f"Ticket: {ticket}"}]
    if instrumentation.startswith("genai"):
        with tracer.start_as_current_span("triage", attributes={
                "trimloop.prompt": "triage", "trimloop.prompt.version": "1",
                "trimloop.inputs": json.dumps({"ticket": ticket})}):
            client.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=8, messages=messages)
    else:
        client.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=8, messages=messages)
spans = memory.get_finished_spans()
if instrumentation == "genai-batched":
    provider.shutdown()  # flushes the batch processor
    print(json.dumps({"spans": len(spans), "results": Counted.results}))
    sys.exit(0)
exporter = OTLPSpanExporter()  # endpoint, headers and compression from the environment
results = [exporter.export(spans).name for _ in range(times)]  # one request each: app and LLM spans together
exporter.shutdown()
print(json.dumps({"spans": len(spans), "results": results}))
