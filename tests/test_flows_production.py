"""Issue 16, Prefect in production: how a batch ends, what the form refuses, run names, the demo deployment.

The flow-level tests run the real flow in prefect_test_harness with every stage replaced by a stand-in
that takes milliseconds (align still decodes the photo, so a corrupt one fails as it would for real):
they are about the run's final state and artifacts, not the stages' work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from flows_helpers import FakeRecon, fast_kwargs, prefect_server  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from flows import stages  # noqa: E402
from flows.params import RunOptions, RunParameters, ViewsParams  # noqa: E402
from flows.records import AlignedRecord, AssetRecord, PhotoResult, RunSummary, ViewsRecord, from_uri, to_uri  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- stand-in stages


def fake_align(photo, params, weights=None, device="cpu") -> AlignedRecord:
    """Decodes the photo like the real aligner (a corrupt file raises ImageReadError), writes a token crop."""
    from align.image import load_image

    load_image(from_uri(photo.uri))
    out = from_uri(photo.work_uri) / "aligned"
    with stages.staged_dir(out) as tmp:
        (tmp / "crop.txt").write_text(photo.photo_id)
    return AlignedRecord(photo_id=photo.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                         backend="stand-in", has_identity=False)


def fake_views(aligned, params, work_uri, device="auto", weights=None) -> ViewsRecord:
    out = from_uri(work_uri) / "views"
    with stages.staged_dir(out) as tmp:
        (tmp / "transforms.json").write_text(json.dumps({"frames": []}))
    return ViewsRecord(photo_id=aligned.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                       backend="synthetic", synthetic=True, n_views=0, weights_id="synthetic")


def fake_export(mesh, params, work_uri) -> AssetRecord:
    out = from_uri(work_uri) / "asset"
    with stages.staged_dir(out) as tmp:
        (tmp / "head.glb").write_bytes(b"glTF stand-in")
    glb = out / "head.glb"
    return AssetRecord(photo_id=mesh.photo_id, dir_uri=to_uri(out), glb_uri=to_uri(glb),
                       glb_sha256=stages.file_sha256(glb), files={"lod0": to_uri(glb)}, summary={})


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """One Prefect test server for the module, with Prefect's home in a temporary folder."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")):
        yield


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(stages, "run_align", fake_align)
    monkeypatch.setattr(stages, "run_views", fake_views)
    monkeypatch.setattr(stages, "run_recon", FakeRecon())
    monkeypatch.setattr(stages, "run_export", fake_export)


def batch_of_four(folder: Path) -> Path:
    """Three small good photos and one corrupt one (a JPEG name on bytes that are no image)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("ann", "bob", "cyd")):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"{name}.png")
    (folder / "dee.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return folder


def _artifact(key: str, flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


# ---------------------------------------------------------------- item 1: how a batch ends


def test_a_batch_with_a_corrupt_photo_ends_failed_with_the_photo_named(harness, stand_ins, tmp_path):
    from flows.pipeline import spin_to_mesh

    photos = batch_of_four(tmp_path / "photos")
    out = tmp_path / "out"
    state = spin_to_mesh(input=str(photos), output=str(out), **fast_kwargs(), return_state=True)
    assert state.is_failed(), state
    assert state.message.startswith("3 of 4 heads; 1 failed: dee-"), state.message
    assert " in align: ImageReadError: " in state.message and "dee.jpg" in state.message
    summary: RunSummary = state.result(raise_on_failure=False)
    assert isinstance(summary, RunSummary), "the summary stays the run's result"
    kept = [from_uri(p.glb_uri) for p in summary.photos if p.status == "completed"]
    assert len(kept) == 3 and all(g.is_file() for g in kept), "the good heads are kept"
    failures = _artifact("spin-to-mesh-failures", state.state_details.flow_run_id)
    assert len(failures) == 1
    table = failures[0].data
    assert "| photo | stage | error type | reason |" in table
    row = next(ln for ln in table.splitlines() if ln.startswith("| dee-"))
    assert "| align | ImageReadError |" in row and "ann-" not in table


def test_partial_success_is_accepted_when_asked_and_says_so(harness, stand_ins, tmp_path):
    from flows.pipeline import spin_to_mesh

    photos = batch_of_four(tmp_path / "photos")
    kwargs = fast_kwargs(RunOptions(retries=0, allow_partial=True))
    state = spin_to_mesh(input=str(photos), output=str(tmp_path / "out"), **kwargs, return_state=True)
    assert state.is_completed(), state
    assert state.message.startswith("3 of 4 heads; 1 failed: dee-"), state.message
    assert state.result().n_completed == 3
    assert _artifact("spin-to-mesh-failures", state.state_details.flow_run_id), "the failures are listed"


def test_a_clean_batch_makes_no_failures_artifact(harness, stand_ins, tmp_path):
    from flows.pipeline import spin_to_mesh

    photos = batch_of_four(tmp_path / "photos")
    (photos / "dee.jpg").unlink()
    state = spin_to_mesh(input=str(photos), output=str(tmp_path / "out"), **fast_kwargs(), return_state=True)
    assert state.is_completed() and state.result().n_completed == 3
    assert not _artifact("spin-to-mesh-failures", state.state_details.flow_run_id)


def test_the_cli_prints_the_summary_of_a_failed_batch_and_exits_6(harness, stand_ins, tmp_path, capsys):
    from flows.cli import main

    photos = batch_of_four(tmp_path / "photos")
    code = main(["run", str(photos), "-o", str(tmp_path / "out"), "--views-backend", "synthetic",
                 "--align-backend", "offline", "--retries", "0", "--prefect-home", str(tmp_path / "home")])
    captured = capsys.readouterr()
    assert code == 6, captured
    assert "3 of 4 photo(s) completed" in captured.out


def test_outcome_message_names_a_few_failures_and_counts_the_rest():
    from flows.pipeline import outcome_message

    def failed(name: str) -> PhotoResult:
        return PhotoResult(photo_id=name, source="file:///x", status="failed", failed_stage="recon",
                           error_type="ReconError", error="views\ndisagree " + "x" * 400)

    ok = PhotoResult(photo_id="ok", source="file:///x", status="completed", glb_uri="file:///x/head.glb")
    summary = RunSummary(output_uri="file:///out", photos=[ok, *[failed(f"p{i}") for i in range(5)]])
    message = outcome_message(summary)
    assert message.startswith("1 of 6 heads; 5 failed: p0 in recon: ReconError: views disagree x")
    assert "p2 in recon" in message and "p3" not in message
    assert message.endswith("and 2 more (see the failures artifact)")
    assert "\n" not in message and len(message) < 800
    assert outcome_message(RunSummary(output_uri="file:///out", photos=[ok])) == "1 of 1 heads"


# ---------------------------------------------------------------- item 2: the form refuses at submission


def _server_check(parameters: dict) -> str | None:
    """What the server says when a run is submitted (the deployment's schema, Prefect's own validator)."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
    from prefect.utilities.schema_tools.validation import validate

    from flows.pipeline import spin_to_mesh

    schema = parameter_schema(spin_to_mesh.fn).model_dump_for_openapi()
    try:
        validate(parameters, schema, raise_on_error=True)
    except SchemaError as exc:
        return str(exc)
    return None


def test_blank_input_and_repeated_pitch_rings_are_refused_at_submission():
    assert _server_check({"input": "photos/", "output": "out", "views": {"pitch_rings_deg": [0.0, 20.0]}}) is None
    assert "'input'" in _server_check({"input": "", "output": "out"})
    assert "'input'" in _server_check({"input": "   ", "output": "out"})
    assert "'output'" in _server_check({"input": "a.jpg", "output": " "})
    refused = _server_check({"input": "a.jpg", "output": "out", "views": {"pitch_rings_deg": [0.0, 20.0, 0]}})
    assert "views.pitch_rings_deg" in refused and "non-unique" in refused


def test_the_parameter_model_refuses_cross_field_mistakes_with_the_field_named():
    with pytest.raises(ValidationError, match=r"input\n.*is blank"):
        RunParameters.model_validate({"input": " \t", "output": "out"})
    with pytest.raises(ValidationError, match=r"views.pitch_rings_deg\n.*must differ, got \[0.0, 20.0, 0.0\]"):
        RunParameters.model_validate({"input": "a", "output": "o", "views": {"pitch_rings_deg": [0, 20, 0]}})
    with pytest.raises(ValidationError, match=r"options\n.*shard_index 4 must be < shard_count 4"):
        RunParameters.model_validate({"input": "a", "output": "o", "options": {"shard_index": 4, "shard_count": 4}})
    assert ViewsParams.model_json_schema()["properties"]["pitch_rings_deg"]["uniqueItems"] is True


# ---------------------------------------------------------------- item 3: run names


def test_run_names_say_what_the_run_processes():
    from flows.inputs import run_name_for

    assert run_name_for("/data/in/astronaut.JPG") == "astronaut"
    assert run_name_for("/data/heads.txt") == "heads.txt"
    assert run_name_for("/data/heads.json", shard_index=2, shard_count=8) == "heads.json shard 2 of 8"
    assert run_name_for("/data/photos/") == "photos folder"
    assert run_name_for("/data/photos/**/*.jpg") == "photos *.jpg"
    assert run_name_for("") == "no input"
    assert len(run_name_for("/x/" + "a" * 300 + ".png")) == 80


def test_a_flow_run_is_named_from_its_input_and_shard(harness, stand_ins, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.pipeline import spin_to_mesh

    photos = batch_of_four(tmp_path / "shoot")
    (photos / "dee.jpg").unlink()
    manifest = tmp_path / "heads.txt"
    manifest.write_text("\n".join(str(p) for p in sorted(photos.iterdir())))
    kwargs = fast_kwargs(RunOptions(retries=0, shard_index=1, shard_count=2))
    state = spin_to_mesh(input=str(manifest), output=str(tmp_path / "out"), **kwargs, return_state=True)
    assert state.is_completed() and len(state.result().photos) == 1  # photo 1 of ann, bob, cyd
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == "heads.txt shard 1 of 2"


# ---------------------------------------------------------------- item 6: the GPU limit is looked up once


class _Warnings(__import__("logging").Handler):
    def __init__(self) -> None:
        import logging

        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


def _run_with_limit(tmp_path, monkeypatch, template: str) -> tuple[list[str], list]:
    import logging

    from flows import tasks
    from flows.pipeline import spin_to_mesh

    asked: list = []
    real_slot = tasks.gpu_slot
    monkeypatch.setattr(tasks, "gpu_slot", lambda limit: asked.append(limit) or real_slot(limit))
    photos = batch_of_four(tmp_path / "photos")
    (photos / "dee.jpg").unlink()
    handler = _Warnings()
    logging.getLogger("prefect").addHandler(handler)
    try:
        kwargs = fast_kwargs(RunOptions(retries=0, gpu_concurrency_limit=template))
        state = spin_to_mesh(input=str(photos), output=str(tmp_path / "out"), **kwargs, return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_completed(), state
    return handler.lines, asked


def test_a_missing_gpu_limit_is_one_warning_per_run_not_two_per_photo(harness, stand_ins, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    lines, asked = _run_with_limit(tmp_path, monkeypatch, "gpu-{hostname}-{cuda_visible_devices}")
    assert not [ln for ln in lines if "do not exist" in ln], lines
    ours = [ln for ln in lines if "GPU concurrency limit" in ln]
    assert len(ours) == 1 and "prefect gcl create gpu-" in ours[0] and "-0 --limit 1" in ours[0]
    assert asked == [None] * 6, "three photos, two GPU stages each, and no limit asked for"


def test_an_existing_gpu_limit_is_held_by_the_gpu_stages(harness, stand_ins, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    from flows.tasks import fill_limit_name

    name = fill_limit_name("gpu-{hostname}-{cuda_visible_devices}")
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    lines, asked = _run_with_limit(tmp_path, monkeypatch, "gpu-{hostname}-{cuda_visible_devices}")
    assert not [ln for ln in lines if "concurrency limit" in ln.lower()], lines
    assert asked == [name] * 6


# ---------------------------------------------------------------- item 5: a skipped glTF validation is said


def test_validation_notes_say_what_happened():
    from flows.stages import validation_note

    assert validation_note({"ran": True, "passed": True}, asked=True) == "passed"
    assert validation_note({"ran": True, "passed": False, "errors": 2, "warnings": 0}, True) == (
        "failed: 2 error(s), 0 warning(s)")
    assert validation_note({"ran": False, "reason": "gltf-validator not found"}, True) == (
        "not validated: gltf-validator not found")
    assert validation_note({}, True).startswith("not validated: ")
    assert validation_note({"ran": False, "reason": "disabled"}, False).startswith("not asked")


def test_a_worker_without_the_validator_records_and_warns_not_validated(harness, tmp_path, monkeypatch):
    import logging

    import exporters.validate
    from flows.params import ExportParams
    from flows.pipeline import spin_to_mesh

    monkeypatch.setattr(exporters.validate, "find_validator", lambda: None)  # a fresh worker: no Node.js package
    monkeypatch.setattr(stages, "run_align", fake_align)
    monkeypatch.setattr(stages, "run_views", fake_views)
    monkeypatch.setattr(stages, "run_recon", FakeRecon())  # a textured sphere: the real exporter runs on it
    photos = batch_of_four(tmp_path / "photos")
    for extra in ("bob.png", "cyd.png", "dee.jpg"):
        (photos / extra).unlink()
    kwargs = {**fast_kwargs(), "export": ExportParams(lod_budgets=[400], preview=False, validate_gltf=True)}
    handler = _Warnings()
    logging.getLogger("prefect").addHandler(handler)
    try:
        state = spin_to_mesh(input=str(photos), output=str(tmp_path / "out"), **kwargs, return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_completed(), state
    (photo,) = state.result().photos
    assert photo.metrics["export.validation"].startswith("not validated: gltf-validator not found"), photo.metrics
    report = json.loads((from_uri(photo.glb_uri).parent / "report.json").read_text())
    assert report["validation"]["ran"] is False and "gltf-validator not found" in report["validation"]["reason"]
    assert [ln for ln in handler.lines if "not validated: gltf-validator not found" in ln], handler.lines
    turntable = _artifact(f"turntable-{photo.photo_id}", state.state_details.flow_run_id)[0].data
    assert "Warning: glTF not validated" in turntable


# ---------------------------------------------------------------- item 4: the demo deployment, the weights error


def _deployments() -> dict[str, dict]:
    import yaml

    config = yaml.safe_load((REPO / "prefect.yaml").read_text("utf-8"))
    return {d["name"]: d for d in config["deployments"]}


def test_every_deployment_fills_a_valid_form_and_the_demo_needs_no_weights(tmp_path, monkeypatch):
    deployments = _deployments()
    assert {"batch", "preview", "demo"} <= set(deployments)
    for name, deployment in deployments.items():
        params = {"input": "/data/photos", "output": "/data/heads", **deployment.get("parameters", {})}
        RunParameters.model_validate(params)  # the worker's validation
        assert _server_check(params) is None, name  # the server's, at submission
    demo = RunParameters.model_validate({"input": "a.jpg", "output": "out", **deployments["demo"]["parameters"]})
    assert demo.views.backend == "synthetic" and demo.views.image_size <= 256 and demo.recon.preset == "preview"
    assert deployments["demo"]["entrypoint"] == "flows/pipeline.py:spin_to_mesh"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    assert stages.ensure_run_weights(None, demo.align, demo.views, offline=True) is None  # nothing required


def test_missing_weights_in_a_flow_run_speak_the_forms_words(tmp_path, monkeypatch):
    from flows.pipeline import _ensure_weights_for_form
    from model_fetch.errors import WeightsMissingError
    from spin_io.errors import EXIT_WEIGHTS, exit_code_of

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    run = RunParameters(input="a.jpg", output=str(tmp_path / "out"))
    with pytest.raises(WeightsMissingError) as caught:
        _ensure_weights_for_form(run)
    first, *files = str(caught.value).splitlines()
    assert "options.weights" in first and "views.backend = synthetic" in first and "spin-to-mesh/demo" in first
    assert "--" not in first, "no CLI options in the UI's message"
    assert any("spmr.ckpt" in ln for ln in files), "the list of missing files is kept"
    assert exit_code_of(caught.value) == EXIT_WEIGHTS and caught.value.missing


def test_a_run_where_every_photo_failed_fails_even_when_partial_success_is_allowed(harness, stand_ins, tmp_path):
    from flows.errors import PhotosFailedError
    from flows.pipeline import spin_to_mesh

    photos = batch_of_four(tmp_path / "photos")
    kwargs = fast_kwargs(RunOptions(retries=0, allow_partial=True))
    state = spin_to_mesh(input=str(photos / "dee.jpg"), output=str(tmp_path / "out"), **kwargs, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, PhotosFailedError) and str(error).startswith("0 of 1 heads; 1 failed: dee-")
