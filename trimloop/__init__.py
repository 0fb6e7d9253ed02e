"""trimloop: cheaper, faster versions of your LLM prompts, with proof that quality holds."""

__version__ = "0.1.0"
