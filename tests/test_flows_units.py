"""flows/ without a Prefect server: inputs, parameters, cache keys, retry rules, stage adapters, CLI set-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from flows import stages
from flows.caching import code_version, is_transient, retry_condition, stage_key
from flows.errors import InputNotFoundError
from flows.inputs import photo_id, resolve_photos, sha256_file
from flows.params import AlignParams, ExportParams, ReconParams, RunOptions, RunParameters, ViewsParams
from flows.records import AlignedRecord, PhotoRecord, from_uri, to_uri


def _png(path: Path, value: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- inputs


def test_resolve_photo_folder_glob_and_manifests(tmp_path):
    a, b = _png(tmp_path / "p" / "a.png", 1), _png(tmp_path / "p" / "b.jpg", 2)
    (tmp_path / "p" / "notes.md").write_text("not a photo")
    assert resolve_photos(str(a)) == [a.resolve()]
    assert resolve_photos(str(tmp_path / "p")) == [a.resolve(), b.resolve()]
    assert resolve_photos(str(tmp_path / "p" / "*.png")) == [a.resolve()]
    txt = tmp_path / "list.txt"
    txt.write_text("# heads\np/b.jpg\n\np/a.png\np/a.png\n")
    assert resolve_photos(str(txt)) == [b.resolve(), a.resolve()], "manifest order, relative to the manifest, once"
    js = tmp_path / "list.json"
    js.write_text(json.dumps({"photos": ["p/*.jpg"]}))
    assert resolve_photos(str(js)) == [b.resolve()]


def test_resolve_refuses_what_is_not_there(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such photo"):
        resolve_photos(str(tmp_path / "missing.jpg"))
    with pytest.raises(InputNotFoundError, match="matches no photos"):
        resolve_photos(str(tmp_path / "*.png"))
    (tmp_path / "list.txt").write_text("gone.png\n")
    with pytest.raises(InputNotFoundError, match="gone.png"):
        resolve_photos(str(tmp_path / "list.txt"))
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(InputNotFoundError, match="neither a photo"):
        resolve_photos(str(tmp_path / "x.csv"))


def test_photo_id_is_readable_and_content_addressed(tmp_path):
    a = _png(tmp_path / "one" / "My Face!.png", 1)
    b = _png(tmp_path / "two" / "My Face!.png", 2)
    ia, ib = photo_id(a, sha256_file(a)), photo_id(b, sha256_file(b))
    assert ia.startswith("My_Face-") and ia != ib
    assert ia == photo_id(a, sha256_file(a))


def test_uri_round_trip(tmp_path):
    p = tmp_path / "a b" / "c#d.png"
    assert from_uri(to_uri(p)) == p.resolve()


# ---------------------------------------------------------------- parameters


def test_parameters_have_descriptions_and_bounds():
    for model in (AlignParams, ViewsParams, ReconParams, ExportParams, RunOptions, RunParameters):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} needs a description (it is the UI form)"
    with pytest.raises(ValidationError, match="num_views"):
        ViewsParams(num_views=40)
    with pytest.raises(ValidationError, match="must differ"):
        ViewsParams(pitch_rings_deg=[0.0, 0.0])
    with pytest.raises(ValidationError, match="must not increase"):
        ExportParams(lod_budgets=[100, 200])
    with pytest.raises(ValidationError, match="shard_index"):
        RunOptions(shard_index=2, shard_count=2)
    with pytest.raises(ValidationError, match="device"):
        RunOptions(device="gpu0")


def test_flow_parameter_schema_is_the_ui_form():
    pytest.importorskip("prefect")
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import spin_to_mesh

    schema = parameter_schema(spin_to_mesh.fn).model_dump_for_openapi()
    props = schema["properties"]
    assert schema["required"] == ["input", "output"]
    assert all(props[name].get("description") for name in props), "every flow parameter is described"
    views = schema["definitions"]["ViewsParams"]["properties"]
    assert views["num_views"]["maximum"] == 32 and views["backend"]["enum"] == ["spinmeround", "synthetic"]


def test_view_defaults_are_smr_core_defaults():
    from smr_core.pipeline import ViewsConfig

    ours, theirs = ViewsParams(), ViewsConfig()
    assert ours.num_views == theirs.num_views
    assert tuple(ours.pitch_rings_deg) == theirs.pitch_rings_deg
    assert (ours.seed, ours.cfg_scale, ours.steps) == (theirs.seed, theirs.cfg_scale, theirs.steps)


# ---------------------------------------------------------------- cache keys and retries


def _aligned(sha: str = "a" * 64) -> AlignedRecord:
    return AlignedRecord(photo_id="p-1", dir_uri="file:///x/aligned", sha256=sha, backend="offline", has_identity=False)


def test_cache_key_follows_content_parameters_and_weights_not_device():
    base = {"aligned": _aligned(), "params": ViewsParams(), "work_uri": "file:///x", "weights_id": "w1",
            "device": "cpu", "weights": "/a", "gpu_limit": None}
    key = stage_key("views", base)
    assert key == stage_key("views", dict(base))
    assert key == stage_key("views", {**base, "device": "cuda:1", "weights": "/b", "gpu_limit": "gpu-x-0"})
    assert key != stage_key("views", {**base, "aligned": _aligned("b" * 64)})
    assert key != stage_key("views", {**base, "params": ViewsParams(seed=1)})
    assert key != stage_key("views", {**base, "weights_id": "w2"})
    assert key != stage_key("recon", base), "stages never share keys"


def test_code_version_covers_each_stage_sources():
    versions = {s: code_version(s) for s in ("align", "views", "recon", "export")}
    assert len(set(versions.values())) == 4
    assert all(len(v) == 16 for v in versions.values())


def test_retry_only_transient_errors():
    from prefect.states import Failed

    from align import NoFaceError
    from exporters.errors import TextureError
    from recon.errors import ReconError
    from spin_io.errors import ContractError

    for user_error in (NoFaceError("x"), ReconError("x"), TextureError("x"), ContractError("x"), TimeoutError()):
        assert not retry_condition(None, None, Failed(data=user_error)), type(user_error).__name__
    assert retry_condition(None, None, Failed(data=RuntimeError("CUDA out of memory")))
    assert retry_condition(None, None, Failed(data=OSError("NFS hiccup")))
    assert is_transient(None)


def test_weights_id_changes_when_a_file_changes(tmp_path):
    (tmp_path / "w").mkdir()
    f = tmp_path / "w" / "model.ckpt"
    f.write_bytes(b"1")
    first = stages.folder_fingerprint(str(tmp_path / "w"))
    f.write_bytes(b"22")
    assert stages.folder_fingerprint(str(tmp_path / "w")) != first
    assert stages.views_weights_id(str(tmp_path / "w"), ViewsParams(backend="synthetic")) == "synthetic"
    assert stages.views_weights_id(None, ViewsParams(tiny_random=True)) == "tiny-random"


# ---------------------------------------------------------------- stage adapters


def test_staged_dir_is_all_or_nothing(tmp_path):
    final = tmp_path / "views"
    with pytest.raises(RuntimeError):
        with stages.staged_dir(final) as tmp:
            (tmp / "half.png").write_bytes(b"x")
            raise RuntimeError("crash")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "stale.png").write_bytes(b"old")
    with stages.staged_dir(final) as tmp:
        (tmp / "new.png").write_bytes(b"new")
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["views"]


def test_tree_sha256_sees_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    h = stages.tree_sha256(tmp_path / "a")
    (tmp_path / "a" / "x.txt").write_text("2")
    h2 = stages.tree_sha256(tmp_path / "a")
    (tmp_path / "a" / "x.txt").rename(tmp_path / "a" / "y.txt")
    assert len({h, h2, stages.tree_sha256(tmp_path / "a")}) == 3


def test_spinmeround_backend_passes_the_parameters(tmp_path, monkeypatch):
    import smr_core.viewset_out as viewset_out

    seen = {}

    def fake_generate(aligned_dir, out_dir, config, *, weights_dir=None, tiny_random=False, device=None, **_):
        seen.update(aligned_dir=aligned_dir, config=config, weights_dir=weights_dir, tiny=tiny_random, device=device)
        (Path(out_dir) / "transforms.json").write_text(json.dumps({"frames": [{}] * 5}))
        return out_dir

    monkeypatch.setattr(viewset_out, "generate_viewset", fake_generate)
    params = ViewsParams(num_views=5, pitch_rings_deg=[0.0, 30.0], seed=3, cfg_scale=2.0, steps=7, tiny_random=True,
                         attention_backend="cudnn")
    rec = stages.run_views(_aligned(), params, to_uri(tmp_path), device="cpu", weights=str(tmp_path / "w"))
    c = seen["config"]
    assert (c.num_views, c.pitch_rings_deg, c.seed, c.cfg_scale, c.steps) == (5, (0.0, 30.0), 3, 2.0, 7)
    assert c.attention_backend == "cudnn"
    assert seen["tiny"] and seen["device"] == "cpu" and seen["weights_dir"] == tmp_path / "w"
    assert seen["aligned_dir"] == Path("/x/aligned")
    assert (rec.n_views, rec.synthetic, rec.weights_id) == (5, False, "tiny-random")
    assert rec.sha256 == stages.tree_sha256(tmp_path / "views")


def test_recon_presets_map_onto_recon_config():
    preview = stages.recon_config(ReconParams(preset="preview", texture_size=256), "cpu")
    standard = stages.recon_config(ReconParams(texture_size=1024), "cuda")
    assert preview.texture.size == 256 and standard.texture.size == 1024 and standard.device == "cuda"
    assert preview.hull_voxel > standard.hull_voxel and preview.target_faces < standard.target_faces
    assert preview.fusion.rounds < standard.fusion.rounds
    assert standard.volume.reanchor and not preview.volume.reanchor  # one depth integration in the preview
    # the recon choices reach recon as its CLI flags do (the sweep is on unless open_pockets=False)
    assert standard.camera_align.enabled and standard.camera_align.correct_cameras
    assert not standard.camera_align.mask_offset and standard.volume.sweep.enabled
    chosen = stages.recon_config(ReconParams(fit_masks=True, trust_cameras=True, open_pockets=False), "cpu")
    assert chosen.camera_align.enabled and chosen.camera_align.mask_offset
    assert not chosen.camera_align.correct_cameras and not chosen.volume.sweep.enabled
    assert standard.volume.max_size == 512 and preview.volume.max_size == 512  # views integrated at their size
    assert stages.recon_config(ReconParams(depth_size=256), "cpu").volume.max_size == 256
    with pytest.raises(ValueError, match="depth_size"):
        ReconParams(depth_size=8)
    trusted = stages.recon_config(ReconParams(trust_cameras=True), "cpu")
    assert not trusted.camera_align.enabled
    # the flow's heads are de-lit as recon's own defaults are (albedo.png de-lit, albedo_lit.png beside it)
    for config in (preview, standard, chosen, trusted):
        assert config.texture.delight.enabled and config.texture.unwrap == "charts"


def test_gpu_limit_name_is_filled_on_the_worker(monkeypatch):
    pytest.importorskip("prefect")
    import socket

    from flows.tasks import fill_limit_name

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    host = socket.gethostname().split(".")[0].lower()
    assert fill_limit_name("gpu-{hostname}-{cuda_visible_devices}") == f"gpu-{host}-1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert fill_limit_name("gpu-{cuda_visible_devices}") == "gpu-2_3"


def test_photo_record_is_small_json():
    rec = PhotoRecord(photo_id="a-1", uri="file:///a.png", sha256="0" * 64, work_uri="file:///o/a-1")
    assert len(rec.model_dump_json()) < 400


# ---------------------------------------------------------------- CLI set-up


def test_cli_module_does_not_import_prefect():
    code = "import sys, flows.run_cli, flows.cli; flows.cli.build_parser(); print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_prefect_env_respects_the_user(tmp_path, monkeypatch):
    from flows.run_cli import configure_prefect_env

    for key in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # the user's own choices: kept as they are
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    updates = configure_prefect_env()
    assert updates["PREFECT_HOME"] == str(tmp_path / "xdg" / "spin-to-mesh" / "prefect")
    assert int(updates["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) > 20
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "mine"))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    assert configure_prefect_env() == {}
    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert configure_prefect_env() == {}, "a configured server is used as is"


def test_a_worker_loads_the_networks_once_for_all_its_photos(tmp_path, monkeypatch):
    import smr_core.pipeline as pipeline
    import smr_core.viewset_out as viewset_out

    loads, used = [], []

    def fake_load(weights_dir=None, *, device=None, use_ema=None):
        loads.append((weights_dir, device))
        return object()

    def fake_generate(aligned_dir, out_dir, config, *, pipeline=None, **_):
        used.append((pipeline, config.fast))
        (Path(out_dir) / "transforms.json").write_text(json.dumps({"frames": [{}] * 2}))
        return out_dir

    monkeypatch.setattr(pipeline.SpinMeRoundPipeline, "from_pretrained", fake_load)
    monkeypatch.setattr(viewset_out, "generate_viewset", fake_generate)
    stages.loaded_pipeline.cache_clear()
    try:
        params = ViewsParams(num_views=2, pitch_rings_deg=[0.0], steps=2, fast=True)
        for i in range(2):
            stages.run_views(_aligned(), params, to_uri(tmp_path / str(i)), device="cpu", weights=str(tmp_path / "w"))
    finally:
        stages.loaded_pipeline.cache_clear()
    assert loads == [(str(tmp_path / "w"), "cpu")]
    assert used[0][0] is used[1][0] is not None and used[0][1] is True


def test_run_cli_alignment_choices_reach_the_flow_parameters(tmp_path):
    import argparse

    from flows import run_cli

    parser = argparse.ArgumentParser()
    run_cli.register(parser.add_subparsers())
    args = parser.parse_args(["run", "p.jpg", "-o", str(tmp_path), "--matting", "grabcut", "--refinement", "landmark",
                              "--landmarks", "dlib68", "--attention-backend", "flash", "--no-normal-maps"])
    params = run_cli.build_parameters(args)
    assert (params.align.matting, params.align.refinement, params.align.landmarks) == ("grabcut", "landmark", "dlib68")
    assert params.views.attention_backend == "flash" and params.export.normal_maps is False
    defaults = run_cli.build_parameters(parser.parse_args(["run", "p.jpg", "-o", str(tmp_path)]))
    chosen = (defaults.align.matting, defaults.align.landmarks, defaults.views.attention_backend)
    assert chosen == ("auto", "dlib5", "auto") and defaults.export.normal_maps is True


def test_align_stage_builds_its_aligner_from_every_alignment_choice(tmp_path, monkeypatch):
    from flows.params import AlignParams
    from flows.records import PhotoRecord

    built = stages.loaded_aligner.__wrapped__("offline", "", "cpu", "grabcut", "landmark", "dlib68")
    assert (built.config.matting, built.config.refinement, built.config.offline.landmarks) == (
        "grabcut", "landmark", "dlib68")
    seen = []

    class Stop(Exception):
        pass

    class Recorder:
        def align(self, *a, **k):
            raise Stop

    monkeypatch.setattr(stages, "loaded_aligner", lambda *a: seen.append(a) or Recorder())
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    photo = PhotoRecord(photo_id="p", uri=to_uri(tmp_path / "p.jpg"), sha256="0" * 64, work_uri=to_uri(tmp_path))
    with pytest.raises(Stop):
        stages.run_align(photo, AlignParams(backend="offline", matting="grabcut", refinement="landmark",
                                            landmarks="dlib68"))
    assert seen == [("offline", "", "cpu", "grabcut", "landmark", "dlib68")]
    assert not (tmp_path / "aligned").exists()  # nothing half-written when the stage fails


def test_export_stage_passes_the_normal_map_choice(tmp_path, monkeypatch):
    import exporters
    from flows.params import ExportParams
    from flows.records import MeshRecord

    seen = []

    class Stop(Exception):
        pass

    def fake_export(source, asset_dir, config):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(exporters, "export_asset", fake_export)
    mesh = MeshRecord(photo_id="p", dir_uri=to_uri(tmp_path / "mesh"), sha256="0" * 64, metrics={})
    for flag in (True, False):
        with pytest.raises(Stop):
            stages.run_export(mesh, ExportParams(normal_maps=flag), to_uri(tmp_path))
    assert [c.normal_maps for c in seen] == [True, False]
    assert not (tmp_path / "asset").exists()


def test_photo_id_keeps_letters_of_any_script(tmp_path):
    """Issue 13: non-ASCII names kept their ASCII letters only ('Zoë Åberg' -> 'Zo_berg')."""
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "Zoë Åberg")  # as macOS file systems spell it
    for name in ("Zoë Åberg.jpg", f"{decomposed}.jpg", "Дмитрий.png", "山田 太郎.png"):
        path = tmp_path / name
        path.write_bytes(b"x")
        pid = photo_id(path, sha256_file(path))
        stem = unicodedata.normalize("NFC", Path(name).stem).replace(" ", "_")
        assert pid == f"{stem}-{sha256_file(path)[:8]}"


def test_a_photo_failing_in_align_leaves_no_empty_folder(tmp_path):
    """Issue 13: failed photos left empty folders behind."""
    from flows.records import PhotoRecord

    bad = tmp_path / "in" / "noface.png"
    bad.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 120, 120)).save(bad)
    work = tmp_path / "out" / "noface-00000000"
    photo = PhotoRecord(photo_id="noface-00000000", uri=to_uri(bad), sha256="0" * 64, work_uri=to_uri(work))
    with pytest.raises(Exception, match="face"):
        stages.run_align(photo, AlignParams(backend="offline", matting="grabcut", refinement="landmark"))
    assert not work.exists()


def test_the_align_record_carries_face_jsons_warnings(tmp_path, monkeypatch):
    """What the alignment lost (a GrabCut matte, hair cut by the frame) is in the stage's record, which the align
    task logs to the Prefect run, as well as in face.json."""
    from types import SimpleNamespace

    from flows.params import AlignParams

    warning = "the matte reaches the crop's top edge across 40 px of 512 between the ears"

    class Aligner:
        def align(self, path, out, face_index=None):
            out.mkdir(parents=True, exist_ok=True)
            (out / "face.json").write_text("{}")
            return SimpleNamespace(backend={"name": "offline", "warnings": [warning]}, arcface=None,
                                   head_pose={"yaw_deg": 1.0})

    monkeypatch.setattr(stages, "loaded_aligner", lambda *a: Aligner())
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    photo = PhotoRecord(photo_id="p", uri=to_uri(tmp_path / "p.jpg"), sha256="0" * 64, work_uri=to_uri(tmp_path))
    record = stages.run_align(photo, AlignParams(backend="offline"))
    assert record.warnings == [warning] and record.backend == "offline"


def test_the_form_offers_the_alignment_models_and_no_silent_face_choice():
    params = AlignParams(matting="selfie", refinement="facemesh", landmarks="facemesh")
    assert params.face_index is None  # several faces of similar size are refused unless the form picks one
    with pytest.raises(ValidationError):
        AlignParams(matting="magic")


def test_the_form_can_ask_for_usd_and_the_synthetic_demo_keeps_the_align_licences(tmp_path):
    """Issue 17 (`run`/the flow ask for USD) and issue 14 (licences reach the outputs of a synthetic run)."""
    import json as _json

    from exporters.sample import procedural_head
    from flows.records import MeshRecord
    from spin_io.headmesh import write_headmesh

    mesh_dir = tmp_path / "mesh"
    write_headmesh(mesh_dir, procedural_head(n_lat=16, n_lon=32, texture_size=64), {})
    params = ExportParams(lod_budgets=[800, 300], format="both", preview=False, validate_gltf=False)
    asset = stages.run_export(MeshRecord(photo_id="p", dir_uri=to_uri(mesh_dir), sha256="0"), params,
                              to_uri(tmp_path / "work"))
    out = from_uri(asset.dir_uri)
    assert (out / "head.glb").is_file() and (out / "head.usdz").is_file()
    assert _json.loads((out / "report.json").read_text())["settings"]["format"] == "both"
    assert ExportParams().roughness == 0.55  # the exporter's skin default, also in the form

    aligned = tmp_path / "aligned"
    aligned.mkdir()
    record = {"name": "dlib5", "licence": "public domain", "commercial_use": True}
    warning = "the matte reaches the crop's top edge"
    (aligned / "face.json").write_text(_json.dumps({"backend": {"licences": [record, "junk"],
                                                                "warnings": [warning, 3]}}))
    assert stages._aligned_backend_list(aligned, "licences", dict) == [record]
    assert stages._aligned_backend_list(aligned, "warnings", str) == [warning]
    assert stages._aligned_backend_list(None, "licences", dict) == []
    assert stages._aligned_backend_list(tmp_path / "nowhere", "warnings", str) == []


# ---------------------------------------------------------------- issue 16 item 6: dead runs are detectable

REPO_ROOT = Path(__file__).resolve().parents[1]


def _zombie_automation() -> dict:
    """The automation recipe of docs/PREFECT.md, as `prefect automation create --from-file` would read it."""
    import re

    import yaml

    text = (REPO_ROOT / "docs" / "PREFECT.md").read_text("utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "prefect automation create" in b]
    return yaml.safe_load(block)


def test_every_deployment_sends_heartbeats_prefect_accepts():
    import yaml
    from prefect.settings.models.flows import FlowsSettings

    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text("utf-8"))["deployments"]
    assert deployments
    for d in deployments:
        value = d["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]
        assert isinstance(value, str), "process env values are strings"
        # what the flow run's process will read: a positive number of seconds Prefect's own settings accept
        assert FlowsSettings(heartbeat_frequency=value).heartbeat_frequency == float(value) > 0, d["name"]


def test_the_documented_zombie_automation_is_valid_and_waits_several_heartbeats():
    import yaml
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import AutomationCore, Posture

    automation = AutomationCore.model_validate(_zombie_automation())
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive and "prefect.flow-run.heartbeat" in trigger.expect
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Crashed"} <= trigger.expect
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state == StateType.CRASHED
    beat = float(yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text("utf-8"))["deployments"][0]["work_pool"]
                 ["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    assert trigger.within.total_seconds() >= 3 * beat  # one late beat on a busy host does not crash a live run
    tags = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text("utf-8"))["deployments"][0]["tags"]
    assert "prefect.tag." + tags[0] in str(trigger.match_related)
