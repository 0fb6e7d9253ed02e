"""Fakes that tests and benches share: a provider behind the real `Gateway`, a fake OpenAI server.

No product package (core, connectors, evals, optimizer, api) imports this one; an import-linter
contract in pyproject.toml holds them to it.
"""
