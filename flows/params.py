"""Flow parameters as pydantic models: they are the form a pipeline TD fills in the Prefect UI.

Every field has a description and bounds, so a bad value is refused by Prefect (or by the CLI)
before any work starts. Groups map onto the stages; `RunOptions` holds what is about the run
itself (caching, timeouts, GPU slot) rather than about the head.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from smr_core.attention_backends import AttentionBackend


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlignParams(_Params):
    """Face detection and cropping (align)."""

    backend: Literal["auto", "antelopev2", "offline"] = Field(
        "auto",
        description="'antelopev2' needs the release's face models in the weights folder (gives the ArcFace identity); "
        "'offline' uses dlib (no identity embedding); 'auto' takes antelopev2 when its files are found.",
    )
    face_index: int | None = Field(
        None, ge=0, le=63,
        description="Which face to use when a photo shows several of similar size (0 = largest); empty: such photos "
        "are refused with how many faces and where.",
    )
    matting: Literal["auto", "bisenet", "selfie", "grabcut"] = Field(
        "auto",
        description="Background matte: 'bisenet' = the release's face parser (79999_iter.pth in the weights folder), "
        "'selfie' = MediaPipe's selfie segmentation (soft alpha, Apache-2.0), 'grabcut' = OpenCV GrabCut (last "
        "resort, recorded as a warning), 'auto' = BiSeNet when its file is found, else selfie, else GrabCut.",
    )
    refinement: Literal["auto", "3ddfa", "facemesh", "landmark"] = Field(
        "auto",
        description="Who measures the head pose for the PanoHead-style crop: '3ddfa' = the release's FaceBoxes + "
        "3DDFA_V2 (WEIGHTS/3ddfa/), 'facemesh' = a 3-D fit to MediaPipe's face mesh, 'landmark' = our 2-D landmark "
        "fit, 'auto' = 3DDFA when its files are all there, else the face mesh, else the landmark fit.",
    )
    landmarks: Literal["dlib5", "facemesh", "dlib68"] = Field(
        "dlib5",
        description="Offline backend only: dlib's 5-point model (public domain), MediaPipe's face mesh points "
        "(Apache-2.0), or dlib's 68-point one, whose iBUG training data forbid commercial use.",
    )


class ViewsParams(_Params):
    """Multi-view generation (smr_core.pipeline) or the synthetic stand-in (recon.synth)."""

    backend: Literal["spinmeround", "synthetic"] = Field(
        "spinmeround",
        description="'spinmeround' runs the diffusion model on the aligned photo. 'synthetic' IGNORES the photo and "
        "renders a procedural ground-truth head at the same cameras: for demos and tests without weights only.",
    )
    num_views: int = Field(8, ge=2, le=32, description="Views per pitch ring, evenly spaced in yaw; the input photo "
                           "is the eye-level ring's azimuth-0 view (CLI --views).")
    pitch_rings_deg: list[float] = Field(
        default_factory=lambda: [0.0, 20.0, -15.0],
        min_length=1,
        max_length=8,
        json_schema_extra={"uniqueItems": True},  # the server and the UI form refuse a repeated ring at submission
        description="Elevation of each ring of views in degrees (0 = eye level, > 0 = from above); the pitched "
        "rings cover the crown and the chin. More than 16 views are generated in several passes.",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Sampler seed: the same seed reproduces the same views.")
    cfg_scale: float = Field(3.5, ge=1.0, le=10.0, description="Classifier-free guidance scale (release default 3.5).")
    steps: int = Field(50, ge=1, le=200, description="Sampler steps (release default 50; fewer is faster and rougher).")
    image_size: int = Field(
        512, ge=32, le=1024, description="Synthetic backend only: view resolution in pixels (the diffusion model "
        "always works at 512)."
    )
    tiny_random: bool = Field(
        False, description="Test only: tiny randomly initialised networks instead of weights (the views are noise)."
    )
    attention_backend: AttentionBackend = Field(
        "auto", description="SDPA kernel tried first in every attention layer ('auto' = torch chooses); the others "
        "remain fall-backs. Same maths, different speed: bench/gpu_sweep.py says which is fastest on your GPUs."
    )
    fast: bool = Field(
        False, description="CUDA fast path: bf16 networks with torch.compile and CUDA graphs (about 1.5x faster "
        "sampling, 5x faster normals; the worker's first photo pays about a minute of compilation)."
    )
    synthetic_head_seed: int = Field(0, ge=0, le=10_000, description="Synthetic backend: which procedural head.")

    @field_validator("pitch_rings_deg")
    @classmethod
    def _pitch_in_range(cls, rings: list[float]) -> list[float]:
        for p in rings:
            if not -80.0 <= p <= 80.0:
                raise ValueError(f"pitch ring {p} deg is outside [-80, 80]")
        if len(set(rings)) != len(rings):
            raise ValueError(f"pitch rings must differ, got {rings}")
        return rings


class ReconParams(_Params):
    """Reconstruction of a textured mesh from the views (recon)."""

    texture_size: int = Field(
        2048, ge=64, le=8192, description="Side of the baked albedo texture in pixels (CLI --texture-size; the same "
        "default as `spin-to-mesh recon`)."
    )
    preset: Literal["preview", "standard"] = Field(
        "standard", description="'preview' trades accuracy for speed (coarser hull, fewer refinement steps, one depth "
        "integration instead of two)."
    )
    depth_size: int = Field(
        512, ge=32, le=4096, description="Largest side in pixels at which each view's normals are integrated to "
        "depth (CLI --depth-size; default 512, the generator's own size). 256 is about twice as fast on 512 px views "
        "but blends ear rims with the skull behind them (bench/RECON_EVAL.md session 15)."
    )
    trust_cameras: bool = Field(
        False, description="Use the views' cameras as declared (CLI --trust-cameras); by default each is turned up to "
        "4 deg onto the shape the views agree on."
    )
    fit_masks: bool = Field(
        False, description="Move out a view's matte drawn 0.3-3 px tighter than the others' (CLI --fit-masks; "
        "opt-in: mixed on held-out heads, bench/RECON_EVAL.md session 10)."
    )
    open_pockets: bool = Field(
        True, description="Move depth-map patches no anchor placed (a pocket behind an ear, an ear plate "
        "integrated too deep) to where the other views' normals agree (CLI --open-pockets / --no-open-pockets; "
        "on by default)."
    )


class ExportParams(_Params):
    """GLB export (exporters)."""

    lod_budgets: list[int] = Field(
        default_factory=lambda: [25_000, 7_000, 2_500],
        min_length=1,
        max_length=8,
        description="Triangle budget of each LOD, LOD0 first (head.glb, head_lod1.glb, ...); must not increase.",
    )
    max_texture_size: int | None = Field(
        None,
        ge=16,
        le=16_384,
        # 'texture_size' is the field's old name: deployments and saved runs that still use it keep working
        validation_alias=AliasChoices("max_texture_size", "texture_size"),
        description="Largest texture side of LOD0 in pixels: a bigger baked albedo is scaled down to fit, never up "
        "(CLI --max-texture-size; empty = keep the baked size).",
    )
    roughness: float = Field(
        0.55, ge=0.0, le=1.0, description="Roughness of the head material (metallic is 0): 0.55 suits skin."
    )
    format: Literal["glb", "both"] = Field(
        "glb", description="'both' also writes head.usdz (USD, the LODs as the 'lod' variant set) beside the GLBs."
    )
    usda: bool = Field(False, description="With format 'both': also a readable head.usda (+ textures/).")
    lit_texture: bool = Field(
        False, description="Use the lit texture (lighting baked in) instead of the de-lit albedo as the base colour."
    )
    normal_maps: bool = Field(
        True, description="Give each decimated LOD a tangent-space normal map baked from the full-resolution mesh "
        "(keeps the shading of nose, lips and ears on low-poly LODs; about 0.3 MB per LOD at 1024 px)."
    )
    preview: bool = Field(True, description="Render the turntable contact sheet preview.png.")
    validate_gltf: bool = Field(True, description="Run the Khronos glTF validator when Node.js and the package exist.")

    @field_validator("lod_budgets")
    @classmethod
    def _budgets(cls, budgets: list[int]) -> list[int]:
        if any(b < 4 for b in budgets):
            raise ValueError(f"every LOD budget must be >= 4 triangles, got {budgets}")
        if any(b > a for a, b in zip(budgets, budgets[1:], strict=False)):
            raise ValueError(f"LOD budgets must not increase from LOD0 to the last LOD, got {budgets}")
        return budgets


class RunOptions(_Params):
    """How the run is executed: where weights and caches live, timeouts, retries, the GPU slot."""

    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="'auto' = first CUDA device if any, else CPU; or 'cpu', 'cuda', 'cuda:N'.",
    )
    weights: str | None = Field(
        None, description="Weights folder laid out like the release (default: the SMR_WEIGHTS environment variable)."
    )
    cache_dir: str | None = Field(
        None,
        description="Where stage results (the cache) are persisted: a folder or an fsspec URI (s3://bucket/cache, "
        "gs://...); default <output>/.spin-cache. Put it on storage that every worker can reach when workers run on "
        "several hosts.",
    )
    work_dir: str | None = Field(
        None,
        description="Local scratch folder of the worker for a remote (s3://, gs://) output: stage folders are built "
        "here, then uploaded. Default: $SPIN_TO_MESH_WORK_DIR, else <temp>/spin-to-mesh-work. Unused for local "
        "outputs.",
    )
    claim_ttl_s: float = Field(
        600.0, ge=1.0, le=86_400,
        description="Remote outputs: a head's claim (so two workers never make the same head) lasts this long "
        "unless renewed; the run renews it while it works, so a dead worker's heads are taken over after this.",
    )
    refresh_cache: bool = Field(False, description="Recompute every stage even when a cached result exists.")
    gpu_concurrency_limit: str | None = Field(
        None,
        description="Name of a Prefect global concurrency limit held while the GPU stages (views, recon) run, e.g. "
        "'gpu-{hostname}-{cuda_visible_devices}' (placeholders are filled on the worker). Empty = no limit.",
    )
    retries: int = Field(2, ge=0, le=10, description="Retries of a stage after a transient error (never user errors).")
    retry_delay_s: float = Field(10.0, ge=0.0, le=3600.0, description="First retry delay; doubles at each retry.")
    timeout_align_s: float = Field(600.0, gt=0, le=86_400, description="Time limit of the align stage per photo.")
    timeout_views_s: float = Field(3600.0, gt=0, le=86_400, description="Time limit of the views stage per photo.")
    timeout_recon_s: float = Field(3600.0, gt=0, le=86_400, description="Time limit of the recon stage per photo.")
    timeout_export_s: float = Field(1200.0, gt=0, le=86_400, description="Time limit of the export stage per photo.")
    shard_index: int = Field(0, ge=0, description="Process only photos i with i % shard_count == shard_index.")
    shard_count: int = Field(1, ge=1, le=4096, description="Split a batch into this many shards (one run per GPU).")
    max_photos: int | None = Field(None, ge=1, description="Stop after this many photos (after sharding).")
    allow_partial: bool = Field(
        False, description="A batch in which some photos failed ends Completed (the failures in its message) instead "
        "of Failed. The finished heads are kept either way; a run in which every photo failed always fails."
    )

    @model_validator(mode="after")
    def _shard(self) -> RunOptions:
        if self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index {self.shard_index} must be < shard_count {self.shard_count}")
        return self


class RunParameters(_Params):
    """Everything one run needs; the flow's parameters are these fields, one UI section per group."""

    input: str = Field(
        ...,
        min_length=1,
        description="A photo, a glob such as 'photos/*.jpg', or a manifest (.txt: one path per line; "
        ".json: a list of paths) of photos; a local path or an fsspec URI (s3://bucket/photos/, gs://...).",
    )
    output: str = Field(
        ..., min_length=1,
        description="Output folder, one sub-folder per photo: a local path or an fsspec URI (s3://bucket/heads).",
    )
    align: AlignParams = Field(default_factory=AlignParams, description="Face detection and cropping.")
    views: ViewsParams = Field(default_factory=ViewsParams, description="Multi-view generation.")
    recon: ReconParams = Field(default_factory=ReconParams, description="Mesh reconstruction and texture baking.")
    export: ExportParams = Field(default_factory=ExportParams, description="GLB export: LODs, textures, preview.")
    options: RunOptions = Field(default_factory=RunOptions, description="Devices, weights, cache, retries, limits.")

    @field_validator("input", "output")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank: name a photo, folder, glob or manifest (input) or a folder (output)")
        return value
