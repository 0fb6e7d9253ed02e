"""Fixtures for connector integration tests: real servers started from their own venvs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.connectors.servers import find_binary, free_port, running


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(url, python of the mlflow venv): an MLflow tracking server on a free loopback port."""
    binary = find_binary("mlflow", "TRIMLOOP_MLFLOW_BIN")
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    args = [str(binary), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root", str(work / "artifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    with running(args, health=f"http://127.0.0.1:{port}/health", log=work / "server.log",
                 env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}):
        yield f"http://127.0.0.1:{port}", binary.parent / "python"


@pytest.fixture(scope="module")
def phoenix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(url, python of the phoenix venv): `phoenix serve` on free loopback ports."""
    binary = find_binary("phoenix", "TRIMLOOP_PHOENIX_BIN")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc = free_port(), free_port()
    env = {"PHOENIX_WORKING_DIR": str(work), "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc),
           "PHOENIX_HOST": "127.0.0.1", "PHOENIX_TELEMETRY_ENABLED": "false"}
    with running([str(binary), "serve"], health=f"http://127.0.0.1:{port}/healthz", env=env,
                 log=work / "server.log"):
        yield f"http://127.0.0.1:{port}", binary.parent / "python"
