"""Import GLBs into headless Blender and report what it sees (a second, independent glTF client).

`blender_import_report(paths)` launches Blender once for all files and returns, per file, the
mesh objects' vertex/face counts, materials (with their image textures) and dimensions in glTF
axes. Blender stores UVs and normals per face corner, yet its glTF importer (default settings)
keeps one Blender vertex per glTF vertex, so the vertex count equals the GLB's total.
If Blender's Python has no numpy (a distribution build without python3-numpy), the script
borrows the caller's numpy, which works when both run the same Python minor version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from exporters.errors import ExportError

_MARKER = "SPIN_TO_MESH_BLENDER_REPORT "

_SCRIPT = r"""
import json, os, sys
import bpy

try:
    import numpy  # noqa: F401  (Blender's glTF importer needs it)
except ImportError:
    # Some distribution builds run Blender on a system Python without numpy: borrow the caller's.
    sys.path.append(os.environ.get("SPIN_TO_MESH_NUMPY_PATH", ""))

results = []
for path in sys.argv[sys.argv.index("--") + 1:]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    objects = []
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH":
            continue
        materials = []
        for slot in obj.material_slots:
            mat = slot.material
            images = []
            if mat is not None and mat.use_nodes:
                images = [n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
            materials.append({"name": mat.name if mat else None, "images": images})
        objects.append({
            "name": obj.name,
            "vertices": len(obj.data.vertices),
            "faces": len(obj.data.polygons),
            "uv_layers": len(obj.data.uv_layers),
            "materials": materials,
            "dimensions_blender": list(obj.dimensions),
            "matrix_is_identity_rotation_scale": all(
                abs(obj.matrix_world[i][j] - (1.0 if i == j else 0.0)) < 1e-6 for i in range(3) for j in range(3)
            ),
        })
    results.append({"file": path, "objects": objects})
print("__MARKER__" + json.dumps(results))
""".replace("__MARKER__", _MARKER)


def find_blender() -> str | None:
    """The `blender` executable on PATH, or None."""
    return shutil.which("blender")


def blender_import_report(paths: list[str | Path], timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """One headless Blender launch that imports each GLB into an empty scene; see the module docstring.

    Blender is Z-up and converts glTF's +Y up on import: `dimensions_gltf` undoes that
    ((x, y, z)_glTF = (x, z, y)_Blender for extents).
    """
    blender = find_blender()
    if blender is None:
        raise ExportError("Blender is not installed (apt-get install blender); the import check needs it")
    import numpy

    files = [str(Path(p).resolve()) for p in paths]
    env = dict(os.environ)
    env["SPIN_TO_MESH_NUMPY_PATH"] = str(Path(numpy.__file__).parent.parent)
    proc = subprocess.run(
        [blender, "-b", "--factory-startup", "--python-expr", _SCRIPT, "--", *files],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_MARKER):
            results = json.loads(line[len(_MARKER) :])
            for result in results:
                for obj in result["objects"]:
                    x, y, z = obj["dimensions_blender"]
                    obj["dimensions_gltf"] = [x, z, y]
            return results
    raise ExportError(f"Blender did not report (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
