"""The fidelity chain — analysis of dense logit dumps: divergences between predictions, fidelity of compressed records."""
