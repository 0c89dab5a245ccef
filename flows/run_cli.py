"""`spin-to-mesh run PHOTO_OR_GLOB_OR_MANIFEST -o OUT/`: the `spin-to-mesh` Prefect flow on this machine.

Without PREFECT_API_URL the flow runs against Prefect's ephemeral SQLite backend (a temporary
local API server that the run starts and stops itself), so nothing has to be started first; with
PREFECT_API_URL set (or a Prefect profile that sets it) the run is recorded on that server and
appears in its UI. Prefect is imported inside the handler so `spin-to-mesh --help` stays fast.

With the embedded backend the terminal is ours: the temporary server runs in its own session (a
Ctrl-C reaches only this process, which then stops within seconds), telemetry is off, and
Prefect's logs (and the server's) go to OUT/.spin-logs/ unless --verbose; the terminal shows a
progress display per photo and stage instead (plain lines when stderr is not a terminal).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from flows.errors import FlowError, PhotosFailedError
from smr_core.attention_backends import ATTENTION_BACKENDS
from spin_io.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL

# On two busy cores the ephemeral server can take longer than Prefect's 20 s default to start.
EPHEMERAL_STARTUP_TIMEOUT_S = "120"
# Telemetry settings of the embedded backend (names checked against prefect 3.9.1: server/services/telemetry.py
# runs when PREFECT_SERVER_ANALYTICS_ENABLED; _internal/analytics/enabled.py honours DO_NOT_TRACK).
EMBEDDED_TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
LOG_DIRNAME = ".spin-logs"
# what each stage leaves in a photo's folder (written atomically: present = finished)
STAGE_FOLDERS = {"align": "aligned", "views": "views", "recon": "mesh", "export": "asset"}
# CLI option of each form field, so a refused value is named the way the user typed it
FORM_TO_CLI = {
    "views.num_views": "--views", "views.pitch_rings_deg": "--pitch-rings", "views.cfg_scale": "--cfg-scale",
    "views.steps": "--steps", "views.image_size": "--image-size", "views.seed": "--seed",
    "recon.texture_size": "--texture-size", "export.max_texture_size": "--max-texture-size",
    "export.lod_budgets": "--lod-budgets", "options.device": "--device", "options.retries": "--retries",
    "align.face_index": "--face-index",
}


def default_prefect_home() -> Path:
    """Where the CLI keeps Prefect's home (database, logs, results) when the user has not chosen."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spin-to-mesh" / "prefect"


def configure_prefect_env(prefect_home: str | None = None) -> dict[str, str]:
    """Set Prefect's environment for an embedded run (before Prefect is imported); returns what was set.

    An existing PREFECT_HOME or PREFECT_API_URL is respected; otherwise Prefect's home goes to
    `default_prefect_home()` (never into the working tree).
    """
    updates: dict[str, str] = {}
    if prefect_home:
        updates["PREFECT_HOME"] = str(Path(prefect_home).expanduser().resolve())
    elif "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        updates["PREFECT_HOME"] = str(default_prefect_home())
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
        updates["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = EPHEMERAL_STARTUP_TIMEOUT_S
    if "PREFECT_API_URL" not in os.environ:
        # the embedded backend is ours alone: no heartbeat to Prefect (whose first-run insert also raced the
        # database migration: "database is locked"), no SDK analytics; a value the user set is kept
        for key, value in EMBEDDED_TELEMETRY_OFF.items():
            if key not in os.environ:
                updates[key] = value
    for key, value in updates.items():
        os.environ[key] = value
    if "PREFECT_HOME" in updates:
        Path(updates["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return updates


def _csv(cast: type) -> Any:
    def parse(text: str) -> list:
        try:
            return [cast(p.strip().replace("_", "")) for p in text.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return parse


def build_parameters(args: argparse.Namespace) -> Any:
    """The flow's RunParameters from the command line; a bad value raises FlowError naming it."""
    from pydantic import ValidationError

    from flows.params import RunParameters

    def pick(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    try:
        return RunParameters.model_validate(
            {
                "input": args.input,
                "output": args.output,
                "align": pick(
                    backend=args.align_backend, face_index=args.face_index, matting=args.matting,
                    refinement=args.refinement, landmarks=args.landmarks,
                ),
                "views": pick(
                    backend=args.views_backend, num_views=args.views, pitch_rings_deg=args.pitch_rings,
                    seed=args.seed, cfg_scale=args.cfg_scale, steps=args.steps, image_size=args.image_size,
                    tiny_random=args.tiny_random or None, synthetic_head_seed=args.synthetic_head_seed,
                    fast=args.fast or None, attention_backend=args.attention_backend,
                ),
                "recon": pick(texture_size=args.texture_size, preset=args.recon_preset,
                              trust_cameras=args.trust_cameras or None, fit_masks=args.fit_masks or None,
                              open_pockets=args.open_pockets, depth_size=args.depth_size),
                "export": pick(
                    lod_budgets=args.lod_budgets, max_texture_size=args.max_texture_size,
                    preview=False if args.no_preview else None, validate_gltf=False if args.no_validate else None,
                    normal_maps=False if args.no_normal_maps else None,
                    format=args.format, usda=args.usda or None, lit_texture=args.lit_texture or None,
                ),
                "options": pick(
                    device=args.device, weights=args.weights or os.environ.get("SMR_WEIGHTS"),
                    cache_dir=args.cache_dir, refresh_cache=args.refresh or None, retries=args.retries,
                    work_dir=getattr(args, "work_dir", None),
                ),
            }
        )
    except ValidationError as exc:
        def name(loc: tuple) -> str:
            field = ".".join(str(p) for p in loc)
            return f"{FORM_TO_CLI[field]} ({field})" if field in FORM_TO_CLI else field

        problems = "; ".join(f"{name(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FlowError(f"invalid parameters: {problems}") from None


def format_duration(seconds: float) -> str:
    """'45 s', '6 min', '1 h 20 min': an ETA is a guess, so it is rounded like one."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class RunProgress:
    """The run's progress on the user's terminal: a bar over every (photo, stage) step with an ETA, or plain lines.

    Registered with `flows.stages.add_listener`, it hears the flow's events in this process. On a terminal
    (`bars`) it draws one tqdm bar and lets recon draw its own bars below it; in a pipe or a log file it prints
    one line per finished stage, recon's progress lines, and views progress every quarter, never bar frames.
    The ETA is the mean time of each stage measured so far (cache hits excluded) times the steps left.
    Without bars, a stage that has printed nothing for `heartbeat_s` gets a "still running" line, so a
    long silent phase (recon's normal fusion) never looks like a hang in a log file.
    """

    def __init__(self, stream: TextIO | None = None, bars: bool | None = None, heartbeat_s: float = 60.0) -> None:
        self.stream = stream or sys.stderr
        self.bars = bool(self.stream.isatty()) if bars is None else bars
        self.seconds: dict[str, list[float]] = {}
        self.total_photos = 0
        self.steps_done = 0
        self.photos: dict[str, list[str]] = {}  # photo id -> stages finished in this run (done or cached)
        self._bar: Any = None
        self._quarter: dict[tuple[str, str], int] = {}
        self.heartbeat_s = heartbeat_s
        self._running: tuple[str, str, float] | None = None  # photo label, stage, start time
        self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ events
    def __call__(self, event: str, **info: Any) -> None:
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(**info)

    def _on_run(self, total: int, **_: Any) -> None:
        self.total_photos = total
        if self.bars:
            from tqdm import tqdm

            self._bar = tqdm(total=total * len(STAGE_FOLDERS), file=self.stream, unit="stage", dynamic_ncols=True,
                             bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} stages [{elapsed}{postfix}]")
        elif self._thread is None and self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._heartbeat, name="run-progress", daemon=True)
            self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(5.0, self.heartbeat_s)):
            running, now = self._running, time.monotonic()
            if running is not None and now - self._last_line >= self.heartbeat_s:
                label, stage, t0 = running
                self._write(f"{label}: {stage} still running ({format_duration(now - t0)} so far)")

    def _label(self, index: int, total: int, photo_id: str) -> str:
        return f"[{index + 1}/{total}] {photo_id}"

    def _on_stage_start(self, photo_id: str, index: int, total: int, stage: str, **_: Any) -> None:
        self.photos.setdefault(photo_id, [])
        self._running = (self._label(index, total, photo_id), stage, time.monotonic())
        if self._bar is not None:
            self._bar.set_description_str(f"{self._label(index, total, photo_id)}: {stage}")
            eta = self.eta(index, stage, include_current=True)
            self._bar.set_postfix_str(f"ETA {format_duration(eta)}" if eta is not None else "", refresh=True)

    def _on_stage_end(self, photo_id: str, index: int, total: int, stage: str, status: str, seconds: float,
                      error: str | None = None, **_: Any) -> None:
        steps = 1
        self._running = None
        if status == "done":
            self.seconds.setdefault(stage, []).append(seconds)
        if status in ("done", "cached"):
            self.photos.setdefault(photo_id, []).append(stage)
        else:  # the photo's later stages will not run
            steps += len(STAGE_FOLDERS) - 1 - list(STAGE_FOLDERS).index(stage)
        self.steps_done += steps
        eta = self.eta(index, stage if status != "failed" else "export", include_current=False)
        eta_text = f" (ETA {format_duration(eta)})" if eta is not None and eta > 0 else ""
        label = self._label(index, total, photo_id)
        if status == "done":
            line = f"{label}: {stage} done in {format_duration(seconds)}{eta_text}"
        elif status == "cached":
            line = f"{label}: {stage} cached{eta_text}"
        else:
            # the error's type only: the summary at the end gives the whole reason once
            line = f"{label}: {stage} FAILED after {format_duration(seconds)} ({(error or 'error').split(':')[0]})"
        if self._bar is not None:
            self._bar.update(steps)
            if status == "failed":
                self._bar.write(line, file=self.stream)
        else:
            self._write(line)

    def _on_message(self, photo_id: str, stage: str, text: str, **_: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{stage}: {text}"[:60], refresh=True)
        else:
            self._write(f"    {photo_id}: {stage}: {text}")

    def _on_fraction(self, photo_id: str, stage: str, step: str, done: int, total: int, **_: Any) -> None:
        if total <= 0:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{stage}: {step} {100 * done // total}%", refresh=True)
            return
        quarter = 4 * done // total
        if quarter > self._quarter.get((photo_id, stage), 0):
            self._quarter[(photo_id, stage)] = quarter
            self._write(f"    {photo_id}: {stage}: {25 * quarter}% ({step})")

    # ------------------------------------------------------------------ estimates
    def eta(self, index: int, stage: str, include_current: bool) -> float | None:
        """Seconds left: the stages after `stage` of photo `index` (and `stage` itself when it is running), plus
        every stage of the photos after it; None until each of those stages has been timed once."""
        order = list(STAGE_FOLDERS)
        position = order.index(stage) + (0 if include_current else 1)
        later_photos = max(0, self.total_photos - index - 1)
        needed = {s: (1 if i >= position else 0) + later_photos for i, s in enumerate(order)}
        left = 0.0
        for s, count in needed.items():
            if count == 0:
                continue
            if not self.seconds.get(s):
                return None
            left += count * sum(self.seconds[s]) / len(self.seconds[s])
        return left

    def _write(self, line: str) -> None:
        # not print(): inside a flow run Prefect's log_prints turns print() into a log record
        self._last_line = time.monotonic()
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Remove the bar and stop the heartbeat (the summary follows on a clean line)."""
        self._stop.set()
        self._running = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def kept_stages(output: Path, photo_ids: list[str]) -> dict[str, list[str]]:
    """For each photo, the stages whose folders are in OUT/<photo id> (they are written atomically: complete)."""
    return {pid: [stage for stage, folder in STAGE_FOLDERS.items() if (output / pid / folder).is_dir()]
            for pid in photo_ids}


def interrupted_line(output: Path, kept: dict[str, list[str]]) -> str:
    """The one line printed after Ctrl-C: what is kept where, and how to go on."""
    parts = []
    for pid, stages in kept.items():
        parts.append(f"{pid} ({', '.join(stages) if stages else 'nothing'})")
    shown = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more photo(s)" if len(parts) > 6 else "")
    what = f"kept in {output}: {shown}" if parts else f"no stage had finished; {output} is unchanged"
    return f"spin-to-mesh run: interrupted; {what}. Run the same command again to resume."


def run_log_path(output: Path) -> Path:
    """OUT/.spin-logs/run-<time>-<pid>.log: Prefect's and the server's logs of this run (tracebacks included)."""
    folder = output / LOG_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def prefect_logs_to(log_path: Path) -> Iterator[None]:
    """Send Prefect's console logging (and Python warnings) to `log_path` instead of the terminal, then restore.

    Prefect's logging.yml gives the root logger and a few of its own loggers a console handler on stderr; they
    print every task's traceback and state change, which the progress display and the summary replace. The
    handlers are swapped, not removed, so the Prefect API still receives every log (the UI shows them).
    """
    from prefect.logging.formatters import PrefectFormatter

    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setFormatter(PrefectFormatter(
        "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s",
        flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
    ))
    swapped: list[tuple[logging.Logger, logging.Handler]] = []
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in list(lg.handlers):
            if isinstance(handler, logging.StreamHandler) and type(handler).__module__.startswith("prefect"):
                lg.removeHandler(handler)
                lg.addHandler(file_handler)
                swapped.append((lg, handler))
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for lg, handler in swapped:
            lg.removeHandler(file_handler)
            lg.addHandler(handler)
        file_handler.close()


def _die_with_parent() -> None:
    """In the server's child process: receive SIGTERM when the run that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedServer:
    """Prefect's temporary API server for this run, started in its own session with its output in the log file.

    Prefect's SubprocessASGIServer starts uvicorn in the terminal's process group, so Ctrl-C killed the server
    first and the run then spent minutes retrying it (about 100 httpx tracebacks). Here the very instance
    Prefect's clients use when no API URL is set is started with our Popen: same command and environment, but
    `start_new_session` (Ctrl-C reaches only the run, which stops the server itself), output to the log file,
    and a parent-death signal so a killed run leaves no server behind.
    """

    def __init__(self, log_path: Path | None) -> None:
        self.log_path = log_path
        self.server: Any = None
        self._log: Any = None

    def _popen(self) -> subprocess.Popen[Any]:
        import prefect
        from prefect.settings import get_current_settings

        server = self.server
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               **get_current_settings().to_environment_variables(exclude_unset=True)}
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(server.port),
                   "--log-level", "error", "--lifespan", "on"]
        out = self._log if self._log is not None else None
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if out is not None else None,
                                start_new_session=True, preexec_fn=_die_with_parent)

    def start(self) -> bool:
        """Start it unless an API URL is configured or it already runs; True when this call started it."""
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return False
        server = SubprocessASGIServer()  # the singleton Prefect's get_client() starts lazily otherwise
        if server.running:
            return False
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.server = server
        server._run_uvicorn_command = self._popen  # instance attribute: only this start uses our Popen
        try:
            server.start()
        except BaseException:
            self.stop()
            raise
        return True

    def stop(self) -> None:
        """Flush Prefect's log and event queues to the server, then stop it (at most ~5 s)."""
        if self.server is None:
            return
        with contextlib.suppress(Exception):
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=3)
            EventsWorker.drain_all(timeout=3)
        self.server.stop()
        with contextlib.suppress(AttributeError):
            del self.server._run_uvicorn_command
        self.server = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _print_summary(summary: Any, log_path: Path | None) -> None:
    for p in summary.photos:
        if p.status == "completed":
            cached = f" (cached: {', '.join(p.cached_stages)})" if p.cached_stages else ""
            print(f"ok      {p.photo_id}: {p.glb_uri}{cached}")
        elif p.status == "skipped":
            print(f"skipped {p.photo_id}: {p.error}")
        else:
            print(f"FAILED  {p.photo_id} in {p.failed_stage}: {p.error_type}: {p.error}", file=sys.stderr)
    where = f"; log {log_path}" if log_path is not None and summary.n_failed else ""
    print(f"{summary.n_completed} of {len(summary.photos)} photo(s) completed; output {summary.output_uri}{where}")


def exit_status(summary: Any) -> int:
    """0 when every photo completed; one photo: its error's exit code; a batch with failures: EXIT_PARTIAL."""
    failed = [p for p in summary.photos if p.status == "failed"]
    if not failed:
        return EXIT_OK
    if len(summary.photos) == 1:
        return failed[0].exit_code or 1
    return EXIT_PARTIAL


def _preflight(args: argparse.Namespace) -> tuple[Any, Path | str, int]:
    """Everything that can be refused in a second, before Prefect starts or a network loads."""
    from flows import storage
    from flows.inputs import resolve_photos
    from spin_io.preflight import check_output_writable, resolve_device

    params = build_parameters(args)
    # a bad input is refused before the output folder is created; a URI (s3://...) is listed on its store
    photos = storage.resolve_remote_photos(params.input) if storage.is_remote(params.input) else \
        resolve_photos(params.input)
    # EXIT_OUTPUT; a URI is probed with one small write, its local scratch folder then holds the logs
    output = storage.check_output(params.output) if storage.is_remote(params.output) else \
        check_output_writable(params.output)
    if params.options.cache_dir and storage.is_remote(params.options.cache_dir):
        storage.check_output(params.options.cache_dir, "cache")
    device = resolve_device(params.options.device)  # EXIT_DEVICE, instead of an AssertionError in a stage
    from flows.stages import ensure_run_weights

    # fetched on first use, or one line saying what to do (EXIT_WEIGHTS), before Prefect starts or anything loads
    weights = ensure_run_weights(params.options.weights, params.align, params.views, args.offline or None)
    options = params.options.model_copy(update={"device": device, "weights": weights})
    return params.model_copy(update={"output": str(output), "options": options}), output, len(photos)


def run_command(args: argparse.Namespace) -> int:
    """Check the input, output and device, then run the flow: 0 when every photo completed (see exit_status)."""
    params, output, n_photos = _preflight(args)
    print(f"spin-to-mesh run: {n_photos} photo(s) -> {output}", flush=True)
    configure_prefect_env(args.prefect_home)
    local = output if isinstance(output, Path) else _scratch(params, output)  # where the stages' folders are
    log_path = None if args.verbose else run_log_path(local)

    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's console handlers exist from here on, so prefect_logs_to can redirect them

    from flows import stages

    progress = RunProgress()
    server = EmbeddedServer(log_path)
    stages.add_listener(progress)
    try:
        with contextlib.ExitStack() as stack:
            if log_path is not None:
                stack.enter_context(prefect_logs_to(log_path))
            stack.callback(server.stop)
            server.start()
            from flows.pipeline import spin_to_mesh

            state = spin_to_mesh(**{k: getattr(params, k) for k in type(params).model_fields}, return_state=True)
            result = state.result(raise_on_failure=False)
    except KeyboardInterrupt:
        progress.close()
        print(interrupted_line(local, kept_stages(local, list(progress.photos))), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
        stages.remove_listener(progress)
    if isinstance(result, PhotosFailedError) and result.summary is not None:
        result = result.summary
    if isinstance(result, BaseException):
        if isinstance(result, FlowError) or _is_user_error(result):
            raise result
        where = f" (traceback in {log_path})" if log_path is not None else ""
        raise FlowError(f"the flow run failed: {type(result).__name__}: {result}{where}") from result
    return _report(result, log_path)


def _scratch(params: Any, output: str) -> Path:
    from flows import storage

    return storage.scratch_root(params.options.work_dir, output)


def _is_user_error(exc: BaseException) -> bool:
    from flows.errors import user_error_types

    return isinstance(exc, user_error_types())


def _report(summary: Any, log_path: Path | None) -> int:
    """Print the outcome and return the exit status: one line for a single failed photo, else the summary."""
    code = exit_status(summary)
    if len(summary.photos) == 1 and code != EXIT_OK:
        p = summary.photos[0]
        where = f" (details: {log_path})" if log_path is not None else ""
        print(f"spin-to-mesh run: error: {p.photo_id} failed in {p.failed_stage}: {p.error_type}: {p.error}{where}",
              file=sys.stderr)
        return code
    _print_summary(summary, log_path)
    return code


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` sub-command."""
    p = subparsers.add_parser(
        "run",
        help="photo(s) -> GLB head(s): align, views, recon, export as one Prefect flow (cached, resumable)",
        description="Run the spin-to-mesh Prefect flow locally. INPUT is a photo, a folder, a glob (quote it) or a "
        "manifest (.txt one path per line, .json list). Each photo gets OUT/<photo id>/asset/head.glb; re-running "
        "reuses finished stages from OUT/.spin-cache. Progress goes to stderr (a bar on a terminal, plain lines in "
        "a pipe); Prefect's logs go to OUT/.spin-logs/ unless --verbose. Ctrl-C stops within seconds and keeps every "
        "finished stage (exit 130).",
    )
    p.add_argument("input", metavar="PHOTO_OR_GLOB_OR_MANIFEST")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (one sub-folder per photo), or a URI such as s3://bucket/heads")
    g = p.add_argument_group("align")
    g.add_argument("--align-backend", choices=["auto", "antelopev2", "offline"])
    g.add_argument("--face-index", type=int, help="which face when a photo shows several (0 = largest)")
    g.add_argument("--matting", choices=["auto", "bisenet", "selfie", "grabcut"],
                   help="background matte (default auto: BiSeNet, else selfie segmentation, else GrabCut)")
    g.add_argument("--refinement", choices=["auto", "3ddfa", "facemesh", "landmark"],
                   help="head-pose measure for the crop (default auto: 3DDFA when its files are there)")
    g.add_argument("--landmarks", choices=["dlib5", "facemesh", "dlib68"],
                   help="offline backend: dlib68 is more accurate but its training data forbid commercial use")
    g = p.add_argument_group("views")
    g.add_argument("--views-backend", choices=["spinmeround", "synthetic"],
                   help="'synthetic' ignores the photo and renders a procedural head (demo/tests only)")
    g.add_argument("--views", type=int, metavar="N", help="views per pitch ring, input view included (default 8)")
    g.add_argument("--num-views", dest="views", type=int, help=argparse.SUPPRESS)  # old name, kept for scripts
    g.add_argument("--pitch-rings", type=_csv(float), metavar="DEG,...", help="ring elevations, e.g. 0,30")
    g.add_argument("--seed", type=int)
    g.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (default 3.5)")
    g.add_argument("--steps", type=int)
    g.add_argument("--image-size", type=int, help="view resolution in pixels")
    g.add_argument("--tiny-random", action="store_true", help="test only: tiny random networks (views are noise)")
    g.add_argument("--synthetic-head-seed", type=int)
    g.add_argument("--fast", action="store_true", help="CUDA fast path: bf16 + torch.compile + CUDA graphs "
                   "(the first photo compiles for about a minute)")
    g.add_argument("--attention-backend", choices=ATTENTION_BACKENDS,
                   help="SDPA kernel tried first (default auto: torch chooses)")
    g = p.add_argument_group("recon and export")
    g.add_argument("--texture-size", type=int, metavar="N",
                   help="side of the baked albedo in pixels, as in `spin-to-mesh recon` (default 2048)")
    g.add_argument("--recon-preset", choices=["preview", "standard"])
    g.add_argument("--depth-size", type=int, metavar="N",
                   help="as `spin-to-mesh recon --depth-size` (default 512; 256: about twice as fast on 512 px views)")
    g.add_argument("--trust-cameras", action="store_true", help="as `spin-to-mesh recon --trust-cameras`")
    g.add_argument("--fit-masks", action="store_true", help="as `spin-to-mesh recon --fit-masks`")
    g.add_argument("--open-pockets", action=argparse.BooleanOptionalAction, default=None,
                   help="as `spin-to-mesh recon --open-pockets` (on by default; --no-open-pockets: off)")
    g.add_argument("--lod-budgets", type=_csv(int), metavar="N,...", help="triangles per LOD, e.g. 25000,7000,2500")
    g.add_argument("--max-texture-size", type=int, metavar="N",
                   help="largest texture side of LOD0 in the GLB, as in `spin-to-mesh export` (default: baked size)")
    g.add_argument("--export-texture-size", dest="max_texture_size", type=int, help=argparse.SUPPRESS)  # old name
    g.add_argument("--no-preview", action="store_true", help="skip the turntable preview.png")
    g.add_argument("--no-normal-maps", action="store_true", help="no baked normal maps on the decimated LODs")
    g.add_argument("--no-validate", action="store_true", help="skip the Khronos glTF validator")
    g.add_argument("--format", choices=["glb", "both"], help="'both' also writes head.usdz (default glb)")
    g.add_argument("--usda", action="store_true", help="with --format both: also a readable head.usda")
    g.add_argument("--lit-texture", action="store_true", help="base colour with the lighting baked in (not de-lit)")
    g = p.add_argument_group("run")
    g.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda or cuda:N; checked before any work")
    g.add_argument("--weights", metavar="DIR",
                   help="weights folder (default: $SMR_WEIGHTS, else the per-user cache); missing files are fetched")
    g.add_argument("--offline", action="store_true",
                   help="never download weights (as HF_HUB_OFFLINE=1): missing ones are one error saying what to do")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="persisted stage results: a folder or a URI, e.g. s3://bucket/cache (default OUT/.spin-cache)")
    g.add_argument("--work-dir", metavar="DIR",
                   help="local scratch folder for an s3:// (or other URI) output (default $SPIN_TO_MESH_WORK_DIR, "
                   "else <temp>/spin-to-mesh-work)")
    g.add_argument("--refresh", action="store_true", help="recompute every stage, ignoring the cache")
    g.add_argument("--retries", type=int, help="retries after transient errors (default 2)")
    g.add_argument("--prefect-home", metavar="DIR",
                   help="Prefect home for this run (default: $PREFECT_HOME, else ~/.local/share/spin-to-mesh/prefect)")
    g.add_argument("--verbose", action="store_true",
                   help="show Prefect's own logs on the terminal (default: in OUT/.spin-logs/, with the server's)")
    p.set_defaults(func=run_command)
