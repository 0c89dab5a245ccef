"""Issue 15 item 2: no back-to-back duplicate or zero-area triangles in any LOD, and report.json's counts
equal what an independent glTF reader (pygltflib) finds in each file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_helpers import decode_glb

from exporters import ExportConfig, export_asset
from exporters.geometry import clean_faces
from exporters.lod import LodMesh, clean_lod, decimate
from exporters.sample import procedural_head
from spin_io.headmesh import HeadMesh


def position_duplicates(vertices: np.ndarray, faces: np.ndarray) -> tuple[int, int]:
    """(faces beyond the first on the same three positions, any winding; faces with repeated positions)."""
    _, pid = np.unique(np.asarray(vertices)[np.asarray(faces)].reshape(-1, 3), axis=0, return_inverse=True)
    key = np.sort(pid.reshape(-1, 3), axis=1)
    _, counts = np.unique(key, axis=0, return_counts=True)
    degenerate = (key[:, 0] == key[:, 1]) | (key[:, 1] == key[:, 2])
    return int((counts - 1).sum()), int(degenerate.sum())


def glb_triangles(data: bytes) -> np.ndarray:
    """All triangles of a GLB as (T, 3, 3) positions, read with pygltflib."""
    prims = decode_glb(data)["primitives"]
    return np.concatenate([p["POSITION"][p["indices"]] for p in prims])


def test_position_duplicates_measure_can_fail():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    assert position_duplicates(v, np.array([[0, 1, 2], [3, 2, 1]])) == (1, 0)  # seam copy, opposite winding
    assert position_duplicates(v, np.array([[0, 1, 3]])) == (0, 1)


# ---- clean_faces -------------------------------------------------------------------------------------------


def _square():
    """Two triangles of a unit square (0-1-2, 0-2-3) counter-clockwise seen from +Z."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_fins_and_pillows_are_dropped_entirely():
    v, f = _square()
    fin = np.array([[0, 2, 4], [4, 2, 0]])  # a zero-volume fin on the diagonal, which both square faces use
    assert clean_faces(v, np.concatenate([f, fin])).tolist() == [0, 1]
    v = np.concatenate([v, v + 5.0])
    pillow = np.array([[5, 6, 7], [7, 6, 5]])  # a two-face closed component, nothing around it
    assert clean_faces(v, np.concatenate([f, pillow, fin])).tolist() == [0, 1]


def test_pair_closing_an_open_edge_keeps_the_face_that_continues_the_surface():
    v, f = _square()
    # edge 1-2 is open (only square face 0 uses it, running 1 -> 2): the face continuing the surface runs 2 -> 1
    faces = np.concatenate([f, [[2, 1, 4], [1, 2, 4]]])
    assert clean_faces(v, faces).tolist() == [0, 1, 2]
    faces = np.concatenate([f, [[1, 2, 4], [2, 1, 4]]])
    assert clean_faces(v, faces).tolist() == [0, 1, 3]


def test_plain_copies_keep_one_and_zero_area_faces_go():
    v, f = _square()
    v = np.concatenate([v, v[:1]])  # vertex 5: a UV-seam copy of vertex 0 (same position)
    faces = np.concatenate([f, [[5, 1, 2], [0, 5, 1]]])  # same triangle as face 0 via the copy; a zero-area face
    assert clean_faces(v, faces).tolist() == [0, 1]


def test_clean_lod_drops_unused_vertices_and_keeps_uvs_aligned():
    v, f = _square()
    uv = v[:, :2].copy()
    lod = LodMesh(v, np.concatenate([f, [[0, 2, 4], [4, 2, 0]]]), uv, budget=4, decimated=True)
    out = clean_lod(lod)
    assert len(out.faces) == 2 and len(out.vertices) == 4  # vertex 4 was used only by the pillow
    np.testing.assert_array_equal(out.uv, out.vertices[:, :2])


# ---- at the source: decimation ------------------------------------------------------------------------------


def test_decimation_leaves_no_back_to_back_pairs():
    """recon.synth's procedural head 1 (ears: thin parts), 800 triangles: fast-simplification alone leaves a
    back-to-back pair (measured: 1), the exporter's decimate none."""
    import fast_simplification

    from exporters.geometry import weld
    from recon.synth import procedural_head as gt_head

    head = gt_head(1, voxel_m=0.004, target_faces=6_000)
    vertices, faces = np.asarray(head.vertices, np.float32), np.asarray(head.faces, np.int64)
    positions, index = weld(vertices)
    raw_p, raw_f = fast_simplification.simplify(positions, index[faces], target_count=800)
    assert position_duplicates(raw_p, raw_f)[0] >= 1, "premise: the raw simplifier makes a pair on this head"
    p, f = decimate(vertices, faces, 800)
    assert position_duplicates(p, f) == (0, 0)
    assert 700 <= len(f) <= 800


def test_decimate_cleans_whatever_the_simplifier_returns(monkeypatch):
    """However the pairs arise, decimate's output has none (the simplifier is made to return one)."""
    import fast_simplification

    real = fast_simplification.simplify

    def with_pillow(points, triangles, target_count, **kwargs):
        p, f = real(points, triangles, target_count=target_count, **kwargs)
        return p, np.concatenate([f, f[:1, ::-1]])  # face 0 again, back to back

    monkeypatch.setattr(fast_simplification, "simplify", with_pillow)
    head = procedural_head(n_lat=24, n_lon=48, texture_size=64)
    p, f = decimate(head.vertices, head.faces, 600)
    assert position_duplicates(p, f) == (0, 0) and len(f) <= 600


# ---- end to end: files and report agree ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doubled(tmp_path_factory):
    """A head whose source mesh carries a back-to-back pair via a seam copy, and an exact copy of a face."""
    head = procedural_head(n_lat=24, n_lon=48, texture_size=64)
    v, f, uv = head.vertices, np.asarray(head.faces, np.int64), head.uv
    a = f[100]
    copy = len(v)
    v = np.concatenate([v, v[a[:1]]])
    uv = np.concatenate([uv, uv[a[:1]]])
    extra = np.array([[copy, a[2], a[1]], f[200]])  # face 100 reversed through a copy of its first corner; face 200
    bad = HeadMesh(v, np.concatenate([f, extra]).astype(np.int32), uv, head.albedo, None, {})
    assert position_duplicates(bad.vertices, bad.faces)[0] == 2
    out = tmp_path_factory.mktemp("dup") / "asset"
    return export_asset(bad, out, ExportConfig(lod_budgets=(5_000, 1_200, 400), preview=False, validate=False))


def test_every_lod_is_free_of_duplicates_and_counts_match_a_reader(doubled):
    report = json.loads(doubled.files["report"].read_text())
    assert report["lods"][0]["decimated"] is False  # the source itself, so its pair must be removed on input
    for entry in report["lods"]:
        data = (doubled.asset_dir / entry["file"]).read_bytes()
        tris = glb_triangles(data)
        assert position_duplicates(tris.reshape(-1, 3), np.arange(tris.shape[0] * 3).reshape(-1, 3)) == (0, 0)
        assert entry["triangles"] == len(tris)
        assert entry["vertices"] == sum(len(p["POSITION"]) for p in decode_glb(data)["primitives"])
    assert report["source"]["dropped_duplicate_faces"] == 2  # the pair keeps the surface's side; one copy goes


def test_trimesh_counts_the_same_triangles(doubled):
    trimesh = pytest.importorskip("trimesh")
    for entry in doubled.report["lods"]:
        scene = trimesh.load(doubled.asset_dir / entry["file"], process=False)
        assert sum(len(g.faces) for g in scene.geometry.values()) == entry["triangles"]
