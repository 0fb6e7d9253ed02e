"""Seed an MLflow server the way MLflow's docs show an app doing it (run by .venvs/mlflow's python).

    python mlflow_autolog_seed.py MLFLOW_URL OPENAI_BASE_URL  → prints JSON {"experiment_id", "trace_ids"}
`mlflow.set_experiment("support-bot")`, a prompt registered with `mlflow.genai.register_prompt` and
aliased `production`, `mlflow.openai.autolog()` tracing the openai client's calls to the fake
OpenAI server, and a reviewer's `mlflow.log_feedback` on each trace. Nothing links the traces to
the prompt: trimloop has to match them by their messages.
"""

import json
import sys

import mlflow
import openai
from mlflow.entities import AssessmentSource

url, openai_url = sys.argv[1], sys.argv[2]
TICKETS = ["I was charged twice", "The app crashes on start", "How do I export my data?"]

mlflow.set_tracking_uri(url)
experiment = mlflow.set_experiment("support-bot")
prompt = mlflow.genai.register_prompt(
    name="support-triage",
    template=[{"role": "system", "content": "You sort support tickets into billing, bug or other."},
              {"role": "user", "content": "Ticket: {{ticket}}"}],
    model_config={"model_name": "gpt-4o-mini", "temperature": 0.0, "max_tokens": 4},
)
mlflow.genai.set_prompt_alias("support-triage", alias="production", version=prompt.version)

mlflow.openai.autolog()
client = openai.OpenAI(base_url=openai_url, api_key="test")
trace_ids = []
for ticket in TICKETS:
    client.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=4,
                                   messages=prompt.format(ticket=ticket))
    trace_ids.append(mlflow.get_last_active_trace_id())
if hasattr(mlflow, "flush_trace_async_logging"):
    mlflow.flush_trace_async_logging()
for trace_id in trace_ids:
    mlflow.log_feedback(trace_id=trace_id, name="correct", value=True,
                        source=AssessmentSource(source_type="HUMAN", source_id="reviewer@example.com"))
print(json.dumps({"experiment_id": experiment.experiment_id, "trace_ids": trace_ids}))
