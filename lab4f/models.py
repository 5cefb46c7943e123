"""The networks: nonlinear teacher, its linear counterpart / SCLC student, and the electronic back end.

The teacher is a conv stack with ReLU. The linear counterpart is the same stack without nonlinearities
and biases; computed spectrally it is the SCLC (spectral CNN linear counterpart), whose front end collapses
exactly into one :class:`~lab4f.spectral.KernelBank` that the 4f system realises. Both share the back end
of the paper: BatchNorm → adaptive average pool → FC layers with ReLU and dropout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from lab4f.detection import DETECTION_MODELS, detect
from lab4f.errors import CheckpointError, ConfigError
from lab4f.spectral import KernelBank, collapse_kernels

KINDS = ("teacher", "linear", "student")

PAPER_WIDTHS = (32, 128, 256)


@dataclass
class ModelConfig:
    """Architecture of teacher and student; stored in every checkpoint."""

    kind: str = "teacher"
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 32)
    kernel_size: int = 3
    pool_size: int = 6
    hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.5
    detection: str = "ideal"

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.kind not in KINDS:
            raise ConfigError(
                f"model kind {self.kind!r} is unknown; choose one of {', '.join(KINDS)}"
            )
        if self.detection not in DETECTION_MODELS:
            raise ConfigError(
                f"detection {self.detection!r} is unknown; choose one of {', '.join(DETECTION_MODELS)}"
            )
        if self.kernel_size % 2 != 1:
            raise ConfigError(
                f"kernel_size must be odd (got {self.kernel_size}) so 'same' outputs stay centred"
            )

    @property
    def collapsed_kernel_size(self) -> int:
        return len(self.widths) * (self.kernel_size - 1) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(
                f"checkpoint config has unknown fields {sorted(unknown)}; newer lab4f?"
            )
        return cls(**d)


class BackEnd(nn.Module):
    """The electronic half: BatchNorm → AdaptiveAvgPool → FC/ReLU/Dropout → logits."""

    def __init__(self, channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.BatchNorm2d(channels),
            nn.AdaptiveAvgPool2d(cfg.pool_size),
            nn.Flatten(),
        ]
        width = channels * cfg.pool_size**2
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, cfg.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class NonlinearFrontEnd(nn.Module):
    """A teacher's conv stack: conv (same padding) + ReLU per layer. Subclasses add ``self.back``."""

    def _init_front(self, in_channels: int, widths: tuple[int, ...], kernel_size: int) -> int:
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, kernel_size, padding=kernel_size // 2),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.front = nn.Sequential(*layers)
        return c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.front(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x))


class TeacherCNN(NonlinearFrontEnd):
    """Nonlinear teacher: the conv + ReLU stack, then the classifier back end."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.back = BackEnd(self._init_front(cfg.in_channels, cfg.widths, cfg.kernel_size), cfg)


class LinearFrontEnd(nn.Module):
    """The SCLC's optical half: bias-free linear conv layers that collapse into one kernel bank.

    The layer kernels are the trainable parameters (as in the paper); every forward pass collapses them (cheap:
    kernel-sized FFTs) and applies the bank through the configured detection model. Subclasses add ``self.back``.
    """

    def _init_front(
        self, in_channels: int, widths: tuple[int, ...], kernel_size: int, detection: str
    ) -> int:
        self.layers = nn.ParameterList()
        self.detection = detection
        self.noise_std = 0.0
        c = in_channels
        for w in widths:
            conv = nn.Conv2d(c, w, kernel_size, bias=False)  # for PyTorch's default init
            self.layers.append(nn.Parameter(conv.weight.detach().clone()))
            c = w
        return c

    def collapsed(self) -> torch.Tensor:
        """The effective (C_out, C_in, K_eff, K_eff) kernel, differentiable."""
        return collapse_kernels(list(self.layers))

    def kernel_bank(self) -> KernelBank:
        with torch.no_grad():
            return KernelBank(self.collapsed())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return detect(x, self.collapsed(), self.detection, self.noise_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.features(x))


class SCLC(LinearFrontEnd):
    """Linear counterpart computed spectrally: the collapsible front end, then the classifier back end."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = self._init_front(cfg.in_channels, cfg.widths, cfg.kernel_size, cfg.detection)
        self.back = BackEnd(channels, cfg)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Teacher for kind 'teacher'; SCLC for 'linear' (trained plainly) and 'student' (trained by KD)."""
    return TeacherCNN(cfg) if cfg.kind == "teacher" else SCLC(cfg)
