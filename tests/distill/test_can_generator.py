"""The Car-Hacking-calibrated traffic generator: rates, IDs, payload structure, attack periods, round trip."""
from __future__ import annotations

import numpy as np
import pytest

from compressor.distill.data.can import load_capture
from compressor.distill.data.can_generator import (
    ATTACKS,
    VEHICLE,
    GeneratorConfig,
    GeneratorError,
    frame_seconds,
    generate,
    write_log,
)
from compressor.runtime.can_log import read_log


@pytest.fixture(scope="module")
def captures():
    return {attack: generate(GeneratorConfig(duration_s=20.0, attack=attack, seed=3))
            for attack in (None, "dos", "fuzzy", "gear", "rpm")}


def test_normal_traffic_rate_ids_and_dlc(captures):
    frames = captures[None]
    assert len(np.unique(frames.can_id)) == 26 == len(VEHICLE)
    rate = len(frames) / 20.0
    assert 1900 <= rate <= 2000  # Car-Hacking normal_run: ~1,950 frames/s
    assert not frames.flag.any() and set(np.unique(frames.dlc)) == {2, 8}
    assert np.all(np.diff(frames.ts) > 0)  # bus order: one frame at a time
    # per-ID periods: 0x130 every 10 ms, 0x5F0 (DLC 2) every 50 ms
    for can_id, period in ((0x130, 0.01), (0x5F0, 0.05), (0x545, 0.02), (0x690, 0.1)):
        gaps = np.diff(frames.ts[frames.can_id == can_id])
        assert np.median(gaps) == pytest.approx(period, rel=0.05)


def test_payloads_have_constants_counters_and_checksums(captures):
    frames = captures[None]
    tcs = frames.data[frames.can_id == 0x153]
    assert (tcs == np.frombuffer(bytes.fromhex("002110ff00ff0000"), np.uint8)).all()
    yrs = frames.data[frames.can_id == 0x130]
    counter = yrs[:, 6] & 0x0F
    assert len(np.unique(counter)) == 16
    assert np.mean((np.diff(counter.astype(int)) % 16) == 1) > 0.95  # increments frame to frame
    assert (yrs[:, 7] == (yrs[:, :7].astype(int).sum(axis=1) & 0xFF)).all()
    mux = frames.data[frames.can_id == 0x329][:, 0]
    assert set(np.unique(mux)) == {0x40, 0x86, 0xDC}


@pytest.mark.parametrize("attack", ["dos", "fuzzy", "gear", "rpm"])
def test_attack_periods_ids_and_injected_share(captures, attack):
    frames, spec = captures[attack], ATTACKS[attack]
    injected = frames.flag == 1
    assert 0.10 <= injected.mean() <= 0.18  # the real files: 13-16 % injected
    starts = frames.ts[injected] - frame_seconds(frames.dlc[injected], 500_000)
    gaps = np.diff(starts)
    gaps = gaps[gaps < 0.05]  # within bursts
    assert gaps.min() >= spec.period_s * 0.999  # the tool waits its period after each send
    if attack == "dos":  # a 0.3 ms flood of 0.24 ms frames leaves room for one legit frame now and then
        assert spec.period_s <= np.median(gaps) <= 2 * spec.period_s
        assert (frames.can_id[injected] == 0).all() and (frames.data[injected] == 0).all()
    else:
        assert np.median(gaps) == pytest.approx(spec.period_s, rel=0.1)
    if attack == "fuzzy":
        assert len(np.unique(frames.can_id[injected])) > 1000
    if attack in ("gear", "rpm"):
        assert (frames.can_id[injected] == spec.can_id).all()
        assert len(np.unique(frames.data[injected], axis=0)) == 1  # one forged payload


def test_bursts_reach_every_fifth_of_a_capture(captures):
    frames = captures["gear"]
    fifths = np.array_split(frames.flag, 5)
    assert all(part.any() for part in fifths)


def test_seed_reproducibility_and_bad_settings():
    a = generate(GeneratorConfig(duration_s=2.0, attack="fuzzy", seed=7))
    b = generate(GeneratorConfig(duration_s=2.0, attack="fuzzy", seed=7))
    assert np.array_equal(a.ts, b.ts) and np.array_equal(a.data, b.data)
    with pytest.raises(GeneratorError, match="unknown attack"):
        generate(GeneratorConfig(attack="replay"))
    with pytest.raises(GeneratorError, match="too short"):
        generate(GeneratorConfig(duration_s=1.0, attack="rpm"))


@pytest.mark.parametrize("fmt", ["csv", "txt", "candump"])
def test_written_logs_read_back(tmp_path, fmt):
    frames = generate(GeneratorConfig(duration_s=3.0, attack="fuzzy", seed=1))
    path = write_log(frames, tmp_path / f"Fuzzy_dataset.{fmt}", fmt)
    back, bad = read_log(path)
    assert bad == 0 and len(back) == len(frames)
    assert np.array_equal(back.can_id, frames.can_id) and np.array_equal(back.dlc, frames.dlc)
    assert np.array_equal(back.data, frames.data) and np.allclose(back.ts, frames.ts, atol=2e-6)
    if fmt == "csv":
        assert np.array_equal(back.flag, frames.flag)
        assert load_capture(path).labels.max() == 2
