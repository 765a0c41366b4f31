"""Helpers every click script shares: one-line errors, logging, atomic outputs."""
