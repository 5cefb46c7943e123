"""HarvestersCamera integration tests against genicam's simulated GenTL producer (viky.cti)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lab4f.drivers.harvesters_camera import (
    HarvestersCamera,
    HarvestersCameraSettings,
    component_to_array,
    default_cti_path,
)
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceTimeout

VIKY_SERIALS = ["0", "1", "2"]


@pytest.fixture
def camera():
    cam = HarvestersCamera(HarvestersCameraSettings(serial="1", roi=(0, 0, 400, 400)))
    yield cam
    cam.close()


def test_info_lists_the_three_viky_devices():
    assert HarvestersCamera.info(verbose=False) == VIKY_SERIALS


def test_open_identity_and_shape(camera):
    assert camera.identity == ("Machine Vision Games Ltd.", "Viky", "1")
    assert camera.shape == (400, 400)
    assert camera.dtype == np.uint8 and camera.bitdepth == 8
    assert camera.pixel_format == "Mono8"
    assert camera.is_acquiring


def test_frames_have_right_shape_dtype_and_move(camera):
    frames = [camera.get_image() for _ in range(4)]
    for frame in frames:
        assert frame.shape == (400, 400) and frame.dtype == np.uint8
        assert (
            0 < frame.mean() < 255
        )  # a ball on a white field: neither blank nor saturated everywhere
    # viky's ball bounces: consecutive frames differ in a few dozen pixels at least.
    changed = [int(np.count_nonzero(a != b)) for a, b in zip(frames, frames[1:], strict=False)]
    assert min(changed) >= 10, changed


def test_missing_exposure_node_is_kept_in_software(camera):
    assert "ExposureTime" in camera.missing_nodes
    assert camera.exposure_s == pytest.approx(0.01)
    assert camera.set_exposure(0.02) == pytest.approx(0.02)
    snap = camera.settings_snapshot()
    assert snap["exposure_source"] == "software" and snap["actual_exposure_s"] == pytest.approx(
        0.02
    )
    assert snap["serial"] == "1" and snap["actual_width"] == 400


def test_roi_frame_rate_and_color_format():
    settings = HarvestersCameraSettings(
        roi=(0, 0, 320, 240), pixel_format="RGBa8", frame_rate_hz=100.0, gain_db=3.0
    )
    with HarvestersCamera(settings) as cam:
        assert cam.configured_frame_rate_hz == pytest.approx(100.0)
        assert cam.identity.serial == "0"  # first device when no serial is given
        assert {"ExposureTime", "Gain"} <= set(cam.missing_nodes)
        raw = cam._get_image_hw(timeout_s=1.0)
        assert raw.shape == (240, 320, 4)  # RGBa: slmsuite keeps color_channel 0
        assert cam.get_image().shape == (240, 320)


def test_unknown_pixel_format_names_the_offered_ones():
    with pytest.raises(ConfigError, match=r"Mono16.*'RGBa8', 'Mono8'"):
        HarvestersCamera(HarvestersCameraSettings(pixel_format="Mono16"))


def test_roi_outside_sensor_is_a_config_error():
    with pytest.raises(ConfigError, match=r"Width=5000 is outside the device range \[100, 800\]"):
        HarvestersCamera(HarvestersCameraSettings(roi=(0, 0, 5000, 400)))


def test_missing_cti_names_the_path(tmp_path):
    missing = tmp_path / "vendor" / "producer.cti"
    with pytest.raises(ConfigError, match="GenTL producer not found: " + str(missing)):
        HarvestersCamera(HarvestersCameraSettings(cti_path=str(missing)))


def test_wrong_serial_lists_present_serials():
    with pytest.raises(DeviceDisconnected, match=r"serial 'XYZ'.*\['0', '1', '2'\]"):
        HarvestersCamera(HarvestersCameraSettings(serial="XYZ"))


def test_fetch_while_stopped_becomes_device_timeout(camera):
    camera.stop_acquisition()
    start = time.perf_counter()
    with pytest.raises(DeviceTimeout, match="STOPPED"):
        camera._get_image_hw(timeout_s=0.2)
    assert 0.15 < time.perf_counter() - start < 1.0
    camera.start_acquisition()
    assert camera.get_image().shape == (400, 400)


def test_timeout_shorter_than_frame_period_becomes_device_timeout():
    with HarvestersCamera(HarvestersCameraSettings(frame_rate_hz=2.0, timeout_s=2.0)) as cam:
        cam.get_image()  # just received a frame: the next one is ~0.5 s away
        with pytest.raises(DeviceTimeout, match=r"within 0\.05 s \(acquisition running\)"):
            cam._get_image_hw(timeout_s=0.05)


def test_close_releases_device_and_reopen_works():
    for _ in range(2):
        cam = HarvestersCamera(HarvestersCameraSettings(serial="2"))
        assert cam.get_image().shape == cam.shape
        cam.close()
        assert not cam.is_acquiring
        cam.close()  # idempotent
    with pytest.raises(DeviceDisconnected, match="closed"):
        cam._get_image_hw(timeout_s=0.1)


class _FakeComponent:
    """Stands in for a harvesters component with padded rows (PFNC Mono16)."""

    def __init__(self, data: np.ndarray, width: int, height: int) -> None:
        self.data, self.width, self.height = data, width, height
        self.num_components_per_pixel, self.data_format = 1.0, "Mono16"


def test_component_to_array_drops_row_padding_and_copies():
    padded = np.arange(3 * 6, dtype=np.uint16)  # 3 rows of 4 pixels + 2 padding values each
    frame = component_to_array(_FakeComponent(padded, width=4, height=3))
    np.testing.assert_array_equal(frame, padded.reshape(3, 6)[:, :4])
    assert frame.dtype == np.uint16 and not np.shares_memory(frame, padded)


def test_default_cti_is_the_genicam_wheels_viky():
    assert default_cti_path().endswith("genicam/viky.cti")
