"""The fidelity chain (E) — analysis of dense logit dumps: divergences between predictions, fidelity of compressed records."""
