"""Job sizing (issue 18): output size, memory and ETA before a job starts, and the limit."""

from __future__ import annotations

import pytest

from sr_core import sizing, units
from sr_core.errors import JobTooLargeError


@pytest.fixture(autouse=True)
def own_calibration(tmp_path, monkeypatch):
    """No test sees the machine's stored bench figures, nor leaves its own behind."""
    monkeypatch.setenv("FINESCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sizing, "_calibrated", {})
    monkeypatch.setattr(sizing, "_loaded_from", set())


def test_estimate_counts_the_output_picture_and_the_model_and_scales_the_eta():
    one = sizing.estimate(1000, 1000, 4000, 4000, family="asid", model_bytes=500_000_000)
    assert one.out_megapixels == 16.0
    assert one.memory_bytes == 500_000_000 + 2 * 16_000_000 * 3  # picture twice, 8-bit RGB
    assert one.disk_bytes == 16_000_000 * 3
    four = sizing.estimate(2000, 2000, 8000, 8000, family="asid")
    assert four.seconds == pytest.approx(4 * one.seconds)
    deep = sizing.estimate(1000, 1000, 4000, 4000, family="asid", channels=4, bits=16)
    assert deep.disk_bytes == 16_000_000 * 8
    gpu = sizing.estimate(1000, 1000, 4000, 4000, family="asid", device_type="cuda")
    assert gpu.seconds < one.seconds
    assert sizing.estimate(10, 10, 40, 40, family="esrgan").seconds is None


def test_calibration_replaces_the_table_for_that_family_and_device():
    sizing.calibrate("hat", "cpu", 12.5)
    assert sizing.estimate(2000, 1000, 8000, 4000, family="hat").seconds == pytest.approx(25.0)
    assert sizing.seconds_per_megapixel("hat", "cuda") != 12.5
    with pytest.raises(ValueError):
        sizing.calibrate("hat", "cpu", float("nan"))


def test_default_limit_is_what_fits_the_free_memory_and_disk():
    gb = 10**9
    by_ram = sizing.default_output_limit(ram=8 * gb, disk=10**15)
    assert by_ram == int(0.8 * 8 * gb / (2 * 3))
    by_disk = sizing.default_output_limit(ram=10**15, disk=3 * gb)
    assert by_disk == int(0.8 * 3 * gb / 3)
    assert sizing.default_output_limit(ram=8 * gb, disk=10**15, bits=16, channels=4) < by_ram


def test_a_job_above_the_limit_is_refused_with_the_numbers():
    size = sizing.estimate(12000, 12000, 48000, 48000, family="asid", model_bytes=10**9)
    with pytest.raises(JobTooLargeError) as err:
        sizing.check_job("bomb.png", size, limit_pixels=500_000_000)
    msg = str(err.value)
    for part in ("bomb.png", "48000x48000", "2.3e+03 MP", "GB of memory", "h", "500 MP",
                 "--max-output-megapixels", "--yes"):
        assert part in msg, msg
    assert "\n" not in msg
    sizing.check_job("ok.png", size, limit_pixels=48000 * 48000)  # at the limit: fine


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (45, "45 s"), (600, "10 min"),
                                           (61200, "17.0 h")])
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert units.format_seconds(seconds) == text


def test_a_bench_measurement_is_kept_for_the_next_run(tmp_path, monkeypatch):
    rate = sizing.record_measurement("spin", "cpu", 250_000, 5.0)  # 256x~977 in 5 s
    assert rate == pytest.approx(20.0)
    assert (tmp_path / "cache" / sizing.CALIBRATION_NAME).exists()
    monkeypatch.setattr(sizing, "_calibrated", {})  # a new process
    monkeypatch.setattr(sizing, "_loaded_from", set())
    assert sizing.seconds_per_megapixel("spin", "cpu") == pytest.approx(20.0)
    assert sizing.seconds_per_megapixel("asid", "cpu") == sizing.CPU_SECONDS_PER_MEGAPIXEL["asid"]
