"""`trimloop demo`: a workspace with three prompts, real production logs from the bundled models,
then sync → optimize → suggestions, then the web UI."""
