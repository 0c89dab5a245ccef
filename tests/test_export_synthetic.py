"""Issue 15 item 4: a head made from synthetic views says so in every final output: preview.png (a banner
drawn into the image), report.json (top-level "synthetic" and "warning") and each GLB (asset.generator,
asset.extras, node name); the provenance travels ViewSet.generation -> HeadMesh metadata -> export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_helpers import decode_glb

from exporters import ExportConfig, export_asset
from exporters.sample import procedural_head
from flows.cli import main as cli_main
from spin_io.headmesh import (
    PROVENANCE_KEY,
    head_provenance,
    provenance_from_generation,
    read_headmesh,
    write_headmesh,
)

TILE = 64
# what flows' synthetic views backend writes into transforms.json's "generation"
FLOWS_GENERATION = {"backend": "synthetic", "synthetic": True, "synthetic_head": "procedural-0", "seed": 42}


def _head(generation=None):
    head = procedural_head(n_lat=24, n_lon=48, texture_size=64)
    if generation is not None:
        head.metadata = {**head.metadata, PROVENANCE_KEY: provenance_from_generation(generation)}
    return head


def _export(head, out, **kwargs):
    config = ExportConfig(lod_budgets=(1_200, 400), preview_tile=TILE, validate=False, **kwargs)
    return export_asset(head, out, config)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return _export(_head(FLOWS_GENERATION), root / "synthetic"), _export(_head(), root / "real")


def _red(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(int)
    return (p[..., 0] > 150) & (p[..., 1] < 80) & (p[..., 2] < 80)


def test_preview_carries_a_banner(pair):
    from PIL import Image

    synthetic, real = (np.asarray(Image.open(r.files["preview"])) for r in pair)
    assert real.shape == (2 * TILE, 4 * TILE, 3)
    band = synthetic.shape[0] - real.shape[0]
    assert band >= 28 and synthetic.shape[1] == real.shape[1]  # a banner row above the unchanged sheet
    banner = synthetic[:band]
    assert _red(banner).mean() > 0.6  # a red band ...
    white = (banner.astype(int) > 200).all(axis=2)
    assert white.mean() > 0.03  # ... with white lettering
    assert _red(real).mean() < 0.05  # a real head's preview has none
    tags = synthetic[band:][TILE - 16 : TILE, :40]  # every tile's corner is tagged too
    assert _red(tags).mean() > 0.2


def test_report_says_synthetic_at_top_level(pair):
    synthetic, real = (json.loads(r.files["report"].read_text()) for r in pair)
    assert synthetic["synthetic"] is True and "SYNTHETIC" in synthetic["warning"]
    assert "not from the photo" in synthetic["warning"]
    assert synthetic["provenance"]["views_backend"] == "synthetic"
    assert real["synthetic"] is False and "warning" not in real


def test_every_glb_says_synthetic(pair):
    synthetic, real = pair
    for level in range(2):
        gltf = decode_glb(synthetic.files[f"lod{level}"].read_bytes())["gltf"]
        assert gltf.asset.extras["synthetic"] is True and "SYNTHETIC" in gltf.asset.extras["warning"]
        assert "SYNTHETIC" in gltf.asset.generator
        assert "SYNTHETIC" in gltf.nodes[0].name and gltf.nodes[0].extras["synthetic"] is True
        plain = decode_glb(real.files[f"lod{level}"].read_bytes())["gltf"]
        assert plain.asset.extras["synthetic"] is False and "SYNTHETIC" not in plain.asset.generator
        assert plain.nodes[0].name == ("head" if level == 0 else f"head_lod{level}")


def test_provenance_round_trips_through_the_headmesh_folder(tmp_path):
    mesh_dir = write_headmesh(tmp_path / "mesh", _head(FLOWS_GENERATION))
    assert head_provenance(read_headmesh(mesh_dir).metadata)["synthetic"] is True


def test_older_mesh_folder_is_recognised_from_metrics_generation(tmp_path, capsys):
    """Mesh folders written before mesh.json carried provenance: recon's metrics.json has the generation."""
    mesh_dir = write_headmesh(tmp_path / "mesh", _head(), metrics={"generation": FLOWS_GENERATION})
    assert PROVENANCE_KEY not in json.loads((mesh_dir / "mesh.json").read_text())["metadata"]
    argv = ["export", str(mesh_dir), "-o", str(tmp_path / "a"), "--lod-budgets", "400", "--no-validate"]
    assert cli_main(argv) == 0
    assert "SYNTHETIC" in capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "report.json").read_text())["synthetic"] is True


def test_a_real_mesh_with_unrelated_metrics_is_not_labelled(tmp_path):
    mesh_dir = write_headmesh(tmp_path / "mesh", _head(), metrics={"generation": {"backend": "spinmeround"}})
    assert head_provenance(read_headmesh(mesh_dir).metadata) == {"synthetic": False, "views_backend": "spinmeround"}


@pytest.mark.parametrize(
    ("generation", "synthetic"),
    [
        (FLOWS_GENERATION, True),
        ({"synthetic": "procedural-3", "seed": 0}, True),  # recon.synth.render_viewset's form
        ({"backend": "synthetic"}, True),
        ({"backend": "spinmeround", "seed": 1}, False),
        ({}, False),
        (None, False),
    ],
)
def test_provenance_from_generation(generation, synthetic):
    prov = provenance_from_generation(generation)
    assert prov["synthetic"] is synthetic
    assert ("warning" in prov) is synthetic


def test_recon_writes_the_viewsets_provenance_into_the_headmesh(tmp_path, monkeypatch):
    """recon.pipeline.run_recon copies ViewSet.generation's provenance into mesh.json (reconstruction stubbed)."""
    import spin_io.viewset
    from recon import pipeline
    from spin_io.viewset import ViewSet

    head = _head()
    fake = pipeline.ReconResult(head.vertices, head.faces, head.uv, head.albedo, -0.1, 1.0, None, {})
    monkeypatch.setattr(spin_io.viewset, "read_viewset", lambda _d: ViewSet(frames=[], generation=FLOWS_GENERATION))
    monkeypatch.setattr(pipeline, "reconstruct", lambda *_a, **_k: fake)
    mesh_dir = pipeline.run_recon(tmp_path / "views", tmp_path / "mesh")
    metadata = json.loads((mesh_dir / "mesh.json").read_text())["metadata"]
    assert metadata[PROVENANCE_KEY]["synthetic"] is True
    assert metadata[PROVENANCE_KEY]["views_backend"] == "synthetic"
