"""Issue 16 item 8: a head's artifacts keep a few KB in the Prefect database and link to image files.

Images are noise on purpose: it is the worst case for JPEG, so a budget that holds here holds for heads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prefect")

from flows_helpers import FakeRecon, fast_kwargs, prefect_server  # noqa: E402

from flows import artifacts, stages  # noqa: E402
from flows.records import AssetRecord, ViewsRecord, from_uri, to_uri  # noqa: E402

ONE_HEAD_BUDGET = 10_000  # bytes of artifact data per head in the database, every table and link included


def _noise(path: Path, px: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (px, px, 3), dtype=np.uint8)).save(path)


def write_views(work: Path, n: int = 16, px: int = 256, seed: int = 0) -> ViewsRecord:
    out = work / "views"
    frames = []
    for i in range(n):
        _noise(out / "rgb" / f"{i:03d}.png", px, seed + i)
        frames.append({"file_path": f"rgb/{i:03d}.png", "azimuth_deg": 360.0 * i / n, "elevation_deg": 0.0})
    (out / "transforms.json").write_text(json.dumps({"frames": frames}))
    return ViewsRecord(photo_id=work.name, dir_uri=to_uri(out), sha256=stages.tree_sha256(out), backend="synthetic",
                       synthetic=True, n_views=n, weights_id="synthetic")


def write_asset(work: Path) -> AssetRecord:
    out = work / "asset"
    _noise(out / "preview.png", 512, 99)
    (out / "head.glb").write_bytes(b"glTF stand-in")
    glb = out / "head.glb"
    return AssetRecord(photo_id=work.name, dir_uri=to_uri(out), glb_uri=to_uri(glb), glb_sha256=stages.file_sha256(glb),
                       preview_uri=to_uri(out / "preview.png"), files={"lod0": to_uri(glb)}, summary={})


class Recorder:
    """Stands in for Prefect's create_*_artifact: keeps what would have been stored."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    def __call__(self, *args, **kwargs) -> None:
        self.stored.append(repr(args) + repr(kwargs))

    @property
    def bytes(self) -> int:
        return sum(len(s) for s in self.stored)


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    for name in ("create_markdown_artifact", "create_link_artifact"):
        monkeypatch.setattr(artifacts, name, rec)
    return rec


def _linked_files(text: str) -> list[Path]:
    return [from_uri(u) for u in re.findall(r"\((file://[^)\s]+)\)", text) if not u.endswith(".glb")]


def test_one_head_stores_a_few_kb_and_links_image_files_that_exist(tmp_path, recorder):
    work = tmp_path / "astro-1234abcd"
    views, asset = write_views(work), write_asset(work)
    artifacts.views_artifact(views)
    artifacts.asset_artifacts(asset)
    assert recorder.bytes < ONE_HEAD_BUDGET, recorder.bytes  # the base64 thumbnails were ~210 KB per head
    views_md, turntable_md = recorder.stored[0], recorder.stored[1]
    for text in (views_md, turntable_md):
        assert text.count("data:image/jpeg;base64,") == 1  # still a glance in the UI, within the budget
        assert max(len(m) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)", text)) <= artifacts.INLINE_BUDGET
    sheet, = _linked_files(views_md)
    assert sheet.parent == work / artifacts.PREVIEWS_DIRNAME and sheet.is_file()
    assert not (from_uri(views.dir_uri) / sheet.name).exists()  # views/ (recon's cache key) is not touched
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.size == (8 * artifacts.THUMB_PX, 2 * artifacts.THUMB_PX)  # 16 views, 8 a row
    assert _linked_files(turntable_md) == [from_uri(asset.preview_uri)]


def test_the_views_artifact_shows_what_the_alignment_lost(tmp_path, recorder):
    """face.json's warnings (carried in transforms.json's generation) are shown above the views in the UI."""
    views = write_views(tmp_path / "astro-1234abcd", n=2)
    path = from_uri(views.dir_uri) / "transforms.json"
    meta = json.loads(path.read_text())
    meta["generation"] = {"alignment_warnings": ["the matte reaches the crop's top edge across 40 px", None]}
    path.write_text(json.dumps(meta))
    artifacts.views_artifact(views, inline=False)
    assert recorder.stored[0].count("**Alignment warning:**") == 1 and "top edge across 40 px" in recorder.stored[0]


def test_a_cached_stage_stores_links_only_and_writes_no_image_again(tmp_path, recorder):
    work = tmp_path / "astro-1234abcd"
    views, asset = write_views(work), write_asset(work)
    artifacts.views_artifact(views)
    sheet = artifacts.views_sheet(views)
    written = sheet.stat().st_mtime_ns
    first = recorder.bytes
    artifacts.views_artifact(views, inline=False)
    artifacts.asset_artifacts(asset, inline=False)
    again = recorder.bytes - first
    assert "base64" not in "".join(recorder.stored[1:]) and again < 1500, again
    assert sheet.stat().st_mtime_ns == written  # stored once per views content
    assert _linked_files(recorder.stored[1]) == [sheet]


def test_new_views_replace_the_photos_old_contact_sheet(tmp_path, recorder):
    work = tmp_path / "astro-1234abcd"
    old = artifacts.views_sheet(write_views(work, n=4, px=64, seed=0))
    (old.parent / ".tmp-views-k1ll3d.png").write_bytes(b"half")  # a run killed while writing a sheet
    new = artifacts.views_sheet(write_views(work, n=4, px=64, seed=7))
    assert new != old and new.is_file() and not old.exists()
    assert sorted(p.name for p in new.parent.iterdir()) == [new.name]  # no temporary left either


def test_an_inline_thumbnail_shrinks_to_fit_its_budget_or_is_left_out(tmp_path):
    _noise(tmp_path / "big.png", 512, 1)
    data = artifacts.inline_thumbnail(tmp_path / "big.png", 512, budget=2000)
    assert data is not None and len(data) <= 2000
    assert artifacts.inline_thumbnail(tmp_path / "big.png", 512, budget=50) is None


# ---------------------------------------------------------------- the flow: what the database really holds


def _views_with_images(aligned, params, work_uri, device="auto", weights=None) -> ViewsRecord:
    return write_views(from_uri(work_uri), n=16, px=256)


def _export_with_preview(mesh, params, work_uri) -> AssetRecord:
    return write_asset(from_uri(work_uri))


def _align(photo, params, weights=None, device="cpu"):
    from flows.records import AlignedRecord

    out = from_uri(photo.work_uri) / "aligned"
    with stages.staged_dir(out) as tmp:
        (tmp / "crop.txt").write_text(photo.photo_id)
    return AlignedRecord(photo_id=photo.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                         backend="stand-in", has_identity=False)


def _stored(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))
    assert found, "the run made artifacts"
    return "".join(json.dumps(a.data) + (a.description or "") for a in found)


def test_a_run_stores_under_10_kb_per_head_and_a_cached_rerun_stores_no_image(tmp_path_factory, monkeypatch):
    from PIL import Image

    from flows.params import RunOptions
    from flows.pipeline import spin_to_mesh

    monkeypatch.setattr(stages, "run_align", _align)
    monkeypatch.setattr(stages, "run_views", _views_with_images)
    monkeypatch.setattr(stages, "run_recon", FakeRecon())
    monkeypatch.setattr(stages, "run_export", _export_with_preview)
    tmp = tmp_path_factory.mktemp("head")
    Image.new("RGB", (32, 32), (200, 90, 40)).save(tmp / "ann.png")
    with prefect_server(tmp_path_factory.mktemp("prefect-home")):
        stored = []
        for _ in range(2):
            state = spin_to_mesh(input=str(tmp / "ann.png"), output=str(tmp / "out"),
                                 **fast_kwargs(RunOptions(retries=0)), return_state=True)
            assert state.is_completed(), state
            stored.append(_stored(state.state_details.flow_run_id))
    assert state.result().photos[0].cached_stages == ["align", "views", "recon", "export"]
    sizes = [len(s) for s in stored]
    assert sizes[0] < ONE_HEAD_BUDGET and stored[0].count("base64,") == 2, sizes  # views and turntable
    assert sizes[1] < 2000 and "base64" not in stored[1], sizes  # the cached re-run: links and tables only
