"""The failed-login limiter: counts and checks in one step (concurrent bad tokens cannot all slip
through), believes X-Forwarded-For only from configured proxies (`trimloop serve` too), and keeps
its counts in the database (two apps on one database share them), forgetting ended windows."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tests.api.test_serve import _healthy, _serve
from tests.optimizer.provider_workspace import poll_until
from trimloop.api.app import create_app
from trimloop.api.auth import LoginLimiter
from trimloop.api.errors import ApiError
from trimloop.core.db import make_engine
from trimloop.core.settings import Settings
from trimloop.core.tables import LoginFailure

BAD = {"Authorization": "Bearer tlk_00000000_not-a-real-secret"}


def limited(settings, limit, **api):
    return settings.model_copy(update={"api": settings.api.model_copy(
        update={"failed_logins_per_minute": limit, **api})})


def test_eighty_concurrent_bad_tokens_get_exactly_the_limit_checked(settings, engine):
    with TestClient(create_app(limited(settings, 10), engine)) as client:
        barrier = threading.Barrier(40)

        def one(_):
            barrier.wait() if _ < 40 else None
            return client.get("/prompts", headers=BAD).status_code
        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(one, range(80)))
    assert codes.count(401) == 10 and codes.count(429) == 70, sorted(codes)


def test_a_burst_with_a_good_token_is_never_limited(settings, engine, headers):
    with TestClient(create_app(limited(settings, 3), engine)) as client:
        barrier = threading.Barrier(12)  # fewer than the database pool's 15 connections

        def one(_):
            barrier.wait()
            return client.get("/prompts", headers=headers["viewer"]).status_code
        with ThreadPoolExecutor(12) as pool:
            assert set(pool.map(one, range(12))) == {200}


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(settings, engine, headers):
    untrusted = TestClient(create_app(limited(settings, 3), engine), client=("127.0.0.1", 40000))
    with untrusted:
        codes = [untrusted.get("/prompts", headers={**BAD, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                 for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]  # rotating the header does not reset the count
    behind = limited(settings, 3, trusted_proxies=["127.0.0.0/8"])
    with TestClient(create_app(behind, engine), client=("127.0.0.1", 40001)) as proxied:
        for _ in range(3):
            assert proxied.get("/prompts", headers={**BAD, "X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert proxied.get("/prompts", headers={**BAD, "X-Forwarded-For": "203.0.113.9"}).status_code == 429
        # another client behind the same proxy is not locked out, and a spoofed left-most hop is skipped
        good = {**headers["viewer"], "X-Forwarded-For": "203.0.113.9, 192.0.2.44"}
        assert proxied.get("/prompts", headers=good).status_code == 200
    with TestClient(create_app(behind, engine), client=("192.0.2.7", 40002)) as direct:  # not a proxy
        for i in range(3):
            direct.get("/prompts", headers={**BAD, "X-Forwarded-For": f"203.0.113.{i}"})
        assert direct.get("/prompts", headers={**BAD, "X-Forwarded-For": "203.0.113.77"}).status_code == 429


class Clock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_good_tokens_do_not_count_and_ended_windows_are_forgotten(engine):
    clock = Clock()
    limiter = LoginLimiter(engine, 2, window_s=60.0, clock=clock)
    known = {"good": "row"}
    for _ in range(5):
        assert limiter.verify("10.0.0.1", "good", known.get) == "row"
    assert limiter.verify("10.0.0.1", "bad", known.get) is None
    clock.now += 30
    assert limiter.verify("10.0.0.1", "bad", known.get) is None
    with pytest.raises(ApiError) as refused:
        limiter.verify("10.0.0.1", "bad", known.get)
    # the window is fixed: it started at the first failure, 30 s ago, so it ends in 30 s
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "30"
    with pytest.raises(ApiError):
        limiter.check("10.0.0.1")  # no token at all: refused too, not counted
    assert limiter.verify("10.0.0.1", "good", known.get) == "row"  # a token that worked is no guess
    for i in range(300):
        limiter.fail(f"10.1.{i // 256}.{i % 256}")
    clock.now += 61  # every window above has ended
    limiter.fail("10.3.0.1")  # a new window: the ended ones are deleted
    with Session(engine) as session:
        assert [(f.client, f.failures) for f in session.exec(select(LoginFailure))] == [("10.3.0.1", 1)]
    limiter.check("10.0.0.1")  # its lock ended with its window
    assert limiter.verify("10.0.0.1", "bad", known.get) is None


def test_a_token_that_verifies_takes_its_count_back(engine):
    """An unknown token is counted before it is checked; a good one must not leave that count behind."""
    limiter = LoginLimiter(engine, 1, window_s=60.0, clock=Clock())
    assert limiter.verify("10.0.0.2", "new-good", {"new-good": "row"}.get) == "row"
    assert limiter.verify("10.0.0.2", "bad", {}.get) is None  # the one failure allowed
    with pytest.raises(ApiError):
        limiter.verify("10.0.0.2", "bad", {}.get)


def test_two_apps_on_one_database_share_the_limit(settings, make_db_url):
    """Two `serve` processes are two apps on one database URL: a client's failures at one count at the other."""
    url = make_db_url(migrated=True)
    engines = [make_engine(url), make_engine(url)]
    try:
        first, second = (TestClient(create_app(limited(settings, 4), e)) for e in engines)
        with first, second:
            codes = [(first if i % 2 else second).get("/prompts", headers=BAD).status_code for i in range(6)]
            assert codes == [401] * 4 + [429] * 2, codes
            assert first.get("/prompts").status_code == 429  # without a token: the lock holds at both
            assert second.get("/prompts").status_code == 429
    finally:
        for e in engines:
            e.dispose()


def test_trusted_proxies_must_be_addresses():
    with pytest.raises(ValueError, match="'proxy.internal' is not an IP address or network"):
        Settings(api={"trusted_proxies": ["proxy.internal"]})
    assert Settings(api={"trusted_proxies": "10.0.0.5, 10.1.0.0/16"}).api.trusted_proxies == ["10.0.0.5", "10.1.0.0/16"]


def test_trimloop_serve_ignores_x_forwarded_for_from_loopback(tmp_path, db_url):
    """uvicorn believed the header from any loopback peer: rotating it reset the count."""
    proc, base, log = _serve(tmp_path, db_url, "--no-scheduler")
    try:
        poll_until("/health", lambda: _healthy(base) or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()
        codes = [httpx.get(f"{base}/prompts", headers={**BAD, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                 for i in range(12)]
        assert codes == [401] * 10 + [429] * 2, codes  # the default limit, 10 a minute
    finally:
        proc.terminate()
        proc.wait(timeout=20)
