"""Shared test fixtures: the repository, and ../shared (weights, CamVid, faces, images) beside it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared beside the checkout; CI has it, so its absence is a failure, not a skip."""
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need ../shared beside the checkout"
    return SHARED


@pytest.fixture()
def shared_weights(shared, monkeypatch):
    """Point the resolver at ../shared/weights for this test."""
    from core import runtime

    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=shared / "weights"))
    return shared / "weights"
