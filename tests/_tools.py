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


def mediapipe_models():
    """The cached MediaPipe models (align.mediapipe_models.ensure_models), or tool_missing when unavailable."""
    from align.errors import AlignWeightsNotFoundError
    from align.mediapipe_models import ensure_models, litert_available

    if not litert_available():
        tool_missing("ai-edge-litert is not installed (the `align` extra)")
    try:
        return ensure_models()
    except AlignWeightsNotFoundError as exc:
        tool_missing(f"MediaPipe models unavailable: {exc}")
