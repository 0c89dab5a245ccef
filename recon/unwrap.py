"""A UV atlas in a few seconds: charts by facing direction, orthographic projection, packing by outline.

xatlas takes about 45 s for a 100k-face head on 2 CPU cores, most of recon's texture stage, and it has no
GPU path. Seen from any one direction most of a head is a height field, so charts need no general
parameterisation.

Charts. Each face f, with unit normal n_f, takes one of K directions d_k (the 6 axes and the 8 cube
diagonals), the one it faces most, then a few rounds let neighbours agree:

    s_fk    = n_f . d_k
    label_f = argmax_k  s_fk + beta * c_fk / 3          over the k with s_fk >= cos_max

where c_fk counts f's edge neighbours labelled k. A chart of fewer than `min_chart_faces` faces joins a
larger neighbour's label if all its faces face that direction within acos(cos_small). Each connected set of
faces of one label is a chart, projected orthographically onto the plane normal to its area-weighted mean
normal a (e1 x e2 = a):

    (u, v) = (x . e1, x . e2)

Every face of a chart faces a (n_f . a > 0), so no triangle flips, and the projection shortens a face by
n_f . a in one direction (stretch 1 / (n_f . a), reported). A chart mapped without flips overlaps itself
where its outline crosses itself: an ear in front of the skull behind it, both facing sideways. Then the
faces behind (two z-buffers along a, front-most and back-most per pixel, more than `layer_gap` apart; and
of each crossing pair of outline edges the face further back) leave for charts of their own, until no
outline crosses. A chart with a hole can overlap itself with an outline that does not cross (a ring of the
neck folding under the cap): then a loop of its outline lies inside another part of it, so of each outline
vertex that a face of its own chart covers without touching it, the face further back leaves too. Each chart
keeps its front-most face, so every round makes progress.

Packing. Each chart is turned so its principal axis is horizontal and described, on a grid, by the lowest
and highest cell of each column, grown by the gutter. Largest first, in whichever quarter turn ends lowest,
each chart drops onto the skyline of those already placed; the largest scale at which all fit the square
is found by bisection. `padding_px` texels of gutter lie around every chart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from recon.errors import ReconError


@dataclass
class UnwrapConfig:
    cos_max: float = 0.5  # a face joins a direction only if it faces it within 60 degrees (stretch <= 2)
    beta: float = 0.6  # weight of the neighbours' labels against the face's own facing
    rounds: int = 6
    min_chart_faces: int = 30
    cos_small: float = 0.2  # a small chart's faces may join a neighbour they face within 78 degrees
    merge_rounds: int = 6
    padding_px: float = 2.0  # gutter around each chart, in texels of the atlas (charts are 2x this apart)
    grid: int = 512  # the packer's grid cells per side (at most one per texel)
    pack_steps: int = 7  # bisection steps of the atlas scale (each about 1 % closer to the densest packing)
    atlas_size: int = 2048
    max_splits: int = 60
    layer_gap: float = 0.5  # in median edge lengths: two faces this far apart along the axis are two layers


@dataclass
class UnwrapReport:
    charts: int
    split_rounds: int
    fill: float  # share of the unit square covered by chart triangles
    max_stretch: float  # largest 1 / (n_f . a) over the faces


def directions() -> np.ndarray:
    """The 6 axes and the 8 cube diagonals, unit length (14, 3)."""
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    diag = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) / np.sqrt(3.0)
    return np.concatenate([axes, diag])


def unwrap_charts(
    vertices: np.ndarray, faces: np.ndarray, cfg: UnwrapConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, UnwrapReport]:
    """(vertex map into the input, new faces in the input's order, uv in [0, 1], report)."""
    cfg = cfg or UnwrapConfig()
    x = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    cross = np.cross(x[faces[:, 1]] - x[faces[:, 0]], x[faces[:, 2]] - x[faces[:, 0]])
    area2 = np.linalg.norm(cross, axis=1)
    normal = cross / np.maximum(area2, 1e-30)[:, None]
    he = _half_edges(faces, len(x))
    pairs = np.stack([he.face[he.has_twin], he.face[he.twin[he.has_twin]]], 1)
    label = _labels(normal, pairs, cfg)
    chart = _components(label, pairs, len(faces))
    axis = _chart_axes(chart, normal, area2, label)
    rounds = 0
    while True:
        vmap, new_faces, local = _project(x, faces, chart, axis)
        behind = _crossings(local, new_faces, chart, he, x, faces, axis)
        if not len(behind):  # a chart with a hole can overlap itself without its outline crossing
            behind = _overlapping(x, faces, new_faces, local, chart, axis, he)
        if not len(behind):
            break
        crossing = np.unique(chart[behind])
        if rounds == cfg.max_splits:  # never reached on a head; single faces cannot cross
            hidden = np.isin(chart, crossing)
            chart = np.where(hidden, chart.max() + 1 + np.arange(len(chart)), chart)
        else:
            hidden = _hidden(x, faces, vmap, new_faces, local, chart, axis, crossing, cfg)
            hidden[behind] = True  # what lies behind another part of its chart goes to a chart of its own
            hidden[_front_faces(x, faces, chart, axis)] = False  # each chart keeps a face: every round gains one
            chart = np.where(hidden, chart + chart.max() + 1, chart)
        chart = _components(chart, pairs, len(faces))
        axis = _chart_axes(chart, normal, area2, label)
        rounds += 1
    uv, fill = _pack_profiles(local, new_faces, chart, cfg)
    cos = np.einsum("fi,fi->f", normal, axis[chart])[area2 > 1e-9 * area2.max()]  # zero-area faces have no say
    report = UnwrapReport(int(chart.max()) + 1, rounds, fill, float(1.0 / max(cos.min(), 1e-6)))
    return vmap, new_faces, uv.astype(np.float32), report


@dataclass
class _HalfEdges:
    face: np.ndarray  # (3F,) the face of half-edge 3f + j (edge from corner j to corner j + 1)
    twin: np.ndarray  # the half-edge on the other side (itself where there is none)
    has_twin: np.ndarray


def _half_edges(faces: np.ndarray, n_vertices: int) -> _HalfEdges:
    v0 = faces.reshape(-1)
    v1 = faces[:, [1, 2, 0]].reshape(-1)
    key = np.minimum(v0, v1) * n_vertices + np.maximum(v0, v1)
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    twin = np.arange(len(key))
    a, b = order[:-1][same], order[1:][same]
    twin[a], twin[b] = b, a  # an edge of more than two faces pairs its half-edges two by two
    return _HalfEdges(np.repeat(np.arange(len(faces)), 3), twin, twin != np.arange(len(key)))


def _labels(normal: np.ndarray, pairs: np.ndarray, cfg: UnwrapConfig) -> np.ndarray:
    d = directions()
    s = normal @ d.T
    s[np.linalg.norm(normal, axis=1) < 0.5] = 1.0  # a zero-area face faces any way its neighbours do
    allowed = s >= cfg.cos_max
    allowed[np.arange(len(s)), s.argmax(1)] = True
    label = s.argmax(1)
    K = len(d)

    def neighbour_counts(lab: np.ndarray) -> np.ndarray:
        idx = pairs[:, 0] * K + lab[pairs[:, 1]]
        return np.bincount(idx, minlength=len(s) * K).reshape(len(s), K).astype(np.float64)

    for _ in range(cfg.rounds):
        score = np.where(allowed, s + cfg.beta * neighbour_counts(label) / 3.0, -np.inf)
        label = score.argmax(1)
    for _ in range(cfg.merge_rounds):  # a small chart joins its neighbour chart's label if it faces it
        comp = _components(label, pairs, len(s))
        size = np.bincount(comp)
        small = size < cfg.min_chart_faces
        if not small[comp].any():
            break
        C = len(size)
        lowest = np.full((C, K), np.inf)
        np.minimum.at(lowest, comp, s)  # how little the chart's worst face faces each direction
        a, b = comp[pairs[:, 0]], comp[pairs[:, 1]]
        across = (a != b) & small[a] & (size[b] > size[a])  # join only larger charts: no two swap
        if not across.any():
            break
        a, b = a[across], b[across]
        ok = lowest[a, _label_of(comp, label, C)[b]] >= cfg.cos_small
        a, b = a[ok], b[ok]
        best = np.full(C, -1)
        order = np.lexsort((size[b], a))  # per small chart, its largest acceptable neighbour last
        best[a[order]] = b[order]
        move = best[comp] >= 0
        label = np.where(move, _label_of(comp, label, C)[np.maximum(best[comp], 0)], label)
    return label


def _label_of(comp: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    """The label of each of n components (all faces of a component share it)."""
    out = np.zeros(n, np.int64)
    out[comp] = label
    return out


def _components(label: np.ndarray, pairs: np.ndarray, n_faces: int) -> np.ndarray:
    keep = label[pairs[:, 0]] == label[pairs[:, 1]]
    p = pairs[keep]
    g = sparse.coo_matrix((np.ones(len(p)), (p[:, 0], p[:, 1])), shape=(n_faces, n_faces))
    return connected_components(g, directed=False)[1]


def _chart_axes(chart: np.ndarray, normal: np.ndarray, area2: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Each chart's area-weighted mean normal, or its label's direction if a face would face it too little."""
    n = chart.max() + 1
    a = np.stack([np.bincount(chart, area2 * normal[:, i], minlength=n) for i in range(3)], 1)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    cos = np.einsum("fi,fi->f", normal, a[chart])
    worst = np.full(n, np.inf)
    np.minimum.at(worst, chart, cos)
    first = np.zeros(n, np.int64)
    first[chart[::-1]] = np.arange(len(chart))[::-1]
    fallback = directions()[label[first]]
    return np.where((worst < 0.2)[:, None], fallback, a)


def _basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e1, e2 with e1 x e2 = axis, per row."""
    helper = np.where((np.abs(axis[:, 1]) < 0.9)[:, None], np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    e1 = np.cross(helper, axis)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(axis, e1)
    return e1, e2


def _project(
    x: np.ndarray, faces: np.ndarray, chart: np.ndarray, axis: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atlas vertices (one per input vertex per chart), faces into them, and chart-local (u, v)."""
    key = chart[:, None] * len(x) + faces
    uniq, inverse = np.unique(key.reshape(-1), return_inverse=True)
    vmap = uniq % len(x)
    c = uniq // len(x)
    e1, e2 = _basis(axis)
    local = np.stack([np.einsum("ni,ni->n", x[vmap], e1[c]), np.einsum("ni,ni->n", x[vmap], e2[c])], 1)
    return vmap, inverse.reshape(-1, 3), local


def _crossings(
    local: np.ndarray, new_faces: np.ndarray, chart: np.ndarray, he: _HalfEdges, x: np.ndarray, faces: np.ndarray,
    axis: np.ndarray,
) -> np.ndarray:
    """Where a chart's outline crosses itself in the plane: of each crossing pair, the face further back."""
    boundary = ~he.has_twin | (chart[he.face] != chart[he.face[he.twin]])
    corner = np.flatnonzero(boundary)
    a = new_faces.reshape(-1)[corner]
    b = new_faces[:, [1, 2, 0]].reshape(-1)[corner]
    face = he.face[corner]
    c = chart[face]
    p, q = local[a], local[b]
    lo, hi = np.minimum(p, q), np.maximum(p, q)
    h = max(float((hi - lo).max()), 1e-12) * 1.001
    cell = np.floor(lo / h).astype(np.int64)
    span = np.floor(hi / h).astype(np.int64) - cell  # 0 or 1 per axis: cells are as long as the longest edge
    seg, keys = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            i = np.flatnonzero((span[:, 0] >= dx) & (span[:, 1] >= dy))
            seg.append(i)
            keys.append(np.stack([c[i], cell[i, 0] + dx, cell[i, 1] + dy], 1))
    seg = np.concatenate(seg)
    keys = np.concatenate(keys)
    order = np.lexsort(keys.T[::-1])
    seg, keys = seg[order], keys[order]
    depth = np.einsum("fi,fi->f", x[faces].mean(1), axis[chart])
    behind = []
    for k in range(1, len(seg)):
        same = np.all(keys[k:] == keys[:-k], axis=1)
        if not same.any():
            break
        i, j = seg[:-k][same], seg[k:][same]
        hit = _segments_cross(p[i], q[i], p[j], q[j])
        fi, fj = face[i[hit]], face[j[hit]]
        behind.append(np.where(_before(depth, fi, fj), fi, fj))
    return np.unique(np.concatenate(behind)) if behind else np.zeros(0, np.int64)


def _overlapping(
    x: np.ndarray, faces: np.ndarray, new_faces: np.ndarray, local: np.ndarray, chart: np.ndarray,
    axis: np.ndarray, he: _HalfEdges,
) -> np.ndarray:
    """Where a chart covers one of its own outline's vertices with a face not touching it: the face behind.

    A chart mapped without flips whose outline does not cross itself still overlaps itself if one of its
    outline loops lies inside another part of it (a ring of neck folding under the cap). Then that loop's
    vertices lie inside faces of their own chart that do not touch them; of each such vertex's face and the
    covering face, the one further back is returned.
    """
    boundary = ~he.has_twin | (chart[he.face] != chart[he.face[he.twin]])
    corner = np.flatnonzero(boundary)
    vert = new_faces.reshape(-1)[corner]  # the outline's vertices, each with a face of its own (the corner's)
    vert, first = np.unique(vert, return_index=True)
    own = he.face[corner[first]]
    point, pc = local[vert], chart[own]
    tri = local[new_faces]  # (F, 3, 2)
    lo, hi = tri.min(1), tri.max(1)
    h = 2.0 * float(np.median(np.max(hi - lo, axis=1))) or 1.0
    c0 = np.floor(lo / h).astype(np.int64)
    span = np.floor(hi / h).astype(np.int64) - c0 + 1  # cells each face's box covers, per axis
    count = span[:, 0] * span[:, 1]
    fid = np.repeat(np.arange(len(tri)), count)
    k = np.arange(len(fid)) - np.repeat(np.cumsum(count) - count, count)
    cx = c0[fid, 0] + k % span[fid, 0]
    cy = c0[fid, 1] + k // span[fid, 0]
    key_f = _cell_keys(chart[fid], cx, cy)
    order = np.argsort(key_f, kind="stable")
    key_f, fid = key_f[order], fid[order]
    pcell = np.floor(point / h).astype(np.int64)
    key_p = _cell_keys(pc, pcell[:, 0], pcell[:, 1])
    start = np.searchsorted(key_f, key_p, "left")
    n_cand = np.searchsorted(key_f, key_p, "right") - start
    pid = np.repeat(np.arange(len(point)), n_cand)
    cand = fid[np.repeat(start, n_cand) + np.arange(len(pid)) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)]
    keep = ~np.any(new_faces[cand] == vert[pid][:, None], axis=1)  # faces touching the vertex do not count
    pid, cand = pid[keep], cand[keep]
    t, q = tri[cand], point[pid]
    d = (t[:, 1, 1] - t[:, 2, 1]) * (t[:, 0, 0] - t[:, 2, 0]) + (t[:, 2, 0] - t[:, 1, 0]) * (t[:, 0, 1] - t[:, 2, 1])
    w0 = ((t[:, 1, 1] - t[:, 2, 1]) * (q[:, 0] - t[:, 2, 0]) + (t[:, 2, 0] - t[:, 1, 0]) * (q[:, 1] - t[:, 2, 1])) / d
    w1 = ((t[:, 2, 1] - t[:, 0, 1]) * (q[:, 0] - t[:, 2, 0]) + (t[:, 0, 0] - t[:, 2, 0]) * (q[:, 1] - t[:, 2, 1])) / d
    eps = 1e-7
    inside = (np.abs(d) > 0) & (w0 > eps) & (w1 > eps) & (1.0 - w0 - w1 > eps)
    a, b = own[pid[inside]], cand[inside]
    depth = np.einsum("fi,fi->f", x[faces].mean(1), axis[chart])
    return np.unique(np.where(_before(depth, a, b), a, b))


def _cell_keys(chart: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """One int64 per (chart, cell x, cell y)."""
    return (chart.astype(np.int64) << 42) | ((cx + (1 << 20)) << 21) | (cy + (1 << 20))


def _before(depth: np.ndarray, fi: np.ndarray, fj: np.ndarray) -> np.ndarray:
    """fi lies further back than fj: lower depth, ties broken by the higher index (a strict total order)."""
    return (depth[fi] < depth[fj]) | ((depth[fi] == depth[fj]) & (fi > fj))


def _front_faces(x: np.ndarray, faces: np.ndarray, chart: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Each chart's front-most face in `_before`'s order: no crossing ever marks it as behind."""
    depth = np.einsum("fi,fi->f", x[faces].mean(1), axis[chart])
    order = np.lexsort((np.arange(len(chart)), -depth, chart))  # per chart: deepest-in-front first, low index
    first = np.ones(len(order), bool)
    first[1:] = chart[order][1:] != chart[order][:-1]
    return order[first]


def _segments_cross(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Proper crossings (segments sharing an end point do not count: its orientation is exactly 0)."""

    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    o1, o2 = orient(p1, q1, p2), orient(p1, q1, q2)
    o3, o4 = orient(p2, q2, p1), orient(p2, q2, q1)
    return (o1 * o2 < 0) & (o3 * o4 < 0)


def _hidden(
    x: np.ndarray, faces: np.ndarray, vmap: np.ndarray, new_faces: np.ndarray, local: np.ndarray, chart: np.ndarray,
    axis: np.ndarray, crossing: np.ndarray, cfg: UnwrapConfig,
) -> np.ndarray:
    """Faces of the crossing charts that lie behind another face of their chart, seen along its axis.

    The charts are laid out apart and rasterised twice, keeping the front-most and the back-most face per
    pixel (pixels half the median edge long); where they lie more than `layer_gap` apart, the back one
    is hidden. Faces smaller than a pixel are left to the outline test.
    """
    import torch

    from recon.raster import TorchRasterizer

    sel = np.isin(chart, crossing)
    f = new_faces[sel]
    vchart = np.zeros(len(local), np.int64)
    vchart[new_faces.reshape(-1)] = np.repeat(chart, 3)
    e = local[f[:, 1]] - local[f[:, 0]]
    edge = float(np.median(np.linalg.norm(e, axis=1)))
    uv = _pack_shelves(local, f, chart[sel], 4.0 / 4096)
    span = float(np.median(np.linalg.norm(uv[f[:, 1]] - uv[f[:, 0]], axis=1)))
    size = int(np.clip(2.0 / max(span, 1e-12), 256, 2048))
    d = np.einsum("ni,ni->n", x[vmap], axis[vchart])
    top, bottom = d.max() + 1.0, d.min() - 1.0
    px = torch.tensor(uv * size, dtype=torch.float32)
    extent = np.ptp(uv[f] * size, axis=1).max(1)
    keep = np.flatnonzero(extent <= 16.0)  # the few long faces (the neck cap's) are left to the outline test
    ft = torch.tensor(f[keep])
    ras = TorchRasterizer()
    front = ras.rasterize(px, torch.tensor(top - d, dtype=torch.float32), ft, size, size)
    back = ras.rasterize(px, torch.tensor(d - bottom, dtype=torch.float32), ft, size, size)
    d_front = top - front.depth.numpy()
    d_back = back.depth.numpy() + bottom
    gap = front.covered.numpy() & (d_front - d_back > cfg.layer_gap * max(edge, 1e-12))
    out = np.zeros(len(faces), bool)
    out[np.flatnonzero(sel)[keep[back.face_id.numpy()[gap]]]] = True
    return out


def _pack_shelves(local: np.ndarray, new_faces: np.ndarray, chart: np.ndarray, pad: float) -> np.ndarray:
    """Chart boxes on shelves in the unit square, `pad` apart: quick, for the visibility test's canvas.

    Only the vertices `new_faces` uses are placed (the visibility test lays out a subset); returns uv.
    """
    used, index = np.unique(new_faces, return_inverse=True)
    faces = index.reshape(new_faces.shape)
    uv, vchart, n = _aligned(local[used], faces, np.unique(chart, return_inverse=True)[1].reshape(-1))
    lo = np.full((n, 2), np.inf)
    hi = np.full((n, 2), -np.inf)
    for i in range(2):
        np.minimum.at(lo[:, i], vchart, uv[:, i])
        np.maximum.at(hi[:, i], vchart, uv[:, i])
    size = hi - lo
    order = np.argsort(-size[:, 1], kind="stable")

    def place(scale: float) -> tuple[np.ndarray, float]:
        pos = np.zeros((n, 2))
        x0 = y0 = shelf = 0.0
        for c in order:
            w, h = size[c] * scale + pad
            if x0 + w > 1.0 and x0 > 0.0:
                x0, y0, shelf = 0.0, y0 + shelf, 0.0
            pos[c] = (x0, y0)
            x0 += w
            shelf = max(shelf, h)
        return pos, y0 + shelf

    def fits(scale: float) -> bool:
        return place(scale)[1] <= 1.0 and size.max() * scale + pad <= 1.0

    lo_s, hi_s = 0.0, 1.0 / np.sqrt(max(float(np.sum(np.prod(size, 1))), 1e-30))
    while fits(hi_s):
        hi_s *= 2.0
    for _ in range(40):
        mid = 0.5 * (lo_s + hi_s)
        lo_s, hi_s = (mid, hi_s) if fits(mid) else (lo_s, mid)
    pos, _ = place(lo_s)
    out = np.zeros_like(local)
    out[used] = (uv - lo[vchart]) * lo_s + pos[vchart] + pad / 2.0
    return out


def _fill(uv: np.ndarray, faces: np.ndarray) -> float:
    """Share of the unit square the triangles cover."""
    t = uv[faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return float(0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum())


def _aligned(local: np.ndarray, new_faces: np.ndarray, chart: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Chart-local coordinates turned so each chart's principal axis is horizontal; (coords, vertex chart, n)."""
    vchart = np.zeros(len(local), np.int64)
    vchart[new_faces.reshape(-1)] = np.repeat(chart, 3)
    n = int(chart.max()) + 1
    count = np.maximum(np.bincount(vchart, None, n), 1)[:, None]
    centre = np.stack([np.bincount(vchart, local[:, i], n) for i in range(2)], 1) / count
    d = local - centre[vchart]
    cxx, cyy, cxy = (np.bincount(vchart, w, n) for w in (d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]))
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    theta = np.where(np.hypot(cxx - cyy, 2 * cxy) <= 1e-6 * (cxx + cyy), 0.0, theta)  # round: leave it
    cs, sn = np.cos(theta)[vchart], np.sin(theta)[vchart]
    return np.stack([cs * d[:, 0] + sn * d[:, 1], -sn * d[:, 0] + cs * d[:, 1]], 1), vchart, n


_TURNS = (((1, 0), (0, 1)), ((0, -1), (1, 0)), ((-1, 0), (0, -1)), ((0, 1), (-1, 0)))  # 0, 90, 180, 270 degrees


def _pack_profiles(
    local: np.ndarray, new_faces: np.ndarray, chart: np.ndarray, cfg: UnwrapConfig
) -> tuple[np.ndarray, float]:
    """Charts dropped onto a skyline by their outlines (module docstring); returns uv in [0, 1] and the fill.

    On a grid of `grid` cells a side, each chart (in each of four quarter turns) is described per column by the
    lowest and highest cell it covers, grown by the gutter. Largest first, each goes where its lowest row
    can sit on the skyline so that its top ends lowest; the largest scale at which every chart fits the
    square is found by bisection.
    """
    aligned, vchart, n = _aligned(local, new_faces, chart)
    S = cfg.atlas_size
    G = min(cfg.grid, S)
    cell = S / G
    pad_px = float(cfg.padding_px)
    grow = int(np.ceil(pad_px / cell))
    turned = [aligned @ np.array(t, float).T for t in _TURNS]
    lows = []
    for q in turned:
        lo = np.full((n, 2), np.inf)
        for i in range(2):
            np.minimum.at(lo[:, i], vchart, q[:, i])
        lows.append(lo)
    area3 = np.zeros(n)
    t0 = aligned[new_faces]
    e1, e2 = t0[:, 1] - t0[:, 0], t0[:, 2] - t0[:, 0]
    np.add.at(area3, chart, 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]))
    order = np.argsort(-area3, kind="stable")

    def profiles(k: float, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per chart: bottom and top cell of each column (grown by the gutter) and the width, at k texels/unit."""
        q = (turned[r] - lows[r][vchart]) * k + pad_px  # texels, the chart's corner a gutter from its frame
        t = q[new_faces] / cell
        c0 = np.floor(t[..., 0].min(1)).astype(np.int64)
        c1 = np.floor(t[..., 0].max(1)).astype(np.int64)
        r0 = np.floor(t[..., 1].min(1)).astype(np.int64)
        r1 = np.floor(t[..., 1].max(1)).astype(np.int64)
        width = np.zeros(n, np.int64)
        np.maximum.at(width, chart, c1 + 1 + grow)
        W = int(width.max()) + 1
        bottom = np.full(n * W, np.iinfo(np.int64).max)
        top = np.full(n * W, -1)
        for j in range(int((c1 - c0).max()) + 1):
            on = c0 + j <= c1
            idx = chart[on] * W + c0[on] + j
            np.minimum.at(bottom, idx, r0[on])
            np.maximum.at(top, idx, r1[on])
        bottom, top = bottom.reshape(n, W), top.reshape(n, W)
        # grow by the gutter: each column takes its neighbours' extent within `grow` columns, `grow` rows more
        b, tt = bottom.copy(), top.copy()
        for j in range(1, grow + 1):
            b[:, j:] = np.minimum(b[:, j:], bottom[:, :-j])
            b[:, :-j] = np.minimum(b[:, :-j], bottom[:, j:])
            tt[:, j:] = np.maximum(tt[:, j:], top[:, :-j])
            tt[:, :-j] = np.maximum(tt[:, :-j], top[:, j:])
        empty = tt < 0
        b = np.where(empty, np.iinfo(np.int64).max, np.maximum(b - grow, 0))
        tt = np.where(empty, -1, tt + grow)
        return b, tt, width

    def place(k: float) -> tuple[np.ndarray, np.ndarray] | None:
        prof = [profiles(k, r) for r in range(4)]
        sky = np.zeros(G, np.int64)
        pos = np.zeros((n, 2), np.int64)
        turn = np.zeros(n, np.int64)
        for c in order:
            best = None
            for r, (b, t, width) in enumerate(prof):
                w = int(width[c])
                if w > G:
                    continue
                bc, tc = b[c, :w], t[c, :w]
                used = tc >= 0
                windows = np.lib.stride_tricks.sliding_window_view(sky, w)  # (G - w + 1, w)
                base = np.max(np.where(used, windows - bc, np.iinfo(np.int64).min), axis=1).clip(min=0)
                peak = base + tc[used].max() + 1
                x = int(np.argmin(peak))
                if peak[x] <= G and (best is None or peak[x] < best[0]):
                    best = (int(peak[x]), x, int(base[x]), r, used, tc, w)
            if best is None:
                return None
            _, x, y, r, used, tc, w = best
            cols = np.arange(x, x + w)[used]
            sky[cols] = np.maximum(sky[cols], y + tc[used] + 1)
            pos[c] = (x, y)
            turn[c] = r
        return pos, turn

    # bounds for the bisection: the scale at which the charts' areas alone would fill the square, and half of it
    k_hi = S / np.sqrt(max(float(area3.sum()), 1e-30))
    k_lo = 0.5 * k_hi
    for _ in range(30):
        if place(k_lo) is not None:
            break
        k_hi, k_lo = k_lo, 0.5 * k_lo
    else:
        raise ReconError(
            f"a {S} px texture cannot hold the head's {n} UV charts with {cfg.padding_px:g} px gutters; "
            "use a larger --texture-size (default 2048)"
        )
    for _ in range(cfg.pack_steps):
        mid = 0.5 * (k_lo + k_hi)
        k_lo, k_hi = (mid, k_hi) if place(mid) is not None else (k_lo, mid)
    pos, turn = place(k_lo)
    uv = np.zeros_like(local)
    for r in range(4):
        v = turn[vchart] == r
        q = (turned[r][v] - lows[r][vchart[v]]) * k_lo + pad_px
        uv[v] = (pos[vchart[v]] * cell + q) / S
    return uv, _fill(uv, new_faces)
