"""What a human sees in the Prefect UI: progress, view thumbnails, the turntable, metrics, the GLB link.

Every artifact is a row in the Prefect database, kept for each run, cached re-runs included. So the
images are files beside the heads (the turntable is export's `asset/preview.png`, the views' contact
sheet `<photo>/previews/views-<hash>.png`, written once per views content) and the artifacts link
to them; each carries at most INLINE_BUDGET bytes of inline thumbnail, because a browser cannot
open the worker's file:// paths, and a re-run whose stage came from the cache carries none.
"""

from __future__ import annotations

import base64
import contextlib
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

from flows.records import AssetRecord, PhotoResult, RunSummary, ViewsRecord, from_uri, to_uri
from spin_io.aligned import warning_list
from spin_io.atomic import atomic_path

logger = logging.getLogger(__name__)

THUMB_PX = 96
PREVIEW_PX = 512
MAX_THUMBS = 16
SHEET_COLUMNS = 8
PREVIEWS_DIRNAME = "previews"
INLINE_BUDGET = 3072  # base64 bytes of inline image one artifact may store in the database
_MIN_INLINE_PX = 24


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(parts).lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", key)).strip("-")[:120]


def inline_thumbnail(path: Path, max_px: int, budget: int = INLINE_BUDGET) -> str | None:
    """The largest JPEG thumbnail (at most `max_px` a side) whose base64 fits `budget`; None if none does."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    px = max_px
    while px >= _MIN_INLINE_PX:
        small = rgb.copy()
        small.thumbnail((px, px))
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=70, optimize=True)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        if len(data) <= budget:
            return data
        px = px * 3 // 4
    return None


def _image_md(path: Path, alt: str, max_px: int, inline: bool) -> str:
    """A small inline thumbnail when `inline` and it fits the budget, then the file's link and path."""
    parts = []
    data = inline_thumbnail(path, max_px) if inline else None
    if data is not None:
        parts.append(f"![{alt}](data:image/jpeg;base64,{data})")
    parts.append(f"[{path.name}]({to_uri(path)}) `{path}`")
    return "\n\n".join(parts)


def views_sheet(views: ViewsRecord) -> Path | None:
    """The views' thumbnails as one PNG beside the photo's stage folders, written once per views content.

    Not inside views/: that folder's content hash is the cache key of recon. Older sheets of the photo go,
    and so does a half-written one of a killed run (the photo's run owns its folder).
    """
    from PIL import Image

    folder = from_uri(views.dir_uri)
    frames = json.loads((folder / "transforms.json").read_text("utf-8"))["frames"][:MAX_THUMBS]
    if not frames:
        return None
    sheets = folder.parent / PREVIEWS_DIRNAME
    sheet = sheets / f"views-{views.sha256[:12]}.png"
    if sheet.is_file():
        return sheet
    cols = min(len(frames), SHEET_COLUMNS)
    rows = -(-len(frames) // cols)
    canvas = Image.new("RGB", (cols * THUMB_PX, rows * THUMB_PX), (255, 255, 255))
    for i, frame in enumerate(frames):
        with Image.open(folder / frame["file_path"]) as im:
            thumb = im.convert("RGB")
        thumb.thumbnail((THUMB_PX, THUMB_PX))
        canvas.paste(thumb, ((i % cols) * THUMB_PX, (i // cols) * THUMB_PX))
    with atomic_path(sheet) as tmp:
        canvas.save(tmp, format="PNG", optimize=True)
    for old in [*sheets.glob("views-*.png"), *sheets.glob(".tmp-*")]:  # older sheets, a killed run's half-written one
        if old != sheet:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return sheet


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


def views_artifact(views: ViewsRecord, inline: bool = True) -> None:
    """The views' contact sheet (a file) and their angles; `inline=False` (a cached stage) stores only links."""
    folder = from_uri(views.dir_uri)
    meta = json.loads((folder / "transforms.json").read_text("utf-8"))
    labels = []
    for i, frame in enumerate(meta["frames"][:MAX_THUMBS]):
        if "azimuth_deg" in frame and "elevation_deg" in frame:
            labels.append(f"az {frame['azimuth_deg']:.0f} el {frame['elevation_deg']:.0f}")
        else:  # a ViewSet written by another tool: the angles are optional hints
            labels.append(f"view {i}")
    banner = "**SYNTHETIC views (procedural head, the photo was not used)**\n\n" if views.synthetic else ""
    generation = meta.get("generation") if isinstance(meta.get("generation"), dict) else {}
    banner += "".join(f"**Alignment warning:** {_cell(w, 400)}\n\n"
                      for w in warning_list(generation.get("alignment_warnings")))
    sheet = views_sheet(views)
    image = _image_md(sheet, "views", SHEET_COLUMNS * THUMB_PX, inline) + "\n\n" if sheet else ""
    create_markdown_artifact(
        f"### Views of {views.photo_id}\n\n{banner}{image}" + ", ".join(labels) + f"\n\n`{views.dir_uri}`",
        key=artifact_key("views", views.photo_id),
        description=f"{views.n_views} views ({views.backend}) of {views.photo_id}",
    )


def asset_artifacts(asset: AssetRecord, inline: bool = True) -> None:
    """The turntable preview (a file, linked) and a link to the GLB; `inline=False` (a cached stage): links only."""
    parts = [f"### {asset.photo_id}\n", f"[head.glb]({asset.glb_uri})\n"]
    note = str(asset.summary.get("validation", ""))
    if note.startswith("not validated"):
        parts.append(f"**Warning: glTF {note}**\n")
    if asset.preview_uri:
        parts.append(_image_md(from_uri(asset.preview_uri), "turntable", PREVIEW_PX, inline))
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
