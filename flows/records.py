"""Small records the stage tasks exchange: file URIs, content hashes, metrics; never arrays or models.

They are what Prefect persists as task results (JSON), so they must stay small, and they are what
the cache keys are built from: a record's `sha256` fields change exactly when its files change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field

STAGES = ("align", "views", "recon", "export")


def to_uri(path: str | Path) -> str:
    """file:// URI of a local path (absolute)."""
    return Path(path).resolve().as_uri()


def from_uri(uri: str) -> Path:
    """Local path of a file:// URI (plain paths pass through)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)) if parsed.scheme else Path(uri)
    raise ValueError(f"only local file:// URIs are supported here, got {uri!r}")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class PhotoRecord(_Record):
    """One input photo: where it is and what it holds."""

    photo_id: str = Field(description="Folder name of this photo's outputs: '<stem>-<first 8 hex of sha256>'.")
    uri: str
    sha256: str
    work_uri: str = Field(description="This photo's output folder.")


class AlignedRecord(_Record):
    photo_id: str
    dir_uri: str
    sha256: str = Field(description="Content hash of the AlignedFace folder.")
    backend: str
    has_identity: bool
    head_pose: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list, description="face.json's warnings: what the alignment lost.")


class ViewsRecord(_Record):
    photo_id: str
    dir_uri: str
    sha256: str = Field(description="Content hash of the ViewSet folder.")
    backend: str
    synthetic: bool
    n_views: int
    weights_id: str


class MeshRecord(_Record):
    photo_id: str
    dir_uri: str
    sha256: str = Field(description="Content hash of the HeadMesh folder.")
    metrics: dict[str, Any] = Field(default_factory=dict)


class AssetRecord(_Record):
    photo_id: str
    dir_uri: str
    glb_uri: str
    glb_sha256: str
    preview_uri: str | None = None
    files: dict[str, str] = Field(default_factory=dict, description="Role -> file URI (lod0, lod1, preview, ...).")
    summary: dict[str, Any] = Field(default_factory=dict, description="Triangle counts, validation, sizes.")


class PhotoResult(_Record):
    """How one photo ended: completed with a GLB, failed in one stage with the error, or skipped because another
    live run holds its claim (remote outputs: `error` names that run and its host)."""

    photo_id: str
    source: str
    status: Literal["completed", "failed", "skipped"]
    failed_stage: str | None = None
    error_type: str | None = None
    error: str | None = None
    exit_code: int | None = Field(None, description="Documented exit code of the error (spin_io.errors) when failed.")
    glb_uri: str | None = None
    cached_stages: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


class RunSummary(_Record):
    """What the flow returns: one result per photo (order of the input) plus the totals."""

    output_uri: str
    photos: list[PhotoResult]

    @property
    def n_completed(self) -> int:
        return sum(p.status == "completed" for p in self.photos)

    @property
    def n_failed(self) -> int:
        return sum(p.status == "failed" for p in self.photos)

    @property
    def n_skipped(self) -> int:
        return sum(p.status == "skipped" for p in self.photos)
