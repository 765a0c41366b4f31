"""Config JSON schemas (YAML): the one home of every default, shipped as package data."""
