from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny():
    from tiny import tiny_bridge

    return tiny_bridge()


@pytest.fixture(scope="session")
def embedded():
    """The real embedded SmolLM2-135M-Instruct, loaded once per session."""
    from conva_tl.model import load_model

    return load_model(device="cpu")
