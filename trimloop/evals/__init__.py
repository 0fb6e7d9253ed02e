"""Evaluation core: datasets, evaluators, the runner, statistics and reports.

- `evaluators`  registry by name (built-ins + entry-point group `trimloop.evaluators`)
- `datasets`    datasets from logs (dedupe, stratify, split, content hash); `gold` imports CSV/JSONL
- `runner`      `evaluate_items` (pure, for the optimizer) and `run_eval` (stored, resumable)
- `stats`       paired non-inferiority (Tango, t, bootstrap), power helper; `sequential` racing test
- `report`      `compare_results` / `compare_runs` and pandas tables; `config` per-prompt options
- `health`      prompt health from production logs (verdict with the numbers); `anytime` the
                confidence sequences its verdicts are decided on, and the intervals it shows
"""
