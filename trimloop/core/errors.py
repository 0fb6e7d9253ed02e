"""trimloop's exceptions.

User errors (bad config or input: the user can fix them) are kept apart from provider errors
(an LLM API or a store failed). Every error carries what happened, where, and how to fix it.

    TrimloopError
    ├── UserError                   the user can fix it: bad config, file, template or request
    │   ├── ConfigError             settings, trimloop.toml, unknown model
    │   │   ├── HostNotAllowed      (core.egress) a host outside `allowed_hosts`, refused before sending
    │   │   └── RunOptionError      (optimizer.config) one bad run option, named by its dotted key
    │   ├── TemplateError           bad `{{var}}` syntax
    │   │   ├── MissingVariable     the template needs a variable the call did not give
    │   │   └── UnusedVariable      the call gave a variable the template never uses
    │   ├── NotFound                an id or name that does not exist
    │   ├── Conflict                the state changed under you (approve twice, a lock is held)
    │   │   ├── Superseded          (core.store) the suggestion's baseline is no longer production
    │   │   └── ClaimReleased       (core.store) a dead writer's deploy claim was released; repeat the step
    │   └── MissingReference        (evals.evaluators.base) an item lacks the output an evaluator compares with
    ├── Busy                        the database stayed locked past the busy timeout; retrying helps
    ├── ProviderError               something outside trimloop failed
    │   ├── GatewayError            an LLM call failed (a refusal or bad request is not retried)
    │   │   └── ProviderUnavailable still failing (429, 5xx, timeout) after every retry
    │   ├── SpendCapReached         a call would exceed the run's cap on calls or dollars
    │   ├── LocalModelError         the bundled llama.cpp server could not start or answer
    │   └── ConnectorError          a prompt store or log source failed
    └── ApiError                    (api.errors) an HTTP refusal (no token, wrong role) with its status

Classes defined outside this module name their module in brackets; tests/core/test_errors.py
checks that this drawing matches the subclasses that exist.
"""

from __future__ import annotations

from trimloop.core.redact import redact_urls


class TrimloopError(Exception):
    """Base of every trimloop error: a message, where it happened, and a hint to fix it.
    URLs in them lose their user info and query (core.redact): errors reach viewers."""

    code = "error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = redact_urls(message)
        self.where = None if where is None else redact_urls(where)
        self.hint = None if hint is None else redact_urls(hint)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.message
        if self.where:
            text = f"{self.where}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "where": self.where, "hint": self.hint}


class UserError(TrimloopError):
    code = "bad_input"


class ConfigError(UserError):
    code = "bad_config"


class TemplateError(UserError):
    code = "bad_template"


class MissingVariable(TemplateError):
    code = "missing_variable"


class UnusedVariable(TemplateError):
    code = "unused_variable"


class NotFound(UserError):
    code = "not_found"


class Conflict(UserError):
    code = "conflict"


class Busy(TrimloopError):
    """The database stayed locked by another writer past the busy timeout; retrying helps."""

    code = "database_busy"


class ProviderError(TrimloopError):
    code = "provider_error"


class GatewayError(ProviderError):
    code = "llm_call_failed"


class ProviderUnavailable(GatewayError):
    """A call still failed (429, 5xx, timeout, malformed body) after every retry: the provider is
    down or overloaded, which says nothing about the prompt being called."""


class SpendCapReached(ProviderError):
    code = "spend_cap_reached"


class LocalModelError(ProviderError):
    code = "local_model_error"


class ConnectorError(ProviderError):
    code = "connector_error"
