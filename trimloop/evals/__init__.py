"""Evaluation core: datasets, evaluators, the runner, statistics and reports.

- `evaluators`  registry by name (built-ins + entry-point group `trimloop.evaluators`)
- `datasets`    datasets from logs (dedupe, stratify, split, content hash); `gold` imports CSV/JSONL
- `runner`      `evaluate_items` (pure, for the optimizer), `Trials` (a version's results by item),
                `store_eval_run` / `stored_results` (EvalRun rows)
- `stats`       paired non-inferiority (Tango, t, bootstrap), power helper; `sequential` racing test
- `report`      `compare_results`: the one comparison certification decides with; `compare_runs`
                re-derives it from stored EvalRuns, `item_pairs` lists their rows side by side
"""
