"""Shared test set-up: single-threaded torch (2-core machines), fixed seeds, no display."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):  # noqa: ARG001
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="module")
def module_csim_cache(tmp_path_factory):
    """A private C-simulation compile cache (``$QLSTM_CACHE``) for one test module."""
    root = tmp_path_factory.mktemp("qlstm-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLSTM_CACHE", str(root))
        yield root
