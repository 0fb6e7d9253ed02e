"""The proactive part: moves make variants, the search races them, certification proves them on
the holdout, savings price them against real traffic, and a run leaves a Suggestion."""
