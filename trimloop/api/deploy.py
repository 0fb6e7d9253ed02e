"""Deploy, promote and roll back a suggestion through the prompt's connector.

This needs both `connectors` (the write-back) and `core.store` (the state machine), so it lives
in `api`, the only package allowed to import both. The store plans each step (and says when it
already happened: every step is idempotent) and claims the suggestion, committed before the
connector is touched, so of concurrent requests (a double-click) exactly one writes and the others
get 409; the connector writes; the store records the result, or releases the claim when the write
failed so the step can be tried again.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from trimloop.connectors import registry
from trimloop.connectors.base import Connector
from trimloop.core import store
from trimloop.core.redact import redact_urls
from trimloop.core.errors import ConfigError, TrimloopError
from trimloop.core.settings import Settings
from trimloop.core.tables import Deployment
from trimloop.core.templates import Template


def _connector(settings: Settings, name: str) -> Connector:
    config = settings.connectors.get(name)
    if config is None:
        raise ConfigError(f"the prompt comes from connector {name!r}, which is not configured",
                          where="trimloop.toml [connectors]",
                          hint=f"add [connectors.{name}] back (configured: {', '.join(settings.connectors) or 'none'})")
    return registry.create(name, config, egress=settings.egress)


def deploy(*, session: Session, settings: Settings, suggestion_id: int, actor: str) -> Deployment:
    """Write the candidate version to the prompt's store under `staging` (approved → deployed)."""
    plan = store.plan_deploy(session=session, suggestion_id=suggestion_id, actor=actor)
    if plan.done is not None:
        return plan.done
    version = plan.version

    def write(connector: Connector) -> tuple[str, str | None]:
        result = connector.write_version(
            prompt=plan.prompt.name, template=Template.model_validate(version.template),
            model=version.model, params=version.params or {}, label=store.STAGING,
            description=f"trimloop suggestion {suggestion_id}: {plan.prompt.description or ''}".strip())
        return result.external_version, result.external_id
    return _claimed(session, settings, plan, "deploy", store.STAGING, actor, write)


def promote(*, session: Session, settings: Settings, suggestion_id: int, actor: str) -> Deployment:
    """Point `production` at the deployed version."""
    plan = store.plan_promote(session=session, suggestion_id=suggestion_id)
    if plan.done is not None:
        return plan.done
    return _move(session, settings, plan, "promote", actor)


def rollback(*, session: Session, settings: Settings, suggestion_id: int, actor: str) -> Deployment:
    """Point `production` back at the baseline version (deployed → rolled_back)."""
    plan = store.plan_rollback(session=session, suggestion_id=suggestion_id)
    if plan.done is not None:
        return plan.done
    return _move(session, settings, plan, "rollback", actor)


def _move(session: Session, settings: Settings, plan: store.DeployPlan, action: str, actor: str) -> Deployment:
    def write(connector: Connector) -> tuple[str, str | None]:
        external = plan.version.external_version
        if external is None:
            raise ConfigError(f"version {plan.version.id} has no version id in the prompt store",
                              where=f"prompt {plan.prompt.name!r}",
                              hint="run a sync so trimloop learns the store's version ids, then retry")
        connector.move_label(prompt=plan.prompt.name, external_version=external, label=store.PRODUCTION)
        return external, None
    return _claimed(session, settings, plan, action, store.PRODUCTION, actor, write)


def _claimed(session: Session, settings: Settings, plan: store.DeployPlan, action: str, label: str, actor: str,
             write: Callable[[Connector], tuple[str, str | None]]) -> Deployment:
    """Claim, commit the claim, write through the connector, then record — or release the claim."""
    try:
        claim = store.claim_write(session=session, plan=plan, action=action, label=label, actor=actor)
    except store.ClaimReleased:
        session.commit()  # the release is the news: the next request can claim
        raise
    session.commit()  # the claim is what concurrent requests see; the store is written once
    try:
        with _connector(settings, plan.prompt.connector) as connector:
            external_version, external_id = write(connector)
    except Exception as exc:
        session.rollback()
        reason = exc.message if isinstance(exc, TrimloopError) else f"{exc.__class__.__name__}: {exc}"
        store.release_claim(session=session, claim=claim, error=redact_urls(reason))
        session.commit()
        raise
    return store.record_deployment(session=session, plan=plan, claim=claim, external_version=external_version,
                                   external_id=external_id)
