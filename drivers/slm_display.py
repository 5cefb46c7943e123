"""Any slmsuite SLM as the INPUT display — a DMD or amplitude SLM, or a monitor through slmsuite's ScreenMirrored —
showing intensity images: gray level = intensity × (2^bitdepth − 1), sent as integer data (slmsuite passes integer
frames to the hardware without its phase LUT). The image sits centred on the device (plus ``position_px``).

It is a :class:`lab4f.drivers.display.Display` like the simulated display (``show``, ``show_point``, ``blank``,
``shape``, ``levels``, ``position_px``): the base checks and quantises, this class only places the levels on
the device. The display's own gray → light response is measured and linearised by the calibration's ``display``
step (applied in ``Bench.show``).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveInt

from lab4f.drivers.display import Display
from lab4f.errors import ConfigError, DeviceError

SLM_MODULES = {
    "ScreenMirrored": "screenmirrored",
    "SimulatedSLM": "simulated",
    "Meadowlark": "meadowlark",
    "Holoeye": "holoeye",
    "Santec": "santec",
    "Hamamatsu": "hamamatsu",
    "PLM": "texasinstruments",
}


class SLMDisplaySettings(BaseModel):
    """Which slmsuite SLM shows the input, with its own constructor settings, and the image size shown."""

    model_config = ConfigDict(extra="forbid")

    slm: str = Field("ScreenMirrored", description=f"slmsuite SLM class: {', '.join(SLM_MODULES)}")
    slm_settings: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of that class"
    )
    shape: tuple[PositiveInt, PositiveInt] = Field(
        (28, 28), description="(H, W) of the input images shown, each >= 1"
    )
    position_px: tuple[FiniteFloat, FiniteFloat] = Field(
        (0.0, 0.0), description="(x, y) offset of the image centre, pixels"
    )
    bitdepth: int | None = Field(None, ge=1, le=32, description="filled in from the SLM")


class SLMDisplay(Display):
    """An slmsuite SLM showing intensity images as gray levels (refusing, like every :class:`Display`, values
    outside [0, 1])."""

    def __init__(self, settings: SLMDisplaySettings | None = None, slm: Any = None) -> None:
        self.settings = settings or SLMDisplaySettings()
        if slm is None:
            module = SLM_MODULES.get(self.settings.slm)
            if module is None:
                raise ConfigError(
                    f"SLMDisplay: unknown slmsuite SLM {self.settings.slm!r}; choose one of "
                    f"{', '.join(SLM_MODULES)}"
                )
            cls = getattr(
                importlib.import_module(f"slmsuite.hardware.slms.{module}"), self.settings.slm
            )
            try:
                slm = cls(**self.settings.slm_settings)
            except TypeError as exc:
                raise ConfigError(
                    f"SLMDisplay: {self.settings.slm} settings {sorted(self.settings.slm_settings)} "
                    f"do not fit its constructor: {exc}"
                ) from exc
            except (
                Exception
            ) as exc:  # vendor SDKs raise anything (ImportError when the SDK is absent)
                raise DeviceError(
                    f"SLMDisplay: the {self.settings.slm} SLM failed to open: {exc}; check it is "
                    "connected and its SDK installed"
                ) from exc
        self.slm = slm
        self.settings.bitdepth = int(slm.bitdepth)
        h, w = self.shape
        sh, sw = slm.shape
        if h > sh or w > sw:
            raise ConfigError(f"SLMDisplay: {h}×{w} images do not fit the {sh}×{sw} device")
        self._levels = np.zeros(self.shape, dtype=slm.dtype)
        self.name = f"{type(slm).__name__}-display"

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.settings.shape
        return int(h), int(w)

    @property
    def position_px(self) -> tuple[float, float]:
        x, y = self.settings.position_px
        return float(x), float(y)

    @property
    def bitdepth(self) -> int:
        return int(self.slm.bitdepth)

    @property
    def level_dtype(self) -> np.dtype:
        return np.dtype(self.slm.dtype)

    def _show_hw(self, levels: np.ndarray) -> None:
        frame = np.zeros(self.slm.shape, dtype=self.slm.dtype)
        h, w = self.shape
        x0, y0 = self.position_px
        top_row = self.slm.shape[0] // 2 - h // 2 + int(round(y0))
        left = self.slm.shape[1] // 2 - w // 2 + int(round(x0))
        frame[top_row : top_row + h, left : left + w] = levels
        self.slm.set_phase(
            frame, settle=False
        )  # lab4f's sync policy waits for it (lab4f.bench.sync)

    def settings_snapshot(self) -> dict[str, Any]:
        return self.settings.model_dump(mode="json")

    def close(self) -> None:
        self.slm.close()
