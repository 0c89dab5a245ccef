"""The issue-12 evaluation set: people heads, product views, as-generated perturbations, honest metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.mesh_ops import edge_manifold_report
from recon.metrics import REGIONS, CameraView, evaluate_surface, surface_metrics, visible_mask
from recon.synth import (
    PEOPLE,
    Perturbation,
    ViewSpec,
    person_head,
    procedural_head,
    product_views,
    render_case,
    render_viewset,
    shape_field,
)
from recon.synth.heads import inside_mesh
from recon.synth.people import FRAME_BOTTOM_M, _person, person_sdf
from recon.synth.sdf import mesh_sdf
from spin_io.viewset import camera_position, focal_from_fov, look_at_c2w, read_viewset, write_viewset

MM = 400.0  # mm per ViewSet unit


@pytest.fixture(scope="module")
def heads():
    torch.set_num_threads(1)
    return {name: person_head(name) for name in PEOPLE}


def _views(size: int = 256, count: int = 24) -> list[CameraView]:
    f = focal_from_fov(size)
    return [CameraView(look_at_c2w(camera_position(v.azimuth_deg, v.elevation_deg, 2.7)), f, f, size / 2, size / 2,
                       size, size) for v in product_views(count)]


def _local(head, points_m: np.ndarray) -> np.ndarray:
    """Head-local metres -> the head's ViewSet units."""
    return (np.asarray(points_m, np.float64) - np.array(head.info["centre_m"])) / 0.4


def _volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = (v[f[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def test_people_heads_are_closed_manifold_outward_and_framed(heads):
    views = _views()
    for name, h in heads.items():
        rep = edge_manifold_report(h.faces)
        assert rep["boundary_edges"] == rep["nonmanifold_edges"] == rep["misoriented_edges"] == 0, name
        assert _volume(h.vertices, h.faces) > 0, name
        ext_m = (h.vertices.max(0) - h.vertices.min(0)) * 0.4
        assert 0.14 < ext_m[0] < 0.21 and 0.2 < ext_m[2] < 0.3, (name, ext_m)
        top = h.vertices[h.vertices[:, 1] > h.vertices[:, 1].max() - 0.01]
        assert visible_mask(top, views).all(), name  # the crown is inside the product's frames
        bottom = h.vertices[h.vertices[:, 1] < h.vertices[:, 1].min() + 1e-3]
        seen = visible_mask(bottom, views)
        if name == "ada":  # short neck: the low ring sees where it ends
            assert seen.any()
        else:  # long necks run out of every view
            assert not seen.any(), name
            assert h.vertices[:, 1].min() * 0.4 < FRAME_BOTTOM_M - 0.1


def test_ears_have_an_open_gap_behind_them_at_least_10mm_deep(heads):
    w = np.arange(0.006, -0.04, -0.0005)  # along each ear's inward normal, from outside the plate into the skull
    for name, h in heads.items():
        lines, keys = [], []
        for e, ear in enumerate(h.info["ears"]):
            root, u, n = (np.array(ear[k]) for k in ("root", "u", "n"))
            for du in np.arange(0.0, ear["spec"]["width"], 0.002):
                lines.append(_local(h, root + du * u + w[:, None] * n))
                keys.append((e, du))
        inside = inside_mesh(np.concatenate(lines), h.vertices, h.faces).reshape(len(lines), len(w))
        gap_u: dict[int, list[float]] = {0: [], 1: []}
        for (e, du), line in zip(keys, inside, strict=True):
            flips = np.flatnonzero(np.diff(line.astype(int)))
            # outside -> plate (inside) -> gap (outside, >= 1 mm) -> skull (inside)
            if not line[0] and len(flips) >= 3 and (flips[2] - flips[1]) * 0.5 >= 1.0:
                gap_u[e].append(du)
        for e, ear in enumerate(h.info["ears"]):
            assert gap_u[e], (name, ear["spec"]["side"])
            depth_mm = (max(gap_u[e]) - min(gap_u[e])) * 1000 + 2.0
            assert depth_mm >= 10.0, (name, ear["spec"]["side"], depth_mm)
        # the two ears stand off by different amounts
        angles = sorted(ear["spec"]["angle"] for ear in h.info["ears"])
        assert angles[1] - angles[0] >= 8.0, name


def test_eye_sockets_are_concave_under_the_brow(heads):
    z = np.arange(0.14, 0.04, -0.0005)
    heights = (0.027, 0.017, -0.012)  # brow ridge, socket (just under the brow), cheek; head-local metres
    for name, h in heads.items():
        lines = [np.stack([np.full_like(z, 0.032 * side), np.full_like(z, y), z], 1) for side in (-1, 1)
                 for y in heights]
        inside = inside_mesh(_local(h, np.concatenate(lines)), h.vertices, h.faces).reshape(len(lines), len(z))
        front = z[np.argmax(inside, axis=1)].reshape(2, 3)
        probes = []
        for (brow, socket, cheek), side in zip(front, (-1, 1), strict=True):
            plane = cheek + (brow - cheek) * (heights[1] - heights[2]) / (heights[0] - heights[2])
            assert 0.006 <= brow - socket <= 0.012, (name, side, brow - socket)
            assert plane - socket > 0.003, (name, side)
            probes.append([0.032 * side, heights[1], 0.5 * (socket + plane)])
        # a point in front of the socket floor but behind the brow-cheek line is outside the head
        assert not inside_mesh(_local(h, np.array(probes)), h.vertices, h.faces).any(), name


def test_nostrils_are_carved_under_the_nose(heads):
    h = heads["ben"]
    P = h.info["params"]["nose"]
    for s in (-1, 1):
        c = np.array(P["nostril_c"]) * [s, 1, 1] + [P["dx"], 0.0, 0.0]
        above = _local(h, c + [0.0, 0.002, 0.0])  # inside the nostril, 2 mm up from its centre
        beside = _local(h, c + [s * 0.009, 0.001, -0.004])  # the ala's wall beside it
        assert not inside_mesh(above[None], h.vertices, h.faces)[0]
        assert inside_mesh(beside[None], h.vertices, h.faces)[0]


def test_every_head_is_asymmetric_and_a_mirror_shows(heads):
    from recon.metrics import MeshDistance

    for name, h in heads.items():
        mirrored = h.vertices[::7] * [-1, 1, 1]
        d, _, _ = MeshDistance(h.vertices, h.faces, 3.0 / MM).query(mirrored)
        assert d.max() * MM > 3.0, name
        assert np.mean(d * MM > 1.0) > 0.01, name  # not one stray spot: a visible fraction of the surface


def test_region_labels_cover_every_region(heads):
    from recon.metrics import _sample_faces
    from recon.synth import REGIONS as HEAD_REGIONS

    assert HEAD_REGIONS == REGIONS  # the labellers and the metric agree on the order

    for name, h in [*heads.items(), ("procedural", procedural_head(1, voxel_m=0.006, target_faces=6000))]:
        pts, _, _ = _sample_faces(h.vertices, h.faces, 20_000, 0)
        labels = h.regions(pts)
        share = np.bincount(labels, minlength=len(REGIONS)) / len(labels)
        assert (share > 0.01).all(), (name, dict(zip(REGIONS, share.round(3), strict=True)))
    h = heads["cleo"]
    ear = _local(h, np.array(h.info["ears"][0]["root"]) + 0.02 * np.array(h.info["ears"][0]["u"]))
    nose_tip = _local(h, np.array(h.info["params"]["nose"]["tip"]) + [0, 0, 0.009])
    neck = _local(h, [0.0, -0.2, -0.012 - 0.05])
    assert list(h.regions(np.stack([ear, nose_tip, neck]))) == [1, 0, 4]


def test_product_views_are_the_rings_of_the_views_command():
    v24, v16 = product_views(24), product_views(16)
    assert [round(v.elevation_deg) for v in v24[::8]] == [0, 20, -15] and len(v24) == 24
    assert {v.elevation_deg for v in v16} == {0.0, 20.0}
    assert [v.azimuth_deg for v in v24[:8]] == [45.0 * k for k in range(8)]
    assert v24[0].is_input and sum(v.is_input for v in v24) == 1


def test_variants_round_trip_through_the_viewset_files(tmp_path):
    h = procedural_head(2, voxel_m=0.006, target_faces=6000)  # any head: this is about the files
    for variant, frame in (("clean", "world"), ("as_generated", "camera"), ("camera_normals", "camera")):
        vs = render_case(h, variant, 16, 32, seed=2)
        write_viewset(tmp_path / variant, vs)
        back = read_viewset(tmp_path / variant)
        assert len(back.frames) == 16 and {f.normal_frame for f in back.frames} == {frame}
        assert np.allclose(back.frames[3].c2w, look_at_c2w(camera_position(135.0, 0.0, 2.7)), atol=1e-6)


def test_renders_follow_the_pinhole_contract_independently_of_recon(heads):
    """Projected GT vertices (the contract's formula, numpy) bound the rendered mask to within a pixel."""
    h = heads["ada"]
    vs = render_viewset(h, [ViewSpec(0.0), ViewSpec(90.0), ViewSpec(200.0, 20.0), ViewSpec(300.0, -15.0)], size=96)
    for fr in vs.frames:
        pc = (h.vertices - fr.c2w[:3, 3]) @ fr.c2w[:3, :3]
        u = fr.cx + fr.fl_x * pc[:, 0] / -pc[:, 2]
        v = fr.cy - fr.fl_y * pc[:, 1] / -pc[:, 2]
        rows, cols = np.nonzero(fr.mask)
        inside = (v >= 0) & (v < fr.height)
        assert abs(cols.min() - u.min()) < 1.5 and abs(cols.max() + 1 - u.max()) < 1.5
        assert abs(rows.min() - v[inside].min()) < 1.5


def test_as_generated_drifts_exposure_and_white_balance_per_view(heads):
    h = heads["ben"]
    assert Perturbation() == Perturbation(3.0, 0.02, 1, 0.05, 1.0, True, 0.015, 8.0, 0.0, 0.0)  # unchanged default
    gen = Perturbation.as_generated()
    assert gen.camera_jitter_deg == 1.5 and 2.0 <= gen.shape_noise_mm <= 3.0 and gen.white_balance > 0
    only_colour = Perturbation(**{**Perturbation.none().__dict__, "brightness": gen.brightness,
                                  "white_balance": gen.white_balance})
    views = product_views(16)[::2]
    clean = render_viewset(h, views, size=48)
    drift = render_viewset(h, views, size=48, perturb=only_colour, seed=5)
    gains = np.array(drift.generation["perturbation"]["gains"])
    spread = []
    for a, b, g in zip(clean.frames, drift.frames, gains, strict=True):
        m = a.mask & (a.rgb.max(-1) < 230)
        ratio = (b.rgb[m].astype(float).mean(0)) / a.rgb[m].astype(float).mean(0)
        assert np.allclose(ratio, g, atol=0.01)  # every channel moved by its own gain
        assert (b.rgb[(a.rgb == 255).all(-1)] == 255).all()  # the background stays white
        spread.append(ratio.max() - ratio.min())
    assert np.mean(np.array(spread) > 0.02) >= 0.5  # white balance, not just exposure
    assert gains.std(0).min() > 0.01  # and it drifts from view to view


def test_shape_disagreement_is_smooth_bounded_and_differs_between_views(heads):
    h = heads["cleo"]
    amp = 2.5 / MM
    f0 = shape_field(h.vertices, np.random.default_rng([0, 0, 12]), amp, 150.0 / MM)
    f1 = shape_field(h.vertices, np.random.default_rng([0, 1, 12]), amp, 150.0 / MM)
    assert np.abs(f0).max() <= amp * (1 + 1e-9) and np.abs(f0 - f1).max() > 0.5 * amp
    from scipy.spatial import cKDTree

    i, j = np.array(list(cKDTree(h.vertices).query_pairs(5.0 / MM, output_type="ndarray")))[:20000].T
    assert np.abs(f0[i] - f0[j]).max() * MM < 0.4  # low frequency: < 0.4 mm change over 5 mm
    # rendered: the silhouette moves, but by no more than the bound allows (2.5 mm ~ 1.8 px at 256 px)
    views = [ViewSpec(0.0), ViewSpec(90.0)]
    shape_only = Perturbation(**{**Perturbation.none().__dict__, "shape_noise_mm": 2.5})
    a = render_viewset(h, views, size=256)
    b = render_viewset(h, views, size=256, perturb=shape_only)
    from scipy import ndimage

    px_mm = 2.7 / focal_from_fov(256) * MM
    reach = int(np.ceil(2.5 / px_mm)) + 1
    moved = 0
    for fa, fb in zip(a.frames, b.frames, strict=True):
        diff = fa.mask ^ fb.mask
        edge = ndimage.binary_dilation(fa.mask, iterations=reach) & ~ndimage.binary_erosion(fa.mask, iterations=reach)
        assert not (diff & ~edge).any()
        moved += diff.sum()
    assert moved > 50


def _sphere(radius: float, subdivisions: int = 5):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices), np.asarray(m.faces)


def _band_labels(points: np.ndarray) -> np.ndarray:
    c = points[:, 2] / 0.1  # bands of z on a 0.1 sphere: uniform in z for area-uniform samples (Archimedes)
    return np.select([c > 0.6, c > 0.2, c > -0.2, c > -0.6], [0, 3, 1, 4], 2)


def test_metrics_closed_form_per_region_on_a_shifted_sphere():
    R, s = 0.1, 0.004  # metres (1 unit = 1000 mm here): recon = GT moved 4 mm toward +Z
    v, f = _sphere(R)
    m = evaluate_surface(v + [0, 0, s], f, v, f, _views(), 1000.0, labeller=_band_labels, count=40_000,
                         cap_band_mm=0.0)
    # completeness of a GT point at z = R c is | |p - s e_z| - R |; c is uniform over each band
    bands = {"face": (0.6, 1), "crown": (0.2, 0.6), "ears": (-0.2, 0.2), "neck": (-0.6, -0.2), "back": (-1, -0.6)}
    c = np.linspace(-1, 1, 200001)  # area-uniform samples are uniform in c on either sphere (Archimedes)
    gt_dist = np.abs(np.sqrt(R**2 - 2 * R * s * c + s**2) - R) * 1000  # GT point at z = R c -> recon sphere
    q = np.sqrt(R**2 + 2 * R * s * c + s**2)  # |recon point| for the recon point at z = R c + s
    rec_offset = (q - R) * 1000
    rec_band_c = (R * c + s) / q  # ...labelled through its nearest GT point, the radial one
    for name, (lo, hi) in bands.items():
        reg = m["regions"][name]
        assert reg["completeness_mm"] == pytest.approx(gt_dist[(c > lo) & (c < hi)].mean(), abs=0.05), name
        sel = (rec_band_c > lo) & (rec_band_c < hi)
        assert reg["signed_offset_mm"] == pytest.approx(rec_offset[sel].mean(), abs=0.05), name
        assert reg["accuracy_mm"] == pytest.approx(np.abs(rec_offset[sel]).mean(), abs=0.05), name
    c = np.linspace(-1, 1, 40001)
    d = np.abs(np.sqrt(R**2 - 2 * R * s * c + s**2) - R) * 1000
    assert m["completeness_mm"] == pytest.approx(d.mean(), abs=0.03)
    assert m["chamfer_l1_mm"] == pytest.approx(d.mean(), abs=0.05)
    assert m["recall@2.5mm"] == pytest.approx((d < 2.5).mean(), abs=0.01)
    assert m["fscore@5mm"] == 1.0 and m["signed_offset_mm"] == pytest.approx(rec_offset.mean(), abs=0.03)
    assert m["normal_consistency"] > 0.998


def test_metrics_concentric_spheres_inflation_and_visibility_crop():
    R = 0.1
    v, f = _sphere(R)
    grown = v * (R + 0.003) / R
    m = evaluate_surface(grown, f, v, f, _views(), 1000.0, labeller=_band_labels, count=20_000, cap_band_mm=0.0)
    assert m["chamfer_l1_mm"] == pytest.approx(3.0, abs=0.03) and m["signed_offset_mm"] == pytest.approx(3.0, abs=0.03)
    assert m["fscore@2.5mm"] < 0.01 and m["fscore@5mm"] == 1.0
    for reg in m["regions"].values():
        assert reg["signed_offset_mm"] == pytest.approx(3.0, abs=0.05)
    # one camera aimed above the sphere: its frame's lower edge is a plane n.p = h through the camera, and
    # the framed surface is the cap above it, (R - h) / 2R of the area (Archimedes); nothing below is asked for
    size = 64
    fl = focal_from_fov(size)
    top_view = [CameraView(look_at_c2w(camera_position(0.0, 0.0, 2.7), np.array([0.0, 0.4, 0.0])), fl, fl,
                           size / 2, size / 2, size, size)]
    e = np.arctan(0.4 / 2.7) - np.radians(18.837 / 2)  # the lower edge's elevation seen from the camera
    h = 2.7 * np.sin(e)
    low = h * np.cos(e) - np.sqrt(R**2 - h**2) * abs(np.sin(e))  # lowest point of the framed cap

    def cut(y: float):
        return f[(v[f][:, :, 1] > y).all(1)]

    whole = evaluate_surface(v, cut(low - 0.02), v, f, top_view, 1000.0, labeller=_band_labels, count=20_000,
                             cap_band_mm=0.0, crop="framed")
    assert whole["visible_y_min"] == pytest.approx(low, abs=0.002)
    assert whole["gt_visible_fraction"] == pytest.approx((R - h) / (2 * R), abs=0.01)
    assert whole["recall@2.5mm"] > 0.999 and whole["precision@2.5mm"] > 0.999 and whole["rec_below_dropped"] > 0
    # the occlusion-tested diagnostic: from one camera at distance D a sphere shows the cap z > R^2 / D
    from recon.metrics import _sample_faces

    pts, nrm, _ = _sample_faces(v, f, 40_000, 3)
    front = _views()[:1]
    seen = visible_mask(pts, front, normals=nrm, mm_per_unit=1000.0)
    exact = pts[:, 2] > R**2 / 2.7
    assert visible_mask(pts, top_view).mean() == pytest.approx((R - h) / (2 * R), abs=0.01)
    assert visible_mask(pts, front).all() and not (seen & ~exact).any() and (seen == exact).mean() > 0.95
    short = evaluate_surface(v, cut(low + 0.03), v, f, top_view, 1000.0, labeller=_band_labels, count=20_000,
                             cap_band_mm=0.0, crop="framed")
    assert short["recall@5mm"] < 0.9  # 30 mm of the framed surface missing
    assert short["precision@2.5mm"] > 0.999


def test_a_neck_cut_10mm_above_the_visible_neck_loses_completeness(heads):
    h = heads["cleo"]
    P = _person("cleo")
    views = _views()
    centre = np.array(h.info["centre_m"])
    y_vis = h.vertices[visible_mask(h.vertices, views), 1].min()

    def recon(y_cut_units: float):
        cut_m = y_cut_units * 0.4 + centre[1]
        v, f = mesh_sdf(lambda q: np.maximum(person_sdf(q, P), cut_m - q[:, 1]), (-0.13, -0.36, -0.19),
                        (0.13, 0.16, 0.17), 0.0025)
        return (v - centre) / 0.4, f[:, ::-1] if _volume(v, f) < 0 else f

    full_v, full_f = recon(y_vis - 0.03)  # cut 12 mm below what the views show: a complete recon
    high_v, high_f = recon(y_vis + 10.0 / MM)  # cut 10 mm above it
    good = evaluate_surface(full_v, full_f, h.vertices, h.faces, views, MM, labeller=h.regions, count=30_000,
                            crop="framed")
    bad = evaluate_surface(high_v, high_f, h.vertices, h.faces, views, MM, labeller=h.regions, count=30_000,
                           crop="framed")
    gn, bn = good["regions"]["neck"], bad["regions"]["neck"]
    assert gn["recall@2.5mm"] > 0.99 and gn["recall@5mm"] > 0.995 and good["rec_cap_dropped"] > 0
    # the visible neck surface more than 5 mm below the cut is lost: that share of the neck's GT samples
    from recon.metrics import _sample_faces

    pts, _, _ = _sample_faces(h.vertices, h.faces, 30_000, 0)
    neck = (h.regions(pts) == 4) & visible_mask(pts, views)
    y_cut = high_v[:, 1].min()
    lost = np.mean(pts[neck, 1] < y_cut - 5.0 / MM)
    assert lost > 0.02
    assert bn["recall@5mm"] == pytest.approx(1.0 - lost, abs=0.01)
    assert bn["recall@2.5mm"] < gn["recall@2.5mm"] - 0.04 and bn["completeness_mm"] > gn["completeness_mm"] + 0.2
    assert bad["fscore@5mm"] < good["fscore@5mm"]
    assert bad["regions"]["face"]["fscore@5mm"] > 0.99  # the loss is where the neck was cut
    # the earlier metric, cropped at the recon's own neck plane, cannot see it
    old = surface_metrics(high_v, high_f, h.vertices, h.faces, MM, y_cut, count=20_000)
    assert old["regions"]["neck"]["fscore@5mm"] > 0.99


def test_shown_crop_ends_each_side_of_the_neck_where_the_views_stop_showing_it(heads):
    """The bar's crop: a long neck counts down to where some view shows it, side by side, not to where a
    view looking down past its front merely frames its back; and a recon that stops there loses nothing."""
    h = heads["cleo"]
    P = _person("cleo")
    views = _views()
    centre = np.array(h.info["centre_m"])
    shown = evaluate_surface(h.vertices, h.faces, h.vertices, h.faces, views, MM, labeller=h.regions, count=30_000)
    framed = evaluate_surface(h.vertices, h.faces, h.vertices, h.faces, views, MM, labeller=h.regions,
                              count=30_000, crop="framed", report_seen=False)
    assert shown["crop"] == "shown" and framed["crop"] == "framed"
    # the +20 deg views frame the back of the neck far below anything a camera shows of it
    assert framed["visible_y_min"] < shown["visible_y_min"] - 20.0 / MM
    assert shown["gt_visible_fraction"] < framed["gt_visible_fraction"]
    for m in (shown, framed):  # the GT against itself is perfect under either crop
        assert m["fscore@2.5mm"] > 0.999 and m["chamfer_l1_mm"] < 0.05

    # a recon whose flat neck cut is where the views stop showing the neck on its lowest side
    cut_m = shown["visible_y_min"] * 0.4 + centre[1]
    v, f = mesh_sdf(lambda q: np.maximum(person_sdf(q, P), cut_m - q[:, 1]), (-0.13, -0.36, -0.19),
                    (0.13, 0.16, 0.17), 0.0025)
    v, f = (v - centre) / 0.4, (f[:, ::-1] if _volume(v, f) < 0 else f)
    ok = evaluate_surface(v, f, h.vertices, h.faces, views, MM, labeller=h.regions, count=30_000)
    strict = evaluate_surface(v, f, h.vertices, h.faces, views, MM, labeller=h.regions, count=30_000, crop="framed",
                              report_seen=False)
    assert ok["regions"]["neck"]["recall@5mm"] > 0.97
    assert strict["regions"]["neck"]["recall@5mm"] < ok["regions"]["neck"]["recall@5mm"] - 0.05


def test_simplification_meets_its_face_budget_on_a_head_with_thin_ears(heads):
    """fast_simplification's default schedule pinched non-manifold edges on heads with ears, and simplify()
    then silently returned the undecimated mesh (150k faces for a 30k target); a gentler one keeps the budget."""
    from recon.hull import simplify
    from recon.mesh_ops import edge_manifold_report

    head = heads["ben"]
    v, f = simplify(np.asarray(head.vertices), np.asarray(head.faces), 30_000)
    assert 27_000 <= len(f) <= 33_000, len(f)
    rep = edge_manifold_report(f)
    assert rep["boundary_edges"] == rep["nonmanifold_edges"] == rep["misoriented_edges"] == 0


def test_every_named_head_has_a_solid_skull_two_ears_and_space_around():
    """Each named head's parameters (new ones included) give a solid skull and empty space around; names are exact."""
    from recon.synth.people import HELD_OUT, PEOPLE, TUNED_ON

    for name in PEOPLE + TUNED_ON + HELD_OUT:
        P = _person(name)
        assert P["name"] == name and sorted(e["side"] for e in P["ears"]) == [-1, 1]
        centre_out = np.array([[0.0, 0.03, -0.01], [0.0, 0.4, 0.0], [0.3, 0.0, 0.0]])
        d = person_sdf(centre_out, P)
        assert d[0] < -0.03 and d[1] > 0.1 and d[2] > 0.1, (name, d)  # inside the skull; far above; far aside
    with pytest.raises(KeyError, match="unknown head 'zed'"):
        _person("zed")
