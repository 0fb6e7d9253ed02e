"""Evaluators on JSON outputs: json_valid, json_schema (jsonschema), json_fields (per-field F1)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import SchemaError

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators.base import EvalContext, Evaluator, Reason, reference
from trimloop.evals.evaluators.text import norm_text

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_NO_VALUE = object()
_MAX_STARTS = 16


def parse_json(text: str, *, strict: bool = False) -> tuple[Any, str | None]:
    """(value, problem). Strict: the whole output must be JSON. Lenient: the first JSON value in
    the text (inside a ``` fence or after leading prose) is taken; trailing prose is tolerated."""
    stripped = text.strip()
    try:
        return json.loads(stripped), None
    except (json.JSONDecodeError, RecursionError) as exc:
        if strict:
            return _NO_VALUE, f"not JSON: {getattr(exc, 'msg', 'too deeply nested')}"
    fenced = _FENCE.search(text)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for chunk in candidates:
        # Bounded: each failed attempt scans to the error, so trying every '[' is quadratic.
        for attempt, match in enumerate(re.finditer(r"[\[{]", chunk)):
            if attempt == _MAX_STARTS:
                break
            try:
                value, _end = decoder.raw_decode(chunk, match.start())
            except (json.JSONDecodeError, RecursionError):
                continue
            return value, None
    return _NO_VALUE, "no JSON object or array found in the output"


@dataclass
class JsonValid(Evaluator):
    """The output is (or, unless `strict`, contains) a JSON value of the wanted `type`."""

    name = "json_valid"
    strict: bool = False
    type: Literal["any", "object", "array"] = "any"

    def evaluate(self, ctx: EvalContext) -> Reason:
        value, problem = parse_json(ctx.output, strict=self.strict)
        if value is _NO_VALUE:
            return Reason(False, problem)
        wanted = {"object": dict, "array": list}.get(self.type)
        if wanted is not None and not isinstance(value, wanted):
            return Reason(False, f"JSON is a {type(value).__name__}, not an {self.type}")
        return Reason(True)


@dataclass
class JsonSchema(Evaluator):
    """The JSON in the output validates against `schema` (any JSON Schema draft jsonschema knows)."""

    name = "json_schema"
    positional = "schema"
    schema: dict[str, Any]
    strict: bool = False

    def check(self, where: str) -> None:
        cls = jsonschema.validators.validator_for(self.schema)
        try:
            cls.check_schema(self.schema)
        except SchemaError as exc:
            path = "/".join(str(p) for p in exc.path) or "(root)"
            raise ConfigError(
                f"invalid JSON Schema at {path}: {exc.message}", where=f"{where}.schema",
                hint="check it against the JSON Schema spec (e.g. 'type' must be a string or list)",
            ) from None
        self._validator = cls(self.schema)

    def evaluate(self, ctx: EvalContext) -> Reason:
        value, problem = parse_json(ctx.output, strict=self.strict)
        if value is _NO_VALUE:
            return Reason(False, problem)
        validator = getattr(self, "_validator", None) or jsonschema.validators.validator_for(
            self.schema
        )(self.schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return Reason(True)
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Reason(False, f"{path}: {error.message[:200]}")


def field_scores(predicted: dict[str, Any], expected: dict[str, Any], fields: list[str] | None):
    """Per-field match, precision, recall and F1 of predicted fields against expected ones.

    A field counts when its value is not null/empty; values compare as normalised text.
    """
    names = fields or sorted(set(expected) | set(predicted))

    def present(d: dict[str, Any], k: str) -> bool:
        return k in d and d[k] not in (None, "", [], {})

    def same(a: Any, b: Any) -> bool:
        text = lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)  # noqa: E731
        return norm_text(text(a)) == norm_text(text(b))

    matches = {k: present(predicted, k) == present(expected, k)
               and (not present(expected, k) or same(predicted[k], expected[k])) for k in names}
    n_pred = sum(present(predicted, k) for k in names)
    n_exp = sum(present(expected, k) for k in names)
    correct = sum(present(expected, k) and present(predicted, k) and same(predicted[k], expected[k])
                  for k in names)
    precision = correct / n_pred if n_pred else (1.0 if n_exp == 0 else 0.0)
    recall = correct / n_exp if n_exp else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return matches, precision, recall, f1


@dataclass
class JsonFields(Evaluator):
    """Per-field match of the output's JSON object against the expected object; score = F1."""

    name = "json_fields"
    positional = "fields"
    fields: list[str] | None = None
    against: Literal["expected", "baseline"] = "expected"

    def evaluate(self, ctx: EvalContext) -> Reason:
        ref = reference(ctx, self.against, self.name)
        expected, problem = parse_json(ref)
        if not isinstance(expected, dict):
            return Reason(False, f"the {self.against} answer is not a JSON object ({problem or 'wrong type'})")
        predicted, problem = parse_json(ctx.output)
        if not isinstance(predicted, dict):
            return Reason(0.0, problem or "the output's JSON is not an object")
        matches, precision, recall, f1 = field_scores(predicted, expected, self.fields)
        wrong = [k for k, ok in matches.items() if not ok]
        why = f"P={precision:.2f} R={recall:.2f}" + (f"; wrong: {', '.join(wrong[:8])}" if wrong else "")
        return Reason(f1, why)


STRUCTURED_EVALUATORS: tuple[type[Evaluator], ...] = (JsonValid, JsonSchema, JsonFields)
