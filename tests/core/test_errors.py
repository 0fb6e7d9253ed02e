"""The exception tree drawn in core/errors.py's docstring is the tree that exists: every subclass of
TrimloopError in every trimloop package, under its real parent, in the module it names."""

import importlib
import pkgutil
import re

import trimloop
from trimloop.core import errors
from trimloop.core.errors import TrimloopError

LINE = re.compile(r"^    (?P<branch>(?:[│ ]   )*(?:[├└]── )?)(?P<name>\w+)(?:\s+\((?P<module>[\w.]+)\))?")


def drawn() -> dict[str, tuple[str | None, str]]:
    """name → (parent name, module) as the docstring draws them; depth is the branch's width ÷ 4."""
    tree: dict[str, tuple[str | None, str]] = {}
    path: list[str] = []
    block = errors.__doc__.split("\n\n")[2]  # the drawing is the third paragraph
    for line in block.splitlines():
        match = LINE.match(line)
        assert match, f"not a line of the drawing: {line!r}"
        depth = len(match["branch"]) // 4
        path[depth:] = [match["name"]]
        assert match["name"] not in tree, f"{match['name']} drawn twice"
        module = "trimloop." + (match["module"] or "core.errors")
        tree[match["name"]] = (path[depth - 1] if depth else None, module)
    return tree


def existing() -> dict[str, tuple[str | None, str]]:
    for module in pkgutil.walk_packages(trimloop.__path__, "trimloop."):
        if module.name != "trimloop.core.migrations.env":  # Alembic's script: runs only inside a migration
            importlib.import_module(module.name)
    tree: dict[str, tuple[str | None, str]] = {"TrimloopError": (None, "trimloop.core.errors")}
    todo = [TrimloopError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            assert sub.__name__ not in tree, f"two exception classes called {sub.__name__}"
            tree[sub.__name__] = (cls.__name__, sub.__module__)
            todo.append(sub)
    return tree


def test_the_drawing_lists_every_trimloop_error_under_its_parent_and_module():
    assert drawn() == existing()


def test_the_drawing_is_read_line_by_line():
    tree = drawn()
    assert tree["ProviderUnavailable"] == ("GatewayError", "trimloop.core.errors")
    assert tree["Superseded"] == ("Conflict", "trimloop.core.store")
    assert tree["ApiError"] == ("TrimloopError", "trimloop.api.errors")
