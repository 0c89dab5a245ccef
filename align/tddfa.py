"""3DDFA_V2 (TDDFA, MobileNet-v1 120x120) and the release's pose/scale/centre refinement of the crop quad.

The release (SPINMEROUND.md §2.2 steps 3.3-3.7) warps the FFHQ quad to 512 px, finds faces with
FaceBoxes, fits the 62 3DMM parameters with TDDFA on each face's ROI box and turns the 3x4 camera
of the box nearest the centre into a scale s and a normalised offset t of the head centre. Facts
taken from the public code (not copied): the network layout and key names from
cleardusk/3DDFA_V2 models/mobilenet_v1.py; the checkpoint layout (`state_dict`, `module.` prefix,
optional `fc_param.*` for `fc.*`) from its utils/tddfa_util.load_model; the ROI box and crop from
utils/functions.py (parse_roi_box_from_bbox, crop_img); input normalisation (x - 127.5) / 128 and
param de-normalisation from TDDFA.py; P2sRt / matrix2angle from utils/pose.py; the centre shift,
the t3d mapping through roi_box_lst[0] and s = mean ROI scale * s_rel * 2000 from SpinMeRound's
spmr/panohead_cropping/recrop_images.panohead_crop (PanoHead's recrop).
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from align.errors import AlignCheckpointError, NoFaceError
from align.geometry import Quad, Refinement, quad_matrix
from align.state import load_torch_state

if TYPE_CHECKING:
    from align.faceboxes import FaceBoxes
    from align.weights import TddfaWeights

INPUT_SIZE = 120  # TDDFA's crop size (mb1_120x120)
N_PARAMS = 62  # 12 pose (3x4 camera) + 40 shape + 10 expression
INPUT_MEAN = 127.5
INPUT_STD = 128.0
SCALE_FACTOR = 2000.0  # recrop: s_relative * 2000


# --------------------------------------------------------------------------------------------
# network


class DepthWiseBlock(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (keys conv_dw, bn_dw, conv_sep, bn_sep)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.bn_dw = nn.BatchNorm2d(c_in)
        self.conv_sep = nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)
        self.bn_sep = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


# (name, c_in, c_out, stride) at widen 1.0, in the checkpoint's attribute names.
_BLOCKS = (
    ("dw2_1", 32, 64, 1),
    ("dw2_2", 64, 128, 2),
    ("dw3_1", 128, 128, 1),
    ("dw3_2", 128, 256, 2),
    ("dw4_1", 256, 256, 1),
    ("dw4_2", 256, 512, 2),
    ("dw5_1", 512, 512, 1),
    ("dw5_2", 512, 512, 1),
    ("dw5_3", 512, 512, 1),
    ("dw5_4", 512, 512, 1),
    ("dw5_5", 512, 512, 1),
    ("dw5_6", 512, 1024, 2),
    ("dw6", 1024, 1024, 1),
)


class MobileNetV1(nn.Module):
    """TDDFA's regressor: MobileNet-v1 (ReLU, no PReLU), global average pool, linear head to 62 params."""

    def __init__(self, widen_factor: float = 1.0, num_params: int = N_PARAMS) -> None:
        super().__init__()
        w = widen_factor
        self.conv1 = nn.Conv2d(3, int(32 * w), 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(int(32 * w))
        for name, c_in, c_out, stride in _BLOCKS:
            setattr(self, name, DepthWiseBlock(int(c_in * w), int(c_out * w), stride))
        self.fc = nn.Linear(int(1024 * w), num_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 120, 120) normalised crops -> (B, 62) normalised parameters."""
        x = torch.relu(self.bn1(self.conv1(x)))
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


def load_tddfa_net(path: str | Path, device: str | torch.device = "cpu") -> MobileNetV1:
    """Load mb1_120x120.pth strictly (3DDFA_V2 also accepts `fc_param.*` for the head; so do we)."""
    state = load_torch_state(path, "TDDFA (mb1_120x120.pth)")
    state = {("fc." + k.removeprefix("fc_param.")) if k.startswith("fc_param.") else k: v for k, v in state.items()}
    net = MobileNetV1()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AlignCheckpointError(
            f"{path}: does not match TDDFA's MobileNet-v1 120x120 ({exc}); is this 3DDFA_V2's mb1_120x120.pth?"
        ) from exc
    return net.eval().to(device)


# --------------------------------------------------------------------------------------------
# safe .pkl reading

# Only what numpy needs to rebuild arrays (and bytes written by Python 2 / protocol 2).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array-reconstruction globals; anything else is refused."""

    def find_class(self, module: str, name: str) -> object:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays are)")
        return super().find_class(*target)


def safe_load_pickle(path: str | Path) -> dict:
    """Read a .pkl holding a dict of numpy arrays without executing anything else it may contain."""
    path = Path(path)
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise AlignCheckpointError(f"{path}: not a plain pickle of numpy arrays ({exc}); re-download it") from exc
    if not isinstance(data, dict):
        raise AlignCheckpointError(f"{path}: expected a dict of arrays, found {type(data).__name__}")
    return data


@dataclass(frozen=True)
class ParamStats:
    """Mean and std of the 62 parameters (param_mean_std_62d_120x120.pkl): param = output * std + mean."""

    mean: np.ndarray
    std: np.ndarray


def load_param_stats(path: str | Path) -> ParamStats:
    data = safe_load_pickle(path)
    try:
        mean = np.asarray(data["mean"], np.float32).reshape(-1)
        std = np.asarray(data["std"], np.float32).reshape(-1)
    except KeyError as exc:
        raise AlignCheckpointError(f"{path}: no {exc} entry; is this param_mean_std_62d_120x120.pkl?") from exc
    if mean.shape != (N_PARAMS,) or std.shape != (N_PARAMS,):
        raise AlignCheckpointError(f"{path}: mean/std have shapes {mean.shape}/{std.shape}, expected ({N_PARAMS},)")
    return ParamStats(mean=mean, std=std)


def load_bfm_mean_z(path: str | Path) -> float:
    """Mean z of the BFM mean shape u (bfm_noneck_v3.pkl); u is stored x0, y0, z0, x1, ... (Fortran (3, N))."""
    data = safe_load_pickle(path)
    if "u" not in data:
        raise AlignCheckpointError(f"{path}: no 'u' (mean shape) entry; is this bfm_noneck_v3.pkl?")
    u = np.asarray(data["u"], np.float32).reshape(-1)
    if u.size % 3:
        raise AlignCheckpointError(f"{path}: mean shape has {u.size} values, not a multiple of 3")
    return float(u.reshape(3, -1, order="F")[2].mean())


# --------------------------------------------------------------------------------------------
# crop and camera maths


def roi_box_from_bbox(bbox: np.ndarray | list[float]) -> np.ndarray:
    """3DDFA_V2's parse_roi_box_from_bbox: a square of int(1.58 * mean side), centre moved down 0.14 * side."""
    left, top, right, bottom = (float(v) for v in list(bbox)[:4])
    old_size = (right - left + bottom - top) / 2
    center_x = right - (right - left) / 2.0
    center_y = bottom - (bottom - top) / 2.0 + old_size * 0.14
    size = int(old_size * 1.58)
    sx, sy = center_x - size / 2, center_y - size / 2
    return np.array([sx, sy, sx + size, sy + size], np.float64)


def crop_roi(image: np.ndarray, roi_box: np.ndarray) -> np.ndarray:
    """Integer crop of the rounded ROI box; pixels outside the image are zero (3DDFA_V2's crop_img)."""
    h, w = image.shape[:2]
    sx, sy, ex, ey = (int(round(v)) for v in roi_box)
    out = np.zeros((ey - sy, ex - sx, *image.shape[2:]), dtype=image.dtype)
    x0, x1, y0, y1 = max(0, sx), min(w, ex), max(0, sy), min(h, ey)
    if x1 > x0 and y1 > y0:
        out[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = image[y0:y1, x0:x1]
    return out


def normalise_input(crop120: np.ndarray) -> torch.Tensor:
    """(120, 120, 3) uint8 -> (1, 3, 120, 120) float: (x - 127.5) / 128, channels in the order given."""
    x = torch.from_numpy(np.ascontiguousarray(crop120)).permute(2, 0, 1).float()
    return ((x - INPUT_MEAN) / INPUT_STD)[None]


def P2sRt(P: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Affine camera (3, 4) -> scale s, rotation R (rows r1, r2, r1 x r2) and translation t3d = P[:, 3].

    s is the mean norm of P's first two rows; the third row is rebuilt from them (weak perspective).
    """
    P = np.asarray(P, np.float64)
    r1, r2 = P[0, :3], P[1, :3]
    s = (np.linalg.norm(r1) + np.linalg.norm(r2)) / 2.0
    r1 = r1 / np.linalg.norm(r1)
    r2 = r2 / np.linalg.norm(r2)
    R = np.stack([r1, r2, np.cross(r1, r2)])
    return float(s), R, P[:, 3].copy()


def matrix2angle(R: np.ndarray) -> tuple[float, float, float]:
    """Euler angles (yaw, pitch, roll) in radians of R = Rz(roll) Ry(-yaw) Rx(pitch), as 3DDFA_V2's pose.py.

    yaw = asin(R[2, 0]); near +-90 deg (|R[2, 0]| > 0.998) roll is set to 0 and pitch absorbs it.
    """
    if R[2, 0] > 0.998:
        yaw, roll = math.pi / 2, 0.0
        pitch = roll + math.atan2(-R[0, 1], -R[0, 2])
    elif R[2, 0] < -0.998:
        yaw, roll = -math.pi / 2, 0.0
        pitch = -roll + math.atan2(R[0, 1], R[0, 2])
    else:
        yaw = math.asin(R[2, 0])
        pitch = math.atan2(R[2, 1] / math.cos(yaw), R[2, 2] / math.cos(yaw))
        roll = math.atan2(R[1, 0] / math.cos(yaw), R[0, 0] / math.cos(yaw))
    return yaw, pitch, roll


def find_center_box(roi_boxes: list[np.ndarray], w: int, h: int) -> int:
    """Index of the ROI box whose centre is nearest the image centre ((w-1)/2, (h-1)/2)."""
    boxes = np.asarray(roi_boxes, np.float64)
    dx = 0.5 * (boxes[:, 0] + boxes[:, 2]) - 0.5 * (w - 1)
    dy = 0.5 * (boxes[:, 1] + boxes[:, 3]) - 0.5 * (h - 1)
    return int(np.argmin(np.hypot(dx, dy)))


@dataclass(frozen=True)
class TddfaPose:
    """The release's refinement quantities for the 512 px quad crop.

    s: head size relative to the quad; t: head centre in the quad's frame, [-1, 1], x right, y up;
    angles in degrees (matrix2angle's yaw, pitch, roll).
    """

    s: float
    t: tuple[float, float]
    yaw_deg: float
    pitch_deg: float
    roll_deg: float

    @property
    def angles_deg(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll), the interface check_refinement reads."""
        return self.yaw_deg, self.pitch_deg, self.roll_deg


def release_pose(
    param: np.ndarray, roi_box0: np.ndarray, mean_z: float, w: int, h: int, size: int = INPUT_SIZE
) -> TddfaPose:
    """recrop's maths for the selected box's 62 params (SPINMEROUND.md §2.2 steps 3.4-3.5).

    `roi_box0` is deliberately the FIRST detection's ROI box, not the selected one: the release
    (inherited from PanoHead) normalises t3d with roi_box_lst[0] (§7 item 14).
    """
    P = np.asarray(param, np.float64)[:12].reshape(3, 4)
    s_rel, R, t3d = P2sRt(P)
    yaw, pitch, roll = (math.degrees(a) for a in matrix2angle(R))
    # Object centre: move back by half the mean depth, through the unnormalised P[:, :3] (scale included).
    t3d = t3d + P[:, :3] @ np.array([0.0, 0.0, 0.5 * mean_z])
    sx, sy, ex, ey = (float(v) for v in roi_box0)
    scale_x = (ex - sx) / size
    scale_y = (ey - sy) / size
    x_px = (t3d[0] - 1) * scale_x + sx
    y_px = (size - t3d[1]) * scale_y + sy
    t_x = (x_px - 0.5 * (w - 1)) / (0.5 * (w - 1))
    t_y = -(y_px - 0.5 * (h - 1)) / (0.5 * (h - 1))
    roi_scale = ((ex - sx) / (w - 1) + (ey - sy) / (h - 1)) / 2
    s = roi_scale * s_rel * SCALE_FACTOR
    return TddfaPose(s=float(s), t=(float(t_x), float(t_y)), yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)


# --------------------------------------------------------------------------------------------
# the fitter


class TDDFA:
    """TDDFA on given face boxes: 62 de-normalised parameters per box, plus the ROI boxes used."""

    def __init__(self, net: MobileNetV1, stats: ParamStats, mean_z: float, size: int = INPUT_SIZE) -> None:
        self.net = net
        self.stats = stats
        self.mean_z = mean_z
        self.size = size

    @classmethod
    def from_files(
        cls, checkpoint: str | Path, param_stats: str | Path, bfm: str | Path, device: str | torch.device = "cpu"
    ) -> TDDFA:
        return cls(load_tddfa_net(checkpoint, device), load_param_stats(param_stats), load_bfm_mean_z(bfm))

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        import cv2

        device = next(self.net.parameters()).device
        params, rois = [], []
        for box in boxes:
            roi = roi_box_from_bbox(box)
            crop = cv2.resize(crop_roi(image, roi), (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            out = self.net(normalise_input(crop).to(device))[0].cpu().numpy().astype(np.float32)
            params.append(out * self.stats.std + self.stats.mean)
            rois.append(roi)
        return params, rois

    def refine(self, image: np.ndarray, boxes: list[np.ndarray]) -> TddfaPose:
        """Fit every box, keep the one nearest the centre, and return the release's s, t and angles."""
        h, w = image.shape[:2]
        params, rois = self(image, boxes)
        idx = find_center_box(rois, w, h)
        return release_pose(params[idx], rois[0], self.mean_z, w, h, self.size)


# --------------------------------------------------------------------------------------------
# the release's refinement step on the FFHQ quad


def apply_release_refinement(quad: Quad, pose: TddfaPose) -> Refinement:
    """recrop's quad update: c += x * t_x - y * t_y, then x and y scaled by s (one iteration)."""
    t_x, t_y = pose.t
    c = quad.c + quad.x * t_x - quad.y * t_y
    return Refinement(quad=Quad(c=c, x=quad.x * pose.s, y=quad.y * pose.s), s=pose.s, t=pose.t)


class ReleaseRefiner:
    """FaceBoxes + TDDFA on the 512 px warp of the FFHQ quad -> TddfaPose (SPINMEROUND.md §2.2 steps 3.2-3.5).

    `bgr=False` reproduces the demo, which hands these BGR-trained networks the RGB image (§2.2 step 3);
    `bgr=True` swaps the channels first, as the networks were trained.
    """

    def __init__(self, detector: FaceBoxes, tddfa: TDDFA, size: int = 512, bgr: bool = False) -> None:
        self.detector = detector
        self.tddfa = tddfa
        self.size = size
        self.bgr = bgr

    @classmethod
    def from_weights(
        cls, weights: TddfaWeights, device: str | torch.device = "cpu", bgr: bool = False
    ) -> ReleaseRefiner:
        """Load the four files of a complete TddfaWeights (see weights.find_tddfa_weights)."""
        from align.faceboxes import FaceBoxes

        detector = FaceBoxes.from_file(weights.faceboxes, device)
        tddfa = TDDFA.from_files(weights.checkpoint, weights.param_stats, weights.bfm, device)
        return cls(detector, tddfa, bgr=bgr)

    def warp(self, rgb: np.ndarray, quad: Quad) -> np.ndarray:
        """The quad crop the release measures on: Lanczos-4, reflected borders, size x size."""
        import cv2

        mat = quad_matrix(quad, self.size)
        return cv2.warpAffine(rgb, mat, (self.size, self.size), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)

    def pose(self, rgb: np.ndarray, quad: Quad) -> TddfaPose:
        """Measure s, t and the angles; NoFaceError when FaceBoxes finds nothing (the release aborts too)."""
        img = self.warp(rgb, quad)
        if self.bgr:
            img = np.ascontiguousarray(img[..., ::-1])
        boxes = self.detector(img)
        if len(boxes) == 0:
            raise NoFaceError(
                "no face found by FaceBoxes in the 512 px face crop (score > 0.5), so the 3DDFA refinement cannot "
                "run (the release stops here too); try a clearer, more frontal photo or refinement 'landmark'"
            )
        return self.tddfa.refine(img, list(boxes))
