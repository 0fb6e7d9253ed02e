"""Seed a Phoenix server the way Phoenix's docs show an app doing it (run by .venvs/phoenix's python).

    python phoenix_register_seed.py PHOENIX_URL OPENAI_BASE_URL  → prints JSON {"span_ids": [...]}
A chat prompt `support-triage` tagged `production` (Phoenix's client), then
`phoenix.otel.register(project_name="support-bot")` and the OpenInference OpenAI instrumentation
tracing the openai client's calls to the fake OpenAI server. Waits (bounded) until Phoenix holds them.
"""

import json
import sys
import time

import httpx
import openai
from openinference.instrumentation.openai import OpenAIInstrumentor
from phoenix.client import Client
from phoenix.client.types import PromptVersion
from phoenix.otel import register

url, openai_url = sys.argv[1], sys.argv[2]
TICKETS = ["I was charged twice", "The app crashes on start", "How do I export my data?"]
SYSTEM = "You sort support tickets into billing, bug or other."

client = Client(base_url=url)
version = client.prompts.create(name="support-triage", version=PromptVersion(
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ticket: {{ticket}}"}],
    model_name="gpt-4o-mini", model_provider="OPENAI", template_format="MUSTACHE"))
client.prompts.tags.create(prompt_version_id=version.id, name="production")

tracer_provider = register(project_name="support-bot", endpoint=f"{url}/v1/traces", verbose=False)
OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
llm = openai.OpenAI(base_url=openai_url, api_key="test")
for ticket in TICKETS:
    llm.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=4, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket: {ticket}"}])
tracer_provider.force_flush()

span_ids: list[str] = []
deadline = time.monotonic() + 60
while len(span_ids) < len(TICKETS):
    if time.monotonic() > deadline:
        sys.exit(f"Phoenix holds {len(span_ids)} of {len(TICKETS)} spans after 60 s")
    time.sleep(0.2)
    try:
        span_ids = [s["context"]["span_id"] for s in client.spans.get_spans(project_identifier="support-bot", limit=10)]
    except httpx.HTTPStatusError as exc:  # the project exists once Phoenix has stored its first span
        if exc.response.status_code != 404:
            raise
print(json.dumps({"span_ids": span_ids, "version": version.id}))
