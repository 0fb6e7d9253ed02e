"""A small JSON-over-HTTP client for connectors: every failure becomes a ConnectorError naming
the URL, so a server that is down or answers garbage gives a clear message, not a traceback.

Every request goes only to hosts in `allowed_hosts` (core.egress): the base URL is checked when the
client is built, and each request again just before it is sent. Redirects are not followed: a
3xx answer is an error naming where it points, so a server cannot bounce a request (with its
credentials) to another host."""

from __future__ import annotations

import os
from typing import Any

import httpx

from trimloop.core.egress import Egress
from trimloop.core.errors import ConfigError, ConnectorError


class JsonClient:
    """httpx with a base URL, optional auth from an environment variable, and clear errors."""

    def __init__(self, *, base_url: str, service: str, connector: str, egress: Egress | None = None,
                 timeout_s: float = 30.0, headers: dict[str, str] | None = None, auth: httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None, secrets: tuple[str | None, ...] = ()) -> None:
        self.service, self.connector = service, connector
        self.secrets = [s for s in secrets if s]  # never quoted in errors, even if the server echoes them
        self.egress = egress if egress is not None else Egress.default()
        who = f"connector {connector!r} ({service})"
        self.egress.check(base_url, who=who, where=f"[connectors.{connector}] url")  # before any request
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                   headers=headers or {}, auth=auth, transport=transport,
                                   follow_redirects=False,
                                   event_hooks={"request": [self.egress.request_hook(who)]})

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, json=body)

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        url = f"{self.client.base_url}{path}"
        try:
            response = self.client.request(method, path, **kw)
        except httpx.TimeoutException:
            raise ConnectorError(f"{self.service} did not answer in time", where=f"{method} {url}",
                                 hint="check the server's health or raise timeout_s in "
                                 f"[connectors.{self.connector}]") from None
        except httpx.HTTPError as exc:
            raise ConnectorError(f"cannot reach {self.service}: {exc.__class__.__name__}: {exc}",
                                 where=f"{method} {url}", hint="is the server running? check url in "
                                 f"[connectors.{self.connector}]") from None
        if response.is_redirect:
            target = response.headers.get("location", "")
            allowed = self.egress.allows(response.next_request.url) if response.next_request else False
            raise ConnectorError(
                f"{self.service} answered HTTP {response.status_code}, a redirect to {_origin_of(response)}; "
                "trimloop does not follow redirects" + ("" if allowed else
                                                        " (and that host is not in allowed_hosts)"),
                where=f"{method} {url}",
                hint=f"set url in [connectors.{self.connector}] to the address the server redirects to"
                if target else f"check url in [connectors.{self.connector}]")
        if response.status_code >= 400:
            raise ConnectorError(
                f"{self.service} answered HTTP {response.status_code}: {self._excerpt(response.text)}",
                where=f"{method} {url}",
                hint="check the credentials" if response.status_code in (401, 403)
                else f"check [connectors.{self.connector}] and the server's logs",
            )
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise ConnectorError(f"{self.service} answered something that is not JSON: "
                                 f"{self._excerpt(response.text)}", where=f"{method} {url}",
                                 hint="is url pointing at the right server?") from None
        if not isinstance(data, dict):
            raise ConnectorError(f"{self.service} answered JSON of an unexpected shape ({type(data).__name__})",
                                 where=f"{method} {url}", hint="is url pointing at the right server?")
        return data

    def close(self) -> None:
        self.client.close()

    def _excerpt(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _excerpt(text)


def secret_from_env(name: str | None, *, connector: str, option: str) -> str | None:
    """The value of the environment variable an option names; secrets never live in the file."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set", where=f"[connectors.{connector}] {option}",
                          hint=f"export {name}=... before running trimloop")
    return value


def _origin_of(response: httpx.Response) -> str:
    """Where a redirect points, without its path or query (which may carry tokens)."""
    target = response.next_request.url if response.next_request is not None else None
    if target is None or not target.raw_host:
        return "an address that is not a URL"
    port = f":{target.port}" if target.port else ""
    return f"{target.scheme}://{target.raw_host.decode('ascii')}{port}"


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "") if text else "(empty body)"
