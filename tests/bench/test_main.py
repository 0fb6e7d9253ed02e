"""`python -m bench`'s command line: options for `all` are honoured wherever they stand, and a single
bench gets its own arguments (with or without `--`)."""

from __future__ import annotations

import pytest

from bench.__main__ import parse


def test_all_takes_its_options_after_the_name() -> None:
    args, extra = parse(["all", "--with-optimize", "--with-soak", "--no-docs"])
    assert (args.name, args.with_optimize, args.with_soak, args.no_docs, extra) == ("all", True, True, True, [])
    args, _ = parse(["--with-optimize", "all"])
    assert args.with_optimize


def test_a_single_bench_gets_its_arguments() -> None:
    assert parse(["optimize", "--tasks", "sst2"])[1] == ["--tasks", "sst2"]
    args, extra = parse(["peers_search", "--timeout", "60", "--", "--reuse-compile"])
    assert (args.timeout, extra) == (60.0, ["--reuse-compile"])


def test_bad_command_lines_say_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["all", "--with-optimise"])
    assert "unknown options for `all`: --with-optimise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["nope"])
    assert "unknown bench 'nope'" in capsys.readouterr().err


def test_the_docs_page_keeps_what_was_measured_by_hand(tmp_path):
    from bench.__main__ import render_docs

    doc = {"machine": {"cpus": 2, "commit": "abc"}, "benches": {}, "skipped": {"optimize": "slow"}}
    by_hand = tmp_path / "by-hand.md"
    by_hand.write_text("## Measured separately\n\nThe demo took 306 s.\n")
    page = render_docs(doc, by_hand)
    assert page.index("## Not run") < page.index("## Measured separately") and "The demo took 306 s." in page
    assert render_docs(doc, tmp_path / "absent.md").count("Measured separately") == 0
