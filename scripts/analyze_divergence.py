#!/usr/bin/env python
"""Divergence between predictions stored in dense logit dumps (KL, JS, top-1 change, top-5 overlap).

The command lives in the library (logit_lineage.cli.analyze_divergence), installed as the entry
point `logit-lineage-analyze-divergence`; this file runs it from a checkout."""
from logit_lineage.cli.analyze_divergence import main

if __name__ == "__main__":
    main()
