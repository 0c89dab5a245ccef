"""What a human sees in the Prefect UI: progress, view thumbnails, the turntable, metrics, the GLB link.

Thumbnails are embedded as small base64 PNGs in markdown, because a browser cannot open the
worker's file:// paths; the GLB itself is a link (open it from a host that mounts the output).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.records import AssetRecord, PhotoResult, RunSummary, ViewsRecord, from_uri

logger = logging.getLogger(__name__)

THUMB_PX = 96
PREVIEW_PX = 512
MAX_THUMBS = 16


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(parts).lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", key)).strip("-")[:120]


def _thumbnail_md(path: Path, size: int, alt: str) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


class Progress:
    """A progress artifact over all (photo, stage) steps of a run; an API failure only stops the bar."""

    def __init__(self, total_steps: int, description: str) -> None:
        self.total = max(1, total_steps)
        self.done = 0
        self.id = None
        try:
            self.id = create_progress_artifact(0.0, description=description)
        except Exception as exc:  # the bar is for people; the heads matter more
            logger.warning("no progress artifact: %s", exc)

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if self.id is None:
            return
        try:
            update_progress_artifact(self.id, 100.0 * self.done / self.total)
        except Exception as exc:
            logger.warning("progress artifact not updated: %s", exc)
            self.id = None


def views_artifact(views: ViewsRecord) -> None:
    """Thumbnails of the generated (or synthetic) views."""
    folder = from_uri(views.dir_uri)
    meta = json.loads((folder / "transforms.json").read_text("utf-8"))
    cells = []
    for i, frame in enumerate(meta["frames"][:MAX_THUMBS]):
        if "azimuth_deg" in frame and "elevation_deg" in frame:
            label = f"az {frame['azimuth_deg']:.0f} el {frame['elevation_deg']:.0f}"
        else:  # a ViewSet written by another tool: the angles are optional hints
            label = f"view {i}"
        cells.append(_thumbnail_md(folder / frame["file_path"], THUMB_PX, label))
    banner = "**SYNTHETIC views (procedural head, the photo was not used)**\n\n" if views.synthetic else ""
    create_markdown_artifact(
        f"### Views of {views.photo_id}\n\n{banner}" + " ".join(cells) + f"\n\n`{views.dir_uri}`",
        key=artifact_key("views", views.photo_id),
        description=f"{views.n_views} views ({views.backend}) of {views.photo_id}",
    )


def asset_artifacts(asset: AssetRecord) -> None:
    """The turntable preview and a link to the GLB."""
    parts = [f"### {asset.photo_id}\n", f"[head.glb]({asset.glb_uri})\n"]
    note = str(asset.summary.get("validation", ""))
    if note.startswith("not validated"):
        parts.append(f"**Warning: glTF {note}**\n")
    if asset.preview_uri:
        parts.append(_thumbnail_md(from_uri(asset.preview_uri), PREVIEW_PX, "turntable"))
    create_markdown_artifact(
        "\n".join(parts), key=artifact_key("turntable", asset.photo_id), description=f"turntable of {asset.photo_id}"
    )
    create_link_artifact(
        asset.glb_uri, link_text=f"{asset.photo_id}/head.glb", key=artifact_key("glb", asset.photo_id),
        description="LOD0 GLB of this head",
    )


def summary_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """One row per photo: the table a TD filters on (status, stage, error, cache hits, GLB)."""
    rows = []
    for p in summary.photos:
        rows.append(
            {
                "photo": p.photo_id,
                "status": p.status,
                "failed_stage": p.failed_stage or "",
                "error": f"{p.error_type}: {p.error}" if p.error else "",
                "cached": ",".join(p.cached_stages),
                "glb": p.glb_uri or "",
            }
        )
    return rows


def metrics_rows(photos: list[PhotoResult]) -> list[dict[str, Any]]:
    """Scalar metrics of the completed photos, one column per metric (missing = empty)."""
    done = [p for p in photos if p.status == "completed"]
    columns = sorted({k for p in done for k in p.metrics})
    return [{"photo": p.photo_id, **{c: p.metrics.get(c, "") for c in columns}} for p in done]


def summary_artifacts(summary: RunSummary) -> None:
    create_table_artifact(
        summary_rows(summary),
        key="spin-to-mesh-summary",
        description=f"{summary.n_completed} completed, {summary.n_failed} failed; output {summary.output_uri}",
    )
    rows = metrics_rows(summary.photos)
    if rows:
        create_table_artifact(rows, key="spin-to-mesh-metrics", description="recon and export metrics per head")


def _cell(text: str | None, width: int = 300) -> str:
    """One markdown table cell: a line of its own, no pipe that would split it."""
    text = " ".join((text or "").split())
    text = text if len(text) <= width else text[: width - 3] + "..."
    return text.replace("|", "\\|")


def failures_markdown(summary: RunSummary) -> str:
    """The failed photos as a markdown table: photo, stage, error type, reason (what to fix, per photo)."""
    lines = ["| photo | stage | error type | reason |", "|---|---|---|---|"]
    for p in summary.photos:
        if p.status == "failed":
            cells = (p.photo_id, p.failed_stage, p.error_type, p.error)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return f"### {summary.n_failed} of {len(summary.photos)} photo(s) failed\n\n" + "\n".join(lines) + "\n"


def failures_artifact(summary: RunSummary) -> None:
    """The failures table, made only when a photo failed (its absence means none did)."""
    create_markdown_artifact(
        failures_markdown(summary), key="spin-to-mesh-failures",
        description=f"{summary.n_failed} failed photo(s); output {summary.output_uri}",
    )
