"""The stages as Prefect tasks: cached on content + parameters + weights + code, persisted, retried, timed.

Each task is a thin call into `flows.stages`. Run-specific settings (where results are persisted,
retries, timeouts, refresh) are applied per run with `configure_task`, so the decorators below only
hold what never changes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.tasks import exponential_backoff

from flows import stages, storage
from flows.caching import retry_condition, stage_cache_key
from flows.params import AlignParams, ExportParams, ReconParams, RunOptions, ViewsParams
from flows.records import AlignedRecord, AssetRecord, MeshRecord, PhotoRecord, ViewsRecord

_COMMON: dict[str, Any] = {
    "cache_key_fn": stage_cache_key,
    "persist_result": True,
    "result_serializer": "json",
    "retry_condition_fn": retry_condition,
}


def fill_limit_name(template: str) -> str:
    """'gpu-{hostname}-{cuda_visible_devices}' -> e.g. 'gpu-render07-1' on the worker that runs the task."""
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_") or "none"
    return template.format(hostname=socket.gethostname().split(".")[0].lower(), cuda_visible_devices=cuda)


def usable_limit(template: str | None) -> str | None:
    """The run's GPU limit, filled on this worker and looked up once: a name the server lacks is warned about once.

    Prefect's own check is per acquisition: 'Concurrency limits [...] do not exist' twice per photo (views and
    recon). Here a missing limit gives one warning saying how to create it, and the stages ask for none.
    Any other API problem keeps the name (Prefect's non-strict mode then decides, as before).
    """
    if not template:
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = fill_limit_name(template)
    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        get_run_logger().warning(
            "GPU concurrency limit %r does not exist on the Prefect server: GPU stages run unthrottled. Create it "
            "with `prefect gcl create %s --limit 1` (docs/PREFECT.md) or leave options.gpu_concurrency_limit empty.",
            name, name,
        )
        return None
    return name


@contextlib.contextmanager
def gpu_slot(limit: str | None) -> Iterator[None]:
    """Hold one slot of the named global concurrency limit while a GPU stage runs (no-op without a name).

    A limit that does not exist on the server is not an error (Prefect's non-strict mode): the
    stage runs unthrottled, as on a single-GPU workstation.
    """
    if not limit:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(fill_limit_name(limit), occupy=1):
        yield


def _local(work_uri: str, scratch: str | None) -> str:
    """The work folder a stage writes in: the photo's own, or (remote output) its folder in this worker's scratch."""
    from flows.records import to_uri

    return work_uri if scratch is None else to_uri(storage.local_work(work_uri, scratch))


@task(name="align", task_run_name="align {photo.photo_id}", tags=["spin-to-mesh", "cpu"], **_COMMON)
def align_task(
    photo: PhotoRecord, params: AlignParams, weights_id: str, weights: str | None = None, scratch: str | None = None
) -> AlignedRecord:
    """Detect and crop the face (CPU)."""
    if scratch is None:  # local output: the stage writes in place (a remote photo is fetched into the output)
        if storage.is_remote(photo.uri):
            from flows.records import from_uri, to_uri

            local = storage.fetch_photo(photo.uri, from_uri(photo.work_uri).parent, photo.sha256)
            photo = photo.model_copy(update={"uri": to_uri(local)})
        record = stages.run_align(photo, params, weights)
    else:
        record = storage.publish(stages.run_align(storage.localise_photo(photo, scratch), params, weights), scratch,
                                 photo.work_uri)
    for warning in record.warnings:  # also in face.json, the views artifact and report.json
        get_run_logger().warning("%s: %s", record.photo_id, warning)
    return record


@task(name="views", task_run_name="views {aligned.photo_id}", tags=["spin-to-mesh", "gpu"], **_COMMON)
def views_task(
    aligned: AlignedRecord,
    params: ViewsParams,
    work_uri: str,
    weights_id: str,
    device: str = "auto",
    weights: str | None = None,
    gpu_limit: str | None = None,
    scratch: str | None = None,
) -> ViewsRecord:
    """Generate the posed views (GPU: the expensive stage the cache exists for)."""
    if scratch is not None:
        aligned = storage.localise(aligned, scratch)
    with gpu_slot(gpu_limit):
        record = stages.run_views(aligned, params, _local(work_uri, scratch), device, weights)
    return record if scratch is None else storage.publish(record, scratch, work_uri)


@task(name="recon", task_run_name="recon {views.photo_id}", tags=["spin-to-mesh", "gpu"], **_COMMON)
def recon_task(
    views: ViewsRecord, params: ReconParams, work_uri: str, device: str = "auto", gpu_limit: str | None = None,
    scratch: str | None = None,
) -> MeshRecord:
    """Fit the textured mesh to the views; its progress lines reach the Prefect log and the CLI's display."""
    logger = get_run_logger()

    def log(msg: str) -> None:
        logger.info("recon %s", msg)
        stages.notify("message", photo_id=views.photo_id, stage="recon", text=msg)

    if scratch is not None:
        views = storage.localise(views, scratch)
    with gpu_slot(gpu_limit):
        record = stages.run_recon(views, params, _local(work_uri, scratch), device, log=log,
                                  progress=stages.show_bars())
    return record if scratch is None else storage.publish(record, scratch, work_uri)


@task(name="export", task_run_name="export {mesh.photo_id}", tags=["spin-to-mesh", "cpu"], **_COMMON)
def export_task(mesh: MeshRecord, params: ExportParams, work_uri: str, scratch: str | None = None) -> AssetRecord:
    """Write the GLB LODs, the turntable preview and report.json (CPU); a skipped glTF validation is a warning."""
    if scratch is not None:
        mesh = storage.localise(mesh, scratch)
    asset = stages.run_export(mesh, params, _local(work_uri, scratch))
    if scratch is not None:
        asset = storage.publish(asset, scratch, work_uri)
    note = str(asset.summary.get("validation", ""))
    if note.startswith("not validated"):
        get_run_logger().warning("%s: %s (report.json 'validation' says why)", mesh.photo_id, note)
    return asset


STAGE_TASKS: dict[str, Task] = {"align": align_task, "views": views_task, "recon": recon_task, "export": export_task}


def configure_task(stage: str, options: RunOptions, cache_dir: Any, refresh: bool | None = None) -> Task:
    """The stage's task with this run's result storage (a folder, or a block from storage.result_storage), retries
    with exponential backoff, and time limit."""
    timeout = getattr(options, f"timeout_{stage}_s")
    return STAGE_TASKS[stage].with_options(
        result_storage=Path(cache_dir) if isinstance(cache_dir, (str, Path)) else cache_dir,
        refresh_cache=options.refresh_cache if refresh is None else refresh,
        retries=options.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=options.retry_delay_s)(options.retries)
        if options.retries
        else 0,
        timeout_seconds=timeout,
    )
