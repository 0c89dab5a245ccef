"""Normal fusion's linear algebra: the Laplacian's layout and the Gauss-Newton operator CG solves with."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from recon.fusion import _normal_system
from recon.mesh_ops import laplacian_matrix, transposed, unique_edges


def _mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """An icosphere with one vertex pulled out: vertex degrees 5 and 6, edge lengths uneven."""
    m = trimesh.creation.icosphere(subdivisions=2)
    v = np.array(m.vertices)
    v[0] *= 1.3
    return torch.tensor(v, dtype=torch.float32), torch.tensor(m.faces, dtype=torch.long)


def test_laplacian_is_csr_and_its_rows_are_neighbour_means_minus_the_vertex():
    x, faces = _mesh()
    L = laplacian_matrix(len(x), unique_edges(faces))
    assert L.layout == torch.sparse_csr
    dense = L.to_dense()
    assert torch.allclose(dense.sum(1), torch.zeros(len(x)), atol=1e-6)  # constants are in its null space
    i = 7
    nbrs = torch.unique(faces[(faces == i).any(1)])
    nbrs = nbrs[nbrs != i]
    assert torch.allclose(torch.sparse.mm(L, x)[i], x[nbrs].mean(0) - x[i], atol=1e-6)
    assert torch.equal(transposed(L).to_dense(), dense.T)
    assert not torch.allclose(dense, dense.T)  # degrees differ: L is not symmetric, so |L x|^2 needs L^T L


def test_gauss_newton_operator_is_symmetric_positive_definite():
    """CG assumes <u, A v> = <A u, v> and <v, A v> > 0; with L L instead of L^T L the first failed."""
    x, faces = _mesh()
    gen = torch.Generator().manual_seed(0)
    F, N = len(faces), len(x)
    L = laplacian_matrix(N, unique_edges(faces))
    ia = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2]])
    ib = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0]])
    t = torch.nn.functional.normalize(torch.randn(F, 3, generator=gen), dim=-1)
    t_e = torch.cat([t, t, t])
    w_e = torch.rand(3 * F, generator=gen) + 0.1
    pi = torch.randint(0, N, (40,), generator=gen)
    g = torch.randn(40, 3, generator=gen)
    free = torch.ones(N, 3)
    free[:5, 1] = 0  # the neck cap's vertices keep their height
    apply_A = _normal_system(ia, ib, t_e, w_e, 0.01, g, pi, 1e-3, 5.0, L, transposed(L), free)
    u, v = torch.randn(N, 3, generator=gen), torch.randn(N, 3, generator=gen)
    uAv = (u * apply_A(v)).sum()
    Auv = (apply_A(u) * v).sum()
    assert abs(float(uAv - Auv)) < 1e-4 * float(uAv.abs() + Auv.abs())
    assert float((v * free * apply_A(v)).sum()) > 0
    # the operator as it was (L L) is not symmetric on this mesh
    old = _normal_system(ia, ib, t_e, w_e, 0.01, g, pi, 1e-3, 5.0, L, L, free)
    assert abs(float((u * old(v)).sum() - (old(u) * v).sum())) > 1e-3 * float((u * old(v)).sum().abs())


def test_square_rim_meets_the_neck_cap_square_and_leaves_the_wall_in_place():
    """Marching cubes bevels the corner between the neck's wall and its cap by a voxel; the collar of faces that
    touch the cap then points down (median |n_y| 0.44 here) and takes the normals of the GT's straight neck badly.
    With `square_rim` the collar targets its own normal turned level: it stands upright, and the wall stays put.
    """
    from recon.cameras import Cameras
    from recon.fusion import FusionConfig, refine
    from recon.hull import extract_surface, hull_grid
    from recon.mesh_ops import face_normals
    from recon.raster import TorchRasterizer, rasterize_views
    from spin_io.viewset import camera_position, focal_from_fov, look_at_c2w

    size, dist, radius = 64, 2.7, 0.3
    pos = [camera_position(a, e, dist) for e in (0, 20) for a in range(0, 360, 45)]
    c2w = torch.tensor(np.stack([look_at_c2w(p) for p in pos]), dtype=torch.float32)
    n, f = len(pos), focal_from_fov(size)
    cams = Cameras(c2w, torch.full((n,), f), torch.full((n,), f), torch.full((n,), size / 2),
                   torch.full((n,), size / 2), size, size)
    neck = trimesh.creation.cylinder(radius=radius, height=3.0, sections=96)  # runs out of every frame's bottom
    neck.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    neck.apply_translation([0, -0.9, 0])
    top = trimesh.creation.icosphere(3, radius=radius)
    top.apply_translation([0, 0.6, 0])
    gt = trimesh.util.concatenate([neck, top])
    gv, gf = torch.tensor(gt.vertices, dtype=torch.float32), torch.tensor(gt.faces)
    frags = rasterize_views(TorchRasterizer(), cams, gv, gf)
    normals = torch.zeros(n, size, size, 3)
    for i, fr in enumerate(frags):
        normals[i][fr.covered] = face_normals(gv, gf)[fr.face_id[fr.covered]]
    masks = torch.stack([fr.covered.float() for fr in frags])
    grid = hull_grid(cams, masks, voxel=0.04)
    v, faces = extract_surface(grid)
    v, faces = torch.tensor(v, dtype=torch.float32), torch.tensor(faces)

    def collar_and_wall(x: torch.Tensor) -> tuple[float, float]:
        cap = (x[:, 1] - grid.y_cut).abs() < 1e-6
        collar = cap[faces].any(1) & ~cap[faces].all(1)
        wall = ~cap & (x[:, 1] < grid.y_cut + 0.1)
        return (float(face_normals(x, faces)[collar][:, 1].abs().median()),
                float((torch.hypot(x[wall, 0], x[wall, 2]) - radius).abs().mean()))

    bevel, _ = collar_and_wall(v)
    square, wall_error = collar_and_wall(refine(v, faces, cams, normals, masks.numpy() > 0.5, grid.y_cut,
                                                FusionConfig(rounds=3, square_rim=True)))
    assert bevel > 0.3  # the corner as marching cubes leaves it
    assert square < 0.05
    assert wall_error < grid.voxel / 4  # 0.19 voxel here
