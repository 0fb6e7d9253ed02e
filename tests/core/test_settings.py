import pytest

from trimloop.core.errors import ConfigError
from trimloop.core.settings import load_settings


def test_defaults_use_sqlite_in_home(_isolated_home):
    settings = load_settings()
    assert settings.db_url == f"sqlite:///{_isolated_home / 'trimloop.db'}"


def test_toml_file_and_env_layer(tmp_path, monkeypatch):
    (tmp_path / "trimloop.toml").write_text(
        '[gateway]\nconcurrency = 3\n[models."acme/m"]\napi_base = "http://127.0.0.1:9/v1"\ninput_per_mtok = 1.5\n'
    )
    monkeypatch.setenv("TRIMLOOP_GATEWAY__MAX_RETRIES", "9")
    settings = load_settings()
    assert settings.gateway.concurrency == 3 and settings.gateway.max_retries == 9
    assert settings.models["acme/m"].input_per_mtok == 1.5


def test_bad_value_names_the_field(tmp_path):
    (tmp_path / "trimloop.toml").write_text("[gateway]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "gateway.concurrency" in info.value.message and str(tmp_path / "trimloop.toml") == info.value.where


def test_unknown_key_is_refused(tmp_path):
    (tmp_path / "trimloop.toml").write_text('[models."x/y"]\napi_bsae = "http://h"\n')
    with pytest.raises(ConfigError, match="api_bsae"):
        load_settings()


def test_malformed_toml_is_a_config_error(tmp_path):
    (tmp_path / "trimloop.toml").write_text("[gateway\nconcurrency = 1\n")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings()


def test_unsafe_secret_refused_outside_development(monkeypatch):
    monkeypatch.setenv("TRIMLOOP_ENVIRONMENT", "production")
    with pytest.raises(ConfigError, match="secret_key"):
        load_settings()
    monkeypatch.setenv("TRIMLOOP_SECRET_KEY", "x" * 40)
    assert load_settings().environment == "production"


def test_postgres_url_uses_psycopg3(monkeypatch):
    monkeypatch.setenv("TRIMLOOP_DATABASE_URL", "postgresql://u@127.0.0.1:5432/db")
    assert load_settings().db_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(("cores", "turns"), [(1, 4), (2, 8), (4, 16), (64, 16), (None, 4)])
def test_request_turns_default_to_four_per_core_at_most_sixteen(monkeypatch, cores, turns):
    monkeypatch.setattr("trimloop.core.settings.os.cpu_count", lambda: cores)
    assert load_settings().api.concurrent_requests == turns


def test_request_turns_set_in_the_environment_win_over_the_core_count(monkeypatch):
    monkeypatch.setattr("trimloop.core.settings.os.cpu_count", lambda: 2)
    monkeypatch.setenv("TRIMLOOP_API__CONCURRENT_REQUESTS", "16")
    assert load_settings().api.concurrent_requests == 16


def test_a_reservoir_headroom_between_zero_and_one_is_refused(tmp_path, monkeypatch):
    """Headroom below 1 would drop records a usual day's reservoir keeps: only 0 (off) or ≥ 1."""
    (tmp_path / "trimloop.toml").write_text("[reservoir]\nheadroom = 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "reservoir.headroom" in info.value.message and "at least 1" in info.value.message
    monkeypatch.setenv("TRIMLOOP_RESERVOIR__HEADROOM", "0")
    (tmp_path / "trimloop.toml").write_text("")
    assert load_settings().reservoir.headroom == 0
