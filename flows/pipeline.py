"""The `spin-to-mesh` flow: photos (one, a folder, a glob or a manifest) -> one GLB per head.

Per photo the stages run as tasks align -> views -> recon -> export. Photos are isolated: each
stage task is run with `return_state=True`, so a failure ends that photo only (it is reported
with its stage and error) and the run goes on with the others. Photos run one after the other
in the flow's own thread: one flow run drives one GPU (two heads on one GPU would compete for
its memory), and the stage time limits can interrupt a stage only outside worker threads. Scale
out by running more flow runs (shards) on more workers, one per GPU: see docs/PREFECT.md.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import Field

from flows import artifacts, stages, storage
from flows.errors import PhotosFailedError, user_error_types
from flows.inputs import photo_id, resolve_photos, run_name_for, sha256_file
from flows.params import AlignParams, ExportParams, ReconParams, RunOptions, RunParameters, ViewsParams
from flows.records import (
    STAGES,
    AlignedRecord,
    AssetRecord,
    MeshRecord,
    PhotoRecord,
    PhotoResult,
    RunSummary,
    ViewsRecord,
    from_uri,
    to_uri,
)
from flows.tasks import configure_task, usable_limit
from spin_io.errors import EXIT_CRASH, EXIT_OUTPUT, EXIT_USAGE, exit_code_of
from spin_io.preflight import check_output_writable, resolve_device

FLOW_NAME = "spin-to-mesh"
CACHE_DIRNAME = ".spin-cache"

_ALIGN = AlignParams()
_VIEWS = ViewsParams()
_RECON = ReconParams()
_EXPORT = ExportParams()
_OPTIONS = RunOptions()


def _outputs_intact(record: Any) -> bool:
    """A cached record is only useful while its files are still there, unchanged (remote: its completion marker)."""
    if storage.is_remote(record.dir_uri):
        return storage.intact(record)
    if isinstance(record, AssetRecord):
        glb = from_uri(record.glb_uri)
        return glb.is_file() and stages.file_sha256(glb) == record.glb_sha256
    folder = from_uri(record.dir_uri)
    return folder.is_dir() and stages.tree_sha256(folder) == record.sha256


def _show(make_artifact: Any, *args: Any) -> None:
    """Artifacts are for people: failing to create one is logged, never the end of a batch."""
    try:
        make_artifact(*args)
    except Exception as exc:  # any API or image problem: the heads matter more
        get_run_logger().warning("could not create the %s artifact: %s", make_artifact.__name__, exc)


_OUTPUT_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def exit_code_for(exc: BaseException | None) -> int:
    """The documented exit code a photo's failure maps to: the user error's own, the output's, else a crash."""
    if exc is not None and isinstance(exc, user_error_types()):
        return exit_code_of(exc)
    if isinstance(exc, OSError) and (isinstance(exc, PermissionError) or exc.errno in _OUTPUT_ERRNOS):
        return EXIT_OUTPUT
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return EXIT_USAGE
    return EXIT_CRASH


def _error_of(state: State) -> tuple[str, str, int]:
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return type(exc).__name__, str(exc), exit_code_for(exc)
    return state.type.value, state.message or "unknown error", EXIT_CRASH


class _PhotoRun:
    """Bookkeeping of one photo while its stages run."""

    def __init__(self, photo: PhotoRecord, index: int = 0, total: int = 1) -> None:
        self.photo = photo
        self.index = index  # 0-based position in the run, for the progress display
        self.total = total
        self.cached: list[str] = []
        self.failure: tuple[str, str, str, int] | None = None  # stage, error type, message, exit code

    def take(self, stage: str, state: State) -> Any | None:
        """The record of a finished stage, or None after recording the failure."""
        if state.is_completed():
            if state.name == "Cached":
                self.cached.append(stage)
            return state.result()
        self.failure = (stage, *_error_of(state))
        return None

    def result(self, asset: AssetRecord | None, metrics: dict[str, Any]) -> PhotoResult:
        if asset is None:
            stage, etype, msg, code = self.failure or ("unknown", "Error", "no result", EXIT_CRASH)
            return PhotoResult(photo_id=self.photo.photo_id, source=self.photo.uri, status="failed",
                               failed_stage=stage, error_type=etype, error=msg, exit_code=code,
                               cached_stages=self.cached)
        return PhotoResult(photo_id=self.photo.photo_id, source=self.photo.uri, status="completed",
                           glb_uri=asset.glb_uri, cached_stages=self.cached, metrics=metrics)


def _run_stage(stage: str, run: RunParameters, cache_dir: Any, photo_run: _PhotoRun, **arguments: Any) -> Any | None:
    """Run one stage task to its end; a cache hit whose files are gone is recomputed."""
    where = {"photo_id": photo_run.photo.photo_id, "index": photo_run.index, "total": photo_run.total,
             "stage": stage}
    stages.notify("stage_start", **where)
    t0 = time.monotonic()
    state = configure_task(stage, run.options, cache_dir)(**arguments, return_state=True)
    if state.is_completed() and state.name == "Cached" and not _outputs_intact(state.result()):
        get_run_logger().warning("cached %s result of %s points at missing or changed files; recomputing",
                                 stage, photo_run.photo.photo_id)
        state = configure_task(stage, run.options, cache_dir, refresh=True)(**arguments, return_state=True)
    record = photo_run.take(stage, state)
    status = "failed" if record is None else "cached" if state.name == "Cached" else "done"
    error = f"{photo_run.failure[1]}: {photo_run.failure[2]}" if photo_run.failure else None
    stages.notify("stage_end", **where, status=status, seconds=time.monotonic() - t0, error=error)
    return record


def _photo_records(run: RunParameters, output: Path | str, scratch: Path | None = None) -> list[PhotoRecord]:
    """The run's photos after sharding; a remote input's photos are fetched (into the scratch, else the output)."""
    remote_in = storage.is_remote(run.input)
    photos: list[Any] = storage.resolve_remote_photos(run.input) if remote_in else resolve_photos(run.input)
    opts = run.options
    photos = [p for i, p in enumerate(photos) if i % opts.shard_count == opts.shard_index]
    if opts.max_photos is not None:
        photos = photos[: opts.max_photos]
    records: dict[str, PhotoRecord] = {}
    for source in photos:
        local = storage.fetch_photo(source, scratch or Path(output)) if remote_in else source
        sha = sha256_file(local)
        pid = photo_id(Path(local), sha)
        work = storage.join(output, pid) if isinstance(output, str) else to_uri(output / pid)
        records.setdefault(pid, PhotoRecord(photo_id=pid, uri=source if remote_in else to_uri(source), sha256=sha,
                                            work_uri=work))
    return list(records.values())


def _align_weights_id(run: RunParameters) -> str:
    if run.align.backend == "offline":
        return "offline"
    return stages.folder_fingerprint(run.options.weights)


def _run_photo(
    photo: PhotoRecord, run: RunParameters, cache_dir: Any, views_wid: str, align_wid: str, progress: Any,
    position: tuple[int, int] = (0, 1), scratch: Path | None = None,
) -> PhotoResult:
    """align -> views -> recon -> export for one photo; the first failing stage ends it (and only it).

    `scratch`: this worker's local folder for a remote output (None: the output is local, stages write in place).
    """
    opts = run.options
    pr = _PhotoRun(photo, *position)
    where = {} if scratch is None else {"scratch": str(scratch)}
    local_work = from_uri(photo.work_uri) if scratch is None else storage.local_work(photo.work_uri, scratch)
    removed = stages.clean_stale_temporaries(local_work)
    if removed:
        get_run_logger().info("%s: removed %d half-written folder(s) of an interrupted run: %s",
                              photo.photo_id, len(removed), ", ".join(removed))
    steps_left = len(STAGES)

    def step() -> None:
        nonlocal steps_left
        steps_left -= 1
        progress.advance()

    aligned: AlignedRecord | None = _run_stage(
        "align", run, cache_dir, pr, photo=photo, params=run.align, weights_id=align_wid, weights=opts.weights,
        **where,
    )
    step()
    views: ViewsRecord | None = None
    if aligned is not None:
        views = _run_stage("views", run, cache_dir, pr, aligned=aligned, params=run.views, work_uri=photo.work_uri,
                           weights_id=views_wid, device=opts.device, weights=opts.weights,
                           gpu_limit=opts.gpu_concurrency_limit, **where)
        step()
    mesh: MeshRecord | None = None
    if views is not None:
        shown = views if scratch is None else _local_copy(views, scratch)
        if shown is not None:  # a cached stage's images: links only
            _show(artifacts.views_artifact, shown, "views" not in pr.cached)
        mesh = _run_stage("recon", run, cache_dir, pr, views=views, params=run.recon, work_uri=photo.work_uri,
                          device=opts.device, gpu_limit=opts.gpu_concurrency_limit, **where)
        step()
    asset: AssetRecord | None = None
    if mesh is not None:
        asset = _run_stage("export", run, cache_dir, pr, mesh=mesh, params=run.export, work_uri=photo.work_uri,
                           **where)
        step()
    progress.advance(steps_left)
    if asset is None:
        return pr.result(None, {})
    shown_asset = asset if scratch is None else _local_copy(asset, scratch)
    if shown_asset is not None:
        _show(artifacts.asset_artifacts, shown_asset, "export" not in pr.cached)
    metrics = {f"recon.{k}": v for k, v in mesh.metrics.items()}
    metrics.update({f"export.{k}": v for k, v in asset.summary.items() if not isinstance(v, list)})
    if asset.summary.get("triangles"):
        metrics["export.triangles_lod0"] = asset.summary["triangles"][0]
    return pr.result(asset, metrics)


def _local_copy(record: Any, scratch: Path) -> Any | None:
    """A remote record's twin in this worker's scratch (for the artifacts' images), or None when not made here."""
    pid, folder = record.dir_uri.rstrip("/").rsplit("/", 2)[-2:]
    work = scratch / pid
    local = work / folder
    if not local.is_dir():
        return None
    prefix = record.dir_uri.rsplit("/", 1)[0]
    update: dict[str, Any] = {}
    for name in ("dir_uri", "glb_uri", "preview_uri"):
        uri = getattr(record, name, None)
        if uri is not None and uri.startswith(prefix + "/"):
            update[name] = to_uri(work / uri[len(prefix) + 1:])
    return record.model_copy(update=update)


def _claim_holder(holder: dict[str, Any]) -> str:
    return (f"claimed by flow run {holder.get('run_id', '?')} on {holder.get('host', '?')} (until "
            f"{time.strftime('%H:%M:%S', time.gmtime(float(holder.get('expires_at', 0))))} UTC unless renewed)")


def _current_run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or f"local-{os.getpid()}")


def form_weights_message(text: str, n_missing: int) -> str:
    """smr_core's missing-weights text, its first line in the form's words: the CLI's options mean nothing in the UI.

    The list of files below the first line (where each comes from, how to get it by hand) is kept as it is.
    """
    import re
    import socket

    first, _, files = text.partition("\n")
    where = re.search(r"missing in (\S+)", first)
    folder = f" in {where.group(1)}" if where else ""
    line = (
        f"{n_missing or 'some'} weight file(s) for views.backend = spinmeround are missing{folder} on worker "
        f"{socket.gethostname()}: set options.weights to a folder on the worker that holds them (or run "
        "`spin-to-mesh weights fetch` there), or choose views.backend = synthetic for the weights-free demo "
        "(the spin-to-mesh/demo deployment)"
    )
    return line + ("\n" + files if files else "")


def _ensure_weights_for_form(run: RunParameters) -> str | None:
    """stages.ensure_run_weights, its refusal reworded for the UI; still a WeightsMissingError (no retry, exit 3)."""
    from model_fetch.errors import WeightsMissingError

    try:
        return stages.ensure_run_weights(run.options.weights, run.align, run.views)
    except WeightsMissingError as exc:
        raise WeightsMissingError(form_weights_message(str(exc), len(exc.missing)), exc.missing) from None


def run_pipeline(run: RunParameters) -> State | RunSummary:
    """The body of the flow (call it inside a flow run): the summary, or a final state carrying it (see final_state)."""
    logger: logging.Logger | logging.LoggerAdapter = get_run_logger()
    # before any heavy work, also for runs started from the Prefect UI: both are user errors (no retry)
    remote_out = storage.is_remote(run.output)
    output: Path | str = storage.check_output(run.output) if remote_out else check_output_writable(run.output)
    resolve_device(run.options.device)
    weights = _ensure_weights_for_form(run)  # fetched on first use
    gpu_limit = usable_limit(run.options.gpu_concurrency_limit)  # checked once per run, not twice per photo
    run = run.model_copy(update={"options": run.options.model_copy(update={"weights": weights,
                                                                         "gpu_concurrency_limit": gpu_limit})})
    scratch = storage.scratch_root(run.options.work_dir, str(output)) if remote_out else None
    cache_loc = run.options.cache_dir or (storage.join(str(output), CACHE_DIRNAME) if remote_out else None)
    if cache_loc is not None and storage.is_remote(cache_loc):
        cache_dir: Any = storage.result_storage(storage.check_output(cache_loc, "cache"))
    else:
        cache_dir = Path(cache_loc).expanduser().resolve() if cache_loc else Path(output) / CACHE_DIRNAME
    photos = _photo_records(run, output, scratch)
    logger.info("%d photo(s) -> %s (cache %s)", len(photos), output, cache_loc or cache_dir)
    stages.notify("run", total=len(photos), output=str(output))
    progress = artifacts.Progress(len(photos) * len(STAGES), f"{len(photos)} photo(s): align, views, recon, export")
    views_wid = stages.views_weights_id(run.options.weights, run.views)
    align_wid = _align_weights_id(run)

    finished: list[PhotoResult] = []
    run_id = _current_run_id()
    for i, photo in enumerate(photos):
        held = None
        if remote_out:  # shared storage: two workers never make the same head (see flows/storage.py)
            held = storage.claim(str(output), photo.photo_id, run_id, run.options.claim_ttl_s)
            if isinstance(held, dict):
                finished.append(PhotoResult(photo_id=photo.photo_id, source=photo.uri, status="skipped",
                                            error=_claim_holder(held)))
                logger.info("%s skipped: %s", photo.photo_id, finished[-1].error)
                progress.advance(len(STAGES))
                continue
        try:
            finished.append(_run_photo(photo, run, cache_dir, views_wid, align_wid, progress, (i, len(photos)),
                                       scratch))
        finally:
            if held is not None:
                held.release()
        done = finished[-1]
        if done.status == "failed":
            logger.error("%s failed in %s: %s: %s", photo.photo_id, done.failed_stage, done.error_type, done.error)

    summary = RunSummary(output_uri=output if isinstance(output, str) else to_uri(output), photos=finished)
    _show(artifacts.summary_artifacts, summary)
    skipped = f", {summary.n_skipped} skipped (held by another run)" if summary.n_skipped else ""
    logger.info("%d of %d photo(s) completed%s", summary.n_completed, len(photos), skipped)
    return final_state(summary, run.options.allow_partial)


def outcome_message(summary: RunSummary, shown: int = 3, width: int = 200) -> str:
    """The final state's one line, so the run list says what failed without opening the run.

    '3 of 4 heads; 1 failed: flat-1a2b3c in align: NoFaceError: no face found'; at most `shown`
    failures are named (the failures artifact lists them all), each reason cut to `width` characters.
    """
    head = f"{summary.n_completed} of {len(summary.photos)} heads"
    if summary.n_skipped:
        head += f"; {summary.n_skipped} skipped (another live run holds them)"
    failed = [p for p in summary.photos if p.status == "failed"]
    if not failed:
        return head
    named = []
    for p in failed[:shown]:
        reason = " ".join(f"{p.error_type}: {p.error}".split())
        reason = reason if len(reason) <= width else reason[: width - 3] + "..."
        named.append(f"{p.photo_id} in {p.failed_stage}: {reason}")
    more = f"; and {len(failed) - shown} more (see the failures artifact)" if len(failed) > shown else ""
    return f"{head}; {len(failed)} failed: " + "; ".join(named) + more


def final_state(summary: RunSummary, allow_partial: bool = False) -> State | RunSummary:
    """How the run ends: any failed photo fails the run unless partial success is allowed; the summary stays its result.

    A batch that 'Completed' with failed photos hid them from whoever watches the run list. Returning a
    Failed state (not raising) keeps the summary as the run's result, so `spin-to-mesh run` still prints
    it and exits EXIT_PARTIAL, and the finished heads stay where they are. Every photo failed: raised.
    """
    if summary.n_failed == 0:
        return summary
    _show(artifacts.failures_artifact, summary)
    message = outcome_message(summary)
    if summary.n_completed == 0:
        raise PhotosFailedError(message, summary)
    if allow_partial:
        get_run_logger().warning(message)
        return Completed(message=message, data=summary)
    get_run_logger().error("%s (options.allow_partial accepts a partial batch)", message)
    return Failed(message=message, data=summary)


def flow_run_name() -> str:
    """Prefect's name for this run, from its input and shard (random names said nothing about what a run does)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    options = params.get("options") or {}
    if isinstance(options, RunOptions):
        options = options.model_dump()
    try:
        shard = int(options.get("shard_index", 0)), int(options.get("shard_count", 1))
    except (TypeError, ValueError, AttributeError):  # a bad value is refused by validation, not by the name
        shard = 0, 1
    return run_name_for(str(params.get("input") or ""), *shard)


# min_length and pattern reach the parameter schema, so the server and the UI form refuse a blank one at submission
NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]


@flow(name=FLOW_NAME, flow_run_name=flow_run_name, log_prints=True, validate_parameters=True)
def spin_to_mesh(
    input: NonEmpty,
    output: NonEmpty,
    align: AlignParams = _ALIGN,
    views: ViewsParams = _VIEWS,
    recon: ReconParams = _RECON,
    export: ExportParams = _EXPORT,
    options: RunOptions = _OPTIONS,
) -> State | RunSummary:
    """One face photo, a folder, a glob or a manifest of photos -> one textured GLB head per photo.

    Each photo gets `<output>/<photo id>/{aligned,views,mesh,asset}`; `asset/head.glb` is the head.
    A photo that fails (no face, a recon error, ...) is reported in the summary table with its stage
    and error while the others complete; the run then ends Failed (Completed with options.allow_partial),
    its message naming the failed photos, and the failures table lists them. Stages are cached in
    `<output>/.spin-cache` (or options.cache_dir), so a re-run only redoes what changed or failed.

    Args:
        input: A photo, a folder, a glob such as 'photos/*.jpg', or a manifest (.txt: one path per line;
            .json: a list of paths).
        output: Output folder; each photo gets a sub-folder '<name>-<hash>'.
        align: Face detection and cropping.
        views: Multi-view generation ('synthetic' ignores the photo: demos and tests only).
        recon: Mesh reconstruction and texture baking.
        export: GLB export: LODs, textures, preview.
        options: Devices, weights, cache, retries, time limits, GPU concurrency limit, sharding.
    """
    from flows.streams import guard_pipes

    guard_pipes()  # a worker that dies (second SIGTERM) must not take this run down with a BrokenPipeError
    run = RunParameters(input=input, output=output, align=align, views=views, recon=recon, export=export,
                        options=options)
    return run_pipeline(run)
