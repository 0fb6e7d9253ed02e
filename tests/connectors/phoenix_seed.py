"""Seed a Phoenix server through Phoenix's own client and OpenTelemetry (run by .venvs/phoenix's python).

    python phoenix_seed.py PHOENIX_URL OPENAI_BASE_URL  → prints JSON {"span_ids": [...]}
Prompt `triage` (chat, two versions, tag production → first); two LLM spans from the
OpenInference-instrumented openai client calling the fake OpenAI server; one human annotation.
"""

import json
import sys
import time

import openai
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from phoenix.client import Client
from phoenix.client.types import PromptVersion

url, openai_url = sys.argv[1], sys.argv[2]
client = Client(base_url=url)
SYSTEM = "You sort support tickets into billing, bug or other."
messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ticket: {{ticket}}"}]
first = client.prompts.create(name="triage", version=PromptVersion(
    messages, model_name="gpt-4o-mini", model_provider="OPENAI", template_format="MUSTACHE"))
client.prompts.create(name="triage", version=PromptVersion(
    [{"role": "system", "content": SYSTEM + " One word."}, messages[1]], model_name="gpt-4o-mini",
    model_provider="OPENAI", template_format="MUSTACHE"))
client.prompts.tags.create(prompt_version_id=first.id, name="production")

provider = TracerProvider(resource=Resource.create({"openinference.project.name": "default"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
OpenAIInstrumentor().instrument(tracer_provider=provider)
llm = openai.OpenAI(base_url=openai_url, api_key="test")
for ticket in ["I was charged twice", "The app crashes on start"]:
    llm.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=4, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket: {ticket}"}])
provider.force_flush()

span_ids = []
for _ in range(60):
    spans = client.spans.get_spans(project_identifier="default", limit=10)
    span_ids = [s["context"]["span_id"] for s in spans]
    if len(span_ids) == 2:
        break
    time.sleep(0.5)
client.spans.add_span_annotation(span_id=span_ids[0], annotation_name="correct", annotator_kind="HUMAN",
                                 label="yes", score=1.0, identifier="", sync=True)
print(json.dumps({"span_ids": span_ids, "first_version": first.id}))
