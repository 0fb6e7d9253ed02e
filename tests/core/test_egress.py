"""allowed_hosts: the rule syntax, what each rule matches, and the setting (file, environment,
webhooks and model api_bases checked when settings load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimloop.core.egress import Egress, HostNotAllowed, parse_rule
from trimloop.core.errors import ConfigError
from trimloop.core.settings import load_settings


def allows(rules: list[str] | None, url: str) -> bool:
    return Egress.parse(rules).allows(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000/api", "http://127.9.9.9/", "http://localhost:8080",
                                 "http://LOCALHOST./x", "http://[::1]:6006/v1", "https://[::ffff:127.0.0.1]/"])
def test_default_allows_loopback(url: str) -> None:
    assert allows(None, url)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://10.0.0.5:5000", "https://cloud.langfuse.com", "http://localhost.evil.net/",
    "http://127.0.0.1@evil.net/",  # user info: the host is evil.net, as httpx will connect
    "http://2130706433/",  # 127.0.0.1 as a number: a name, not an IP literal, so not loopback
    "ftp://127.0.0.1/", "file:///etc/passwd", "127.0.0.1:5000", "not a url"])
def test_default_refuses_everything_else(url: str) -> None:
    assert not allows(None, url)


@pytest.mark.parametrize(("rules", "url", "expected"), [
    (["mlflow.internal"], "http://mlflow.internal:5000/x", True),
    (["mlflow.internal"], "https://MLflow.Internal./x", True),
    (["mlflow.internal:5000"], "http://mlflow.internal:5000/x", True),
    (["mlflow.internal:5000"], "http://mlflow.internal:5001/x", False),
    (["mlflow.internal:443"], "https://mlflow.internal/x", True),  # the scheme's default port
    (["mlflow.internal:80"], "https://mlflow.internal/x", False),
    (["mlflow.internal"], "http://mlflow.internal.evil.net/", False),
    (["mlflow.internal"], "http://evil-mlflow.internal/", False),
    (["*.example.com"], "https://a.example.com/", True),
    (["*.example.com"], "https://a.b.example.com/", True),
    (["*.example.com"], "https://example.com/", False),
    (["*.example.com"], "https://badexample.com/", False),
    (["*.example.com"], "https://example.com.evil.net/", False),
    (["*.example.com:8443"], "https://a.example.com:8443/", True),
    (["*.example.com:8443"], "https://a.example.com/", False),
    (["10.0.0.5"], "http://10.0.0.5:8000/v1", True),
    (["10.0.0.5:8000"], "http://10.0.0.5:8001/v1", False),
    (["10.0.0.0/8"], "http://10.20.30.40/", True),
    (["10.0.0.0/8"], "http://11.0.0.1/", False),
    (["10.0.0.0/8"], "http://ten.internal/", False),  # names are never resolved
    (["[::1]:8080"], "http://[::1]:8080/", True),
    (["[::1]:8080"], "http://[0:0::1]:8080/", True),
    (["::1"], "http://[::1]:1/", True),
    (["127.0.0.1"], "http://localhost/", False),  # an IP rule does not match a name
    (["mlflow.internal"], "http://127.0.0.1/", False),  # a set list replaces the loopback default
    (["loopback", "mlflow.internal"], "http://127.0.0.1/", True),
    (["*"], "https://anything.at.all:1234/", True),
    ([], "http://127.0.0.1/", False),
    (["bücher.de"], "https://xn--bcher-kva.de/", True),
])
def test_rules(rules: list[str], url: str, expected: bool) -> None:
    assert allows(rules, url) is expected


@pytest.mark.parametrize(("entry", "says"), [
    ("https://mlflow.internal:5000", '"mlflow.internal" or "mlflow.internal:5000"'),
    ("mlflow.internal/api", "is not a host"),
    ("mlflow.internal:http", "port must be a number"),
    ("mlflow.internal:70000", "port must be a number"),
    ("", "empty entry"),
    ("*example.com", "is not a host name"),
    ("*.", 'after "*." write a domain'),
    ("a..b", "is not a host name"),
    ("[::1", "IPv6"),
    ("10.0.0.0/33", "CIDR"),
    ("user@host", "is not a host"),
])
def test_bad_rules_say_how_to_write_them(entry: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(entry)
    assert says in str(info.value)
    if entry:
        assert repr(entry) in str(info.value)


def test_refusal_names_who_the_host_and_the_setting() -> None:
    with pytest.raises(HostNotAllowed) as info:
        Egress.parse(["mlflow.internal:5000"]).check("https://user:pw@evil.net/steal?token=t0k3n",
                                                       who="connector 'ml' (mlflow)", where="[connectors.ml] url")
    error = info.value
    assert isinstance(error, ConfigError) and error.code == "host_not_allowed"
    assert error.where == "[connectors.ml] url"
    assert "connector 'ml' (mlflow) may not send requests to evil.net:443" in error.message
    assert "'mlflow.internal:5000'" in error.message  # the list in force
    assert 'add "evil.net:443" (or "evil.net") to allowed_hosts' in (error.hint or "")
    assert "TRIMLOOP_ALLOWED_HOSTS" in (error.hint or "")
    assert "pw" not in str(error) and "t0k3n" not in str(error) and "steal" not in str(error)


def test_refusal_by_default_explains_the_default() -> None:
    with pytest.raises(HostNotAllowed) as info:
        Egress.default().check("http://10.0.0.5/", who="webhook")
    assert "allowed_hosts (unset, so only loopback (127.0.0.1, ::1, localhost) is allowed)" in info.value.message


# -- the setting ---------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(text: str) -> Path:
        path = tmp_path / "trimloop.toml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("TRIMLOOP_CONFIG", str(path))
        return path
    monkeypatch.delenv("TRIMLOOP_ALLOWED_HOSTS", raising=False)
    return write


def test_setting_from_the_file(config) -> None:
    config('allowed_hosts = ["mlflow.internal:5000", "*.example.com", "loopback"]\n')
    egress = load_settings().egress
    assert egress.explicit and egress.allows("http://mlflow.internal:5000") and egress.allows("http://127.0.0.1")
    assert not egress.allows("http://mlflow.internal:5001")


def test_unset_is_loopback_only(config) -> None:
    config("")
    settings = load_settings()
    assert settings.allowed_hosts is None and not settings.egress.explicit
    assert settings.egress.allows("http://127.0.0.1:5000") and not settings.egress.allows("http://10.0.0.1")


@pytest.mark.parametrize("value", ["mlflow.internal:5000, *.example.com", '["mlflow.internal:5000", "*.example.com"]'])
def test_environment_wins_over_the_file(config, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    config('allowed_hosts = ["*"]\n')  # an edited file cannot widen what the environment sets
    monkeypatch.setenv("TRIMLOOP_ALLOWED_HOSTS", value)
    egress = load_settings().egress
    assert egress.allows("https://a.example.com") and egress.allows("http://mlflow.internal:5000")
    assert not egress.allows("https://evil.net")


def test_empty_environment_value_allows_nothing(config, monkeypatch: pytest.MonkeyPatch) -> None:
    config("")
    monkeypatch.setenv("TRIMLOOP_ALLOWED_HOSTS", "")
    egress = load_settings().egress
    assert egress.rules == () and not egress.allows("http://127.0.0.1")
    assert "an empty list, so no host is allowed" in egress.describe()


def test_bad_entry_is_a_config_error_naming_it(config) -> None:
    path = config('allowed_hosts = ["mlflow.internal", "http://evil.net"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.where == str(path)
    assert "allowed_hosts" in info.value.message and "'http://evil.net' is not a host" in info.value.message


def test_webhook_outside_the_list_is_refused_when_settings_load(config) -> None:
    config('[[webhooks]]\nurl = "https://hooks.slack.com/services/T000/B000/SECRETPATH"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "webhooks[0].url" in text and "hooks.slack.com:443" in text and "allowed_hosts" in text
    assert "SECRETPATH" not in text  # incoming-webhook URLs carry their secret in the path


def test_webhook_inside_the_list_loads(config) -> None:
    config('allowed_hosts = ["hooks.slack.com"]\n[[webhooks]]\nurl = "https://hooks.slack.com/services/x"\n')
    assert load_settings().webhooks[0].url.startswith("https://hooks.slack.com/")


def test_model_api_base_outside_the_list_is_refused(config) -> None:
    config('[models."vllm/llama"]\napi_base = "http://10.0.0.5:8000/v1"\napi_key_env = "MY_VLLM_KEY"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert 'models."vllm/llama".api_base' in info.value.message and "10.0.0.5:8000" in info.value.message


def test_model_api_base_on_loopback_loads_by_default(config) -> None:
    config('[models."local/vllm"]\napi_base = "http://127.0.0.1:8000/v1"\n')
    assert load_settings().models["local/vllm"].api_base == "http://127.0.0.1:8000/v1"
