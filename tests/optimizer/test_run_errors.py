"""A run that dies on a bug records one line for viewers; its traceback (server paths and all)
goes to the server log only."""

from __future__ import annotations

import logging

from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.tables import RunEvent
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider

SERVER_PATH = "/srv/trimloop/private/weights.bin"


def crash(model, prompt):
    raise FileNotFoundError(2, "No such file or directory", SERVER_PATH)


async def test_an_unexpected_error_is_one_line_for_viewers_and_a_traceback_in_the_log(engine, settings, seeded,
                                                                                       gateway_for, caplog):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded, config={}).id
    with caplog.at_level(logging.ERROR, logger="trimloop.optimizer.run"):
        run = await execute_run(engine=engine, settings=settings, run_id=run_id,
                                gateway=gateway_for(FakeProvider(responder=crash)))
    assert run.status == "failed"
    assert run.error == (f"run {run_id} stopped on an internal error (FileNotFoundError); the server log has "
                         "the details — report it with that log")
    with session_scope(engine) as session:
        [event] = session.exec(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == "run.failed")).all()
        assert event.data["error"] == run.error
    [record] = [r for r in caplog.records if r.name == "trimloop.optimizer.run"]
    assert f"run {run_id} failed" in record.getMessage() and SERVER_PATH in caplog.text
    assert "Traceback" in caplog.text
