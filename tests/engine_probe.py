"""Per-file work for worker processes that must import nothing of its own (tests/test_engines.py): it
reports what the worker had imported before the work arrived."""

from __future__ import annotations

import sys


def torch_imported(path: str) -> bool:
    """Whether this worker process has PyTorch loaded."""
    return "torch" in sys.modules
