"""The per-view self-check (recon.selfcheck): its rule on synthetic rows, and end to end on one corrupted view."""

from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np
import pytest
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

from recon.fusion import FusionConfig
from recon.pipeline import ReconConfig, reconstruct
from recon.selfcheck import SelfCheckConfig, self_check
from recon.synth import procedural_head, render_viewset, ring_views
from recon.texture import TextureConfig


def _rows(offsets: list[float], normal_errors: list[float | None], ious: list[float] | None = None) -> list[dict]:
    """Rows shaped like recon.pipeline.per_view_metrics' output."""
    n = len(offsets)
    ious = ious or [0.98] * n
    return [
        {
            "view": i,
            "azimuth_deg": 360.0 * i / n,
            "elevation_deg": 0.0,
            "silhouette_iou": iou,
            "silhouette_offset_px": off,
            "normal_error_deg": nerr,
            "rgb_psnr_db": 30.0,
        }
        for i, (off, nerr, iou) in enumerate(zip(offsets, normal_errors, ious, strict=True))
    ]


GOOD_OFFSETS = [0.48, 0.52, 0.55, 0.45, 0.50, 0.58, 0.47, 0.53, 0.51, 0.49, 0.56, 0.44]
GOOD_NORMALS = [4.1, 3.8, 4.4, 3.9, 4.0, 4.2, 3.7, 4.3, 4.0, 3.6, 4.5, 4.1]


def _flagged(offsets, normals, ious=None, cfg=None) -> tuple[list[int], dict]:
    check = self_check(_rows(offsets, normals, ious), cfg)
    assert check["ok"] == (not check["disagreeing_views"])
    assert [d["view"] for d in check["disagreements"]] == check["disagreeing_views"]
    return check["disagreeing_views"], check


def test_uniformly_good_views_pass_and_are_summarised():
    views, check = _flagged(GOOD_OFFSETS, GOOD_NORMALS)
    assert check["ok"] and views == [] and check["disagreements"] == []
    assert check["silhouette_offset_px"]["median"] == pytest.approx(np.median(GOOD_OFFSETS))
    assert check["silhouette_offset_px"]["max"] == pytest.approx(0.58)
    assert check["normal_error_deg"]["mean"] == pytest.approx(np.mean(GOOD_NORMALS))
    assert check["silhouette_iou"]["min"] == pytest.approx(0.98)
    assert check["rule"] == asdict(SelfCheckConfig())
    # a tight set has a tiny MAD: the floors keep slightly worse views from being called outliers
    offsets, normals = list(GOOD_OFFSETS), list(GOOD_NORMALS)
    offsets[3], normals[5] = 0.95, 6.8  # 0.44 px and 2.7 deg above the medians, under the 0.5 px / 3 deg floors
    assert _flagged(offsets, normals)[0] == []


def test_a_normal_map_turned_too_far_to_correct_is_named():
    rows = _rows(GOOD_OFFSETS, GOOD_NORMALS)
    for r in rows:
        r["normal_rotation_deg"], r["normal_rotation_applied"] = 2.0, True
    rows[4]["normal_rotation_deg"], rows[4]["normal_rotation_applied"] = 24.5, False
    check = self_check(rows)
    assert check["disagreeing_views"] == [4]
    assert check["disagreements"][0]["why"] == "normal map turned 24.5 deg against the shape (not corrected)"


def test_a_camera_too_far_from_its_declared_pose_to_correct_is_named():
    rows = _rows(GOOD_OFFSETS, GOOD_NORMALS)
    for r in rows:
        r["camera_rotation_deg"], r["camera_rotation_applied"], r["camera_rotation_refused"] = 0.8, True, False
    rows[9]["camera_rotation_deg"], rows[9]["camera_rotation_applied"] = 6.3, False
    rows[9]["camera_rotation_refused"] = True
    check = self_check(rows)
    assert check["disagreeing_views"] == [9]
    assert check["disagreements"][0]["why"] == "camera 6.3 deg from its declared pose (not corrected)"


def test_a_mask_too_far_from_the_others_to_move_is_named():
    rows = _rows(GOOD_OFFSETS, GOOD_NORMALS)
    for r in rows:
        r["mask_shift_px"], r["mask_shift_applied"], r["mask_shift_refused"] = 0.6, True, False
    rows[3]["mask_shift_px"], rows[3]["mask_shift_applied"], rows[3]["mask_shift_refused"] = -4.2, False, True
    check = self_check(rows)
    assert check["disagreeing_views"] == [3]
    assert check["disagreements"][0]["why"] == "mask border -4.2 px from the other views' (not corrected)"


def test_a_view_whose_silhouette_disagrees_is_named():
    offsets, ious = list(GOOD_OFFSETS), [0.98] * 12
    offsets[4], ious[4] = 3.0, 0.80  # past the absolute bar (2 px)
    views, check = _flagged(offsets, GOOD_NORMALS, ious)
    assert views == [4] and not check["ok"]
    why = check["disagreements"][0]["why"]
    assert "silhouette off by 3.00 px" in why and "normal" not in why
    assert check["disagreements"][0]["azimuth_deg"] == pytest.approx(120.0)
    assert check["silhouette_iou"]["min"] == pytest.approx(0.80)
    # under the bar but an outlier among the rest: still named
    offsets[4] = 1.6
    assert _flagged(offsets, GOOD_NORMALS)[0] == [4]
    # IoU alone is reported, not judged (it depends on the head's size in the frame)
    assert _flagged(GOOD_OFFSETS, GOOD_NORMALS, ious)[0] == []


def test_a_view_whose_normals_disagree_is_named():
    normals = list(GOOD_NORMALS)
    normals[7] = 25.0  # past the absolute bar (15 deg)
    views, check = _flagged(GOOD_OFFSETS, normals)
    assert views == [7]
    why = check["disagreements"][0]["why"]
    assert why.startswith("normal error 25.0 deg") and "silhouette" not in why
    normals[7] = 9.5  # under the bar, an outlier (median 4.05 + max(3 x 1.48 MAD, 3 deg))
    assert _flagged(GOOD_OFFSETS, normals)[0] == [7]
    normals[7] = None  # no normals to compare: counted as 180 deg
    views, check = _flagged(GOOD_OFFSETS, normals)
    assert views == [7] and "180.0 deg" in check["disagreements"][0]["why"]
    # both numbers off: one entry, both reasons
    offsets = list(GOOD_OFFSETS)
    offsets[7], normals[7] = 2.5, 30.0
    views, check = _flagged(offsets, normals)
    why = check["disagreements"][0]["why"]
    assert views == [7] and "silhouette off by 2.50 px" in why and "normal error 30.0 deg" in why


def test_scattered_views_widen_the_outlier_band():
    offsets = [0.5, 0.9, 1.3, 0.7, 1.1, 0.6, 1.8]  # median 0.9, 1.4826 MAD = 0.44: the band ends at 2.23 px
    assert _flagged(offsets, [4.0] * 7)[0] == []
    assert _flagged(offsets, [4.0] * 7, cfg=SelfCheckConfig(k=1.5))[0] == [6]  # band at 1.57 px


def test_absolute_bars_apply_when_every_view_is_equally_bad():
    n = 10
    assert _flagged([2.5] * n, [4.0] * n)[0] == list(range(n))  # no outlier, every one past the 2 px bar
    assert _flagged([0.5] * n, [20.0] * n)[0] == list(range(n))  # likewise past the 15 deg bar
    assert _flagged([1.9] * n, [14.0] * n)[0] == []  # equally mediocre but inside both bars


# ---------------------------------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def small_views():
    head = procedural_head(3, voxel_m=0.005, target_faces=10_000)
    return render_viewset(head, ring_views(5) + ring_views(5, 30.0, 36.0), size=96)


def _cfg() -> ReconConfig:
    return ReconConfig(hull_voxel=0.012, target_faces=5000, fusion=FusionConfig(rounds=2),
                       texture=TextureConfig(size=256))


def _rotated_normals(normal: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation of a normal map; empty pixels stay empty."""
    a = axis / np.linalg.norm(axis)
    t = np.radians(deg)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    R = np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K
    return np.where(np.linalg.norm(normal, axis=-1, keepdims=True) > 0, normal @ R.T, 0.0).astype(np.float32)


def test_reconstruction_names_the_one_view_with_corrupted_normals(small_views):
    clean = reconstruct(small_views, _cfg()).metrics["self_check"]
    assert clean["ok"] and clean["disagreeing_views"] == []
    assert clean["normal_error_deg"]["max"] < 8.0  # measured 3.8

    bad_view = 7  # azimuth 108, elevation 30
    vs = copy.deepcopy(small_views)
    frame = vs.frames[bad_view]
    assert frame.normal_frame == "camera"
    frame.normal = _rotated_normals(frame.normal, np.array([0.0, 0.0, 1.0]), 40.0)  # about the viewing axis
    check = reconstruct(vs, _cfg()).metrics["self_check"]
    assert check["disagreeing_views"] == [bad_view] and not check["ok"]  # its error 26 deg, the others <= 3.8
    assert check["disagreements"][0]["why"].startswith("normal error")
    assert "not corrected" in check["disagreements"][0]["why"]  # 40 deg is no tilt recon.normal_align undoes
    assert check["disagreements"][0]["elevation_deg"] == 30.0
