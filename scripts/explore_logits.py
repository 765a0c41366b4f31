#!/usr/bin/env python
"""Explore a compressed-logits parquet (statistics, top candidates, colour view).

The command lives in the library (logit_lineage.cli.explore_logits), installed as the entry point
`logit-lineage-explore-logits`; this file runs it from a checkout."""
from logit_lineage.cli.explore_logits import main

if __name__ == "__main__":
    main()
