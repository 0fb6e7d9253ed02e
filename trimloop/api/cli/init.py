"""`trimloop init`: write a starter trimloop.toml and create the database."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from trimloop.api.cli.common import settings_and_engine
from trimloop.core.settings import config_path

STARTER = """\
# trimloop configuration. Every key can also be set as TRIMLOOP_<KEY> (nested: TRIMLOOP_A__B).
# environment = "development"
# database_url = "postgresql://user@127.0.0.1:5432/trimloop"   # default: SQLite in .trimloop/

[gateway]
concurrency = 8          # in-flight calls per provider
max_retries = 5

[local_models]
port = 8411              # smollm2-135m on 8411, gemma3-270m on 8412
n_threads = 2

# A hosted or self-hosted model. Keys come from the environment only:
# [models."my-vllm/llama-3.1-8b"]
# api_base = "http://127.0.0.1:8000/v1"
# served_as = "meta-llama/Llama-3.1-8B-Instruct"
# api_key_env = "MY_VLLM_KEY"
# input_per_mtok = 0.05
# output_per_mtok = 0.08
"""


def init(force: bool = typer.Option(False, help="overwrite an existing trimloop.toml")) -> None:
    """Create trimloop.toml (if absent) and the database."""
    out = Console()
    path = config_path()
    if path.exists() and not force:
        out.print(f"kept existing {path}")
    else:
        Path(path).write_text(STARTER, encoding="utf-8")
        out.print(f"wrote {path}")
    settings, _ = settings_and_engine()
    out.print(f"database ready at {settings.db_url if settings.database_url is None else 'TRIMLOOP_DATABASE_URL'}")
