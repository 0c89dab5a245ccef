"""`spin-to-mesh align PHOTO -o DIR`: write the AlignedFace folder for one photo.

Provides `register(subparsers)` like every stage's cli module; heavy imports happen in the handler.
"""

from __future__ import annotations

import argparse
import sys

from spin_io.cliargs import hidden_alias


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `align` sub-command."""
    p = subparsers.add_parser(
        "align",
        help="photo -> aligned 512 px white-background face (+ ArcFace identity with the authors' weights)",
        description="Detect the face, crop it as SpinMeRound's release does (FFHQ quad, PanoHead refinement, "
        "563->512 crop), make the background white, and compute the ArcFace embedding when the antelopev2 "
        "weights are available.",
    )
    p.add_argument("photo", help="ONE image file (JPEG, PNG, TIFF, ...); `spin-to-mesh run` takes folders and globs")
    out = p.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="output folder (crop.png, mask.png, face.json, arcface.npy)")
    hidden_alias(p, out, "--out")
    p.add_argument(
        "--backend",
        choices=("auto", "antelopev2", "offline"),
        default="auto",
        help="antelopev2 = the authors' insightface models (needs --weights); offline = dlib models from PyPI, "
        "no ArcFace; auto = antelopev2 when its files are complete, else offline (default)",
    )
    p.add_argument("--weights", default=None, metavar="DIR",
                   help="folder laid out like SpinMeRound's weights/ (default $SMR_WEIGHTS, else the per-user cache)")
    p.add_argument("--offline", action="store_true",
                   help="never download weights (as HF_HUB_OFFLINE=1); without them align falls back to dlib/GrabCut")
    p.add_argument("--device", default="auto",
                   help="where the matting and 3DDFA networks run: auto (CUDA when available), cpu, cuda, cuda:N "
                   "(default auto)")
    p.add_argument("--face-index", type=int, default=None, help="which face when there are several (0 = largest)")
    p.add_argument(
        "--landmarks",
        choices=("dlib5", "dlib68", "facemesh"),
        default="dlib5",
        help="offline landmarker: dlib5 (public domain, default; all five keypoints from the face mesh when it runs), "
        "facemesh (all five from MediaPipe's mesh, Apache-2.0) or dlib68 (iBUG 300-W licence: non-commercial "
        "use only)",
    )
    p.add_argument("--matting", choices=("auto", "bisenet", "selfie", "grabcut"), default="auto",
                   help="background removal: auto = BiSeNet when its weights are there, else MediaPipe's selfie "
                   "segmentation (soft alpha), else GrabCut (a warning in face.json)")
    p.add_argument("--refinement", choices=("auto", "3ddfa", "facemesh", "landmark"), default="auto",
                   help="crop refinement: the release's FaceBoxes + 3DDFA (auto: when WEIGHTS/3ddfa/ is complete), "
                   "else a 3-D fit to MediaPipe's face mesh, or our 2-D landmark fit")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from align import AlignConfig, align_photo
    from align.errors import AlignWeightsNotFoundError
    from align.image import check_photo_path
    from align.offline import OfflineConfig
    from spin_io.preflight import check_output_writable, resolve_device

    # every user mistake we can see without the networks, before loading them (nothing is written)
    check_photo_path(args.photo, "align")
    check_output_writable(args.output, create=False)
    device = resolve_device(args.device)
    if args.backend != "offline":
        from model_fetch import ensure_weights

        # the release's alignment models are fetched on first use; each has a fallback, so none is required
        root = ensure_weights(["align"], args.weights, offline=args.offline or None)
        if args.weights is not None or root.is_dir():
            args.weights = str(root)
    if not args.offline:
        from align.mediapipe_models import ensure_models, litert_available

        if litert_available():  # the face mesh and selfie models (Apache-2.0), fetched once from PyPI
            try:
                ensure_models()
            except AlignWeightsNotFoundError as exc:
                print(f"warning: {exc}; aligning without them", file=sys.stderr)
    config = AlignConfig(
        offline=OfflineConfig(landmarks=args.landmarks), matting=args.matting, refinement=args.refinement,
        device=device,
    )
    face = align_photo(
        args.photo,
        args.output,
        backend=args.backend,
        weights_dir=args.weights,
        face_index=args.face_index,
        config=config,
    )
    pose = face.head_pose
    print(
        f"aligned face {face.face_index} of {len(face.detector_scores)} with {face.backend['name']} "
        f"(yaw {pose['yaw_deg']:.0f}, pitch {pose['pitch_deg']:.0f}, roll {pose['roll_deg']:.0f} deg) -> {args.output}"
    )
    for warning in face.backend.get("warnings", []):  # also in face.json, and later in report.json
        print(f"warning: {warning}", file=sys.stderr)
    if face.arcface is None:
        print(f"note: no arcface.npy: {face.identity_note}", file=sys.stderr)
    return 0
