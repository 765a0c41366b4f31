"""Analysis of dense logit dumps: divergences between predictions, fidelity of compressed records."""
