"""GLB round trips through independent readers (pygltflib, trimesh): geometry, V flip, material, tangents, split."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import QUADRANTS, decode_glb, grid_mesh, quad_mesh, sample_gltf_texture

from exporters import ExportConfig, export_asset
from exporters.geometry import vertex_normals, vertex_tangents
from exporters.split import MAX_PRIMITIVE_VERTICES


@pytest.fixture(scope="module")
def quad_asset(tmp_path_factory):
    out = tmp_path_factory.mktemp("quad") / "asset"
    config = ExportConfig(lod_budgets=(100,), roughness=0.35, preview=False, roughness_map=False)
    result = export_asset(quad_mesh(normal_map=True), out, config)
    return result, decode_glb((out / "head.glb").read_bytes())


def test_round_trip_geometry_is_exact_and_keeps_winding(quad_asset):
    _, glb = quad_asset
    src = quad_mesh()
    (prim,) = glb["primitives"]
    # Corner positions of every decoded triangle equal the source triangles, in order: no reorientation.
    np.testing.assert_array_equal(prim["POSITION"][prim["indices"]], src.vertices[src.faces])
    assert prim["position_min"] == pytest.approx(src.vertices.min(0).tolist())
    assert prim["position_max"] == pytest.approx(src.vertices.max(0).tolist())
    assert prim["index_dtype"] is np.uint16


def test_texture_is_upright_on_the_surface_after_v_flip(quad_asset):
    """The quad's upper-left 3D quarter (x < 0, y > 0) must show the image's top-left quadrant, etc."""
    _, glb = quad_asset
    (prim,) = glb["primitives"]
    image = glb["images"][0]
    pos, tex, tri = prim["POSITION"].astype(np.float64), prim["TEXCOORD_0"].astype(np.float64), prim["indices"]
    probes = {
        "top_left": (-0.025, 0.025),
        "top_right": (0.025, 0.025),
        "bottom_left": (-0.025, -0.025),
        "bottom_right": (0.025, -0.025),
    }
    for name, (x, y) in probes.items():
        # Find the triangle holding (x, y) and interpolate the decoded texcoords there.
        for face in tri:
            a, b, c = pos[face][:, :2]
            m = np.array([b - a, c - a]).T
            beta, gamma = np.linalg.solve(m, np.array([x, y]) - a)
            if beta >= 0 and gamma >= 0 and beta + gamma <= 1:
                texcoord = (1 - beta - gamma) * tex[face[0]] + beta * tex[face[1]] + gamma * tex[face[2]]
                break
        colour = sample_gltf_texture(image, texcoord[None])[0]
        assert tuple(colour) == QUADRANTS[name], name


def test_trimesh_reads_back_source_uvs_and_texture(quad_asset):
    import trimesh

    result, _ = quad_asset
    scene = trimesh.load(result.files["lod0"], force="scene", process=False)
    (mesh,) = scene.geometry.values()
    src = quad_mesh()
    np.testing.assert_allclose(mesh.vertices, src.vertices, atol=0)
    np.testing.assert_allclose(mesh.visual.uv, src.uv, atol=1e-7)  # trimesh undoes glTF's V flip
    np.testing.assert_array_equal(np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")), src.albedo)


def test_material_node_and_extras(quad_asset):
    """Without a roughness map the factor is the setting and there is no metallicRoughnessTexture."""
    _, glb = quad_asset
    gltf = glb["gltf"]
    assert len(gltf.meshes) == 1 and len(gltf.materials) == 1 and len(gltf.nodes) == 1
    node = gltf.nodes[0]
    assert node.matrix is None and node.translation is None and node.rotation is None and node.scale is None
    material = gltf.materials[0]
    assert material.pbrMetallicRoughness.metallicFactor == 0.0
    assert material.pbrMetallicRoughness.roughnessFactor == pytest.approx(0.35)
    assert material.pbrMetallicRoughness.baseColorTexture.index == 0
    assert material.normalTexture.index == 1
    assert material.pbrMetallicRoughness.metallicRoughnessTexture is None
    assert gltf.asset.extras["generator"] == "spin-to-mesh" and gltf.asset.extras["schema_version"] == 1
    assert gltf.asset.extras["units"] == "metres"
    assert [im.mimeType for im in gltf.images] == ["image/png", "image/png"]


def test_normals_and_tangents_are_unit_and_follow_gltf_convention(quad_asset):
    _, glb = quad_asset
    (prim,) = glb["primitives"]
    np.testing.assert_allclose(prim["NORMAL"], [[0, 0, 1]] * 4, atol=1e-6)
    # u runs along +X and v (up the image) along +Y: tangent +X, bitangent = w * cross(N, T) = +Y, so w = +1.
    np.testing.assert_allclose(prim["TANGENT"], [[1, 0, 0, 1]] * 4, atol=1e-6)


def test_tangent_handedness_flips_with_mirrored_uvs():
    q = quad_mesh()
    mirrored_uv = q.uv.copy()
    mirrored_uv[:, 0] = 1 - mirrored_uv[:, 0]  # u now runs along -X: a mirrored chart
    normals = vertex_normals(q.vertices, q.faces)
    t = vertex_tangents(q.vertices, q.faces.astype(np.int64), mirrored_uv, normals)
    np.testing.assert_allclose(t, [[-1, 0, 0, -1]] * 4, atol=1e-6)


def test_no_tangents_without_normal_map(tmp_path):
    export_asset(quad_mesh(), tmp_path / "a", ExportConfig(lod_budgets=(100,), preview=False))
    (prim,) = decode_glb((tmp_path / "a" / "head.glb").read_bytes())["primitives"]
    assert prim["TANGENT"] is None


def test_mesh_over_65534_vertices_is_split_into_primitives_of_one_mesh(tmp_path):
    grid = grid_mesh(262)  # 68,644 vertices, 136,242 triangles
    assert len(grid.vertices) > MAX_PRIMITIVE_VERTICES
    result = export_asset(grid, tmp_path / "a", ExportConfig(lod_budgets=(200_000,), preview=False))
    glb = decode_glb(result.files["lod0"].read_bytes())
    prims = glb["primitives"]
    assert len(prims) >= 2 and len(glb["gltf"].meshes) == 1
    assert {p["material"] for p in prims} == {0}
    assert all(len(p["POSITION"]) <= MAX_PRIMITIVE_VERTICES and p["index_dtype"] is np.uint16 for p in prims)
    triangles = np.concatenate([p["POSITION"][p["indices"]] for p in prims]).reshape(-1, 9)
    expected = grid.vertices[grid.faces].reshape(-1, 9)
    # Nothing lost or added, each triangle's winding kept (faces are reordered into compact patches).
    np.testing.assert_array_equal(np.unique(triangles, axis=0), np.unique(expected, axis=0))
    assert len(triangles) == len(expected)
    lod = result.report["lods"][0]
    assert lod["primitives"] == len(prims) and lod["triangles"] == len(grid.faces)
    # Only vertices on the cuts between primitives are duplicated.
    assert len(grid.vertices) < lod["vertices"] < 1.02 * len(grid.vertices)
