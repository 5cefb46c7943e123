"""Segmentation networks: a U-Net-like teacher and its SCLC student (optical front end + electronic decoder).

Both share one structure, like the classifier pair of :mod:`lab4f.models`: a full-resolution front end
of ``widths`` conv layers, then the electronic decoder — BatchNorm, one encoder stage at half resolution
(max-pool, two conv+ReLU), bilinear upsampling, a skip connection from the front features, a conv+ReLU and
a 1×1 conv to per-pixel logits. The teacher's front has ReLU between its layers; the student's front is
the same stack without biases and nonlinearities, collapsed into one kernel bank
(:func:`lab4f.spectral.collapse_kernels`) and applied through a detection model (:func:`lab4f.detection.detect`)
with 'same'-size outputs — which is what the 4f system realises. kind "linear" is that student trained
with cross-entropy only (the baseline), kind "student" the same network trained by pixel-wise KD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab4f.detection import DETECTION_MODELS
from lab4f.errors import CheckpointError, ConfigError
from lab4f.models import KINDS, LinearFrontEnd, NonlinearFrontEnd


@dataclass
class SegConfig:
    """Architecture of the segmentation teacher / student; stored in every segmentation checkpoint."""

    kind: str = "teacher"
    in_channels: int = 1
    num_classes: int = 4
    widths: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    decoder_width: int = 16
    detection: str = "ideal"

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if self.kind not in KINDS:
            raise ConfigError(
                f"model kind {self.kind!r} is unknown; choose one of {', '.join(KINDS)}"
            )
        if self.detection not in DETECTION_MODELS:
            raise ConfigError(
                f"detection {self.detection!r} is unknown; choose one of {', '.join(DETECTION_MODELS)}"
            )
        if self.kernel_size % 2 != 1 or not self.widths:
            raise ConfigError(
                f"need >= 1 front layer and an odd kernel_size (got {self.widths}, {self.kernel_size})"
            )

    @property
    def collapsed_kernel_size(self) -> int:
        return len(self.widths) * (self.kernel_size - 1) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CheckpointError(
                f"segmentation config has unknown fields {sorted(unknown)}; newer lab4f?"
            )
        return cls(**d)


def _conv_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


class SegDecoder(nn.Module):
    """The electronic half: BN → (pool, conv, conv) → upsample → concat skip → conv → 1×1 logits."""

    def __init__(self, channels: int, cfg: SegConfig) -> None:
        super().__init__()
        d = cfg.decoder_width
        self.norm = nn.BatchNorm2d(channels)
        self.down = nn.Sequential(
            nn.MaxPool2d(2), *_conv_relu(channels, 2 * d), *_conv_relu(2 * d, 2 * d)
        )
        self.fuse = nn.Sequential(*_conv_relu(channels + 2 * d, d))
        self.head = nn.Conv2d(d, cfg.num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        skip = self.norm(features)
        deep = F.interpolate(
            self.down(skip), size=skip.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.head(self.fuse(torch.cat([skip, deep], dim=1)))


class SegTeacher(NonlinearFrontEnd):
    """Nonlinear teacher: conv+ReLU front at full resolution, then the decoder (a small U-Net)."""

    def __init__(self, cfg: SegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.back = SegDecoder(self._init_front(cfg.in_channels, cfg.widths, cfg.kernel_size), cfg)


class SegSCLC(LinearFrontEnd):
    """Linear collapsible front end (realised optically) + the same electronic decoder as the teacher."""

    def __init__(self, cfg: SegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = self._init_front(cfg.in_channels, cfg.widths, cfg.kernel_size, cfg.detection)
        self.back = SegDecoder(channels, cfg)


def build_seg_model(cfg: SegConfig) -> nn.Module:
    """SegTeacher for kind 'teacher'; SegSCLC for 'linear' (CE only) and 'student' (pixel-wise KD)."""
    return SegTeacher(cfg) if cfg.kind == "teacher" else SegSCLC(cfg)
