"""`spin-to-mesh run PHOTO_OR_GLOB_OR_MANIFEST -o OUT/`: the `spin-to-mesh` Prefect flow on this machine.

Without PREFECT_API_URL the flow runs against Prefect's ephemeral SQLite backend (a temporary
local API server that the run starts and stops itself), so nothing has to be started first; with
PREFECT_API_URL set (or a Prefect profile that sets it) the run is recorded on that server and
appears in its UI. Prefect is imported inside the handler so `spin-to-mesh --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from flows.errors import FlowError
from smr_core.attention_backends import ATTENTION_BACKENDS

# On two busy cores the ephemeral server can take longer than Prefect's 20 s default to start.
EPHEMERAL_STARTUP_TIMEOUT_S = "120"


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
                    backend=args.views_backend, num_views=args.num_views, pitch_rings_deg=args.pitch_rings,
                    seed=args.seed, cfg_scale=args.cfg_scale, steps=args.steps, image_size=args.image_size,
                    tiny_random=args.tiny_random or None, synthetic_head_seed=args.synthetic_head_seed,
                    fast=args.fast or None, attention_backend=args.attention_backend,
                ),
                "recon": pick(texture_size=args.texture_size, preset=args.recon_preset),
                "export": pick(
                    lod_budgets=args.lod_budgets, texture_size=args.export_texture_size,
                    preview=False if args.no_preview else None, validate_gltf=False if args.no_validate else None,
                    normal_maps=False if args.no_normal_maps else None,
                ),
                "options": pick(
                    device=args.device, weights=args.weights or os.environ.get("SMR_WEIGHTS"),
                    cache_dir=args.cache_dir, refresh_cache=args.refresh or None, retries=args.retries,
                ),
            }
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FlowError(f"invalid parameters: {problems}") from None


def _print_summary(summary: Any) -> None:
    for p in summary.photos:
        if p.status == "completed":
            cached = f" (cached: {', '.join(p.cached_stages)})" if p.cached_stages else ""
            print(f"ok      {p.photo_id}: {p.glb_uri}{cached}")
        else:
            print(f"FAILED  {p.photo_id} in {p.failed_stage}: {p.error_type}: {p.error}", file=sys.stderr)
    print(f"{summary.n_completed} of {len(summary.photos)} photo(s) completed; output {summary.output_uri}")


def run_command(args: argparse.Namespace) -> int:
    """Validate everything, then run the flow; exit 0 when every photo completed, 2 otherwise."""
    from flows.inputs import resolve_photos

    params = build_parameters(args)
    photos = resolve_photos(params.input)  # refuse a bad input before Prefect starts anything
    print(f"spin-to-mesh run: {len(photos)} photo(s) -> {Path(params.output).resolve()}")
    configure_prefect_env(args.prefect_home)

    from flows.pipeline import spin_to_mesh

    state = spin_to_mesh(**{k: getattr(params, k) for k in type(params).model_fields}, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        if isinstance(result, FlowError):
            raise result
        raise FlowError(f"the flow run failed: {type(result).__name__}: {result}") from result
    _print_summary(result)
    return 0 if result.n_failed == 0 else 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` sub-command."""
    p = subparsers.add_parser(
        "run",
        help="photo(s) -> GLB head(s): align, views, recon, export as one Prefect flow (cached, resumable)",
        description="Run the spin-to-mesh Prefect flow locally. INPUT is a photo, a folder, a glob (quote it) or a "
        "manifest (.txt one path per line, .json list). Each photo gets OUT/<photo id>/asset/head.glb; re-running "
        "reuses finished stages from OUT/.spin-cache.",
    )
    p.add_argument("input", metavar="PHOTO_OR_GLOB_OR_MANIFEST")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (one sub-folder per photo)")
    g = p.add_argument_group("align")
    g.add_argument("--align-backend", choices=["auto", "antelopev2", "offline"])
    g.add_argument("--face-index", type=int, help="which face when a photo shows several (0 = largest)")
    g.add_argument("--matting", choices=["auto", "bisenet", "grabcut"], help="background matte (default auto)")
    g.add_argument("--refinement", choices=["auto", "3ddfa", "landmark"],
                   help="head-pose measure for the crop (default auto: 3DDFA when its files are there)")
    g.add_argument("--landmarks", choices=["dlib5", "dlib68"],
                   help="offline backend: dlib68 is more accurate but its training data forbid commercial use")
    g = p.add_argument_group("views")
    g.add_argument("--views-backend", choices=["spinmeround", "synthetic"],
                   help="'synthetic' ignores the photo and renders a procedural head (demo/tests only)")
    g.add_argument("--num-views", type=int, help="views per pitch ring, input view included (2-16; default 8)")
    g.add_argument("--pitch-rings", type=_csv(float), metavar="DEG,...", help="ring elevations, e.g. 0,30")
    g.add_argument("--seed", type=int)
    g.add_argument("--cfg-scale", type=float)
    g.add_argument("--steps", type=int)
    g.add_argument("--image-size", type=int, help="view resolution in pixels")
    g.add_argument("--tiny-random", action="store_true", help="test only: tiny random networks (views are noise)")
    g.add_argument("--synthetic-head-seed", type=int)
    g.add_argument("--fast", action="store_true", help="CUDA fast path: bf16 + torch.compile + CUDA graphs "
                   "(the first photo compiles for about a minute)")
    g.add_argument("--attention-backend", choices=ATTENTION_BACKENDS,
                   help="SDPA kernel tried first (default auto: torch chooses)")
    g = p.add_argument_group("recon and export")
    g.add_argument("--texture-size", type=int, help="baked albedo size in pixels")
    g.add_argument("--recon-preset", choices=["preview", "standard"])
    g.add_argument("--lod-budgets", type=_csv(int), metavar="N,...", help="triangles per LOD, e.g. 25000,7000,2500")
    g.add_argument("--export-texture-size", type=int, help="resize the GLB textures to N x N")
    g.add_argument("--no-preview", action="store_true", help="skip the turntable preview.png")
    g.add_argument("--no-normal-maps", action="store_true", help="no baked normal maps on the decimated LODs")
    g.add_argument("--no-validate", action="store_true", help="skip the Khronos glTF validator")
    g = p.add_argument_group("run")
    g.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--weights", metavar="DIR", help="weights folder (default: $SMR_WEIGHTS)")
    g.add_argument("--cache-dir", metavar="DIR", help="persisted stage results (default OUT/.spin-cache)")
    g.add_argument("--refresh", action="store_true", help="recompute every stage, ignoring the cache")
    g.add_argument("--retries", type=int, help="retries after transient errors (default 2)")
    g.add_argument("--prefect-home", metavar="DIR",
                   help="Prefect home for this run (default: $PREFECT_HOME, else ~/.local/share/spin-to-mesh/prefect)")
    p.set_defaults(func=run_command)
