"""photo -> AlignedFace: detect, FFHQ quad, pose/scale refinement, 563 -> 512 crop, white background, ArcFace.

The order and every constant follow the release's demo (SPINMEROUND.md §2.2-§2.3); the pieces
that need the authors' weights (antelopev2, BiSeNet) have offline stand-ins, and face.json
records which ones produced the result.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from align.detection import Detection
from align.errors import AlignInputError, AlignWeightsNotFoundError, NoFaceError, SeveralFacesError
from align.geometry import (
    CropSpec,
    PoseLimits,
    Refinement,
    check_inside,
    check_refinement,
    crop_final,
    ffhq_quad,
    refine_quad,
)
from align.image import load_image
from align.matting import composite_white, grabcut_mask, top_edge_contact, top_edge_warning
from align.offline import OfflineConfig
from align.template import fit_pose, level_pitch
from align.weights import find_tddfa_weights, require_align_weights, require_tddfa_weights
from model_fetch.layout import find_align_weights, resolve_weights_dir
from spin_io.aligned import AlignedFace, write_aligned
from spin_io.atomic import make_temp_dir, replace_dir

if TYPE_CHECKING:
    from align.bisenet import BiSeNet
    from align.facemesh import FaceMesh, MeshResult
    from align.selfie import SelfieMatting
    from align.tddfa import ReleaseRefiner


BackendName = Literal["auto", "antelopev2", "offline"]
MattingName = Literal["auto", "bisenet", "selfie", "grabcut"]
RefinementName = Literal["auto", "3ddfa", "facemesh", "landmark"]
# A second face counts as a rival (refused without face_index) when its size (Detection.size: the FFHQ quad's
# scale from its keypoints) is at least this fraction of the largest one's; smaller faces (people in the
# background) are never the subject.
RIVAL_FACE_RATIO = 0.5
GRABCUT_WARNING = (
    "matting fell back to GrabCut (no BiSeNet weights, no MediaPipe selfie model): hair may be cut and the edge "
    "is hard; install the `align` extra and run once with network access to fetch the MediaPipe models"
)


class FaceBackend(Protocol):
    """What align_photo needs from a detector/landmarker/recogniser."""

    name: str

    @property
    def info(self) -> dict: ...

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...

    def embed(self, rgb_crop: np.ndarray) -> np.ndarray | None: ...


@dataclass(frozen=True)
class AlignConfig:
    """Everything tunable about alignment; the defaults reproduce the release where it is defined."""

    offline: OfflineConfig = field(default_factory=OfflineConfig)
    limits: PoseLimits = field(default_factory=PoseLimits)
    crop: CropSpec = field(default_factory=CropSpec)
    # "auto": BiSeNet when its weights are there, else MediaPipe's selfie segmentation (soft alpha) when its
    # model is cached, else GrabCut (with a warning in face.json).
    matting: MattingName = "auto"
    refine: bool = True  # PanoHead's pose/scale refinement; False keeps the plain FFHQ quad
    # Who measures that refinement: "3ddfa" = the release's FaceBoxes + 3DDFA_V2 (needs WEIGHTS/3ddfa/),
    # "facemesh" = a 3-D fit to MediaPipe's 468-point mesh, "landmark" = our 2-D template fit (yaw and roll; pitch
    # taken as 0); "auto" takes 3ddfa when its files are all present, else facemesh when its model is cached.
    refinement: RefinementName = "auto"
    device: str = "cpu"  # BiSeNet's device


def make_backend(
    backend: BackendName, weights_dir: str | os.PathLike[str] | None = None, config: AlignConfig | None = None
) -> FaceBackend:
    """Build the named backend; 'auto' takes antelopev2 when its files are complete, else offline."""
    config = config or AlignConfig()
    if backend == "antelopev2":
        from align.antelope import AntelopeBackend

        found = require_align_weights(weights_dir)
        return AntelopeBackend(found.detector, found.recognition)
    if backend == "auto":
        root = resolve_weights_dir(weights_dir)
        if root is not None and find_align_weights(root).complete:
            return make_backend("antelopev2", root, config)
        backend = "offline"
    if backend == "offline":
        from align.offline import OfflineBackend

        return OfflineBackend(config.offline)
    raise AlignInputError(f"unknown alignment backend {backend!r}; choose 'auto', 'antelopev2' or 'offline'")


def _tddfa_refiner(weights_dir: str | os.PathLike[str] | None, config: AlignConfig) -> ReleaseRefiner | None:
    """The release's FaceBoxes + 3DDFA_V2 refiner when selected (or 'auto' and complete), else None."""
    if config.refinement in ("landmark", "facemesh"):
        return None
    if config.refinement == "3ddfa":
        found = require_tddfa_weights(weights_dir)
    elif config.refinement == "auto":
        root = resolve_weights_dir(weights_dir)
        found = find_tddfa_weights(root) if root is not None else None
        if found is None or not found.complete:
            return None
    else:
        raise AlignInputError(
            f"unknown refinement {config.refinement!r}; choose 'auto', '3ddfa', 'facemesh' or 'landmark'"
        )
    from align.tddfa import ReleaseRefiner

    return ReleaseRefiner.from_weights(found, config.device)


def _no_face_message(backend: FaceBackend, config: AlignConfig) -> str:
    if backend.name == "offline":
        c = config.offline
        if getattr(backend, "_blazeface", None) is not None and not c.cnn_after_blazeface:
            which = (f"neither dlib's HOG detector (score >= {c.min_score}) nor MediaPipe's BlazeFace "
                     "(the whole photo, then tiles) found a face")
        else:
            which = f"dlib's detector found no face with score >= {c.min_score} (HOG) / {c.cnn_min_score} (CNN)"
        return (
            f"no face found: {which} in the "
            f"photo scaled to at most {c.detect_max_side} px (faces need about 40 px there). "
            "Use a photo where the face is clearly visible, roughly frontal and not tightly cropped"
        )
    return (
        "no face found: antelopev2's detector found no face with score >= 0.5. Use a photo where the face is "
        "clearly visible and not tightly cropped (leave some background around the head)"
    )


@dataclass(eq=False)
class Aligner:
    """align_photo for many photos: the face backend, the 3DDFA refiner and BiSeNet are loaded once, then reused.

    A batch worker would otherwise pay the ONNX/dlib/torch loads per photo. Each network is loaded the first
    time a photo needs it (on `config.device`) and kept, so one Aligner raises the same errors, in the same
    order and before anything is written, as align_photo does; a failed load is retried by the next photo.
    `load()` loads everything up front (a worker's warm-up). The weights folder (argument or $SMR_WEIGHTS) is
    resolved once, at construction.
    """

    backend: BackendName | FaceBackend = "auto"
    weights_dir: str | os.PathLike[str] | None = None
    config: AlignConfig = field(default_factory=AlignConfig)
    root: Path | None = field(init=False)
    _loaded: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    # re-entrant: loading the mesh or the selfie model asks whether 3DDFA or BiSeNet were loaded
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = resolve_weights_dir(self.weights_dir)
        if not isinstance(self.backend, str):
            self._loaded["backend"] = self.backend

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        """build() the first time `name` is asked for; exceptions are not remembered (fix the files, go on)."""
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = build()
            return self._loaded[name]

    @property
    def face_backend(self) -> FaceBackend:
        """The detector/landmarker/recogniser (make_backend on first use)."""
        return self._once("backend", lambda: make_backend(self.backend, self.root, self.config))

    @property
    def refiner(self) -> ReleaseRefiner | None:
        """FaceBoxes + 3DDFA_V2 when selected (or 'auto' and complete); None = the landmark fit."""
        return self._once("refiner", lambda: _tddfa_refiner(self.root, self.config))

    @property
    def parser(self) -> BiSeNet | None:
        """BiSeNet when matting selects it and 79999_iter.pth is there; None = selfie segmentation or GrabCut."""
        return self._once("parser", self._load_parser)

    @property
    def mesh(self) -> FaceMesh | None:
        """MediaPipe's face mesh when refinement or landmarks select it (auto: when cached); None otherwise."""
        return self._once("mesh", self._load_mesh)

    @property
    def selfie(self) -> SelfieMatting | None:
        """MediaPipe's selfie segmentation when matting selects it (auto: cached, and no BiSeNet); else None."""
        return self._once("selfie", self._load_selfie)

    def _load_parser(self) -> BiSeNet | None:
        path = find_align_weights(self.root).parser if self.root is not None else None
        if self.config.matting == "bisenet" and path is None:
            raise AlignWeightsNotFoundError(
                "matting 'bisenet' needs 79999_iter.pth in the weights folder (--weights DIR or SMR_WEIGHTS); "
                "get it from zllrunning/face-parsing.PyTorch, or use matting 'selfie' or 'grabcut'"
            )
        if path is None or self.config.matting not in ("auto", "bisenet"):
            return None
        from align.bisenet import load_bisenet

        return load_bisenet(path, self.config.device)

    def _wants_mesh(self) -> Literal["yes", "if-cached", "no"]:
        if self.config.offline.landmarks == "facemesh" or self.config.refinement == "facemesh":
            return "yes"
        if self.config.refinement == "auto" and self.config.refine:
            return "if-cached"
        return "no"

    def _load_mesh(self) -> FaceMesh | None:
        from align.facemesh import FaceMesh
        from align.mediapipe_models import ensure_models

        wants = self._wants_mesh()
        if wants == "yes":
            return FaceMesh(ensure_models(["mediapipe-face-landmark"])["mediapipe-face-landmark"])
        if wants == "if-cached" and self.refiner is None and FaceMesh.available():
            return FaceMesh()
        return None

    def _load_selfie(self) -> SelfieMatting | None:
        from align.mediapipe_models import ensure_models
        from align.selfie import SelfieMatting

        if self.config.matting == "selfie":
            key = "mediapipe-selfie-segmentation"
            return SelfieMatting(ensure_models([key])[key])
        if self.config.matting == "auto" and self.parser is None and SelfieMatting.available():
            return SelfieMatting()
        return None

    def load(self) -> Aligner:
        """Load every network the config selects now, so missing or broken weights fail before the first photo."""
        _ = (self.face_backend, self.refiner, self.parser, self.mesh, self.selfie)
        return self

    def _mask(
        self, crop: np.ndarray, kps_crop: np.ndarray, others_crop: list[np.ndarray]
    ) -> tuple[np.ndarray, str, str]:
        parser = self.parser
        if parser is not None:
            from align.bisenet import parse_mask

            return parse_mask(parser, crop), "bisenet", ""
        selfie = self.selfie
        if selfie is not None:
            mask, note = selfie.matte(crop, kps_crop, others_crop)
            return mask, "selfie", note
        return grabcut_mask(crop, kps_crop), "grabcut", ""

    def _confirmed(
        self, rgb: np.ndarray, detections: list[Detection]
    ) -> tuple[list[Detection], dict[int, MeshResult]]:
        """The detections, less those a detector's extra pass found (extra["confirm"]) that the face mesh rejects,
        and the meshes that confirmed the others (by id of the detection, so that framing does not run it again).

        BlazeFace beside HOG and on tiles finds faces HOG misses, but also the odd patch of clothing below a face
        (scored 0.61-0.63 on padded astronaut photos); the face mesh's presence score tells the two apart. Without
        the face mesh such faces are dropped.
        """
        if not any(d.extra.get("confirm") for d in detections):
            return detections, {}
        mesh = self.mesh
        kept, meshes = [], {}
        for d in detections:
            if d.extra.get("confirm"):
                result = mesh(rgb, d.box, d.keypoints[:2]) if mesh is not None else None
                if result is None:
                    continue
                meshes[id(d)] = result
            kept.append(d)
        return kept, meshes

    def _pick(self, detections: list[Detection], face_index: int | None, backend: FaceBackend) -> int:
        """The face to align: face_index, else the only face of its size (rivals are refused, with their boxes)."""
        if not detections:
            raise NoFaceError(_no_face_message(backend, self.config))
        if face_index is not None:
            index = int(face_index)
            if not 0 <= index < len(detections):
                raise NoFaceError(
                    f"face_index {index} requested but {len(detections)} face(s) found (sorted by size, 0 = largest)"
                )
            return index
        sides = [d.size for d in detections]
        rivals = [i for i, side in enumerate(sides) if side >= RIVAL_FACE_RATIO * sides[0]]
        if len(rivals) > 1:
            where = "; ".join(
                f"{i}: x {d.box[0]:.0f}-{d.box[2]:.0f}, y {d.box[1]:.0f}-{d.box[3]:.0f}"
                for i, d in enumerate(detections)
            )
            raise SeveralFacesError(
                f"{len(detections)} faces found ({where}; px, largest first): choose one with --face-index N "
                "(face_index=N)"
            )
        return 0

    def align(
        self,
        path_or_array: str | os.PathLike[str] | np.ndarray,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        face_index: int | None = None,
    ) -> AlignedFace:
        """Align one face photo into the model's 512x512 white-background input (and write it if out_dir).

        `face_index` picks among the detected faces sorted by size (Detection.size), 0 = largest; without it,
        several faces of similar size are refused (SeveralFacesError names them). Raises ImageReadError, NoFaceError,
        FaceTooSmallError, ExtremePoseError, FaceCutError (all AlignInputError) or AlignWeightsNotFoundError; nothing
        is written unless every step succeeded, and a new out_dir appears complete or not at all.
        """
        config = self.config
        source = load_image(path_or_array)
        face_backend = self.face_backend

        found = face_backend.detect(source.rgb)
        detections, meshes = self._confirmed(source.rgb, found)
        if found and not detections:
            raise NoFaceError(
                f"no face found: MediaPipe's BlazeFace found {len(found)} candidate(s) that its face mesh did not "
                "confirm as a face. Use a photo where the face is clearly visible, roughly frontal and not tightly "
                "cropped"
            )
        index = self._pick(detections, face_index, face_backend)
        det = detections[index]

        keypoints, framing, mesh_result, warnings = self._keypoints(source.rgb, det, face_backend, meshes.get(id(det)))
        quad = ffhq_quad(keypoints)
        fit = fit_pose(det.fit_points, det.fit_parts)
        refiner = self.refiner
        if refiner is not None:
            from align.tddfa import apply_release_refinement

            pose = refiner.pose(source.rgb, quad)
            refinement, refined_by = apply_release_refinement(quad, pose), "3ddfa"
        elif mesh_result is not None:
            pose, refined_by = mesh_result.pose, "facemesh"
            refinement = refine_quad(quad, pose)
        else:
            # 5 points cannot pin down pitch: the head centre is projected with pitch 0 (yaw and roll kept)
            pose = level_pitch(fit)
            refinement, refined_by = refine_quad(quad, pose), "landmark"
        check_refinement(refinement, pose, config.limits)
        if not config.refine:
            refinement = Refinement(quad=quad, s=1.0, t=(0.0, 0.0))
            check_refinement(refinement, pose, config.limits)
        h, w = source.rgb.shape[:2]
        outside = check_inside(refinement.quad, w, h, config.limits)
        crop, transform = crop_final(source.rgb, refinement.quad, config.crop)
        kps_crop = keypoints @ transform[:, :2].T + transform[:, 2]

        # the other detected faces, in crop px: the selfie matte splits off people who touch the subject
        others_crop = [
            d.keypoints @ transform[:, :2].T + transform[:, 2] for i, d in enumerate(detections) if i != index
        ]
        mask, matting, matting_note = self._mask(crop, kps_crop, others_crop)
        crop_white = composite_white(crop, mask)
        top_contact = top_edge_contact(mask, kps_crop)
        if top_contact:
            warnings.append(top_edge_warning(top_contact, mask.shape[1]))
        if matting == "grabcut" and config.matting == "auto":
            warnings.append(GRABCUT_WARNING)

        embedding = face_backend.embed(crop_white)
        if embedding is None and face_backend.name == "antelopev2":
            raise NoFaceError(
                "the face was found in the photo but not again in the 512 px white-background crop, so no ArcFace "
                "embedding could be computed (the release stops here too); try a photo with a clearer, more frontal "
                "face"
            )
        note = (
            ""
            if embedding is not None
            else (
                f"backend '{face_backend.name}' has no ArcFace model: identity conditioning needs the antelopev2 "
                "weights (re-run with --backend antelopev2 --weights DIR)"
            )
        )
        yaw, pitch, roll = pose.angles_deg
        backend_info = dict(face_backend.info)
        backend_info["matting"] = matting
        if matting_note:
            backend_info["matting_note"] = matting_note
        backend_info["framing"] = {**framing, "pose": _POSE_SOURCES[refined_by]}
        if warnings:  # data, not log lines: `align` prints them, the flows log them, report.json lists them
            backend_info["warnings"] = warnings
        backend_info["licences"] = _licences_used(self.root, backend_info, matting, refined_by) + _mediapipe_licences(
            mesh_result is not None, matting, str(det.extra.get("detector", ""))
        )
        extra: dict[str, Any] = {
            "source_name": source.name,
            "box_px": det.box.round(2).tolist(),
            "ffhq_quad_px": quad.corners.round(3).tolist(),
            "final_quad_px": refinement.quad.corners.round(3).tolist(),
            "outside_fraction": round(outside, 4),
            "matte_top_edge_px": top_contact,
            "refinement": {
                "method": refined_by,
                "s": refinement.s,
                "t": list(refinement.t),
                "fit_rms_px": float(pose.rms_px) if hasattr(pose, "rms_px") else fit.rms_px,
            },
            "limits": asdict(config.limits),
            "crop": asdict(config.crop),
        }
        if mesh_result is not None:
            pts = mesh_result.points[:, :2] @ transform[:, :2].T + transform[:, 2]
            from align.facemesh import CHIN, FOREHEAD_TOP

            extra["facemesh"] = {
                "presence": round(mesh_result.presence, 4),
                "chin_crop_px": pts[CHIN].round(2).tolist(),
                "forehead_top_crop_px": pts[FOREHEAD_TOP].round(2).tolist(),
            }
        face = AlignedFace(
            crop=crop_white,
            mask=mask,
            source_sha256=source.sha256,
            source_size=(source.rgb.shape[1], source.rgb.shape[0]),
            keypoints=keypoints,
            crop_transform=transform,
            head_pose={"yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll},
            backend=backend_info,
            detector_scores=[d.score for d in detections],
            face_index=index,
            arcface=embedding,
            identity_note=note,
            extra=extra,
        )
        if out_dir is not None:
            write_aligned_atomically(out_dir, face)
        return face

    def _keypoints(
        self, rgb: np.ndarray, det: Detection, backend: FaceBackend, confirmed: MeshResult | None = None
    ) -> tuple[np.ndarray, dict[str, str], MeshResult | None, list[str]]:
        """The 5 keypoints the quad is built from, what produced them, the face mesh when it ran, and warnings.

        `confirmed`: the mesh `_confirmed` already ran on this detection (same box and eyes), reused.

        With the mesh and the offline backend, all five come from the mesh (dlib's eyes move with its detector's box
        when the photo is padded or scaled); with `mesh_keypoints=False` only the points dlib5 guessed (nose and
        mouth, from a 2-D template fit) are replaced. antelopev2's and dlib68's measured points are kept.
        """
        info = backend.info
        keypoints = np.asarray(det.keypoints, np.float64).copy()
        framing = {"detector": str(info.get("detector", info.get("name", "?"))),
                   "keypoints": str(info.get("landmarks", info.get("name", "?")))}
        if "detector" in det.extra:
            framing["detector_used"] = str(det.extra["detector"])
        if det.extra.get("landmarks_turn_deg"):  # dlib located its landmarks on a copy turned upright
            framing["dlib_landmarks_turned_deg"] = float(det.extra["landmarks_turn_deg"])
        if det.extra.get("confirm"):  # found by an extra BlazeFace pass: kept because the face mesh saw a face
            framing["detection_confirmed_by"] = "mediapipe-face-landmark (presence)"
        # which model gave the five keypoints the FFHQ quad is built from
        framing["keypoints_model"] = "antelopev2 scrfd" if backend.name == "antelopev2" else (
            "dlib68" if self.config.offline.landmarks == "dlib68" else "dlib5"
        )
        mesh = self.mesh if self.refiner is None or self.config.offline.landmarks == "facemesh" else None
        if mesh is None:
            return keypoints, framing, None, []
        from align.facemesh import MIN_MEAN_PRESENCE as MESH_MIN_MEAN
        from align.facemesh import MIN_PRESENCE as MESH_MIN_PRESENCE

        result = confirmed if confirmed is not None else mesh(rgb, det.box, keypoints[:2])
        if result is None:
            if self._wants_mesh() == "yes":
                raise NoFaceError(
                    f"the face mesh found no face where the detector did (presence < {MESH_MIN_PRESENCE}); try a "
                    "clearer, more frontal photo, or --refinement landmark"
                )
            warning = (
                f"the face mesh did not confirm the face (presence < {MESH_MIN_PRESENCE} in both passes or mean < "
                f"{MESH_MIN_MEAN}): framed from "
                f"{framing['keypoints_model']}'s landmarks and the 2-D template fit (pitch not measured) instead"
            )
            return keypoints, framing, None, [warning]
        landmarks = self.config.offline.landmarks
        if backend.name == "offline" and (landmarks == "facemesh" or (landmarks == "dlib5" and
                                                                       self.config.offline.mesh_keypoints)):
            keypoints = result.keypoints
            framing["keypoints"] = "mediapipe face mesh (eye contours, nose tip, mouth corners)"
            framing["keypoints_model"] = "mediapipe-face-landmark"
        else:
            guessed = list(det.extra.get("inferred_keypoints", ()))
            if guessed:
                keypoints[guessed] = result.keypoints[guessed]
                framing["keypoints"] += f"; points {guessed} (nose, mouth) from the mediapipe face mesh"
                framing["keypoints_model"] += " (eyes) + mediapipe-face-landmark (nose, mouth)"
        return keypoints, framing, result, []


_POSE_SOURCES = {
    "3ddfa": "3DDFA_V2 (the release's FaceBoxes + BFM fit)",
    "facemesh": "3-D fit of our template to the mediapipe 468-point face mesh",
    "landmark": "2-D template fit to the backend's landmarks (yaw and roll; pitch not measured, taken as 0)",
}


def _mediapipe_licences(mesh_used: bool, matting: str, detector: str = "") -> list[dict]:
    """Licence records of the MediaPipe models this alignment ran (Apache-2.0)."""
    from align.mediapipe_models import MODELS

    names = [detector.removesuffix("-tiled")] if detector.startswith("mediapipe-") else []
    names += ["mediapipe-face-landmark"] if mesh_used else []
    names += ["mediapipe-selfie-segmentation"] if matting == "selfie" else []
    return [MODELS[n].licence_record() for n in names]


def write_aligned_atomically(out_dir: str | os.PathLike[str], face: AlignedFace) -> None:
    """write_aligned so that a new folder appears complete or not at all (built in a sibling, then renamed).

    An existing folder is written into file by file (face.json last): it may hold the user's other files.
    """
    out = Path(out_dir)
    if out.exists():
        write_aligned(out, face)
        return
    tmp = make_temp_dir(out)
    try:
        write_aligned(tmp, face)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def align_photo(
    path_or_array: str | os.PathLike[str] | np.ndarray,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    backend: BackendName | FaceBackend = "auto",
    weights_dir: str | os.PathLike[str] | None = None,
    face_index: int | None = None,
    config: AlignConfig | None = None,
) -> AlignedFace:
    """Align one face photo into the model's 512x512 white-background input (and write it if out_dir).

    `face_index` picks among the detected faces sorted by size (Detection.size), 0 = largest (the default).
    `backend` may also be a ready FaceBackend instance. This loads every network anew: for many photos
    use one `Aligner` (it loads them once).
    Raises ImageReadError, NoFaceError, FaceTooSmallError, ExtremePoseError (all AlignInputError) or
    AlignWeightsNotFoundError; nothing is written unless every step succeeded.
    """
    aligner = Aligner(backend, weights_dir, config or AlignConfig())
    return aligner.align(path_or_array, out_dir, face_index=face_index)


def _licences_used(root: Any, info: dict, matting: str, refined_by: str) -> list[dict]:
    """Licence records of every model file this alignment used (face.json; copied on to report.json and the GLB)."""
    from model_fetch import weights_licences

    names: list[str] = []
    packaged: list[str] = []
    if info.get("name") == "antelopev2":
        names += ["scrfd", "arcface"]
    else:
        packaged.append("dlib68" if "68" in str(info.get("landmarks", "")) else "dlib5")
    if matting == "bisenet":
        names.append("bisenet")
    if refined_by == "3ddfa":
        names += ["tddfa", "tddfa-stats", "bfm", "faceboxes"]
    return weights_licences(root, names=names, packaged=packaged)
