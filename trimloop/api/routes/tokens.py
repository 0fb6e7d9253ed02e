"""`/tokens` (admin): create (the clear token is in this one response), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from trimloop.api.auth import Admin, SessionDep
from trimloop.api.schemas import TokenCreate, TokenCreated, TokenPublic
from trimloop.core import store
from trimloop.core.tables import ApiToken

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", response_model=TokenCreated, status_code=201, summary="create a token (shown once)")
def create_token(body: TokenCreate, session: SessionDep, who: Admin) -> TokenCreated:
    token, clear = store.create_token(session=session, name=body.name, role=body.role, actor=who.actor,
                                      expires_in_days=body.expires_in_days)
    return TokenCreated.model_validate({**TokenPublic.model_validate(token).model_dump(), "token": clear})


@router.get("", response_model=list[TokenPublic], summary="every token (never the secret)")
def list_tokens(session: SessionDep, _: Admin) -> list[ApiToken]:
    return store.list_tokens(session=session)


@router.post("/{token_id}/revoke", response_model=TokenPublic, summary="revoke a token")
def revoke_token(token_id: int, session: SessionDep, who: Admin) -> ApiToken:
    return store.revoke_token(session=session, token_id=token_id, actor=who.actor)
