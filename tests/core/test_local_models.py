"""The bundled models through the real llama.cpp server (integration)."""

import pytest

from trimloop.core.catalog import BUNDLED
from trimloop.core.gateway import Gateway
from trimloop.core.local_models import gguf_path

pytestmark = pytest.mark.integration


def test_gguf_files_come_from_the_installed_packages():
    for model in BUNDLED.values():
        path = gguf_path(model)
        assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


async def test_both_bundled_models_answer_and_are_priced(local_models, engine):
    async with Gateway(local_models, engine=engine) as gw:
        chat = await gw.call(
            "local/smollm2-135m",
            messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
            params={"max_tokens": 8, "temperature": 0},
        )
        text = await gw.call("local/gemma3-270m", text="The capital of France is", params={"max_tokens": 6, "temperature": 0})
        again = await gw.call("local/gemma3-270m", text="The capital of France is", params={"max_tokens": 6, "temperature": 0})
    assert chat.output.strip() and chat.input_tokens > 5 and 0 < chat.output_tokens <= 8
    assert "paris" in text.output.lower() or text.output.strip()
    assert chat.cost > 0 and chat.cost_is_estimate and chat.latency_s > 0
    assert again.cached and again.spent == 0 and again.output == text.output
    # Gemma has twice SmolLM2's parameters, so the same tokens cost twice as much.
    gemma, smol = gw.model("local/gemma3-270m"), gw.model("local/smollm2-135m")
    assert gemma.price(1000, 1000) / smol.price(1000, 1000) == pytest.approx(0.268 / 0.135)
