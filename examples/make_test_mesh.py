"""Write a sample HeadMesh folder that `spin-to-mesh export` can turn into an asset.

    python examples/make_test_mesh.py mesh_sample/                     # fsaverage head (needs mne), ~16k triangles
    python examples/make_test_mesh.py mesh_sample/ --subdivisions 2    # ~65k triangles
    python examples/make_test_mesh.py mesh_sample/ --procedural        # no mne needed
    spin-to-mesh export mesh_sample/ -o asset_sample/

The texture is baked from a smooth colour field of 3D position (exporters.sample.colour_field),
so any correctly textured LOD shows the same colours at the same place on the head.
"""

from __future__ import annotations

import argparse
import sys

from exporters.sample import fsaverage_head, procedural_head
from spin_io.headmesh import write_headmesh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="HeadMesh folder to write (created if missing)")
    parser.add_argument("--procedural", action="store_true", help="ellipsoid head instead of fsaverage")
    parser.add_argument("--subdivisions", type=int, default=1, help="Loop subdivisions of fsaverage (4k x 4^n tris)")
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--normal-map", action="store_true", help="also write a tangent-space normal_map.png")
    args = parser.parse_args(argv)
    if args.procedural:
        head = procedural_head(n_lat=64, n_lon=128, texture_size=args.texture_size, normal_map=args.normal_map)
    else:
        head = fsaverage_head(args.subdivisions, texture_size=args.texture_size, normal_map=args.normal_map)
    write_headmesh(args.out_dir, head)
    print(
        f"{args.out_dir}: {len(head.vertices)} vertices, {len(head.faces)} triangles, "
        f"texture {head.albedo.shape[1]}x{head.albedo.shape[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
