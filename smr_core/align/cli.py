"""`spin-to-mesh align PHOTO -o DIR`: write the AlignedFace folder for one photo.

Provides `register(subparsers)` like every stage's cli module; heavy imports happen in the handler.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `align` sub-command."""
    p = subparsers.add_parser(
        "align",
        help="photo -> aligned 512 px white-background face (+ ArcFace identity with the authors' weights)",
        description="Detect the face, crop it as SpinMeRound's release does (FFHQ quad, PanoHead refinement, "
        "563->512 crop), make the background white, and compute the ArcFace embedding when the antelopev2 "
        "weights are available.",
    )
    p.add_argument("photo", help="image file (JPEG, PNG, TIFF, ...)")
    p.add_argument("-o", "--out", required=True, help="output folder (crop.png, mask.png, face.json, arcface.npy)")
    p.add_argument(
        "--backend",
        choices=("auto", "antelopev2", "offline"),
        default="auto",
        help="antelopev2 = the authors' insightface models (needs --weights); offline = dlib models from PyPI, "
        "no ArcFace; auto = antelopev2 when its files are complete, else offline (default)",
    )
    p.add_argument("--weights", default=None, help="folder laid out like SpinMeRound's weights/ (default $SMR_WEIGHTS)")
    p.add_argument("--face-index", type=int, default=None, help="which face when there are several (0 = largest)")
    p.add_argument(
        "--landmarks",
        choices=("dlib5", "dlib68"),
        default="dlib5",
        help="offline landmarker: dlib5 (public domain, default) or dlib68 (more precise; iBUG 300-W "
        "licence: non-commercial use only)",
    )
    p.add_argument("--matting", choices=("auto", "bisenet", "grabcut"), default="auto", help="background removal")
    p.add_argument("--refinement", choices=("auto", "3ddfa", "landmark"), default="auto",
                   help="crop refinement: the release's FaceBoxes + 3DDFA (auto: when WEIGHTS/3ddfa/ is complete) "
                   "or our landmark fit")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from smr_core.align import AlignConfig, align_photo
    from smr_core.align.offline import OfflineConfig

    config = AlignConfig(
        offline=OfflineConfig(landmarks=args.landmarks), matting=args.matting, refinement=args.refinement
    )
    face = align_photo(
        args.photo,
        args.out,
        backend=args.backend,
        weights_dir=args.weights,
        face_index=args.face_index,
        config=config,
    )
    pose = face.head_pose
    print(
        f"aligned face {face.face_index} of {len(face.detector_scores)} with {face.backend['name']} "
        f"(yaw {pose['yaw_deg']:.0f}, pitch {pose['pitch_deg']:.0f}, roll {pose['roll_deg']:.0f} deg) -> {args.out}"
    )
    if face.arcface is None:
        print(f"note: no arcface.npy: {face.identity_note}", file=sys.stderr)
    return 0
