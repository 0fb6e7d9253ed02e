"""Canonical JSON and sha256 identities: equal content gives an equal id, on every machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces, UTF-8 kept, and None-valued keys dropped."""
    return json.dumps(_drop_none(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def version_identity(*, template: dict[str, Any], model: str, params: dict[str, Any]) -> str:
    """A PromptVersion's id: sha256 of its template, model and params (labels are not content)."""
    return sha256_of({"template": template, "model": model, "params": params})


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value
