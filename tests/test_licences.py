"""Issue 14: each weight file's licence travels with the head it made: ViewSet.generation["licences"]
-> HeadMesh provenance -> report.json and every GLB's asset.extras, with one commercial-use verdict."""

from __future__ import annotations

import json

from export_helpers import decode_glb

from exporters import ExportConfig, export_asset
from exporters.sample import procedural_head
from model_fetch import weights_licences
from spin_io.headmesh import PROVENANCE_KEY, provenance_from_generation


def _export(tmp_path, generation):
    head = procedural_head(n_lat=24, n_lon=48, texture_size=64)
    if generation is not None:
        head.metadata = {**head.metadata, PROVENANCE_KEY: provenance_from_generation(generation)}
    config = ExportConfig(lod_budgets=(1_200, 400), preview_tile=32, validate=False, preview=False)
    return export_asset(head, tmp_path, config)


def test_licences_reach_the_report_and_every_glb(tmp_path):
    licences = weights_licences(tmp_path / "empty", names=["spmr", "scrfd"], packaged=["dlib5"])
    assert [r["name"] for r in licences] == ["spmr", "scrfd", "dlib5"]
    result = _export(tmp_path / "out", {"generator": "test", "licences": licences})
    report = json.loads(result.files["report"].read_text())
    assert [r["name"] for r in report["licences"]] == ["spmr", "scrfd", "dlib5"]
    assert report["commercial_use"] is False  # antelopev2's detector is non-commercial
    for key, path in result.files.items():
        if key.startswith("lod"):
            extras = decode_glb(path.read_bytes())["gltf"].asset.extras
            assert extras["commercial_use"] is False
            assert {r["name"] for r in extras["licences"]} == {"spmr", "scrfd", "dlib5"}


def test_commercial_weights_and_unknown_provenance(tmp_path):
    ok = weights_licences(tmp_path / "empty", names=["spmr"], packaged=["dlib5"])
    report = json.loads(_export(tmp_path / "a", {"licences": ok}).files["report"].read_text())
    assert report["commercial_use"] is True
    unknown = json.loads(_export(tmp_path / "b", None).files["report"].read_text())
    assert unknown["licences"] == [] and unknown["commercial_use"] is None  # no record: never claimed


def test_alignment_warnings_reach_the_report(tmp_path):
    """face.json's warnings, carried in ViewSet.generation, are listed at the top of report.json (a TD filters on
    them); junk entries are dropped, and a head without any has an empty list, never a missing key."""
    warning = "matting fell back to GrabCut"
    result = _export(tmp_path / "a", {"alignment_warnings": [warning, 7, ""]})
    report = json.loads(result.files["report"].read_text())
    assert report["alignment_warnings"] == [warning] == report["provenance"]["alignment_warnings"]
    clean = json.loads(_export(tmp_path / "b", {"licences": []}).files["report"].read_text())
    assert clean["alignment_warnings"] == [] and "alignment_warnings" not in clean["provenance"]
