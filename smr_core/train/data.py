"""Training data: multi-view subjects -> groups of F frames with 0, 1 or 3 clean conditioning views.

Dataset format (docs/TRAINING.md)::

    DATA/
      SUBJECT/
        views/transforms.json   a ViewSet (spin_io.viewset): rgb/, normal/, mask/, real cameras
        arcface.npy             512 float32, the subject's ArcFace identity (L2-normalised)

(`SUBJECT/transforms.json` directly is accepted too.) Every frame needs a normal map.

Cameras. The ViewSet carries geometric cameras; the network wants SpinMeRound's (a0, a1, a2) angles
relative to the input (frontal) view, which the ViewSet puts on +Z. Both are mapped exactly as the
inference pipeline maps them (`smr_core.cameras`): "angles" takes (elevation, azimuth, 0) of the camera
position under the pipeline's yaw convention; "rays" takes the Euler angles of the camera's real
rotation. Normals are rotated into `normal_frame` (the pipeline declares "camera" by default).

Determinism. Every random choice of a sample (subject order, views, number of conditioning views) is
a pure function of (seed, global sample index), so the data stream needs no state to resume: a run
restarted at optimiser step s asks for the same indices, with or without worker processes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smr_core.cameras import YAW_DIRECTION, ViewCamera, euler_from_rotation, model_angles
from smr_core.train.config import DataConfig
from smr_core.train.errors import DataError
from spin_io.viewset import YAW_DIRECTIONS, angles_from_position

ARCFACE_FILE = "arcface.npy"
VIEWS_DIR = "views"
_RAY_CACHE_SIZE = 256


@dataclass(frozen=True)
class FrameInfo:
    """One view of a subject as transforms.json describes it (images are read when drawn)."""

    rgb: Path
    mask: Path
    normal: Path
    normal_frame: str
    c2w: np.ndarray  # (4, 4) OpenGL camera-to-world
    is_input: bool

    def camera(self) -> ViewCamera:
        """The camera as the pipeline's ViewCamera (angles from its position, pipeline yaw convention)."""
        azimuth, elevation = angles_from_position(self.c2w[:3, 3], YAW_DIRECTION)
        return ViewCamera(azimuth, elevation, self.is_input)


@dataclass(frozen=True)
class Subject:
    name: str
    views_dir: Path
    frames: tuple[FrameInfo, ...]
    id_emb: np.ndarray  # (512,) float32

    @property
    def frontal(self) -> int:
        """The input view if declared, else the view nearest azimuth 0, elevation 0."""
        for i, f in enumerate(self.frames):
            if f.is_input:
                return i
        front = ViewCamera(0.0, 0.0)
        from smr_core.cameras import angular_distance_deg

        return int(np.argmin([angular_distance_deg(f.camera(), front) for f in self.frames]))


def find_views_dir(subject_dir: Path) -> Path | None:
    for candidate in (subject_dir / VIEWS_DIR, subject_dir):
        if (candidate / "transforms.json").is_file():
            return candidate
    return None


def list_subject_dirs(root: Path, subjects_file: Path | None = None) -> list[Path]:
    """Subject folders of a dataset (sorted by name), restricted to subjects_file's names when given."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: the dataset folder does not exist; set data.root to a folder of subjects")
    if subjects_file is not None:
        if not Path(subjects_file).is_file():
            raise DataError(f"{subjects_file}: subjects file not found (write one with `spin-to-mesh filter-data`)")
        names = [n.strip() for n in Path(subjects_file).read_text("utf-8").splitlines() if n.strip()]
        dirs = [root / n for n in names]
        absent = [str(d) for d in dirs if not d.is_dir()]
        if absent:
            raise DataError(f"{subjects_file} names subjects that are not in {root}: {', '.join(absent[:5])}")
        return sorted(dirs)
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and find_views_dir(d) is not None)
    if not dirs:
        raise DataError(f"{root}: no subject folders with views/transforms.json; see docs/TRAINING.md for the format")
    return dirs


def read_transforms(views_dir: Path) -> list[FrameInfo]:
    """Frames of a ViewSet's transforms.json (no image is read); every frame must have a normal map."""
    path = views_dir / "transforms.json"
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from exc
    if meta.get("yaw_direction") not in YAW_DIRECTIONS:
        raise DataError(f"{path}: 'yaw_direction' must be one of {YAW_DIRECTIONS}; see spin_io.viewset")
    frames = []
    for i, entry in enumerate(meta.get("frames", [])):
        where = f"{path}: frame {i}"
        for key in ("file_path", "mask_path", "normal_path", "transform_matrix"):
            if entry.get(key) is None:
                raise DataError(f"{where}: missing '{key}'; training needs RGB, mask, normals and a camera per view")
        c2w = np.asarray(entry["transform_matrix"], np.float64)
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise DataError(f"{where}: transform_matrix must be a finite 4x4 matrix")
        frame_of_normals = str(entry.get("normal_frame", "world"))
        if frame_of_normals not in ("camera", "world"):
            raise DataError(f"{where}: normal_frame must be 'camera' or 'world', got {frame_of_normals!r}")
        frames.append(
            FrameInfo(
                rgb=views_dir / entry["file_path"],
                mask=views_dir / entry["mask_path"],
                normal=views_dir / entry["normal_path"],
                normal_frame=frame_of_normals,
                c2w=c2w,
                is_input=bool(entry.get("is_input", False)),
            )
        )
    if not frames:
        raise DataError(f"{path}: no frames")
    return frames


def read_identity(subject_dir: Path) -> np.ndarray:
    path = subject_dir / ARCFACE_FILE
    if not path.is_file():
        raise DataError(
            f"{path}: missing; put the subject's 512-d ArcFace embedding there "
            "(`spin-to-mesh filter-data DATA --write-arcface` computes it from the frontal view)"
        )
    emb = np.load(path).astype(np.float32).reshape(-1)
    norm = float(np.linalg.norm(emb))
    if emb.shape != (512,) or not np.isfinite(norm) or norm == 0.0:
        raise DataError(f"{path}: expected 512 finite float values, not all zero; got shape {emb.shape}")
    return emb / norm


def load_subjects(config: DataConfig) -> list[Subject]:
    """Every subject of the dataset, checked (cameras, normals, identity, enough views) before training starts."""
    subjects = []
    for d in list_subject_dirs(config.root, config.subjects_file):
        views_dir = find_views_dir(d)
        if views_dir is None:
            raise DataError(f"{d}: no views/transforms.json")
        frames = read_transforms(views_dir)
        if len(frames) < config.num_frames:
            raise DataError(
                f"{d}: {len(frames)} views, but groups have num_frames={config.num_frames}; lower data.num_frames "
                "or drop this subject from the subjects file"
            )
        subjects.append(Subject(d.name, views_dir, tuple(frames), read_identity(d)))
    return subjects


def _read_image(path: Path, mode: str, size: int, resample: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path}: missing image; regenerate the subject's ViewSet")
    with Image.open(path) as im:
        im = im.convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), getattr(Image.Resampling, resample))
        return np.asarray(im)


def normals_to_frame(normal: np.ndarray, stored: str, wanted: str, c2w: np.ndarray) -> np.ndarray:
    """Rotate (H, W, 3) normals between world axes and the frame's OpenGL camera axes (R = c2w[:3, :3])."""
    if stored == wanted:
        return normal
    R = np.asarray(c2w, np.float64)[:3, :3]
    if stored == "world":  # n_cam = R^T n_world
        return (normal @ R).astype(np.float32)
    return (normal @ R.T).astype(np.float32)


class GroupDataset(torch.utils.data.Dataset):
    """Map-style dataset whose index is the GLOBAL sample number; returns one group of F frames.

    Order and choices depend only on (config seed, index): the subject is the (index mod n)-th of a
    permutation drawn per epoch (epoch = index div n).
    """

    def __init__(self, config: DataConfig, seed: int, subjects: Sequence[Subject] | None = None) -> None:
        self.config = config
        self.seed = int(seed)
        self.subjects = list(subjects) if subjects is not None else load_subjects(config)
        self.latent_size = config.image_size // 8
        self._rays: OrderedDict[tuple[float, float, float], Tensor] = OrderedDict()

    def __len__(self) -> int:  # one epoch; indices beyond it are valid (later epochs)
        return len(self.subjects)

    def subject_index(self, index: int) -> int:
        n = len(self.subjects)
        epoch, position = divmod(int(index), n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        return int(order[position])

    def choose(self, index: int) -> tuple[int, list[int], int]:
        """(subject, frame indices with the conditioning views first, number of conditioning views)."""
        s = self.subject_index(index)
        subject = self.subjects[s]
        rng = np.random.default_rng([self.seed, int(index), 1])
        cfg = self.config
        n_cond = int(rng.choice(cfg.conditioning_views, p=np.asarray(cfg.conditioning_probs, np.float64)))
        frames = [int(i) for i in rng.choice(len(subject.frames), size=cfg.num_frames, replace=False)]
        frontal_first = rng.random() < cfg.p_frontal_conditioning
        if n_cond > 0 and frontal_first:
            front = subject.frontal
            if front in frames:
                frames.remove(front)
            else:
                frames.pop()
            frames.insert(0, front)
        return s, frames, n_cond

    def model_angles(self, frame: FrameInfo) -> tuple[float, float, float]:
        if self.config.camera_encoding == "rays":
            return euler_from_rotation(frame.c2w[:3, :3].T)
        return model_angles(frame.camera(), "angles")

    def ray_map(self, angles: tuple[float, float, float]) -> Tensor:
        """(144, h, w) pose map of the model, cached (building one takes ~0.1 s at 64x64)."""
        from smr_core.pose import pose_map

        key = tuple(round(a, 6) for a in angles)
        if key in self._rays:
            self._rays.move_to_end(key)
            return self._rays[key]
        rays = pose_map(*angles, size=self.latent_size)
        self._rays[key] = rays
        if len(self._rays) > _RAY_CACHE_SIZE:
            self._rays.popitem(last=False)
        return rays

    def load_frame(self, frame: FrameInfo) -> tuple[Tensor, Tensor]:
        """(rgb, normal), each (3, H, W) float32 in [-1, 1]; rgb on white and normals 0 outside the mask."""
        size = self.config.image_size
        rgb = _read_image(frame.rgb, "RGB", size, "BILINEAR").astype(np.float32) / 127.5 - 1.0
        mask = _read_image(frame.mask, "L", size, "NEAREST") > 127
        normal = _read_image(frame.normal, "RGB", size, "BILINEAR").astype(np.float32) / 127.5 - 1.0
        normal = normals_to_frame(normal, frame.normal_frame, self.config.normal_frame, frame.c2w)
        normal = np.where(mask[..., None], normal, 0.0)
        if self.config.white_background:
            rgb = np.where(mask[..., None], rgb, 1.0)
        as_chw = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).permute(2, 0, 1)  # noqa: E731
        return as_chw(rgb), as_chw(normal)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, frames, n_cond = self.choose(index)
        subject = self.subjects[s]
        rgbs, normals, rays = [], [], []
        for i in frames:
            info = subject.frames[i]
            rgb, normal = self.load_frame(info)
            rgbs.append(rgb)
            normals.append(normal)
            rays.append(self.ray_map(self.model_angles(info)))
        is_target = torch.ones(len(frames), dtype=torch.bool)
        is_target[:n_cond] = False
        return {
            "rgb": torch.stack(rgbs),
            "normal": torch.stack(normals),
            "rays": torch.stack(rays),
            "is_target": is_target,
            "id_emb": torch.from_numpy(subject.id_emb.copy()),
            "index": int(index),
            "subject": subject.name,
            "frames": frames,
        }


def collate_groups(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """B groups -> frames of all groups concatenated (B*F, ...), contiguous per group; id_emb (B, 512)."""
    out: dict[str, Any] = {key: torch.cat([g[key] for g in groups]) for key in ("rgb", "normal", "rays", "is_target")}
    out["id_emb"] = torch.stack([g["id_emb"] for g in groups])
    for key in ("index", "subject", "frames"):
        out[key] = [g[key] for g in groups]
    return out


class ResumableSampler(torch.utils.data.Sampler):
    """Endless global sample indices for one process, starting at micro-batch `start_batch`.

    Micro-batch m holds the global indices [m B W, (m + 1) B W); process r takes its r-th slice of B.
    """

    def __init__(self, batch_size: int, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.batch_size = batch_size
        self.start_batch = start_batch
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        m = self.start_batch
        per_batch = self.batch_size * self.world_size
        while True:
            base = m * per_batch + self.rank * self.batch_size
            yield from range(base, base + self.batch_size)
            m += 1
