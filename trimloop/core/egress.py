"""Which hosts trimloop may send HTTP requests to: the `allowed_hosts` setting.

Connector URLs, webhook URLs and model `api_base`s come from configuration, and some of those
requests carry credentials (a bearer token, Basic auth, an API key, a webhook signature). Whoever
can edit `trimloop.toml` could otherwise point them anywhere the server can reach (a cloud metadata
address, an internal admin service, their own host) and collect the credentials.

Rules, one string each (case-insensitive):

    "loopback"             127.0.0.0/8, ::1 and the name localhost
    "mlflow.internal"      that host name, any port
    "mlflow.internal:5000" that host name, port 5000 only
    "*.example.com"        any name under example.com (a.example.com, a.b.example.com; not example.com)
    "10.0.0.7", "[::1]:8080", "10.0.0.0/8"
                           an IP address (optionally with a port), or a network in CIDR form
    "*"                    anything (turns the check off)

Host names are compared as written in the URL, never resolved: a name that resolves to a loopback
address does not match "loopback", and an IP rule does not match a name. Unset (`None`), the list
is `["loopback"]`; set, it is exactly the list given (add "loopback" yourself if you still want it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import httpx

from trimloop.core.errors import ConfigError

SETTING = "allowed_hosts"
ENV = "TRIMLOOP_ALLOWED_HOSTS"
DEFAULT_RULES = ("loopback",)
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HostNotAllowed(ConfigError):
    """A request to a host outside `allowed_hosts`; raised before anything is sent."""

    code = "host_not_allowed"


@dataclass(frozen=True)
class Rule:
    text: str
    kind: Literal["any", "loopback", "name", "wildcard", "ip", "network"]
    name: str = ""  # host name, or the suffix after "*." for a wildcard
    ip: IP | None = None
    network: Network | None = None
    port: int | None = None

    def matches(self, host: str, ip: IP | None, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.kind == "any":
            return True
        if self.kind == "loopback":
            return host == "localhost" or (ip is not None and _is_loopback(ip))
        if self.kind == "name":
            return ip is None and host == self.name
        if self.kind == "wildcard":
            return ip is None and host.endswith("." + self.name)
        if self.kind == "ip":
            return ip is not None and _unmapped(ip) == self.ip
        return ip is not None and self.network is not None and _unmapped(ip) in self.network


def _unmapped(ip: IP) -> IP:
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


def _is_loopback(ip: IP) -> bool:
    return _unmapped(ip).is_loopback


def _ip(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def parse_rule(entry: str) -> Rule:
    """One allow-list entry; ValueError saying what is wrong with it and how to write it."""
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a string: write hosts as \"name\" or \"name:port\"")
    text = entry.strip().lower()
    if text in ("*", "loopback"):
        return Rule(entry, "any" if text == "*" else "loopback")
    if text.startswith("*.") and not text[2:].strip("."):
        raise ValueError(f"{entry!r}: after \"*.\" write a domain, e.g. \"*.example.com\"")
    text = text.rstrip(".")
    if not text:
        raise ValueError("an empty entry: remove it, or write a host such as \"mlflow.internal:5000\"")
    if "://" in text or any(c in text for c in "?#@ ") or ("/" in text and _ip(text.split("/")[0]) is None):
        try:
            host = httpx.URL(text).host if "://" in text else ""
        except httpx.InvalidURL:
            host = ""
        host = host or "mlflow.internal"
        raise ValueError(f"{entry!r} is not a host: write the host (and port) only, e.g. "
                         f"\"{host}\" or \"{host}:5000\"")
    if "/" in text:
        try:
            return Rule(entry, "network", network=ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a network: write CIDR such as \"10.0.0.0/8\"") from None
    host, port = text, None
    if text.startswith("["):  # [v6] or [v6]:port
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:] if close > 0 else ""
        if close < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: write an IPv6 address as \"[::1]\" or \"[::1]:8080\"")
        port = _port(rest[1:], entry) if rest else None
        if _ip(host) is None:
            raise ValueError(f"{entry!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, entry)
    ip = _ip(host)
    if ip is not None:
        return Rule(entry, "ip", ip=_unmapped(ip), port=port)
    if host.startswith("*."):
        if not _NAME.match(host[2:]) or "*" in host[2:]:
            raise ValueError(f"{entry!r}: after \"*.\" write a domain, e.g. \"*.example.com\"")
        return Rule(entry, "wildcard", name=host[2:], port=port)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{entry!r} is not a valid international host name") from None
    if not _NAME.match(host):
        raise ValueError(f"{entry!r} is not a host name: use letters, digits, '-' and '.', a leading "
                         "\"*.\" for subdomains, an IP address, or \"loopback\"")
    return Rule(entry, "name", name=host, port=port)


@dataclass(frozen=True)
class Egress:
    """The allow-list in force: `check` refuses a URL outside it, naming who wanted it and why."""

    rules: tuple[Rule, ...]
    explicit: bool  # False: the default (allowed_hosts unset)

    @classmethod
    def default(cls) -> "Egress":
        return cls(tuple(parse_rule(r) for r in DEFAULT_RULES), explicit=False)

    @classmethod
    def parse(cls, entries: Iterable[str] | None) -> "Egress":
        """From the setting's value (None: the default). ValueError names the bad entry."""
        if entries is None:
            return cls.default()
        return cls(tuple(parse_rule(e) for e in entries), explicit=True)

    def describe(self) -> str:
        if not self.explicit:
            return "unset, so only loopback (127.0.0.1, ::1, localhost) is allowed"
        if not self.rules:
            return "an empty list, so no host is allowed"
        return ", ".join(repr(r.text) for r in self.rules)

    def allows(self, url: str | httpx.URL) -> bool:
        try:
            host, ip, port = _target(url)
        except ValueError:
            return False
        return any(rule.matches(host, ip, port) for rule in self.rules)

    def check(self, url: str | httpx.URL, *, who: str, where: str | None = None) -> None:
        """Raise HostNotAllowed unless `url` is an http(s) URL whose host the list allows."""
        try:
            host, ip, port = _target(url)
        except ValueError as exc:
            raise HostNotAllowed(f"{who} may not send requests to {_origin(url)}: {exc}", where=where,
                                 hint="write an http:// or https:// URL with a host") from None
        if any(rule.matches(host, ip, port) for rule in self.rules):
            return
        shown = f"[{host}]" if ip is not None and ip.version == 6 else host
        raise HostNotAllowed(
            f"{who} may not send requests to {shown}:{port}: that host is not in {SETTING} "
            f"({self.describe()})",
            where=where,
            hint=f"if you trust it, add \"{shown}:{port}\" (or \"{shown}\") to {SETTING} in trimloop.toml "
            f"or to {ENV} (comma-separated; the environment wins over the file)",
        )

    def request_hook(self, who: str) -> Callable[[httpx.Request], None]:
        """An httpx `request` event hook: runs before every request is sent, redirects included."""
        def hook(request: httpx.Request) -> None:
            self.check(request.url, who=who, where=f"{request.method} {_origin(request.url)}")
        return hook

    def async_request_hook(self, who: str) -> Callable[[httpx.Request], Awaitable[None]]:
        sync_hook = self.request_hook(who)

        async def hook(request: httpx.Request) -> None:
            sync_hook(request)
        return hook


def _target(url: str | httpx.URL) -> tuple[str, IP | None, int]:
    """(host as compared, its IP if it is one, effective port); ValueError for what is not http(s)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise ValueError(f"only http and https are allowed, not {parsed.scheme or 'a URL without a scheme'!r}")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise ValueError("the URL has no host")
    return host, _ip(host), parsed.port or DEFAULT_PORTS[parsed.scheme]


def _origin(url: str | httpx.URL) -> str:
    """scheme://host[:port] only: user info, paths and queries may carry secrets (Slack URLs do)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        if not parsed.scheme or not parsed.raw_host:
            return "(a URL without scheme or host)"
        port = f":{parsed.port}" if parsed.port else ""
        host = parsed.raw_host.decode("ascii")
        return f"{parsed.scheme}://{'[' + host + ']' if ':' in host else host}{port}"
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(an invalid URL)"
