"""Time to first token (issue 21 item 3): the gateway measures it on streamed calls, beside latency."""

from __future__ import annotations

import pytest

from trimloop.core.gateway import Gateway
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.testing.fake_openai import running


@pytest.fixture(scope="module")
def streaming_server():
    with running("--count-tokens", "--first-token-ms", "150", "--stream-rest-ms", "250") as url:
        yield url


def settings_for(url: str) -> Settings:
    return Settings(gateway=GatewaySettings(max_retries=0, timeout_s=5.0),
                    models={"fake/m": ModelConfig(api_base=f"{url}/v1", input_per_mtok=1, output_per_mtok=2),
                            "fake/base": ModelConfig(api_base=f"{url}/v1", completion_only=True, input_per_mtok=1,
                                                     output_per_mtok=1)})


async def test_a_streamed_call_records_its_time_to_first_token_beside_its_latency(streaming_server):
    async with Gateway(settings_for(streaming_server)) as gateway:
        chat = await gateway.call("fake/m", messages=[{"role": "user", "content": "Classify: I loved it"}],
                                  params={"stream": True, "max_tokens": 5})
        text = await gateway.call("fake/base", text="Review: fine. Sentiment:", params={"stream": True, "max_tokens": 3})
        plain = await gateway.call("fake/m", messages=[{"role": "user", "content": "Classify: I loved it"}],
                                   params={"max_tokens": 5})
    for streamed in (chat, text):
        assert 0.15 <= streamed.ttft_s < streamed.latency_s and streamed.latency_s >= 0.4
        assert streamed.input_tokens > 0 and streamed.output_tokens > 0  # the usage of the last chunk
    assert chat.output == "echo: Classify: I loved it" and text.output.startswith(" echo: ")
    assert plain.ttft_s is None and plain.output == chat.output  # not streamed: no first token to time
