"""Per-vertex normals and tangents, and welding of UV-seam duplicates.

A HeadMesh duplicates a vertex wherever a UV seam passes (one copy per chart). Normals are
accumulated over the *welded* surface so seams do not show as shading creases; tangents are
accumulated per UV vertex because each chart has its own UV orientation.
"""

from __future__ import annotations

import numpy as np


def weld(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with bit-identical positions; returns (positions (K, 3), index (N,) into them)."""
    positions, index = np.unique(np.asarray(vertices), axis=0, return_inverse=True)
    return positions, index.reshape(-1)


def _normalize(x: np.ndarray, eps: float = 1e-20) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the last axis and a mask of the rows that were long enough to normalise."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    ok = norm[..., 0] > eps
    return np.where(norm > eps, x / np.maximum(norm, eps), 0.0), ok


def _scatter_add(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, values.shape[1]), np.float64)
    for c in range(values.shape[1]):
        out[:, c] = np.bincount(index, weights=values[:, c], minlength=n)
    return out


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals: cross(e1, e2) has length 2 x area (counter-clockwise = outward)."""
    p = np.asarray(vertices, np.float64)[faces]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals, shared by all seam copies of a position.

    A vertex whose faces all have zero area gets +Z (the glTF view direction), so every normal is
    unit length, as the glTF validator demands.
    """
    positions, index = weld(vertices)
    fn = face_normals(vertices, faces)
    corners = index[faces].reshape(-1)
    acc = _scatter_add(corners, np.repeat(fn, 3, axis=0), positions.shape[0])
    n, ok = _normalize(acc)
    n[~ok] = (0.0, 0.0, 1.0)
    return n[index].astype(np.float32)


def _any_perpendicular(n: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each unit vector in n."""
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t, _ = _normalize(np.cross(n, helper))
    return t


def vertex_tangents(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """glTF TANGENT (N, 4): xyz unit, orthogonal to the normal, along +u; w = ±1 gives the bitangent.

    Per triangle (MikkTSpace-like accumulation, weighted by 3D area), with UVs in the v-up
    convention so that bitangent = w * cross(normal, tangent) points toward +v, i.e. up the image:
    the glTF normal-texture convention (+Y up).

        dP1 = P1 - P0,  dP2 = P2 - P0,  (du1, dv1), (du2, dv2) the UV edges
        r   = du1 * dv2 - du2 * dv1
        T   = (dP1 * dv2 - dP2 * dv1) / r        (dP/du)
        B   = (dP2 * du1 - dP1 * du2) / r        (dP/dv)
    """
    p = np.asarray(vertices, np.float64)[faces]
    t = np.asarray(uv, np.float64)[faces]
    dp1, dp2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    duv1, duv2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    r = duv1[:, 0] * duv2[:, 1] - duv2[:, 0] * duv1[:, 1]
    valid = np.abs(r) > 1e-14
    r_safe = np.where(valid, r, 1.0)[:, None]
    tangent = (dp1 * duv2[:, 1:2] - dp2 * duv1[:, 1:2]) / r_safe
    bitangent = (dp2 * duv1[:, 0:1] - dp1 * duv2[:, 0:1]) / r_safe
    area = 0.5 * np.linalg.norm(np.cross(dp1, dp2), axis=1)
    weight = np.where(valid, area, 0.0)[:, None]
    tangent, _ = _normalize(tangent)
    bitangent, _ = _normalize(bitangent)
    n_vertices = len(vertices)
    corners = faces.reshape(-1)
    t_acc = _scatter_add(corners, np.repeat(tangent * weight, 3, axis=0), n_vertices)
    b_acc = _scatter_add(corners, np.repeat(bitangent * weight, 3, axis=0), n_vertices)

    n = np.asarray(normals, np.float64)
    # Gram-Schmidt: T' = T - N (N . T)
    t_orth = t_acc - n * np.sum(n * t_acc, axis=1, keepdims=True)
    t_unit, ok = _normalize(t_orth)
    # No usable UV gradient (degenerate UVs): fall back to the bitangent's frame, then to any perpendicular.
    from_b, ok_b = _normalize(np.cross(b_acc, n))
    t_unit = np.where(ok[:, None], t_unit, np.where(ok_b[:, None], from_b, _any_perpendicular(n)))
    w = np.where(np.sum(np.cross(n, t_unit) * b_acc, axis=1) < 0.0, -1.0, 1.0)
    return np.concatenate([t_unit, w[:, None]], axis=1).astype(np.float32)


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def closest_points_on_triangles(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point on each triangle to each point; points (Q, 3), triangles (Q, 3, 3).

    Returns (squared distance (Q,), barycentric coordinates (Q, 3)). The point is projected on the
    triangle's plane; if the projection falls outside, the nearest of the three edge segments wins.
    """
    q = np.asarray(points, np.float64)
    a, b, c = (np.asarray(triangles, np.float64)[:, i] for i in range(3))
    ab, ac, aq = b - a, c - a, q - a
    d00 = _dot(ab, ab)
    d01 = _dot(ab, ac)
    d11 = _dot(ac, ac)
    d20 = _dot(aq, ab)
    d21 = _dot(aq, ac)
    denom = d00 * d11 - d01 * d01
    ok = denom > 1e-30
    denom = np.where(ok, denom, 1.0)
    beta = (d11 * d20 - d01 * d21) / denom
    gamma = (d00 * d21 - d01 * d20) / denom
    inside = ok & (beta >= 0) & (gamma >= 0) & (beta + gamma <= 1)
    bary = np.stack([1 - beta - gamma, beta, gamma], axis=1)
    proj = a + beta[:, None] * ab + gamma[:, None] * ac
    diff = q - proj
    best_d = np.where(inside, _dot(diff, diff), np.inf)
    best_bary = np.where(inside[:, None], bary, 0.0)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        p0 = (a, b, c)[i]
        e = (a, b, c)[j] - p0
        ee = _dot(e, e)
        s = np.clip(_dot(q - p0, e) / np.where(ee > 0, ee, 1.0), 0.0, 1.0)
        diff = q - (p0 + s[:, None] * e)
        d = _dot(diff, diff)
        better = d < best_d
        edge_bary = np.zeros_like(bary)
        edge_bary[:, i] = 1 - s
        edge_bary[:, j] = s
        best_d = np.where(better, d, best_d)
        best_bary = np.where(better[:, None], edge_bary, best_bary)
    return best_d, best_bary


def _winding_key(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted corner ids per face, +1/-1 winding relative to the sorted order)."""
    order = np.argsort(faces, axis=1, kind="stable")
    # an even permutation of the sorted corners keeps the winding, an odd one flips it
    even = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    is_even = (order[:, None, :] == even[None]).all(axis=2).any(axis=1)
    return np.take_along_axis(faces, order, axis=1), np.where(is_even, 1, -1)


def clean_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Indices of the faces to keep: no zero-area corner repeats and no two faces on the same three positions.

    Works on positions, not indices, because that is what a glTF reader (and Blender, which deletes such
    faces on import) sees: UV-seam copies of a vertex are one point. Plain copies (same winding) keep one.
    Of a back-to-back pair, the face whose edges continue the surrounding surface (neighbours run them the
    other way) survives; a pair that nothing orients - a zero-volume fin or pillow, which renders as a
    spike - is dropped entirely.
    """
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        return np.zeros(0, np.int64)
    _, pid = weld(vertices)
    f = pid[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    keep = np.flatnonzero(ok)
    f = f[keep]
    key, winding = _winding_key(f)
    _, group, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    shared = counts[group] > 1
    if not shared.any():
        return keep
    n = int(pid.max()) + 1
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    codes, edge_counts = np.unique(directed[:, 0] * n + directed[:, 1], return_counts=True)

    def uses(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        code = a * n + b
        at = np.clip(np.searchsorted(codes, code), 0, len(codes) - 1)
        return np.where(codes[at] == code, edge_counts[at], 0)

    drop = np.zeros(len(f), bool)
    for g in np.unique(group[shared]):
        members = np.flatnonzero(group == g)
        tri = f[members[0]]
        signs = winding[members]
        fwd, back = int((signs == signs[0]).sum()), int((signs != signs[0]).sum())
        # directed-edge uses by faces outside the group: the group's own faces use each edge fwd/back times
        a, b = tri, np.roll(tri, -1)
        same = uses(a, b) - fwd
        other = uses(b, a) - back
        score = int((other - same).sum())  # > 0: the surroundings continue tri's winding (they run b -> a)
        drop[members] = True
        if back == 0 or score > 0:  # plain copies keep one; a pair keeps the side its surroundings agree with
            drop[members[0]] = False
        elif score < 0:
            drop[members[signs != signs[0]][0]] = False
    return keep[~drop]


def compact(vertices: np.ndarray, faces: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop the vertices no face uses; returns (vertices, faces, *arrays) with the same rows removed."""
    faces = np.asarray(faces, np.int64)
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return (np.asarray(vertices)[used], remap[faces], *(np.asarray(a)[used] for a in arrays))
