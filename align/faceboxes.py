"""FaceBoxes (FaceBoxesProd.pth), the face detector the release runs on the 512 px quad crop.

Facts taken from cleardusk/3DDFA_V2's FaceBoxes copy (not copied): the layers and their key names
(models/faceboxes.py: conv1/conv2 CReLU, inception1-3, conv3_x, conv4_x, loc/conf heads with 21, 1,
1 anchors per cell), the prior boxes (utils/prior_box.py + utils/config.py: min sizes
[[32, 64, 128], [256], [512]], steps [32, 64, 128], 32-px anchors densified 4x4, 64-px 2x2, no clip),
SSD decoding with variances (0.1, 0.2), and FaceBoxes.py's post-processing: mean (104, 117, 123)
subtracted, downscale to fit 720x1080, score > 0.05, top 5000, NMS 0.3 (Fast R-CNN's +1 pixel
areas), keep 750, then boxes with score > 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from align.errors import AlignCheckpointError
from align.state import load_torch_state

MIN_SIZES = ((32, 64, 128), (256,), (512,))
STEPS = (32, 64, 128)
VARIANCE = (0.1, 0.2)
PIXEL_MEAN = (104.0, 117.0, 123.0)  # per input channel, BGR as trained


class BasicConv2d(nn.Module):
    """conv (no bias) + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CRelu(nn.Module):
    """conv + BN, then ReLU of [x, -x]: doubles the channels for free."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(torch.cat([x, -x], 1))


class Inception(nn.Module):
    """Four 32-channel branches: 1x1, avgpool->1x1, 1x1->3x3, 1x1->3x3->3x3 (128 in, 128 out)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(128, 32, 1)
        self.branch1x1_2 = BasicConv2d(128, 32, 1)
        self.branch3x3_reduce = BasicConv2d(128, 24, 1)
        self.branch3x3 = BasicConv2d(24, 32, 3, padding=1)
        self.branch3x3_reduce_2 = BasicConv2d(128, 24, 1)
        self.branch3x3_2 = BasicConv2d(24, 32, 3, padding=1)
        self.branch3x3_3 = BasicConv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch1x1_2(F.avg_pool2d(x, 3, 1, 1))
        c = self.branch3x3(self.branch3x3_reduce(x))
        d = self.branch3x3_3(self.branch3x3_2(self.branch3x3_reduce_2(x)))
        return torch.cat([a, b, c, d], 1)


class FaceBoxesNet(nn.Module):
    """FaceBoxes in test mode: (B, 3, H, W) mean-subtracted -> box offsets (B, A, 4), face probability (B, A)."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = CRelu(3, 24, 7, 4, 3)
        self.conv2 = CRelu(48, 64, 5, 2, 2)
        self.inception1 = Inception()
        self.inception2 = Inception()
        self.inception3 = Inception()
        self.conv3_1 = BasicConv2d(128, 128, 1)
        self.conv3_2 = BasicConv2d(128, 256, 3, 2, 1)
        self.conv4_1 = BasicConv2d(256, 128, 1)
        self.conv4_2 = BasicConv2d(128, 256, 3, 2, 1)
        anchors = (21, 1, 1)
        channels = (128, 256, 256)
        self.num_classes = num_classes
        self.loc = nn.Sequential(*(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, anchors, strict=True)))
        self.conf = nn.Sequential(
            *(nn.Conv2d(c, a * num_classes, 3, padding=1) for c, a in zip(channels, anchors, strict=True))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        x = F.max_pool2d(self.conv2(x), 3, 2, 1)
        f1 = self.inception3(self.inception2(self.inception1(x)))
        f2 = self.conv3_2(self.conv3_1(f1))
        f3 = self.conv4_2(self.conv4_1(f2))
        n = x.shape[0]
        loc = torch.cat(
            [head(f).permute(0, 2, 3, 1).reshape(n, -1) for head, f in zip(self.loc, (f1, f2, f3), strict=True)], 1
        )
        conf = torch.cat(
            [head(f).permute(0, 2, 3, 1).reshape(n, -1) for head, f in zip(self.conf, (f1, f2, f3), strict=True)], 1
        )
        probs = torch.softmax(conf.view(n, -1, self.num_classes), dim=-1)
        return loc.view(n, -1, 4), probs[..., 1]


def load_faceboxes_net(path: str | Path, device: str | torch.device = "cpu") -> FaceBoxesNet:
    """Load FaceBoxesProd.pth strictly (plain or `state_dict`-wrapped, with or without `module.`)."""
    state = load_torch_state(path, "FaceBoxes (FaceBoxesProd.pth)")
    net = FaceBoxesNet()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AlignCheckpointError(f"{path}: does not match FaceBoxes ({exc}); is this FaceBoxesProd.pth?") from exc
    return net.eval().to(device)


def prior_boxes(height: int, width: int) -> np.ndarray:
    """(A, 4) anchors (cx, cy, w, h), normalised by the image size, in the heads' output order."""
    anchors: list[tuple[float, float, float, float]] = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        for i, j in product(range(rows), range(cols)):
            for m in sizes:
                # 32 px anchors are tiled 4x4 per cell and 64 px 2x2 (FaceBoxes' anchor densification).
                n = {32: 4, 64: 2}.get(m, 1)
                offsets = [k / n for k in range(n)] if n > 1 else [0.5]
                for dy, dx in product(offsets, offsets):
                    anchors.append(((j + dx) * step / width, (i + dy) * step / height, m / width, m / height))
    return np.asarray(anchors, np.float32).reshape(-1, 4)


def decode(loc: np.ndarray, priors: np.ndarray, variance: tuple[float, float] = VARIANCE) -> np.ndarray:
    """SSD decoding: centre += loc_xy * v0 * prior_wh, size = prior_wh * exp(loc_wh * v1); returns corners."""
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS by score; IoU with Fast R-CNN's inclusive (+1 px) box areas. Returns kept indices."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


@dataclass(frozen=True)
class FaceBoxesConfig:
    """FaceBoxes.py's module-level constants."""

    confidence_threshold: float = 0.05
    top_k: int = 5000
    nms_threshold: float = 0.3
    keep_top_k: int = 750
    vis_threshold: float = 0.5
    max_height: int = 720
    max_width: int = 1080


class FaceBoxes:
    """Detector callable: image (H, W, 3) uint8 -> (N, 5) boxes x1, y1, x2, y2, score in image pixels."""

    def __init__(self, net: FaceBoxesNet, config: FaceBoxesConfig | None = None) -> None:
        self.net = net
        self.config = config or FaceBoxesConfig()

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> FaceBoxes:
        return cls(load_faceboxes_net(path, device))

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        c = self.config
        h, w = image.shape[:2]
        scale = 1.0
        if h > c.max_height:
            scale = c.max_height / h
        if w * scale > c.max_width:
            scale *= c.max_width / (w * scale)
        img = image if scale == 1.0 else cv2.resize(image, (int(scale * w), int(scale * h)))
        img = img.astype(np.float32) - np.array(PIXEL_MEAN, np.float32)
        hs, ws = img.shape[:2]
        device = next(self.net.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)
        loc, probs = self.net(x)
        boxes = decode(loc[0].cpu().numpy(), prior_boxes(hs, ws))
        boxes = boxes * np.array([ws, hs, ws, hs], np.float32) / scale
        scores = probs[0].cpu().numpy()
        keep = scores > c.confidence_threshold
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[: c.top_k]
        boxes, scores = boxes[order], scores[order]
        kept = nms(boxes, scores, c.nms_threshold)[: c.keep_top_k]
        dets = np.concatenate([boxes[kept], scores[kept, None]], axis=1).astype(np.float32)
        return dets[dets[:, 4] > c.vis_threshold].reshape(-1, 5)
