"""The spin-to-mesh flow end to end in prefect_test_harness (one temporary API server for the module).

Views come from the labelled synthetic backend (tiny random diffusion weights give noise that no
reconstruction can use) and recon is replaced by a counting stand-in that writes a textured
sphere: these tests are about orchestration (isolation, caching, retries, artifacts, the CLI),
not about the stages' maths, which their own packages test.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("prefect")

from flows_helpers import Counter, FakeRecon, fast_kwargs, prefect_server, write_photos  # noqa: E402

from flows import stages  # noqa: E402
from flows.params import RunOptions  # noqa: E402
from flows.records import RunSummary, from_uri  # noqa: E402
from recon.errors import ReconError  # noqa: E402

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """One Prefect test server for the module, with Prefect's home in a temporary folder."""
    t0 = time.perf_counter()
    with prefect_server(tmp_path_factory.mktemp("prefect-home"),
                        on_start=lambda: TIMINGS.update(harness_start_s=time.perf_counter() - t0)):
        yield
    print(f"\nflows timings: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def batch_run(harness, photos, tmp_path_factory):
    """One batch run over a folder with a face photo and a photo without a face."""
    from flows.pipeline import spin_to_mesh

    mp = pytest.MonkeyPatch()
    recon = FakeRecon()
    mp.setattr(stages, "run_recon", recon)
    out = tmp_path_factory.mktemp("batch-out")
    t0 = time.perf_counter()
    state = spin_to_mesh(input=str(photos["face"].parent), output=str(out), **fast_kwargs(), return_state=True)
    TIMINGS["batch_flow_s"] = time.perf_counter() - t0
    mp.undo()
    return state, out, recon


def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_batch_isolates_photo_without_face(batch_run):
    state, out, recon = batch_run
    assert state.is_failed() and state.message.startswith("1 of 2 heads; 1 failed: flat-"), state
    summary: RunSummary = state.result(raise_on_failure=False)
    by_name = {p.photo_id.rsplit("-", 1)[0]: p for p in summary.photos}
    assert set(by_name) == {"astronaut", "flat"}
    bad = by_name["flat"]
    assert (bad.status, bad.failed_stage, bad.error_type) == ("failed", "align", "NoFaceError")
    assert "no face found" in bad.error
    assert not (out / bad.photo_id / "aligned").exists(), "a failed stage must leave no folder behind"
    good = by_name["astronaut"]
    assert good.status == "completed" and recon.calls == 1
    glb = from_uri(good.glb_uri)
    assert glb.is_file() and glb.read_bytes()[:4] == b"glTF"
    for part in ("aligned/crop.png", "views/transforms.json", "mesh/head.npz", "asset/report.json"):
        assert (out / good.photo_id / part).is_file(), part
    transforms = json.loads((out / good.photo_id / "views" / "transforms.json").read_text())
    assert transforms["generation"]["synthetic"] is True and "SYNTHETIC" in transforms["generation"]["note"]
    assert len(transforms["frames"]) == 4
    assert good.metrics["export.triangles_lod0"] <= 1500


def test_batch_artifacts(batch_run):
    state, _, _ = batch_run
    summary = state.result(raise_on_failure=False)
    table = _artifacts("spin-to-mesh-summary")[-1]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["status"] for r in rows} == {"completed", "failed"}
    assert any("NoFaceError" in r["error"] for r in rows)
    good = next(p for p in summary.photos if p.status == "completed")
    from flows.artifacts import artifact_key

    views_md = _artifacts(artifact_key("views", good.photo_id))[-1].data
    # one small inline contact sheet of the 4 views, linked to its file beside the photo's stage folders
    assert views_md.count("data:image/jpeg;base64,") == 1 and "SYNTHETIC" in views_md and "az 0 el 0" in views_md
    assert "/previews/views-" in views_md and len(views_md) < 6000
    turntable = _artifacts(artifact_key("turntable", good.photo_id))[-1].data
    assert "head.glb" in turntable and "data:image/jpeg;base64," in turntable and "preview.png" in turntable
    assert _artifacts(artifact_key("glb", good.photo_id))[-1].data.startswith("[")  # a link artifact
    assert _artifacts("spin-to-mesh-metrics"), "metrics table missing"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        run_id = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]), flow_run_id=run_id)
        )
    assert [float(a.data) for a in progress] == [100.0], "progress reaches 100 % even when a photo fails early"


def test_recon_failure_then_rerun_reuses_align_and_views(harness, photos, tmp_path, monkeypatch):
    from flows.pipeline import spin_to_mesh

    out = tmp_path / "out"
    align = Counter(stages.run_align)
    views = Counter(stages.run_views)
    monkeypatch.setattr(stages, "run_align", align)
    monkeypatch.setattr(stages, "run_views", views)
    # a GPU limit that does not exist on the server is ignored (single workstation, no set-up)
    options = RunOptions(retries=2, retry_delay_s=0.0, gpu_concurrency_limit="gpu-{hostname}-{cuda_visible_devices}")

    # 1. recon fails with a user error: no retry, the photo fails, and so does the run (nothing completed)
    broken = FakeRecon(ReconError("forced failure"), fail_times=99)
    monkeypatch.setattr(stages, "run_recon", broken)
    state = spin_to_mesh(input=str(photos["face"]), output=str(out), **fast_kwargs(options), return_state=True)
    assert state.is_failed()
    assert "forced failure" in str(state.result(raise_on_failure=False))
    assert (broken.calls, align.calls, views.calls) == (1, 1, 1)

    # 2. recon fails once with a transient error, is retried, succeeds; align and views come from the cache
    flaky = FakeRecon(RuntimeError("CUDA out of memory (simulated)"), fail_times=1)
    monkeypatch.setattr(stages, "run_recon", flaky)
    t0 = time.perf_counter()
    state = spin_to_mesh(input=str(photos["face"]), output=str(out), **fast_kwargs(options), return_state=True)
    TIMINGS["rerun_after_recon_failure_s"] = time.perf_counter() - t0
    assert state.is_completed(), state
    (result,) = state.result().photos
    assert result.status == "completed"
    assert result.cached_stages == ["align", "views"]
    assert (align.calls, views.calls, flaky.calls) == (1, 1, 2)
    assert from_uri(result.glb_uri).is_file()


def test_deleted_outputs_are_recomputed_and_content_hashes_chain(harness, photos, tmp_path, monkeypatch):
    from flows.pipeline import spin_to_mesh

    out = tmp_path / "out"
    views = Counter(stages.run_views)
    monkeypatch.setattr(stages, "run_views", views)
    monkeypatch.setattr(stages, "run_recon", FakeRecon())
    first = spin_to_mesh(input=str(photos["face"]), output=str(out), **fast_kwargs())
    assert views.calls == 1 and first.photos[0].status == "completed"

    import shutil

    shutil.rmtree(out / first.photos[0].photo_id / "views")
    second = spin_to_mesh(input=str(photos["face"]), output=str(out), **fast_kwargs())
    assert views.calls == 2, "a cache hit whose files are gone must be recomputed"
    assert (out / first.photos[0].photo_id / "views" / "transforms.json").is_file()
    # the regenerated views are byte-identical (same seed), so recon's and export's keys are unchanged: cached
    assert second.photos[0].cached_stages == ["align", "recon", "export"]


def test_stage_time_limit_fails_the_photo_without_retry(harness, photos, tmp_path, monkeypatch):
    from flows.pipeline import spin_to_mesh

    calls = []

    def slow_align(*args, **kwargs):
        calls.append(1)
        for _ in range(300):
            time.sleep(0.1)
        raise AssertionError("the time limit did not interrupt the stage")

    monkeypatch.setattr(stages, "run_align", slow_align)
    options = RunOptions(retries=2, retry_delay_s=0.0, timeout_align_s=1.0)
    t0 = time.perf_counter()
    state = spin_to_mesh(input=str(photos["face"]), output=str(tmp_path / "out"), **fast_kwargs(options),
                         return_state=True)
    assert time.perf_counter() - t0 < 20
    message = str(state.result(raise_on_failure=False))
    assert state.is_failed() and "in align: TaskRunTimeoutError" in message and "timed out" in message
    assert len(calls) == 1, "a stage that ran out of time is not retried"


def test_cli_run_reports_and_exit_status(harness, batch_run, photos, tmp_path, capsys, monkeypatch):
    from flows.cli import main

    _, out, _ = batch_run
    monkeypatch.setattr(stages, "run_recon", FakeRecon())
    # the batch's output: every stage of the face photo is cached, the flat photo fails again -> exit 6
    code = main(["run", str(photos["face"].parent), "-o", str(out), *_fast_cli(tmp_path)])
    captured = capsys.readouterr()
    assert code == 6, "a batch in which some photos failed: EXIT_PARTIAL"
    assert "cached: align, views, recon, export" in captured.out
    failed = [ln for ln in captured.err.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "flat-" in failed[0] and "in align: NoFaceError" in failed[0]
    assert "1 of 2 photo(s) completed" in captured.out and ".spin-logs" in captured.out
    assert "Traceback" not in captured.err + captured.out, "Prefect's tracebacks go to the log file"
    assert "] flat-" in captured.err and "align FAILED" in captured.err, "progress lines name photo and stage"


def _fast_cli(tmp_path) -> list[str]:
    return ["--views-backend", "synthetic", "--num-views", "4", "--pitch-rings", "0", "--image-size", "64",
            "--align-backend", "offline", "--recon-preset", "preview", "--texture-size", "128",
            "--lod-budgets", "1500,400", "--no-validate", "--retries", "0", "--prefect-home", str(tmp_path / "home")]


def test_cli_single_photo_failure_is_one_line_with_the_stage_and_the_log(harness, photos, tmp_path, capsys):
    from flows.cli import main

    out = tmp_path / "out"
    code = main(["run", str(photos["flat"]), "-o", str(out), *_fast_cli(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2, "NoFaceError is the user's: its documented exit code"
    errors = [ln for ln in captured.err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "failed in align: NoFaceError" in errors[0]
    log = errors[0].split("(details: ")[1].rstrip(")")
    assert "Traceback" not in captured.err and "Traceback" in open(log).read(), "the traceback is kept in the log"


def test_permission_error_in_a_stage_fails_at_once_and_old_temporaries_go(harness, photos, tmp_path, monkeypatch):
    from flows.inputs import photo_id, sha256_file
    from flows.pipeline import spin_to_mesh

    out = tmp_path / "out"
    work = out / photo_id(photos["face"], sha256_file(photos["face"]))
    (work / ".tmp-mesh-killed" / "sub").mkdir(parents=True)  # what a SIGKILLed run leaves
    denied = FakeRecon(PermissionError(13, "Permission denied", str(work / "mesh")), fail_times=99)
    monkeypatch.setattr(stages, "run_recon", denied)
    options = RunOptions(retries=2, retry_delay_s=0.0)
    state = spin_to_mesh(input=str(photos["face"]), output=str(out), **fast_kwargs(options), return_state=True)
    assert denied.calls == 1, "a PermissionError is not transient: no retry"
    (result,) = state.result(raise_on_failure=False).summary.photos
    assert (result.failed_stage, result.error_type, result.exit_code) == ("recon", "PermissionError", 4)
    assert not (work / ".tmp-mesh-killed").exists() and (work / "views").is_dir()


def test_cli_refuses_bad_input_before_running(tmp_path, capsys):
    from flows.cli import main

    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "missing.jpg"), "-o", str(out)]) == 2
    assert "no such photo" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "*.jpg"), "-o", str(out), "--num-views", "40"]) == 2
    assert "views.num_views" in capsys.readouterr().err
    assert not out.exists()

