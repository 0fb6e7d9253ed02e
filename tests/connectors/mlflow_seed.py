"""Seed an MLflow server through MLflow's own client (run by .venvs/mlflow's python).

    python mlflow_seed.py URL  → prints JSON {"trace_ids": [...]}
Prompts: `triage` (chat, two versions, alias production → 1) and `qa` (text, one version).
Traces: two LLM calls linked to triage v1 with token usage (the second with 16 cached prompt tokens
in its response's usage) and a user feedback assessment.
"""

import json
import sys

import mlflow
from mlflow.entities import AssessmentSource, SpanType

url = sys.argv[1]
mlflow.set_tracking_uri(url)
client = mlflow.MlflowClient(url)

SYSTEM = "You sort support tickets into billing, bug or other."
v1 = mlflow.genai.register_prompt(
    name="triage",
    template=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ticket: {{ticket}}"}],
    model_config={"model_name": "gpt-4o-mini", "temperature": 0.0, "max_tokens": 8},
    commit_message="first",
)
mlflow.genai.register_prompt(
    name="triage",
    template=[{"role": "system", "content": SYSTEM + " One word."}, {"role": "user", "content": "Ticket: {{ticket}}"}],
    model_config={"model_name": "gpt-4o-mini", "temperature": 0.0, "max_tokens": 8},
)
mlflow.genai.set_prompt_alias("triage", alias="production", version=1)
mlflow.genai.register_prompt(
    name="qa", template="Q: {{question}}\nA:",
    model_config={"provider": "openai", "model_name": "gpt-4o-mini", "temperature": 0.2,
                  "stop_sequences": ["\n"]},
)

trace_ids = []
for i, ticket in enumerate(["I was charged twice", "The app crashes on start"]):
    prompt = mlflow.genai.load_prompt("prompts:/triage/1")
    messages = prompt.format(ticket=ticket)
    with mlflow.start_span(name="triage_call", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"model": "gpt-4o-mini", "messages": messages})
        span.set_outputs({"id": f"chatcmpl-{i}", "object": "chat.completion", "model": "gpt-4o-mini",
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": ["billing", "bug"][i]}}],
                          # the provider's usage, as an autologged response keeps it: the token classes
                          "usage": {"prompt_tokens": 30 + i, "completion_tokens": 1, "total_tokens": 31 + i,
                                    "prompt_tokens_details": {"cached_tokens": 16 * i},
                                    "completion_tokens_details": {"reasoning_tokens": 0}}})
        span.set_attribute("mlflow.chat.tokenUsage",
                           {"input_tokens": 30 + i, "output_tokens": 1, "total_tokens": 31 + i})
        trace_ids.append(span.trace_id)
mlflow.flush_trace_async_logging() if hasattr(mlflow, "flush_trace_async_logging") else None
for tid in trace_ids:
    client.link_prompt_versions_to_trace(trace_id=tid, prompt_versions=[v1])
mlflow.log_feedback(trace_id=trace_ids[0], name="correct", value=True,
                    source=AssessmentSource(source_type="HUMAN", source_id="reviewer@example.com"))
print(json.dumps({"trace_ids": trace_ids}))
