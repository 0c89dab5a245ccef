"""Texture baking: UV charts, per-texel multi-view projection, seam feathering, surface fill, edge padding.

For every texel the surface point p and normal n come from rasterising the mesh in UV space.
Each view i then votes with colour c_i(p) and weight

    w_i = cos(theta_i)^k * feather_i * (input_weight if view i is the input else 1)

where theta_i is the angle between n and the direction to camera i, and feather_i ramps from 0 to 1
over `feather_px` pixels away from the view's silhouette and depth discontinuities (where a
slightly misregistered view would paint background or an occluder). Occluded views (p behind the
view's z-buffer) do not vote.

Chart texels no view sees (under the chin, behind the ears, the neck cap) are filled from the
*surface* around them, never from whatever chart happens to lie next to them in the atlas (hair
beside skin, the back of the head beside the face). Each mesh vertex that touches painted texels
takes their barycentric-weighted mean colour c_k; the remaining vertices u solve the harmonic
(Dirichlet) problem on the vertex graph, edges weighted by inverse length and crossing UV seams,

    (D - W)_uu c_u = W_uk c_k

and an unseen texel takes the barycentric interpolation of its face's vertex colours. Painted
texels keep their baked colours exactly. Only the gutter between charts, which no surface point
maps to, is filled from the nearest chart texel (edge padding in UV space), so mip-maps and
bilinear filtering never reach unpainted texels.

De-lighting (recon/delight.py; on in recon's pipeline, off in a bare TextureConfig): before painting,
each view's exposure / white balance gain is estimated on a sample of texels and divided out of its
colours. After painting, one lighting (2nd-order SH + a key light, shared by all views) is fitted to the
painted texels and their surface normals and divided out: `albedo` is de-lit, `albedo_lit` keeps the
lighting (both filled the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from recon.cameras import Cameras
from recon.delight import DelightConfig, Lighting, delight_atlas, estimate_view_gains
from recon.mesh_ops import vertex_normals
from recon.raster import Fragments, Rasterizer, TorchRasterizer, interpolate
from recon.unwrap import UnwrapConfig, unwrap_charts


@dataclass
class TextureConfig:
    size: int = 2048
    cos_power: float = 4.0
    input_weight: float = 3.0
    feather_px: float = 3.0
    depth_tolerance: float = 0.01  # ViewSet units (4 mm at 0.4 m/unit)
    # off for a bare bake (a smooth albedo gradient is indistinguishable from light); recon's ReconConfig turns it on
    delight: DelightConfig = field(default_factory=lambda: DelightConfig(enabled=False))
    # the de-lit albedo of texels that no view sees at a cosine of at least this (beyond ~63 degrees) is filled from
    # the surface around them (_delit_known); 0 keeps every painted texel
    delit_min_cos: float = 0.45
    gain_samples: int = 50_000  # texels used to estimate the per-view gains
    unwrap: str = "charts"  # "charts" (recon.unwrap, seconds) | "xatlas" (denser atlas, ~45 s per 100k faces)


@dataclass
class BakedTexture:
    vertices: np.ndarray  # (N', 3) after the UV seams split vertices
    faces: np.ndarray  # (M, 3)
    uv: np.ndarray  # (N', 2), v up from the bottom row
    albedo: np.ndarray  # (S, S, 3) uint8
    coverage: float  # share of chart texels painted by at least one view
    source_vertex: np.ndarray  # (N',) index of the vertex each new vertex was split from
    surface_filled: float = 0.0  # share of chart texels no view saw, filled from the surrounding surface
    albedo_lit: np.ndarray | None = None  # (S, S, 3) uint8 with the lighting left in (None: not de-lit)
    lighting: Lighting | None = None  # what was divided out


@dataclass
class _PaintedAtlas:
    """What the views painted, before any fill: the atlas layout and the per-texel surface location."""

    vmap: np.ndarray  # (N',) input vertex each atlas vertex was split from
    faces: np.ndarray  # (M, 3) atlas faces (into vmap)
    uv: np.ndarray  # (N', 2)
    colour: np.ndarray  # (S, S, 3) float32 in [0, 1], zero where not painted
    painted: np.ndarray  # (S, S) bool: seen by at least one view
    face_id: np.ndarray  # (S, S) int64 atlas face under each texel, -1 in the gutter
    bary: np.ndarray  # (S, S, 3) float32 barycentrics of the texel centre in that face
    normal: np.ndarray | None = None  # (S, S, 3) unit surface normal per chart texel (zero in the gutter)
    view_gains: np.ndarray | None = None  # (V, 3) gains divided out of each view before painting
    strength: np.ndarray | None = None  # (S, S) float32: the best view's cos^power x feather per texel (0 unseen)

    @property
    def chart(self) -> np.ndarray:
        return self.face_id >= 0


def unwrap(
    vertices: np.ndarray, faces: np.ndarray, method: str = "charts", size: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertex map into the input, new faces in the input's order, uv in [0, 1]) for a `size` px atlas.

    "charts" (recon.unwrap: 2-7 s per 100k faces) or "xatlas" (about 45 s per 100k faces on 2 CPU cores,
    denser packing).
    """
    if method == "charts":
        vmap, indices, uvs, _ = unwrap_charts(vertices, faces, UnwrapConfig(atlas_size=size))
        return vmap, indices, uvs
    if method != "xatlas":
        raise ValueError(f"unknown unwrap method {method!r}; use 'charts' or 'xatlas'")
    import xatlas

    vmap, indices, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    return vmap.astype(np.int64), indices.astype(np.int64), uvs.astype(np.float32)


def uv_to_pixels(uv: torch.Tensor, size: int) -> torch.Tensor:
    """uv (v up from the bottom row) -> continuous texel coordinates (x right, y down)."""
    return torch.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1)


def _bilinear(img: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample (H, W, C) at continuous pixel coordinates (K, 2) -> (K, C), border clamped."""
    H, W = img.shape[:2]
    grid = torch.stack([px[:, 0] / W * 2 - 1, px[:, 1] / H * 2 - 1], -1)[None, None]
    out = torch.nn.functional.grid_sample(
        img.permute(2, 0, 1)[None].float(), grid.float(), align_corners=False, padding_mode="border"
    )
    return out[0, :, 0].T


def _nearest(img: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    H, W = img.shape[:2]
    x = px[:, 0].floor().long().clamp(0, W - 1)
    y = px[:, 1].floor().long().clamp(0, H - 1)
    return img[y, x]


def _feather_maps(masks: np.ndarray, frags: list[Fragments], tol: float, feather_px: float) -> torch.Tensor:
    """(V, H, W) in [0, 1]: distance to the mask border / render border / depth jumps, ramped."""
    from scipy import ndimage

    out = []
    for m, fr in zip(masks, frags, strict=True):
        z = fr.depth.cpu().numpy()
        zf = np.where(np.isfinite(z), z, 1e3)
        jump = (ndimage.maximum_filter(zf, 3) - ndimage.minimum_filter(zf, 3)) > tol
        ok = m & np.isfinite(z) & ~jump
        d = ndimage.distance_transform_edt(ok)
        out.append(np.clip((d - 0.5) / feather_px, 0.0, 1.0))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def _paint_texels(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Cameras,
    images: torch.Tensor,
    masks: np.ndarray,
    is_input: list[bool],
    cfg: TextureConfig,
    rasterizer: Rasterizer,
    log: Callable[[str], None] = lambda _msg: None,
) -> _PaintedAtlas:
    """Unwrap the mesh and let every view vote on the colour of each chart texel it sees."""
    dev = cameras.device
    seconds = "about 45 s" if cfg.unwrap == "xatlas" else "a few seconds"
    log(f"texture: UV unwrap of {len(faces)} faces ({cfg.unwrap}: {seconds} per 100k faces on 2 CPU cores)")
    vmap, new_faces, uvs = unwrap(vertices, faces, cfg.unwrap, cfg.size)
    log(f"texture: painting a {cfg.size} px atlas from {len(cameras)} views")
    v3 = torch.tensor(vertices, dtype=torch.float32, device=dev)
    f3 = torch.tensor(faces, dtype=torch.long, device=dev)
    frags = [
        rasterizer.rasterize(uv, d, f3, cameras.height, cameras.width)
        for uv, d in zip(*cameras.project(v3), strict=True)
    ]
    feather = _feather_maps(masks, frags, cfg.depth_tolerance, cfg.feather_px).to(dev)
    S = cfg.size
    uv_t = torch.tensor(uvs, device=dev)
    nf = torch.tensor(new_faces, device=dev)
    tex_frags = rasterizer.rasterize(uv_to_pixels(uv_t, S), torch.ones(len(uvs), device=dev), nf, S, S)
    vn = vertex_normals(v3, f3)[torch.tensor(vmap, device=dev)]
    pos_map = interpolate(tex_frags, v3[torch.tensor(vmap, device=dev)], nf)
    nrm_map = interpolate(tex_frags, vn, nf)
    texel = tex_frags.covered.reshape(-1)
    tidx = torch.nonzero(texel).squeeze(1)
    p = pos_map.reshape(-1, 3)[tidx]
    n = nrm_map.reshape(-1, 3)[tidx]
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    def vote(v: int, pts: torch.Tensor, nrm: torch.Tensor, px: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """View v's weight for each texel (0 where occluded, back-facing or near a silhouette)."""
        zbuf = _nearest(frags[v].depth[..., None], px)[:, 0]
        visible = z <= zbuf + cfg.depth_tolerance
        to_cam = cameras.centers[v][None] - pts
        cos = (nrm * to_cam).sum(-1) / to_cam.norm(dim=-1)
        w = cos.clamp(min=0) ** cfg.cos_power * _bilinear(feather[v][..., None], px)[:, 0]
        w = torch.where(visible, w, torch.zeros_like(w))
        return w * cfg.input_weight if is_input[v] else w

    gains = torch.ones(len(cameras), 3, device=dev)
    if cfg.delight.enabled and cfg.delight.view_gains and len(cameras) > 1 and len(tidx):
        gen = torch.Generator().manual_seed(cfg.delight.seed)
        sub = torch.randperm(len(tidx), generator=gen)[: cfg.gain_samples].to(dev)
        sub_px, sub_z = cameras.project(p[sub])
        cols, ws = [], []
        for v in range(len(cameras)):
            ws.append(vote(v, p[sub], n[sub], sub_px[v], sub_z[v]))
            cols.append(_bilinear(images[v].to(dev), sub_px[v]))
        reference = next((v for v in range(len(cameras)) if is_input[v]), None)
        gains = torch.tensor(
            estimate_view_gains(torch.stack(cols, 1).cpu().numpy(), torch.stack(ws, 1).cpu().numpy(), reference),
            dtype=torch.float32, device=dev,
        )
    acc = torch.zeros(len(tidx), 3, device=dev)
    wsum = torch.zeros(len(tidx), device=dev)
    best = torch.zeros(len(tidx), device=dev)
    uv_px, depth = cameras.project(p)
    for v in range(len(cameras)):
        w = vote(v, p, n, uv_px[v], depth[v])
        sel = w > 1e-6
        if bool(sel.any()):
            acc[sel] += w[sel, None] * _bilinear(images[v].to(dev), uv_px[v][sel]) / gains[v]
            wsum[sel] += w[sel]
            best = torch.maximum(best, w / cfg.input_weight if is_input[v] else w)
    painted = wsum > 1e-6
    colour = torch.zeros(S * S, 3, device=dev)
    colour[tidx[painted]] = acc[painted] / wsum[painted, None]
    filled = torch.zeros(S * S, dtype=torch.bool, device=dev)
    filled[tidx[painted]] = True
    normal = torch.zeros(S * S, 3, device=dev)
    normal[tidx] = n
    strength = torch.zeros(S * S, device=dev)
    strength[tidx[painted]] = best[painted]
    return _PaintedAtlas(
        vmap=vmap,
        faces=new_faces,
        uv=uvs,
        colour=colour.reshape(S, S, 3).cpu().numpy(),
        painted=filled.reshape(S, S).cpu().numpy(),
        face_id=tex_frags.face_id.cpu().numpy(),
        bary=tex_frags.bary.cpu().numpy(),
        normal=normal.reshape(S, S, 3).cpu().numpy(),
        view_gains=gains.cpu().numpy(),
        strength=strength.reshape(S, S).cpu().numpy(),
    )


def _vertex_graph(vertices: np.ndarray, faces: np.ndarray):
    """Symmetric sparse (N, N) edge weights W_ij = 1 / |x_i - x_j| over the mesh's undirected edges."""
    from scipy import sparse

    n = len(vertices)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0).astype(np.int64)
    key = np.unique(np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1]))
    i, j = key // n, key % n
    length = np.linalg.norm(vertices[i] - vertices[j], axis=1)
    w = 1.0 / np.maximum(length, 1e-9 * float(length.mean()) + 1e-30)
    W = sparse.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    return W.tocsr()


def harmonic_fill(
    vertices: np.ndarray, faces: np.ndarray, values: np.ndarray, known: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Extend per-vertex `values` (N, C) from the `known` vertices to the rest by a harmonic solve.

    The unknown vertices u satisfy (D - W)_uu x_u = W_uk x_k (each the weighted mean of its
    neighbours), so the filled field is smooth and bounded by the colours around the hole. A small
    pull `eps` (relative to the mean degree) towards the mean known value keeps components with no
    known vertex well posed. Known values are returned unchanged.
    """
    from scipy.sparse import diags
    from scipy.sparse.linalg import splu

    out = np.array(values, dtype=np.float64, copy=True)
    unknown = ~known
    if not unknown.any() or not known.any():
        return out
    W = _vertex_graph(vertices, faces)
    deg = np.asarray(W.sum(1)).ravel()
    u = np.nonzero(unknown)[0]
    k = np.nonzero(known)[0]
    mean = out[k].mean(0)
    lam = eps * float(deg.mean())
    A = (diags(deg[u] + lam) - W[u][:, u]).tocsc()
    rhs = W[u][:, k] @ out[k] + lam * mean[None]
    out[u] = splu(A).solve(rhs)
    return out


def _fill_from_surface(
    atlas: _PaintedAtlas, vertices: np.ndarray, faces: np.ndarray, known: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Colour every chart texel outside `known` (default: the painted ones) from the mesh around it; returns the
    image and how many were filled."""
    S = atlas.face_id.shape[0]
    face_id = atlas.face_id.reshape(-1)
    painted = (atlas.painted if known is None else known).reshape(-1)
    hole = np.flatnonzero((face_id >= 0) & ~painted)
    seen = np.flatnonzero(painted)
    channels = atlas.colour.shape[-1]
    img = atlas.colour.reshape(-1, channels).copy()
    if not len(hole) or not len(seen):
        return img.reshape(S, S, channels), 0
    bary = atlas.bary.reshape(-1, 3)
    corners = atlas.vmap[atlas.faces]  # (M, 3) input vertex ids of each atlas face
    # per input vertex: barycentric-weighted mean of the painted texels of the faces around it
    n = len(vertices)
    corner = corners[face_id[seen]].reshape(-1)
    b = bary[seen].reshape(-1).astype(np.float64)
    c = img[seen]
    wsum = np.bincount(corner, b, minlength=n)
    acc = np.stack([np.bincount(corner, b * np.repeat(c[:, ch], 3), minlength=n) for ch in range(c.shape[1])], 1)
    known = wsum > 1e-6
    acc[known] /= wsum[known, None]
    vc = harmonic_fill(vertices, faces, acc, known).astype(np.float32)
    # unseen texel = barycentric interpolation of its face's vertex colours
    img[hole] = np.einsum("tk,tkc->tc", bary[hole], vc[corners[face_id[hole]]])
    return img.reshape(S, S, channels), len(hole)


def _fill_uv_nearest(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Every texel outside `known` takes the colour of the nearest known texel in UV space (edge padding)."""
    from scipy import ndimage

    if not known.any() or known.all():
        return img
    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return img[iy, ix]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Cameras,
    images: torch.Tensor,
    masks: np.ndarray,
    is_input: list[bool],
    cfg: TextureConfig | None = None,
    rasterizer: Rasterizer | None = None,
    log: Callable[[str], None] | None = None,
) -> BakedTexture:
    """Unwrap the mesh and bake an albedo atlas from the views (images (V, H, W, 3) in [0, 1]).

    `log` gets a line as each step starts (with `unwrap="xatlas"` the unwrap alone takes most of a minute).
    """
    cfg = cfg or TextureConfig()
    rasterizer = rasterizer or TorchRasterizer()
    log = log or (lambda _msg: None)
    atlas = _paint_texels(vertices, faces, cameras, images, masks, is_input, cfg, rasterizer, log)
    chart = atlas.chart
    n_chart = int(chart.sum())
    coverage = float(atlas.painted.sum()) / n_chart if n_chart else 0.0
    lighting = None
    if cfg.delight.enabled and atlas.painted.sum() >= 100:
        log("texture: estimating the lighting and de-lighting the albedo")
        lighting, delit = _delight_atlas(atlas, cfg.delight)
    known = _delit_known(atlas, cfg) if lighting is not None and lighting.varies() else atlas.painted
    refill = not np.array_equal(known, atlas.painted)  # the de-lit albedo also refills what only grazing views saw
    if lighting is not None:  # report.json: how much of the de-lit albedo came from the surface around it
        lighting.extra["grazing_refilled"] = round(float((atlas.painted & ~known).sum() / atlas.painted.sum()), 4)
        if not refill:  # lit and de-lit filled together: one harmonic solve for six channels
            atlas.colour = np.concatenate([atlas.colour, delit], -1)
    log("texture: filling unseen texels from the surface around them")
    img, n_filled = _fill_from_surface(atlas, vertices, faces)
    img = _fill_uv_nearest(img, chart if n_filled else atlas.painted)  # the gutter only, once charts are full
    if refill:
        img_delit, _ = _fill_from_surface(replace(atlas, colour=delit), vertices, faces, known)
        img = np.concatenate([img, _fill_uv_nearest(img_delit, chart)], -1)
    surface_filled = n_filled / n_chart if n_chart else 0.0
    lit = _to_uint8(img[..., :3])
    albedo = _to_uint8(img[..., 3:]) if lighting is not None else lit
    return BakedTexture(
        vertices[atlas.vmap], atlas.faces, atlas.uv, albedo, coverage, atlas.vmap, surface_filled,
        albedo_lit=lit if lighting is not None else None, lighting=lighting,
    )


def _delit_known(atlas: _PaintedAtlas, cfg: TextureConfig) -> np.ndarray:
    """Painted texels whose de-lit colour is kept: seen by some view at a cosine of at least cfg.delit_min_cos.

    A texel only grazing views see is painted with the colour of a pixel whose footprint runs over a range of
    normals (under the chin, the neck's cut end seen from 15 degrees below); dividing it by the shading at the
    texel's own normal gives a wrong albedo (the cut end under a fill from below: several times too dark).
    Only a shading that varies with the normal does that: under a constant one (unlit views) every texel is kept.
    """
    if atlas.strength is None or cfg.delit_min_cos <= 0:
        return atlas.painted
    return atlas.painted & (atlas.strength >= cfg.delit_min_cos**cfg.cos_power)


def _delight_atlas(atlas: _PaintedAtlas, cfg: DelightConfig) -> tuple[Lighting, np.ndarray]:
    """Fit the lighting to the painted texels (linear colour, surface normal) and divide it out of them."""
    lighting, delit = delight_atlas(atlas.colour, atlas.normal, atlas.painted, cfg)
    lighting.view_gains = atlas.view_gains
    return lighting, delit.astype(np.float32)


def render_textured(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor,
    albedo: torch.Tensor,
    cameras: Cameras,
    rasterizer: Rasterizer | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the textured mesh into each camera: RGB on white (V, H, W, 3) and coverage (V, H, W)."""
    rasterizer = rasterizer or TorchRasterizer()
    S = albedo.shape[0]
    uvs, depth = cameras.project(vertices)
    rgbs, covs = [], []
    for v in range(len(cameras)):
        fr = rasterizer.rasterize(uvs[v], depth[v], faces, cameras.height, cameras.width)
        tex_px = interpolate(fr, uv_to_pixels(uv, S), faces)
        rgb = torch.ones(cameras.height, cameras.width, 3, device=vertices.device)
        hit = fr.covered
        rgb[hit] = _bilinear(albedo.float(), tex_px[hit])
        rgbs.append(rgb)
        covs.append(hit)
    return torch.stack(rgbs), torch.stack(covs)
