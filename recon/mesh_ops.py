"""Small mesh helpers in torch (normals, edges, Laplacian) and numpy (validity checks)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch


def face_normals(vertices: torch.Tensor, faces: torch.Tensor, unit: bool = True) -> torch.Tensor:
    """(F, 3) face normals (CCW = outward); unnormalised ones have length twice the area."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    n = torch.cross(b - a, c - a, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp(min=1e-20) if unit else n


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(N, 3) area-weighted unit vertex normals."""
    fn = face_normals(vertices, faces, unit=False)
    vn = torch.zeros_like(vertices)
    for k in range(3):
        vn.index_add_(0, faces[:, k], fn)
    return vn / vn.norm(dim=-1, keepdim=True).clamp(min=1e-20)


def unique_edges(faces: torch.Tensor) -> torch.Tensor:
    """(E, 2) undirected edges, smaller index first."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def uniform_laplacian(vertices: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(N, 3) umbrella Laplacian: mean of the neighbours minus the vertex."""
    n = vertices.shape[0]
    acc = torch.zeros_like(vertices)
    deg = torch.zeros(n, 1, dtype=vertices.dtype, device=vertices.device)
    ones = torch.ones(edges.shape[0], 1, dtype=vertices.dtype, device=vertices.device)
    acc.index_add_(0, edges[:, 0], vertices[edges[:, 1]])
    acc.index_add_(0, edges[:, 1], vertices[edges[:, 0]])
    deg.index_add_(0, edges[:, 0], ones)
    deg.index_add_(0, edges[:, 1], ones)
    return acc / deg.clamp(min=1) - vertices


def laplacian_matrix(n: int, edges: torch.Tensor) -> torch.Tensor:
    """Sparse (N, N) umbrella Laplacian L with (L x)_i = mean of the neighbours of i minus x_i.

    In CSR layout: its products with (N, 3) fields are about 20x faster than a COO matrix's on the CPU (the
    fusion's conjugate gradients multiply by it twice per step), with the same sums.
    """
    dev = edges.device
    i = torch.cat([edges[:, 0], edges[:, 1]])
    j = torch.cat([edges[:, 1], edges[:, 0]])
    deg = torch.zeros(n, device=dev).index_add_(0, i, torch.ones_like(i, dtype=torch.float32)).clamp(min=1)
    rows = torch.cat([i, torch.arange(n, device=dev)])
    cols = torch.cat([j, torch.arange(n, device=dev)])
    vals = torch.cat([1.0 / deg[i], -torch.ones(n, device=dev)])
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matrix products are all we use
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


def transposed(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose of a sparse CSR matrix, itself in CSR layout (fast products, as `laplacian_matrix`'s)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return matrix.t().to_sparse_csr()


def edge_manifold_report(faces: np.ndarray) -> dict:
    """Counts of boundary edges, edges shared by > 2 faces, and edges whose two faces disagree in orientation."""
    f = np.asarray(faces, np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    key = np.sort(directed, axis=1)
    uniq, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    forward = (directed[:, 0] < directed[:, 1]).astype(np.int64)
    fwd_count = np.bincount(inverse.ravel(), weights=forward, minlength=len(uniq))
    two = counts == 2
    return {
        "edges": int(len(uniq)),
        "boundary_edges": int((counts == 1).sum()),
        "nonmanifold_edges": int((counts > 2).sum()),
        "misoriented_edges": int((two & (fwd_count != 1)).sum()),
    }


def split_pinched_vertices(vertices: np.ndarray, faces: np.ndarray, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Give each fan of faces around a vertex its own copy of it; each copy moves `offset` into its own solid.

    Quadric decimation sometimes collapses the two sides of a narrow gap (behind an ear, under a fringe) onto
    one edge: four faces share it and the mesh is no longer edge-manifold. Faces around a vertex belong to one
    fan when they are linked through edges shared by exactly two faces; a pinched vertex has several fans.
    Splitting it separates the two sheets again; each copy moves against its fan's outward normal, since the
    outward normals of two pinched sheets point at each other (moving along them made the sheets cross).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    F = len(f)
    corner_a = np.concatenate([np.arange(F) * 3 + k for k in range(3)])  # corner of the half-edge's start
    corner_b = np.concatenate([np.arange(F) * 3 + (k + 1) % 3 for k in range(3)])  # ... and of its end
    start, end = f.reshape(-1)[corner_a], f.reshape(-1)[corner_b]
    key = np.minimum(start, end) * len(v) + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    k_sorted = key[order]
    first = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
    group = np.cumsum(first) - 1
    counts = np.bincount(group)
    two = np.nonzero(counts[group] == 2)[0]
    h1, h2 = order[two[::2]], order[two[1::2]]  # the two half-edges of each manifold edge
    same = start[h1] == end[h2]  # opposite half-edges: h1's start is h2's end
    ia = np.where(same, corner_b[h2], corner_a[h2])
    ib = np.where(same, corner_a[h2], corner_b[h2])
    links = np.concatenate([np.stack([corner_a[h1], ia], 1), np.stack([corner_b[h1], ib], 1)])
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(3 * F, 3 * F))
    _, fan = connected_components(graph, directed=False)
    owner = f.reshape(-1)
    pairs, idx = np.unique(np.stack([owner, fan], 1), axis=0, return_inverse=True)
    idx = idx.reshape(-1)
    copies = np.bincount(pairs[:, 0], minlength=len(v))
    if copies.max() <= 1:
        return v, f
    first_of_vertex = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    new_id = np.where(first_of_vertex, pairs[:, 0], len(v) + np.cumsum(~first_of_vertex) - 1)
    out_v = np.concatenate([v, v[pairs[~first_of_vertex, 0]]])
    out_f = new_id[idx].reshape(F, 3)
    pinched = copies[pairs[:, 0]] > 1
    fn = np.cross(out_v[out_f[:, 1]] - out_v[out_f[:, 0]], out_v[out_f[:, 2]] - out_v[out_f[:, 0]])
    fan_normal = np.zeros((len(pairs), 3))
    np.add.at(fan_normal, idx, np.repeat(fn, 3, axis=0))
    fan_normal /= np.maximum(np.linalg.norm(fan_normal, axis=1, keepdims=True), 1e-30)
    out_v[new_id[pinched]] -= offset * fan_normal[pinched]
    return out_v, out_f


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of pairs of faces (sharing no vertex) that cross each other."""
    return len(intersecting_face_pairs(vertices, faces))


def intersecting_face_pairs(
    vertices: np.ndarray, faces: np.ndarray, max_pairs: int = 20_000_000, only: np.ndarray | None = None
) -> np.ndarray:
    """(K, 2) pairs of faces that share no vertex and cross (an edge of one pierces the other).

    Candidate pairs come from a KD-tree on face centroids (two faces can only touch when their
    centroids are closer than the sum of their circumradii); each candidate is tested with a
    segment/triangle intersection in both directions. `only` (a face mask) restricts the result to
    pairs with at least one face in it: what a repair round that moved only those faces must re-test.
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    tri = v[f]
    centroid = tri.mean(1)
    radius = np.linalg.norm(tri - centroid[:, None], axis=2).max(1)
    tree = cKDTree(centroid)
    # typical faces pair up within twice a typical radius; the few large ones (a flat neck cap)
    # are queried one by one with their own radius
    r_small = 1.5 * float(np.median(radius))
    big = np.nonzero(radius > r_small)[0]
    if only is None:
        pairs = [tree.query_pairs(r=2 * r_small, output_type="ndarray").reshape(-1, 2)]
        pairs.append(_ball_pairs(tree, centroid[big], big, radius[big] + r_small))  # big with anything small
        if len(big):
            bb = cKDTree(centroid[big]).query_pairs(r=2 * float(radius[big].max()), output_type="ndarray")
            pairs.append(big[bb.reshape(-1, 2)])  # big with big
    else:
        moved = np.nonzero(only)[0]
        moved_big = moved[radius[moved] > r_small]
        still_big = big[~only[big]]
        pairs = [
            _ball_pairs(tree, centroid[moved], moved, np.full(len(moved), 2 * r_small)),
            _ball_pairs(tree, centroid[moved_big], moved_big, radius[moved_big] + r_small),
        ]
        if len(moved):
            moved_tree = cKDTree(centroid[moved])
            pairs.append(_ball_pairs(moved_tree, centroid[still_big], still_big, radius[still_big] + r_small, moved))
        if len(moved_big):
            big_tree = cKDTree(centroid[big])
            reach = radius[moved_big] + float(radius[big].max())
            pairs.append(_ball_pairs(big_tree, centroid[moved_big], moved_big, reach, big))
    pairs = np.concatenate(pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    # unique unordered pairs, in (i, j) order: one int64 key i * F + j per pair is made unique several times
    # faster than the rows themselves (np.unique(axis=0) sorts a structured view)
    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    key = np.unique(lo * np.int64(len(f)) + hi)
    pairs = np.stack([key // len(f), key % len(f)], 1)
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    if len(pairs) > max_pairs:
        raise MemoryError(f"{len(pairs)} candidate face pairs: the mesh has a few huge faces; remesh first")
    i, j = pairs[:, 0], pairs[:, 1]
    close = np.linalg.norm(centroid[i] - centroid[j], axis=1) <= radius[i] + radius[j]
    i, j = i[close], j[close]
    shared = (f[i][:, :, None] == f[j][:, None, :]).any((1, 2))
    i, j = i[~shared], j[~shared]
    hits = np.zeros(len(i), bool)
    for a, b in ((i, j), (j, i)):
        for e0, e1 in ((0, 1), (1, 2), (2, 0)):
            hits |= _segment_hits_triangle(tri[a, e0], tri[a, e1], tri[b])
    return np.stack([i[hits], j[hits]], 1)


def recheck_crossings(vertices: np.ndarray, faces: np.ndarray, pairs: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Crossing pairs after the vertices `moved` (a mask) moved, given the `pairs` that crossed before.

    Only faces touching a moved vertex can have changed: their pairs are tested again, the rest are kept.
    """
    f = np.asarray(faces, np.int64)
    moved_f = moved[f].any(1)
    kept = pairs[~(moved_f[pairs[:, 0]] | moved_f[pairs[:, 1]])]
    return np.concatenate([kept, intersecting_face_pairs(vertices, f, only=moved_f)])


def _ball_pairs(
    tree, centres: np.ndarray, ids: np.ndarray, r: np.ndarray, tree_ids: np.ndarray | None = None
) -> np.ndarray:
    """(K, 2) pairs (ids[k], tree point) for the tree's points within r[k] of centres[k]."""
    if len(ids) == 0:
        return np.zeros((0, 2), np.int64)
    near = tree.query_ball_point(centres, r)
    counts = np.fromiter(map(len, near), np.int64, len(near))
    other = np.fromiter(itertools.chain.from_iterable(near), np.int64, int(counts.sum()))
    if tree_ids is not None:
        other = tree_ids[other]
    return np.stack([np.repeat(ids, counts), other], 1)


def _vertex_adjacency(faces: np.ndarray, n: int):
    """Sparse 0/1 vertex adjacency (n, n) of a triangle mesh and each vertex's degree."""
    from scipy import sparse

    f = np.asarray(faces, np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    A = sparse.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    A.data[:] = 1.0
    return A, np.asarray(A.sum(1)).ravel()


def taubin_smooth(
    vertices: np.ndarray, faces: np.ndarray, iterations: int = 3, lam: float = 0.5, mu: float = -0.53,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """Taubin's lambda|mu smoothing (1995): a low-pass filter that removes ripple without shrinking.

    Each iteration moves every free vertex by lam, then by mu (< -lam), times its umbrella Laplacian;
    the pair passes low frequencies (the head's shape) and damps the pixel-scale ripple that
    fusing several slightly inconsistent views leaves. `fixed` vertices (the neck plane) stay put.
    """
    v = np.array(vertices, np.float64)
    A, deg = _vertex_adjacency(faces, len(v))
    deg = np.maximum(deg, 1.0)[:, None]
    free = np.ones(len(v), bool) if fixed is None else ~fixed
    for _ in range(iterations):
        for w in (lam, mu):
            v[free] += w * ((A @ v) / deg - v)[free]
    return v


def _falloff(adjacency, faces: np.ndarray, pairs: np.ndarray, rings: int) -> np.ndarray:
    """Per vertex: 1 on the crossing faces, falling linearly to 0 over `rings` rings of neighbours around them."""
    seen = np.zeros(adjacency.shape[0], bool)
    seen[faces[pairs.ravel()].ravel()] = True
    weight = seen.astype(np.float64)
    for r in range(1, rings + 1):
        ring = ((adjacency @ seen.astype(np.float64)) > 0) & ~seen
        weight[ring] = 1.0 - r / (rings + 1)
        seen |= ring
    return weight


def repair_self_intersections(
    vertices: np.ndarray,
    faces: np.ndarray,
    fixed: np.ndarray | None = None,
    max_rounds: int = 10,
    reference: np.ndarray | None = None,
    smoothing_rounds: int = 40,
    blend_rounds: int = 4,
    smoothing_steps: int = 10,
    patience: int = 3,
) -> tuple[np.ndarray, int]:
    """Remove crossing faces; returns (vertices, rounds used). Without `reference`: up to `max_rounds` of
    smoothing; with it: up to `smoothing_rounds` (fewer once `patience` rounds in a row leave no fewer crossings than
    the best round so far), then `blend_rounds` halvings, then up to `max_rounds` reverts.

    Folds from normal fusion are local (thin ears, creases, a crumple in a pocket). Rounds of umbrella smoothing
    around the crossing faces (`smoothing_steps` steps a round, a ring more every third round) remove most of
    them. The smoothing's strength falls off linearly over those rings. Until session 17 it stopped at the last
    ring: the step it left there crossed again, and what still crossed after its 10 rounds was moved back toward
    the fused mesh, at a cost of up to 0.003 of normal consistency (tia at 512 px, wes; bench/RECON_EVAL.md).
    A fold that survives is undone by moving its neighbourhood back toward `reference` (the crossing-free mesh
    fusion started from) only as far as needed: halfway, then halfway again, with the same falloff, and the
    whole way in rings that grow as the last resort (reverting outright cost a thin ear 0.04 of normal
    consistency on a held-out head). Local Taubin smoothing (no shrinkage) was tried instead of the umbrella: it
    does not separate two crossed sheets. Nor does the umbrella: a dozen crossings of a thin ear's two sheets
    survived all 40 rounds while the rings grew to 15 and flattened the ear (zoe, 16 views: ears' NC 0.82 -> 0.79;
    bench/RECON_EVAL.md, session 21), so smoothing stops once it no longer makes progress and the blend takes over.
    Where that leaves crossings the blend and the revert cannot clear (tia at 512 px: 21), the repair starts again
    from `vertices` without the early stop, as it ran before.
    """
    v0 = np.array(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    fixed = np.zeros(len(v0), bool) if fixed is None else fixed
    A, deg = _vertex_adjacency(f, len(v0))
    pairs = intersecting_face_pairs(v0, f)
    rounds = (smoothing_rounds, blend_rounds, max_rounds, smoothing_steps)
    v, used, left = _repair(v0.copy(), f, fixed, A, deg, pairs, reference, rounds, patience)
    if len(left) and patience and reference is not None:
        # what the blend and the revert left after an early stop, the full smoothing clears (tia at 512 px)
        v, more, left = _repair(v0.copy(), f, fixed, A, deg, pairs, reference, rounds, 0)
        used += more
    return v, used


def _repair(
    v: np.ndarray, f: np.ndarray, fixed: np.ndarray, A, deg: np.ndarray, pairs: np.ndarray,
    reference: np.ndarray | None, rounds: tuple[int, int, int, int], patience: int,
) -> tuple[np.ndarray, int, np.ndarray]:
    """One pass of repair_self_intersections on `v` (modified): the vertices, rounds used, crossings left."""
    smoothing_rounds, blend_rounds, max_rounds, smoothing_steps = rounds
    fewest, since = len(pairs), 0
    used = smoothing_rounds if reference is not None else max_rounds
    for rnd in range(used):
        if len(pairs) == 0:
            return v, rnd, pairs
        w = np.where(fixed, 0.0, _falloff(A, f, pairs, 2 + rnd // 3))
        sel = w > 0
        for _ in range(smoothing_steps):
            avg = (A @ v) / deg[:, None]
            v[sel] += 0.5 * w[sel, None] * (avg[sel] - v[sel])
        pairs = recheck_crossings(v, f, pairs, sel)
        fewest, since = (len(pairs), 0) if len(pairs) < fewest else (fewest, since + 1)
        if patience and reference is not None and since >= patience:
            used = rnd + 1
            break
    if reference is None:
        return v, used, pairs
    for halvings in range(blend_rounds):  # halfway toward the reference, then halfway again
        if len(pairs) == 0:
            return v, used, pairs
        w = _falloff(A, f, pairs, 2 + halvings // 2)  # the reference keeps fixed vertices where they must be
        sel = w > 0
        v[sel] += 0.5 * w[sel, None] * (reference[sel] - v[sel])
        pairs = recheck_crossings(v, f, pairs, sel)
        used += 1
    for rnd in range(max_rounds):  # the reference itself, in rings that grow until nothing crosses
        if len(pairs) == 0:
            return v, used, pairs
        sel = _falloff(A, f, pairs, 2 + 2 * rnd) > 0
        v[sel] = reference[sel]
        pairs = recheck_crossings(v, f, pairs, sel)
        used += 1
    return v, used, pairs


def _segment_hits_triangle(p: np.ndarray, q: np.ndarray, t: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Vectorised Moller-Trumbore for segments p->q against triangles t (K, 3, 3), interiors only."""
    d = q - p
    e1 = t[:, 1] - t[:, 0]
    e2 = t[:, 2] - t[:, 0]
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > eps
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p - t[:, 0]
    u = inv * np.einsum("ij,ij->i", s, h)
    qv = np.cross(s, e1)
    w = inv * np.einsum("ij,ij->i", d, qv)
    tt = inv * np.einsum("ij,ij->i", e2, qv)
    m = 1e-6
    return ok & (u > m) & (w > m) & (u + w < 1 - m) & (tt > m) & (tt < 1 - m)
