"""User-facing command-line tools, installed as `[project.scripts]` entry points."""
