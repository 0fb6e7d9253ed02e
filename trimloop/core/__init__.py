"""Settings, database, tables, the LLM gateway, local models, templates and errors.

`core` imports none of trimloop's other packages; they share data only through it.
"""
