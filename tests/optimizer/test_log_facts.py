"""The baseline's read of a prompt's traffic (optimizer.baseline.log_facts): every record of the
prompt, whether it named one of the prompt's versions or none, and nothing of another prompt;
found through the indexes (ix_logrecord_version_time, ix_logrecord_unversioned), not a scan."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from trimloop.core.db import session_scope
from trimloop.core.tables import DatasetItem, LogRecord, Prompt, PromptVersion
from trimloop.optimizer.baseline import log_facts

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def test_log_facts_reads_the_prompts_records_with_and_without_a_version_and_no_other(engine):
    with session_scope(engine) as session:
        ids = {}
        for name in ("a", "b"):
            prompt = Prompt(name=name, connector="files")
            session.add(prompt)
            session.flush()
            versions = []
            for n in (1, 2):
                version = PromptVersion(prompt_id=prompt.id, sha=f"{name}{n}" * 8, connector="files",
                                        template={"kind": "text", "text": "{{x}}"}, model="local/gemma3-270m")
                session.add(version)
                session.flush()
                versions.append(version.id)
            ids[name] = (prompt.id, versions)
        # prompt a: 3 calls on version 1 (the baseline), 2 on version 2, 4 that named no version;
        # prompt b: 5 on its version 1 and 6 without a version
        plan = [("a", 0, 3, 0.001), ("a", 1, 2, 0.002), ("a", None, 4, 0.003), ("b", 0, 5, 0.004),
                ("b", None, 6, 0.005)]
        anchor = None
        for name, version, count, cost in plan:
            prompt_id, versions = ids[name]
            for i in range(count):
                log = LogRecord(connector="files", external_id=f"{name}-{version}-{i}", prompt_id=prompt_id,
                                version_id=None if version is None else versions[version], inputs={"x": i},
                                output="ok", cost=cost, latency_s=0.1, called_at=NOW - timedelta(hours=i + 1))
                session.add(log)
                session.flush()
                if anchor is None:
                    anchor = DatasetItem(dataset_id=1, inputs={"x": 0}, log_id=log.id)
        facts = log_facts(session, [anchor], prompt_id=ids["a"][0])
    assert len(facts.call_times) == 3 + 2 + 4  # prompt a's records only, with and without a version
    assert sorted(facts.logged_costs) == [0.001] * 3  # costs of the baseline's version
    if engine.dialect.name == "sqlite":  # the two index searches, not a scan of every record
        with engine.connect() as conn:
            plan = " ".join(row[-1] for row in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT called_at FROM logrecord WHERE prompt_id = 1 "
                "AND (version_id IN (1, 2) OR version_id IS NULL)")))
        assert "ix_logrecord_version_time" in plan and "ix_logrecord_unversioned" in plan, plan
