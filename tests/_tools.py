"""What a test does when an external client (node, Blender, a server binary) is absent."""

import os

import pytest


def tool_missing(reason: str) -> None:
    """Skip locally with the reason; fail in CI, where `.ci/run` installs every tool.

    `.ci/run` sets SPIN_TO_MESH_REQUIRE_TOOLS=1, so a real-client check never silently
    turns into a skip there.
    """
    if os.environ.get("SPIN_TO_MESH_REQUIRE_TOOLS") == "1":
        pytest.fail(f"required tool missing in CI: {reason}")
    pytest.skip(reason)
