"""Split a mesh into primitives of at most 65,534 vertices so every index fits in uint16.

We split rather than decimate: decimation is the LOD budgets' job, and a user who asks for a
100k-triangle LOD0 gets exactly that geometry, as several primitives of the same mesh sharing
one material. 65,535 itself is excluded because it is the primitive-restart value of uint16 indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PRIMITIVE_VERTICES = 65_534


@dataclass
class PrimitiveRange:
    """A primitive: the source vertex ids it uses (local -> global) and its faces in local ids."""

    vertex_ids: np.ndarray  # (n,) int64
    faces: np.ndarray  # (m, 3) int64, indices into vertex_ids


def morton_order(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices that sort points along a Z-order (Morton) curve: nearby points end up nearby in the list."""
    p = np.asarray(points, np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = ((p - lo) / np.maximum(hi - lo, 1e-30) * ((1 << bits) - 1)).astype(np.int64)
    code = np.zeros(len(p), np.int64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((q[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(code, kind="stable")


def split_primitives(
    faces: np.ndarray, max_vertices: int = MAX_PRIMITIVE_VERTICES, vertices: np.ndarray | None = None
) -> list[PrimitiveRange]:
    """Cut the faces into runs whose distinct vertices number at most max_vertices.

    A mesh that fits is one run with its faces in their original order. Otherwise, when vertices
    are given, faces are first put in Morton order of their centroids so each run is a compact
    patch and only the vertices on the cuts are duplicated, whatever order the faces came in.
    Each run is the longest prefix that fits (binary search on the distinct-vertex count).
    """
    if max_vertices < 3:
        raise ValueError("a primitive needs room for at least one triangle")
    faces = np.asarray(faces, np.int64)
    if vertices is not None and np.unique(faces).size > max_vertices:
        faces = faces[morton_order(np.asarray(vertices, np.float64)[faces].mean(axis=1))]
    out: list[PrimitiveRange] = []
    start = 0
    while start < len(faces):
        lo, hi = start + 1, len(faces)  # faces[start:lo] always fits (3 vertices)
        if np.unique(faces[start:hi]).size > max_vertices:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if np.unique(faces[start:mid]).size <= max_vertices:
                    lo = mid
                else:
                    hi = mid
            end = lo
        else:
            end = hi
        run = faces[start:end]
        vertex_ids, local = np.unique(run, return_inverse=True)
        out.append(PrimitiveRange(vertex_ids, local.reshape(-1, 3)))
        start = end
    return out
