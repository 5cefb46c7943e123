"""HarvestersCamera linearity and geometry: gamma/LUT off, black level, auto modes off, DeviceTemperature recorded,
ROI on the nodes' increments, binning scaling the pitch, exposure locked to a display's period, the pixel formats
offered.

viky.cti (genicam's simulated producer) has none of the linearity nodes, Width/Height with increment 1 and PixelFormat
RGBa8/Mono8: what it lacks is tested by laying fake nodes over its node map (the style of test_harvesters_timing.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lab4f.bench.config import BenchConfig
from lab4f.bench.preflight import default_warnings
from lab4f.drivers.harvesters_camera import HarvestersCamera, HarvestersCameraSettings
from lab4f.errors import ConfigError

ROI = (0, 0, 200, 160)


def _open(**settings: Any) -> HarvestersCamera:
    return HarvestersCamera(HarvestersCameraSettings(serial="1", **{"roi": ROI, **settings}))


class FakeNode:
    """A GenICam node: value, range, increment, entries; every write recorded."""

    def __init__(
        self,
        value: Any = None,
        min: Any = None,
        max: Any = None,
        inc: int | None = None,  # noqa: A002
        symbolics: tuple[str, ...] | None = None,
    ) -> None:
        self._value, self.writes = value, []
        for name, v in (("min", min), ("max", max), ("inc", inc), ("symbolics", symbolics)):
            if v is not None:
                setattr(self, name, v)

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, v: Any) -> None:
        self.writes.append(v)
        self._value = v


class Proxy:
    """A real viky node seen with another increment or other entries (its writes go to the device, so the frames
    keep the size and format the nodes say)."""

    def __init__(self, node: Any, **seen_as: Any) -> None:
        self._node, self.writes = node, []
        for name in ("min", "max", "inc", "symbolics"):
            if name in seen_as or hasattr(node, name):
                setattr(self, name, seen_as.get(name, getattr(node, name, None)))

    @property
    def value(self) -> Any:
        return self._node.value

    @value.setter
    def value(self, v: Any) -> None:
        self.writes.append(v)
        self._node.value = v


@pytest.fixture
def overlay(monkeypatch):
    """Nodes to lay over viky's: a dict name -> node (or a callable(real node) -> node, for a wrapped real one)."""
    nodes: dict[str, Any] = {}
    real_node, real_has = HarvestersCamera._node, HarvestersCamera._has_node

    def node(self, name):
        if name in nodes:
            if callable(nodes[name]) and not isinstance(nodes[name], FakeNode | Proxy):
                nodes[name] = nodes[name](real_node(self, name))
            return nodes[name]
        return real_node(self, name)

    monkeypatch.setattr(HarvestersCamera, "_node", node)
    monkeypatch.setattr(
        HarvestersCamera, "_has_node", lambda self, name: name in nodes or real_has(self, name)
    )
    return nodes


def test_viky_offers_two_formats_and_none_of_the_linearity_nodes():
    with _open(pitch_um=(5.5, 5.5)) as cam:
        assert cam.pixel_formats_offered == ("RGBa8", "Mono8")
        assert (
            cam.gamma_in_use is None
            and cam.lut_enabled is None
            and cam.device_temperature_c is None
        )
        assert cam.binning == (1, 1) and tuple(cam.pitch_um) == (5.5, 5.5)
        assert cam.actual_roi == (0, 0, 200, 160) and cam.shape == (160, 200)
        snap = cam.settings_snapshot()
        assert (
            snap["pixel_formats_offered"] == "RGBa8,Mono8" and snap["device_temperature_c"] is None
        )
        assert snap["actual_binning"] == (1, 1) and snap["actual_pitch_um"] == (5.5, 5.5)
        assert (
            snap["gamma"] is None
            and snap["lut_enabled"] is None
            and snap["actual_black_level"] is None
        )
        # Mono8 is all viky offers besides colour: no 10/12-bit warning
        warnings = default_warnings(
            BenchConfig(), bench=type("B", (), {"devices": {"camera": cam}})()
        )
        assert not any("Mono8" in w.message for w in warnings)


def test_viky_refuses_binning_it_cannot_do_and_records_a_black_level_it_lacks():
    with pytest.raises(
        ConfigError, match=r"no BinningHorizontal node, so binning=\(2, 2\) is impossible"
    ):
        _open(binning=(2, 2))
    with _open(binning=(1, 1), black_level=10.0) as cam:  # no binning is always possible
        assert cam.binning == (1, 1) and "BlackLevel" in cam.missing_nodes
        with pytest.raises(
            ConfigError, match=r"binning is set when the camera opens.*binning = \[2, 2\]"
        ):
            cam.set_binning(2)  # slmsuite's API: binning is hardware here, fixed at open


def test_exposure_is_a_whole_number_of_display_periods():
    period = 1 / 60
    with _open(
        exposure_s=0.01, exposure_multiple_of_s=period
    ) as cam:  # viky: exposure kept in software
        assert cam.exposure_s == pytest.approx(period)  # never less than one period
        assert cam.set_exposure(0.04) == pytest.approx(2 * period)
        assert cam.set_exposure(0.0251) == pytest.approx(2 * period)
        assert cam.set_exposure(0.0249) == pytest.approx(period)
        assert cam.settings_snapshot()["actual_exposure_s"] == pytest.approx(period)


def test_exposure_multiple_within_the_exposure_nodes_range(overlay):
    overlay["ExposureTime"] = FakeNode(10000.0, min=20.0, max=30000.0)  # µs
    with _open(exposure_s=0.04, exposure_multiple_of_s=1 / 60) as cam:
        # 2 periods (33.3 ms) is above the 30 ms maximum: the longest whole number that fits
        assert cam.exposure_s == pytest.approx(1 / 60) and overlay[
            "ExposureTime"
        ].value == pytest.approx(1e6 / 60)
    with pytest.raises(
        ConfigError, match=r"exposure_multiple_of_s=0.05 s is longer .*longest exposure \(0.03 s\)"
    ):
        _open(exposure_multiple_of_s=0.05)


def test_linearity_nodes_are_switched_off_and_the_state_recorded(overlay):
    overlay.update(
        GammaEnable=FakeNode(True),
        Gamma=FakeNode(0.45, min=0.25, max=4.0),
        LUTSelector=FakeNode("Luminance", symbolics=("Luminance", "Red")),
        LUTEnable=FakeNode(True),
        BlackLevelSelector=FakeNode("Red", symbolics=("All", "Red")),
        BlackLevel=FakeNode(0.0, min=0.0, max=255.0),
        BlackLevelAuto=FakeNode("Continuous", symbolics=("Off", "Continuous")),
        ExposureAuto=FakeNode("Continuous", symbolics=("Off", "Once", "Continuous")),
        GainAuto=FakeNode("Once", symbolics=("Off", "Once")),
        DeviceTemperature=FakeNode(41.5),
    )
    with _open(black_level=12.0) as cam:
        assert (
            overlay["GammaEnable"].writes == [False] and overlay["Gamma"].writes == []
        )  # off, not re-shaped
        assert overlay["LUTSelector"].writes == ["Luminance", "Red"] and overlay[
            "LUTEnable"
        ].writes == [False, False]
        assert overlay["BlackLevelSelector"].writes == ["All"] and overlay["BlackLevel"].writes == [
            12.0
        ]
        assert [overlay[n].value for n in ("BlackLevelAuto", "ExposureAuto", "GainAuto")] == [
            "Off"
        ] * 3
        assert (cam.gamma_in_use, cam.lut_enabled) == ("off", False)
        overlay["DeviceTemperature"].value = 43.0  # warmed up: read when the snapshot is taken
        snap = cam.settings_snapshot()
        assert snap["device_temperature_c"] == 43.0 and snap["actual_black_level"] == 12.0
        assert (
            snap["gamma"] == "off" and snap["lut_enabled"] is False and snap["black_level"] == 12.0
        )


def test_a_camera_with_only_a_gamma_value_gets_gamma_one(overlay):
    overlay["Gamma"] = FakeNode(0.7, min=0.25, max=4.0)
    with _open() as cam:
        assert overlay["Gamma"].writes == [1.0] and cam.gamma_in_use == 1.0
    overlay.clear()
    with _open() as cam:  # a black level not asked for is left alone
        assert "BlackLevel" not in cam.missing_nodes


def test_roi_is_moved_onto_the_nodes_increments(overlay):
    overlay["Width"] = lambda real: Proxy(real, inc=16)  # viky's min is 100: widths 100 + 16k
    overlay["Height"] = lambda real: Proxy(real, inc=4)
    overlay["OffsetX"] = FakeNode(0, min=0, max=600, inc=16)
    overlay["OffsetY"] = FakeNode(0, min=0, max=600, inc=2)
    with _open(roi=(40, 7, 200, 162)) as cam:
        # 200 -> 196 (100 + 6·16), 162 -> 164 (100 + 16·4, nearest), x 40 -> 48 (2.5 incs rounds up), y 7 -> 8
        assert overlay["Width"].writes == [196] and overlay["Height"].writes == [164]
        assert overlay["OffsetX"].writes == [0, 48] and overlay["OffsetY"].writes == [0, 8]
        assert cam.actual_roi == (48, 8, 196, 164) and cam.shape == (164, 196)
        assert cam.get_image().shape == (164, 196)  # the frames have the size the nodes hold
        assert cam.settings_snapshot()["actual_roi"] == (48, 8, 196, 164)
    with pytest.raises(ConfigError, match=r"Width=900 is outside the device range \[100, 800\]"):
        _open(roi=(0, 0, 900, 160))  # outside the range is refused, not rounded into it


def test_binning_scales_the_pitch_and_a_binning_left_on_the_camera_counts(overlay):
    overlay["BinningHorizontal"] = FakeNode(1, min=1, max=4, inc=1)
    overlay["BinningVertical"] = FakeNode(1, min=1, max=4, inc=1)
    with _open(binning=(2, 1), pitch_um=(3.45, 3.45)) as cam:
        assert overlay["BinningHorizontal"].writes == [2] and overlay["BinningVertical"].writes == [
            1
        ]
        assert cam.binning == (2, 1) and np.allclose(cam.pitch_um, (6.9, 3.45))
        assert cam.shape == (160, 200)  # the frames' size: the nodes' Width/Height, already binned
        snap = cam.settings_snapshot()
        assert snap["actual_binning"] == (2, 1) and snap["actual_pitch_um"] == pytest.approx(
            (6.9, 3.45)
        )
        assert snap["pitch_um"] == (3.45, 3.45) and snap["binning"] == (2, 1)
    overlay["BinningVertical"].value = 2  # left 2x2 by another program; lab4f's settings do not say
    with _open(pitch_um=(3.45, 3.45)) as cam:
        assert cam.binning == (2, 2) and np.allclose(cam.pitch_um, (6.9, 6.9))


def test_preflight_warns_about_mono8_when_more_bits_are_offered(overlay):
    overlay["PixelFormat"] = lambda real: Proxy(real, symbolics=("Mono8", "Mono10", "Mono12"))
    with _open(pixel_format="Mono8") as cam:
        assert cam.pixel_formats_offered == ("Mono8", "Mono10", "Mono12")
        warnings = default_warnings(
            BenchConfig(), bench=type("B", (), {"devices": {"camera": cam}})()
        )
        assert any("runs Mono8 but offers Mono8, Mono10, Mono12" in w.message for w in warnings)
