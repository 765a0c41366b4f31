"""A local stand-in for the Hugging Face Hub's HTTP API, for tests (no network here).

`FakeHub` implements what huggingface_hub 2.4.0 calls to create a repo, pre-upload
LFS content, commit, list and download files; it stores files in memory, counts
every call by endpoint and injects faults on demand. See `server.py`.
"""
from hubserver.server import FakeHub, Fault

__all__ = ["FakeHub", "Fault"]
