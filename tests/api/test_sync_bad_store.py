"""POST /connectors/sync over a store holding hostile files: each is a problem, the rest synced."""

from __future__ import annotations

from tests.api.conftest import PROMPT_V1

LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"{n}: &{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcde", "bcdef", strict=True)])


def test_alias_bombs_are_problems_and_the_valid_prompts_sync(client, headers, store_dir):
    """A few lines of YAML aliases took `trimloop sync` and this route to 3.2-3.6 GB and a
    MemoryError, and the valid prompts in the store were not synced."""
    (store_dir / "prompts" / "triage" / "labels.yaml").write_text(LAUGHS + "\nproduction: *f\n")
    params = "\n".join("  " + line for line in LAUGHS.splitlines())
    (store_dir / "prompts" / "bomb.md").write_text(PROMPT_V1.replace("params: {temperature: 0}", f"params:\n{params}"))
    response = client.post("/connectors/sync", json={}, headers=headers["engineer"])
    assert response.status_code == 200, response.text
    [report] = response.json()
    assert report["fatal"] is None and report["prompts_added"] == 1 and report["logs_added"] == 20
    assert sorted(report["problems"]) == [
        "prompts/bomb.md:5: front matter is not valid YAML: aliases (*name) are not allowed here (hint: write "
        "the value out in full instead of an anchor (&name) and alias (*name))",
        "prompts/triage/labels.yaml:2: labels file is not valid YAML: aliases (*name) are not allowed here "
        "(hint: write the value out in full instead of an anchor (&name) and alias (*name))"]
    prompts = client.get("/prompts", headers=headers["viewer"]).json()
    assert [p["name"] for p in prompts] == ["triage"]
