"""Deploy, promote and roll back a suggestion through the prompt's connector.

This needs both `connectors` (the write-back) and `core.store` (the state machine), so it lives
in `api`, the only package allowed to import both. The store plans each step (and says when it
already happened: every step is idempotent); the connector writes; the store records the result.
"""

from __future__ import annotations

from sqlmodel import Session

from trimloop.connectors import registry
from trimloop.connectors.base import Connector
from trimloop.core import store
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.core.tables import Deployment
from trimloop.core.templates import Template

STAGING, PRODUCTION = "staging", "production"


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
    with _connector(settings, plan.prompt.connector) as connector:
        result = connector.write_version(
            prompt=plan.prompt.name, template=Template.model_validate(version.template),
            model=version.model, params=version.params or {}, label=STAGING,
            description=f"trimloop suggestion {suggestion_id}: {plan.prompt.description or ''}".strip())
    return store.record_deployment(session=session, plan=plan, action="deploy", label=STAGING, actor=actor,
                                   external_version=result.external_version, external_id=result.external_id)


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
    external = plan.version.external_version
    if external is None:
        raise ConfigError(f"version {plan.version.id} has no version id in the prompt store",
                          where=f"prompt {plan.prompt.name!r}",
                          hint="run a sync so trimloop learns the store's version ids, then retry")
    with _connector(settings, plan.prompt.connector) as connector:
        connector.move_label(prompt=plan.prompt.name, external_version=external, label=PRODUCTION)
    return store.record_deployment(session=session, plan=plan, action=action, label=PRODUCTION, actor=actor,
                                   external_version=external)
