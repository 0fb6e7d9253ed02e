"""`/models`: every configured model, each token class's price and where that price came from."""

from __future__ import annotations

from fastapi import APIRouter

from trimloop.api.auth import Reader, SettingsDep
from trimloop.api.schemas import ModelPublic, PricePublic, TierPublic
from trimloop.core.catalog import ResolvedModel, configured_models

router = APIRouter(prefix="/models", tags=["models"])


def model_public(model: ResolvedModel) -> ModelPublic:
    sheet = model.prices
    return ModelPublic(
        id=model.id, route=model.route, api_base=model.api_base, price_is_estimate=model.price_is_estimate,
        prices={name: PricePublic(per_mtok=None if rate.per_token is None else rate.per_token * 1e6,
                                  source=rate.source) for name, rate in sheet.rates().items()},
        long_context=[TierPublic(above_tokens=t.above, input_per_mtok=t.input * 1e6,
                                 output_per_mtok=None if t.output is None else t.output * 1e6, source=t.source)
                      for t in sheet.tiers])


@router.get("", response_model=list[ModelPublic], summary="configured models with every token class's price and source")
def list_models(settings: SettingsDep, _: Reader) -> list[ModelPublic]:
    return [model_public(m) for m in configured_models(settings)]
