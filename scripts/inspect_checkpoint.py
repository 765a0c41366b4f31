#!/usr/bin/env python
"""Print a GPT checkpoint's layout (`Format: small` / `medium`) and convert it.

The command lives in the library (logit_lineage.cli.inspect_checkpoint), installed as the entry point
`logit-lineage-inspect-checkpoint`; this file runs it from a checkout."""
from logit_lineage.cli.inspect_checkpoint import main

if __name__ == "__main__":
    main()
