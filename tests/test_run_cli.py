"""`spin-to-mesh run` as a user meets it: checks before any work, the progress display, Ctrl-C, the vocabulary.

Fast tests: no Prefect server starts here (tests/test_flows.py runs the flow itself). The one Ctrl-C test
that runs a real flow in a subprocess is marked slow.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flows import run_cli, stages
from flows.caching import is_transient
from flows.params import ExportParams, ReconParams, RunParameters
from flows.records import PhotoResult, RunSummary

REPO = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    run_cli.register(parser.add_subparsers())
    return parser


def _photo(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "face.png"
    Image.new("RGB", (64, 64), (120, 100, 90)).save(path)
    return path


def _run_main(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`spin-to-mesh run ...` in a fresh interpreter; prints whether Prefect was imported on stdout."""
    code = ("import sys; from flows.cli import main; rc = main(sys.argv[1:]); "
            "print('prefect imported:', 'prefect' in sys.modules); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "run", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- items 5 and 8: checked before any work


def test_unwritable_output_is_one_line_exit_4_before_prefect(tmp_path):
    photo = _photo(tmp_path / "in")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _run_main([str(photo), "-o", str(blocker / "heads"), "--views-backend", "synthetic"])
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot write to output folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert "prefect imported: False" in done.stdout, "the output is checked before Prefect starts"


def test_missing_weights_offline_is_refused_first_with_both_commands(tmp_path):
    """Issue 15 item 13 / issue 14: the README's main command on a fresh, offline install."""
    photo = _photo(tmp_path / "in")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "SMR_WEIGHTS": "", "HF_HUB_OFFLINE": "1"}
    done = _run_main([str(photo), "-o", str(tmp_path / "out")], env)
    assert done.returncode == 3, done.stderr
    first = done.stderr.splitlines()[0]
    assert "spin-to-mesh weights fetch" in first and "--views-backend synthetic" in first  # what to do, in one line
    assert "spmr.ckpt" in done.stderr and "Traceback" not in done.stderr
    assert "prefect imported: False" in done.stdout, "weights are checked before Prefect starts or a photo is aligned"


def test_the_weights_free_demo_needs_no_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    args = _parser().parse_args(["run", str(_photo(tmp_path / "in")), "-o", str(tmp_path / "out"),
                                 "--views-backend", "synthetic", "--offline"])
    params, _, n = run_cli._preflight(args)
    assert n == 1 and params.options.weights is None  # nothing to fetch, nothing required


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_exit_5_before_prefect(tmp_path):
    photo = _photo(tmp_path / "in")
    done = _run_main([str(photo), "-o", str(tmp_path / "out"), "--device", "cuda", "--views-backend", "synthetic"])
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("\n") == 1 and "no usable CUDA GPU" in done.stderr and "--device cpu" in done.stderr
    assert "AssertionError" not in done.stderr and "Traceback" not in done.stderr
    assert "prefect imported: False" in done.stdout


def test_file_system_refusals_are_not_retried():
    for exc in (PermissionError(errno.EACCES, "Permission denied", "/out/x"), PermissionError("no"),
                OSError(errno.EROFS, "Read-only file system"), OSError(errno.ENOSPC, "No space left on device")):
        assert not is_transient(exc), repr(exc)
    assert is_transient(OSError("NFS hiccup")) and is_transient(ConnectionResetError(errno.ECONNRESET, "reset"))


def test_a_stage_asking_for_a_missing_gpu_raises_a_user_error(monkeypatch):
    import torch

    from spin_io.errors import DeviceUnavailableError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError):
        stages.resolve_device("cuda")  # was passed through, and torch's AssertionError was retried
    assert not is_transient(DeviceUnavailableError("x"))
    assert stages.resolve_device("auto") == "cpu"


def test_exit_status_of_a_single_photo_and_of_a_batch():
    def result(pid: str, ok: bool, code: int | None = None) -> PhotoResult:
        if ok:
            return PhotoResult(photo_id=pid, source="s", status="completed", glb_uri="file:///g.glb")
        return PhotoResult(photo_id=pid, source="s", status="failed", failed_stage="recon", error_type="E",
                           error="e", exit_code=code)

    assert run_cli.exit_status(RunSummary(output_uri="o", photos=[result("a", True)])) == 0
    assert run_cli.exit_status(RunSummary(output_uri="o", photos=[result("a", False, 4)])) == 4
    assert run_cli.exit_status(RunSummary(output_uri="o", photos=[result("a", True), result("b", False, 2)])) == 6
    assert run_cli.exit_status(RunSummary(output_uri="o", photos=[result("a", False, 2), result("b", False, 2)])) == 6


# ---------------------------------------------------------------- item 10: interrupts


def test_stale_temporaries_are_removed_only_inside_the_photo_folder(tmp_path):
    photo_dir = tmp_path / "out" / "face-1234abcd"
    (photo_dir / ".tmp-views-k1ll3d" / "sub").mkdir(parents=True)
    (photo_dir / ".tmp-views-k1ll3d" / "sub" / "view.png").write_bytes(b"x")
    (photo_dir / ".tmp-report-x.json").write_text("{}")
    (photo_dir / "aligned").mkdir()
    (photo_dir / "aligned" / "face.png").write_bytes(b"kept")
    (photo_dir / "notes.tmp-keep").write_text("kept")
    sibling = tmp_path / "out" / ".tmp-write-check-abc"
    sibling.write_text("not this run's photo folder")
    removed = stages.clean_stale_temporaries(photo_dir)
    assert removed == [".tmp-report-x.json", ".tmp-views-k1ll3d"]
    assert sorted(p.name for p in photo_dir.iterdir()) == ["aligned", "notes.tmp-keep"]
    assert (photo_dir / "aligned" / "face.png").read_bytes() == b"kept" and sibling.exists()
    assert stages.clean_stale_temporaries(tmp_path / "missing") == []


def test_interrupt_line_names_the_kept_stages(tmp_path):
    (tmp_path / "a-1" / "aligned").mkdir(parents=True)
    (tmp_path / "a-1" / "views").mkdir()
    (tmp_path / "a-1" / ".tmp-mesh-x").mkdir()  # a half-written stage is not kept
    kept = run_cli.kept_stages(tmp_path, ["a-1", "b-2"])
    assert kept == {"a-1": ["align", "views"], "b-2": []}
    line = run_cli.interrupted_line(tmp_path, kept)
    assert "\n" not in line and "a-1 (align, views)" in line and "b-2 (nothing)" in line and "again" in line
    assert "no stage had finished" in run_cli.interrupted_line(tmp_path, {})


def test_the_embedded_server_prefect_uses_is_the_one_we_start():
    """EmbeddedServer relies on these prefect 3.9.1 internals; an upgrade that changes them must fail here."""
    from prefect.server.api.server import SubprocessASGIServer

    assert SubprocessASGIServer() is SubprocessASGIServer(), "the port-less instance is a singleton"
    server = SubprocessASGIServer()
    for name in ("_run_uvicorn_command", "start", "stop", "running", "port", "api_url", "find_available_port"):
        assert hasattr(server, name), name
    import inspect

    assert "SubprocessASGIServer()" in inspect.getsource(__import__("prefect.client.orchestration",
                                                                     fromlist=["get_client"]).get_client)


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_says_what_was_kept_and_exits_130(tmp_path):
    """A real run in its own process group; SIGINT to the group, as a terminal's Ctrl-C does."""
    from flows_helpers import write_photos

    photo = write_photos(tmp_path / "in")["face"]
    out = tmp_path / "out"
    script = textwrap.dedent("""
        import sys, time
        from flows import stages
        def endless_recon(*args, **kwargs):  # the long stage the user interrupts
            while True:
                time.sleep(0.05)
        stages.run_recon = endless_recon
        from flows.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    args = ["run", str(photo), "-o", str(out), "--views-backend", "synthetic", "--views", "4", "--pitch-rings", "0",
            "--image-size", "64", "--align-backend", "offline", "--retries", "0",
            "--prefect-home", str(tmp_path / "home")]
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "views done" in line:
            break
    assert any("views done" in ln for ln in lines), "".join(lines)
    time.sleep(1.0)  # recon is running now
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rest_out, rest_err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    err = "".join(lines) + rest_err
    print(f"\nCtrl-C to exit: {elapsed:.1f} s")
    assert proc.returncode == 130, err
    assert elapsed < 5.0, f"took {elapsed:.1f} s to stop"
    assert "interrupted; kept in" in err and "(align, views)" in err
    assert "Traceback" not in err and "httpx" not in err
    assert not list((out).glob("*/.tmp-*")), "the interrupted stage left no half-written folder"
    # the temporary server went with the run
    servers = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if str(tmp_path / "home").encode() in environ.read_bytes():
                servers.append(environ.parent.name)
        except OSError:
            continue
    assert not servers, f"processes of the run still alive: {servers}"


# ---------------------------------------------------------------- item 11: the terminal is ours


def test_embedded_backend_turns_telemetry_off_but_respects_the_user(tmp_path, monkeypatch):
    for key in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    updates = run_cli.configure_prefect_env()
    assert updates["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and updates["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    assert "PREFECT_SERVER_ANALYTICS_ENABLED" not in run_cli.configure_prefect_env()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.delenv("DO_NOT_TRACK")
    assert "DO_NOT_TRACK" not in run_cli.configure_prefect_env(), "a server of the user's is left as configured"


def test_prefect_logs_go_to_the_file_and_come_back(tmp_path):
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()

    def console_handlers() -> list[logging.Handler]:
        return [h for h in logging.getLogger().handlers if type(h).__module__.startswith("prefect")]

    before = console_handlers()
    assert before, "Prefect's logging.yml puts a console handler on the root logger"
    log = tmp_path / "run.log"
    with run_cli.prefect_logs_to(log):
        assert not console_handlers()
        logging.getLogger("prefect.task_runs").error("Traceback (most recent call last): boom")
        logging.getLogger("prefect.flow_runs").info("Finished in state Completed()")
    assert "boom" in log.read_text() and "Completed" in log.read_text()
    assert console_handlers() == before


# ---------------------------------------------------------------- item 12: progress


def _feed(progress: run_cli.RunProgress) -> None:
    progress("run", total=2, output="/out")
    for index, pid in enumerate(("a-1", "b-2")):
        for stage, seconds in (("align", 2.0), ("views", 120.0), ("recon", 300.0), ("export", 10.0)):
            where = {"photo_id": pid, "index": index, "total": 2, "stage": stage}
            progress("stage_start", **where)
            if stage == "recon":
                progress("message", photo_id=pid, stage="recon", text="normal fusion: 3 rounds")
            if stage == "views":
                for done in range(0, 11):
                    progress("fraction", photo_id=pid, stage="views", step="sampling", done=done, total=10)
            status = "failed" if (pid, stage) == ("b-2", "recon") else "done"
            progress("stage_end", **where, status=status, seconds=seconds, error="ReconError: bad views")
            if status == "failed":
                break


def test_progress_in_a_pipe_is_plain_lines_with_an_eta():
    stream = io.StringIO()
    progress = run_cli.RunProgress(stream, bars=False)
    _feed(progress)
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text, "no bar frames in a pipe or a log file"
    lines = text.splitlines()
    assert "[1/2] a-1: align done in 2 s" in lines
    assert "[1/2] a-1: export done in 10 s (ETA 7 min)" in lines, lines  # 2 + 120 + 300 + 10 s for photo 2
    assert "[2/2] b-2: views done in 2 min (ETA 5 min)" in lines, lines
    assert "[2/2] b-2: recon FAILED after 5 min (ReconError)" in lines
    assert "    a-1: recon: normal fusion: 3 rounds" in lines
    quarters = [f"    a-1: views: {p}% (sampling)" for p in (25, 50, 75, 100)]
    assert [ln for ln in lines if "a-1: views:" in ln] == quarters
    assert progress.photos == {"a-1": ["align", "views", "recon", "export"], "b-2": ["align", "views"]}


def test_progress_on_a_terminal_is_a_bar_and_recon_gets_its_own():
    stream = io.StringIO()
    progress = run_cli.RunProgress(stream, bars=True)
    stages.add_listener(progress)
    try:
        assert stages.show_bars()
        _feed(progress)
    finally:
        stages.remove_listener(progress)
        progress.close()
    assert not stages.show_bars()
    text = stream.getvalue()
    assert "\r" in text and "stages" in text and "ETA" in text
    assert "[2/2] b-2: recon FAILED" in text


def test_a_long_silent_stage_gets_still_running_lines_in_a_pipe():
    stream = io.StringIO()
    progress = run_cli.RunProgress(stream, bars=False, heartbeat_s=0.2)
    progress("run", total=1, output="/out")
    progress("stage_start", photo_id="a-1", index=0, total=1, stage="recon")
    time.sleep(0.9)
    progress("stage_end", photo_id="a-1", index=0, total=1, stage="recon", status="done", seconds=0.9)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/1] a-1: recon still running (1 s so far)") and lines[-1].startswith(
        "[1/1] a-1: recon done")
    time.sleep(0.4)
    assert stream.getvalue().splitlines() == lines, "no heartbeat after the stage ended or the display closed"


def test_a_failing_listener_never_fails_the_run():
    def broken(event: str, **info: object) -> None:
        raise RuntimeError("display gone")

    stages.add_listener(broken)
    try:
        stages.notify("run", total=1, output="/x")
    finally:
        stages.remove_listener(broken)


# ---------------------------------------------------------------- item 15: one vocabulary


def test_cli_and_form_share_names_and_defaults(tmp_path):
    parser = _parser()
    new = run_cli.build_parameters(parser.parse_args(
        ["run", "p.jpg", "-o", str(tmp_path), "--views", "6", "--texture-size", "1024", "--max-texture-size", "512",
         "--cfg-scale", "4.0"]))
    old = run_cli.build_parameters(parser.parse_args(
        ["run", "p.jpg", "--output", str(tmp_path), "--num-views", "6", "--texture-size", "1024",
         "--export-texture-size", "512", "--cfg-scale", "4.0"]))
    assert new == old
    assert (new.views.num_views, new.recon.texture_size, new.export.max_texture_size, new.views.cfg_scale) == (
        6, 1024, 512, 4.0)
    defaults = run_cli.build_parameters(parser.parse_args(["run", "p.jpg", "-o", str(tmp_path)]))
    assert defaults.recon.texture_size == ReconParams().texture_size == 2048
    assert not (defaults.recon.fit_masks or defaults.recon.trust_cameras) and defaults.recon.open_pockets
    chosen = run_cli.build_parameters(parser.parse_args(["run", "p.jpg", "-o", str(tmp_path), "--fit-masks",
                                                         "--trust-cameras", "--no-open-pockets"]))
    assert chosen.recon.fit_masks and chosen.recon.trust_cameras and not chosen.recon.open_pockets
    assert defaults.recon.depth_size == 512 and run_cli.build_parameters(parser.parse_args(
        ["run", "p.jpg", "-o", str(tmp_path), "--depth-size", "256"])).recon.depth_size == 256
    assert defaults.options.device == "auto"
    help_text = parser._subparsers._group_actions[0].choices["run"].format_help()
    for shown in ("--views N", "--texture-size N", "--max-texture-size N", "--cfg-scale", "--verbose", "--device"):
        assert shown in help_text, shown
    for hidden in ("--num-views", "--export-texture-size"):
        assert hidden not in help_text, hidden


def test_recon_command_and_run_bake_the_same_texture_size():
    from recon import cli as recon_cli

    parser = argparse.ArgumentParser()
    recon_cli.register(parser.add_subparsers())
    recon_parser = parser._subparsers._group_actions[0].choices["recon"]
    default = next(a.default for a in recon_parser._actions if "--texture-size" in a.option_strings)
    assert default == ReconParams().texture_size


def test_refused_values_are_named_as_typed(tmp_path):
    from flows.errors import FlowError

    with pytest.raises(FlowError, match=r"--views \(views.num_views\)"):
        run_cli.build_parameters(_parser().parse_args(["run", "p.jpg", "-o", str(tmp_path), "--views", "40"]))


def test_old_export_field_name_still_fills_the_form():
    assert ExportParams.model_validate({"texture_size": 512}).max_texture_size == 512
    assert ExportParams(max_texture_size=256).model_dump()["max_texture_size"] == 256
    import yaml

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        params = {"input": "x.jpg", "output": "out", **deployment.get("parameters", {})}
        RunParameters.model_validate(params)  # every deployment's parameters still fill the form
    preview = next(d for d in spec["deployments"] if d["name"] == "preview")["parameters"]
    assert "max_texture_size" in preview["export"] and preview["recon"]["texture_size"] < 2048


def test_flow_form_shows_the_new_names():
    from flows.pipeline import spin_to_mesh

    schema = json.dumps(spin_to_mesh.parameters.model_dump())
    assert '"max_texture_size"' in schema and '"num_views"' in schema
