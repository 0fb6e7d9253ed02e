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
