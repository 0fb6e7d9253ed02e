"""Take credentials out of URLs before they reach a message, a log line or the audit log.

Connector and webhook URLs come from configuration and may carry secrets: user info
(`http://admin:S3CRET@host/`) and query strings (`?token=…`, `?api_key=…`). Every error and
problem text passes through `redact_urls` (core.errors and connectors.base call it), so no path —
an API error, a connection test, a sync report, the CLI, the audit log — repeats them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

HIDDEN = "***"
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """The URL with its user info and its query and fragment replaced by `***`; scheme, host, port
    and path stay, so the message still says where."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.split('://', 1)[0]}://{HIDDEN}" if "://" in url else HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query or url.rstrip().endswith("?"):
        text += f"?{HIDDEN}"
    if parts.fragment:
        text += f"#{HIDDEN}"
    return text


def redact_urls(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    if "://" not in text:
        return text
    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(".,;:!)]}")  # sentence punctuation after a URL is not part of it
        return redact_url(kept) + url[len(kept):]
    return _URL.sub(one, text)
