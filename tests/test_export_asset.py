"""export_asset and `spin-to-mesh export`: asset folder, report.json, bad input, atomic writes, CLI."""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import pytest
from export_helpers import decode_glb, quad_mesh
from PIL import Image

import exporters.export as export_module
from exporters import (
    EmptyMeshError,
    ExportConfig,
    ExportConfigError,
    FaceIndexError,
    MeshInputError,
    NonFiniteVerticesError,
    OutputExistsError,
    TextureError,
    UVError,
    ValidationFailedError,
    export_asset,
)
from exporters.sample import procedural_head
from flows.cli import main as cli_main
from spin_io.headmesh import write_headmesh

BUDGETS = (1500, 600, 250)


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh") / "mesh"
    write_headmesh(d, procedural_head(n_lat=24, n_lon=48, texture_size=128))  # 2,208 triangles
    return d


@pytest.fixture(scope="module")
def asset(mesh_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("asset") / "asset"
    return export_asset(mesh_dir, out, ExportConfig(lod_budgets=BUDGETS, preview_tile=64))


def test_asset_folder_has_every_file(asset):
    names = sorted(p.name for p in asset.asset_dir.iterdir())
    assert names == ["head.glb", "head_lod1.glb", "head_lod2.glb", "preview.png", "report.json"]
    preview = np.asarray(Image.open(asset.files["preview"]))
    assert preview.shape == (2 * 64, 4 * 64, 3)  # 8 yaw views in a 4 x 2 grid
    assert preview.std() > 10  # not a blank sheet


def test_report_matches_the_files(asset, mesh_dir):
    report = json.loads(asset.files["report"].read_text())
    assert report["complete"] and report["schema_version"] == 1
    assert report["source"]["mesh_dir"] == str(mesh_dir.resolve())
    npz_hash = hashlib.sha256((mesh_dir / "head.npz").read_bytes()).hexdigest()
    assert report["source"]["sha256"]["head.npz"] == npz_hash
    assert report["texture"]["width"] == report["texture"]["height"] == 128
    assert [lod["file"] for lod in report["lods"]] == ["head.glb", "head_lod1.glb", "head_lod2.glb"]
    for lod, budget in zip(report["lods"], BUDGETS, strict=True):
        path = asset.asset_dir / lod["file"]
        data = path.read_bytes()
        assert lod["bytes"] == len(data) and lod["sha256"] == hashlib.sha256(data).hexdigest()
        glb = decode_glb(data)
        assert lod["triangles"] == sum(len(p["indices"]) for p in glb["primitives"]) <= budget
        assert lod["vertices"] == sum(len(p["POSITION"]) for p in glb["primitives"])
        positions = np.concatenate([p["POSITION"] for p in glb["primitives"]])
        np.testing.assert_allclose(lod["bounding_box_m"]["min"], positions.min(0), atol=1e-7)
        np.testing.assert_allclose(lod["bounding_box_m"]["max"], positions.max(0), atol=1e-7)
    size = np.array(report["bounding_box_m"]["size"])
    assert np.all((size > 0.1) & (size < 0.3))  # a head, in metres
    assert report["preview"]["sha256"] == hashlib.sha256(asset.files["preview"].read_bytes()).hexdigest()
    assert report["timings_s"]["total"] > 0 and report["settings"]["lod_budgets"] == list(BUDGETS)
    validation = report["validation"]
    if validation["ran"]:
        assert validation["passed"] and validation["errors"] == validation["warnings"] == 0
    else:
        assert "not found" in validation["reason"]


def test_report_is_written_last(asset):
    mtimes = {p.name: p.stat().st_mtime_ns for p in asset.asset_dir.iterdir()}
    assert mtimes["report.json"] == max(mtimes.values())


def test_texture_size_option(mesh_dir, tmp_path):
    result = export_asset(mesh_dir, tmp_path / "a", ExportConfig(lod_budgets=(500,), texture_size=64, preview=False))
    assert result.report["texture"]["width"] == 64
    assert decode_glb(result.files["lod0"].read_bytes())["images"][0].shape == (64, 64, 3)


# ---- bad input: a clear ExportError subclass, and nothing written -------------------------------------------


def _write(tmp_path, **changes):
    mesh = quad_mesh()
    for key, value in changes.items():
        setattr(mesh, key, value)
    return write_headmesh(tmp_path / "mesh", mesh)


def _corrupt_npz(mesh_dir, drop=None, **arrays):
    with np.load(mesh_dir / "head.npz") as data:
        content = {k: data[k] for k in data.files if k != drop}
    content.update(arrays)
    np.savez(mesh_dir / "head.npz", **content)


BAD_INPUTS = {
    "empty": (
        lambda d: _write(d, vertices=np.zeros((0, 3)), faces=np.zeros((0, 3)), uv=np.zeros((0, 2))),
        EmptyMeshError,
        "empty",
    ),
    "nan": (lambda d: _write(d, vertices=quad_mesh().vertices * [1, np.nan, 1]), NonFiniteVerticesError, "NaN"),
    "inf": (
        lambda d: _write(d, vertices=np.where(np.eye(4, 3) > 0, np.inf, quad_mesh().vertices)),
        NonFiniteVerticesError,
        "infinite",
    ),
    "face_range": (lambda d: _write(d, faces=np.array([[0, 1, 2], [0, 2, 7]])), FaceIndexError, "outside [0, 3]"),
    "negative_face": (lambda d: _write(d, faces=np.array([[0, 1, 2], [0, -1, 3]])), FaceIndexError, "outside"),
    "uv_missing": (lambda d: _corrupt_npz(_write(d), drop="uv"), UVError, "no 'uv'"),
    "uv_range": (lambda d: _write(d, uv=quad_mesh().uv * 1.5), UVError, "outside [0, 1]"),
    "uv_nan": (lambda d: _write(d, uv=quad_mesh().uv * [1, np.nan]), UVError, "NaN"),
    "uv_shape": (lambda d: _corrupt_npz(_write(d), uv=np.zeros((3, 2), np.float32)), UVError, "one row per vertex"),
    "albedo_not_image": (
        lambda d: (_write(d) / "albedo.png").write_bytes(b"this is not a PNG"),
        TextureError,
        "albedo.png",
    ),
    "normal_not_image": (
        lambda d: (_write(d) / "normal_map.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
        TextureError,
        "normal map",
    ),
    "no_mesh_dir": (lambda d: None, MeshInputError, "no such mesh folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_clear_error_and_writes_nothing(case, tmp_path):
    make, error, words = BAD_INPUTS[case]
    make(tmp_path)
    out = tmp_path / "asset"
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        export_asset(tmp_path / "mesh", out, ExportConfig(lod_budgets=(100,)))
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path):
    mesh_dir = _write(tmp_path)
    out = tmp_path / "asset"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_asset(mesh_dir, out, ExportConfig(lod_budgets=(100,)))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        export_asset(mesh_dir, tmp_path / "file", ExportConfig(lod_budgets=(100,), overwrite=True))


def test_overwrite_replaces_outputs_and_drops_stale_lods(mesh_dir, tmp_path):
    out = tmp_path / "asset"
    export_asset(mesh_dir, out, ExportConfig(lod_budgets=(800, 300), preview=False))
    assert (out / "head_lod1.glb").exists()
    result = export_asset(mesh_dir, out, ExportConfig(lod_budgets=(600,), preview=False, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["head.glb", "report.json"]
    assert result.report["lods"][0]["triangles"] <= 600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"roughness": 1.5},
        {"roughness": float("nan")},
        {"lod_budgets": ()},
        {"lod_budgets": (100, 200)},
        {"lod_budgets": (0,)},
        {"texture_size": 3},
        {"preview_views": 0},
    ],
)
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ExportConfigError):
        ExportConfig(**kwargs)


# ---- atomic behaviour ----------------------------------------------------------------------------------------


def test_crash_mid_glb_write_leaves_no_glb(tmp_path, monkeypatch):
    mesh_dir = _write(tmp_path)
    real_write_bytes = pathlib.Path.write_bytes

    def crash_half_way(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pathlib.Path, "write_bytes", crash_half_way)
    out = tmp_path / "asset"
    with pytest.raises(OSError, match="simulated"):
        export_asset(mesh_dir, out, ExportConfig(lod_budgets=(100,), preview=False))
    assert list(out.iterdir()) == []  # no head.glb, no temporary, no report


def test_crash_after_glbs_leaves_folder_flagged_incomplete(mesh_dir, tmp_path, monkeypatch):
    out = tmp_path / "asset"
    export_asset(mesh_dir, out, ExportConfig(lod_budgets=(500,), preview=False))
    assert (out / "report.json").exists()

    def crash(*args, **kwargs):
        raise OSError("crash while writing the preview (simulated)")

    monkeypatch.setattr(export_module, "atomic_write_png", crash)
    with pytest.raises(OSError, match="simulated"):
        export_asset(mesh_dir, out, ExportConfig(lod_budgets=(500,), preview_tile=32, overwrite=True))
    assert (out / "head.glb").exists() and not (out / "report.json").exists()  # old report removed first
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_validator_problems_are_flagged_in_report(tmp_path, monkeypatch):
    import exporters.validate as validate_module

    warning = {
        "validatorVersion": "x",
        "issues": {
            "numErrors": 0,
            "numWarnings": 1,
            "numInfos": 0,
            "numHints": 0,
            "messages": [{"code": "SOME_WARNING", "severity": 1}],
        },
    }
    monkeypatch.setattr(validate_module, "find_validator", lambda: validate_module.ValidatorInfo("node", tmp_path, "x"))
    monkeypatch.setattr(validate_module, "validate_glbs", lambda paths: [warning for _ in paths])
    out = tmp_path / "asset"
    with pytest.raises(ValidationFailedError, match="report"):
        export_asset(_write(tmp_path), out, ExportConfig(lod_budgets=(100,), preview=False))
    report = json.loads((out / "report.json").read_text())
    assert report["validation"]["passed"] is False and report["validation"]["warnings"] == 1
    assert report["lods"][0]["validator"]["codes"] == {"SOME_WARNING (severity 1)": 1}


# ---- CLI -----------------------------------------------------------------------------------------------------


def test_cli_export_end_to_end(mesh_dir, tmp_path, capsys):
    out = tmp_path / "asset"
    argv = [
        "export",
        str(mesh_dir),
        "-o",
        str(out),
        "--lod-budgets",
        "1200,400",
        "--roughness",
        "0.45",
        "--texture-size",
        "64",
        "--no-roughness-map",
    ]
    assert cli_main(argv) == 0
    stdout = capsys.readouterr().out
    assert "head.glb" in stdout and "report.json" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["lod_budgets"] == [1200, 400] and report["texture"]["width"] == 64
    assert sorted(p.name for p in out.iterdir()) == ["head.glb", "head_lod1.glb", "preview.png", "report.json"]
    gltf = decode_glb((out / "head.glb").read_bytes())["gltf"]
    assert gltf.materials[0].pbrMetallicRoughness.roughnessFactor == pytest.approx(0.45)
    # Existing output without --overwrite: exit 2, one clear line, nothing changed.
    before = (out / "head.glb").read_bytes()
    assert cli_main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "head.glb").read_bytes() == before
    assert cli_main([*argv, "--overwrite", "--no-preview", "--no-validate"]) == 0
    assert not (out / "preview.png").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--lod-budgets", "1000,abc"], "not an integer"),
        (["--roughness", "2"], "roughness"),
        (["--texture-size", "8"], "texture size"),
    ],
)
def test_cli_bad_settings_exit_2(mesh_dir, tmp_path, capsys, extra, words):
    out = tmp_path / "asset"
    assert cli_main(["export", str(mesh_dir), "-o", str(out), *extra]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()
