"""Synthetic CAN traffic calibrated to the HCRL Car-Hacking captures (an idling Hyundai YF Sonata).

26 periodic IDs (17 at 10 ms, 4 at 20 ms, one DLC-2 ID at 50 ms, 4 at 100 ms: about 1,960 frames/s) carry
payloads with constant bytes, drifting sensor bytes, alive counters, checksums and a multiplexed byte. Frames
go through a 500 kbit/s bus model: lowest ID wins arbitration, a node's unsent frame is replaced by its newer
one, so injected floods delay and thin the legitimate traffic as they do on a real bus. Attacks come in
bursts: DoS (ID 0x000, zeros, every 0.3 ms), fuzzy (random ID and payload every 0.5 ms), gear (0x43F) and
RPM (0x316) spoofing with a fixed forged payload every 1 ms. ``write_csv`` writes the Car-Hacking CSV.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressError
from compressor.runtime.can_log import Frames


class GeneratorError(CompressError):
    """Generator settings that cannot produce a capture."""


@dataclass(frozen=True)
class IdProfile:
    """One periodic message: ``drift`` = (byte, width in bytes, +-span) random walks; ``counter`` = (byte,
    bits) alive counter in the low bits; ``checksum`` = (byte, 'xor'|'sum') over the other bytes."""

    can_id: int
    period_s: float
    base: tuple[int, ...]
    drift: tuple[tuple[int, int, int], ...] = ()
    counter: tuple[int, int] | None = None
    checksum: tuple[int, str] | None = None
    mux: tuple[int, ...] = ()


def _b(text: str) -> tuple[int, ...]:
    return tuple(bytes.fromhex(text))


VEHICLE: tuple[IdProfile, ...] = (
    IdProfile(0x002, 0.01, _b("0000000000000000"), counter=(5, 4), checksum=(7, "xor")),
    IdProfile(0x0A0, 0.01, _b("ad0000007c0e0000"), drift=((4, 1, 3),)),
    IdProfile(0x0A1, 0.01, _b("800000c01f010000"), drift=((3, 1, 2),), counter=(6, 4)),
    IdProfile(0x130, 0.01, _b("0580 00ff 0580 0000".replace(" ", "")), drift=((0, 1, 2), (4, 1, 2)),
              counter=(6, 4), checksum=(7, "sum")),
    IdProfile(0x131, 0.01, _b("ff7f00ff0b800000"), drift=((4, 1, 2),), counter=(6, 4), checksum=(7, "xor")),
    IdProfile(0x140, 0.01, _b("0000000014002000"), drift=((4, 1, 3),), counter=(6, 4), checksum=(7, "sum")),
    IdProfile(0x153, 0.01, _b("002110ff00ff0000")),
    IdProfile(0x18F, 0.01, _b("fe48000000 3c0000".replace(" ", "")), drift=((1, 1, 8),)),
    IdProfile(0x260, 0.01, _b("1524253008 8e0000".replace(" ", "")), drift=((0, 1, 2),), counter=(6, 2),
              checksum=(7, "sum")),
    IdProfile(0x2A0, 0.01, _b("00002c0800000080"), drift=((2, 1, 3),)),
    IdProfile(0x2C0, 0.01, _b("1400000000000000")),
    IdProfile(0x316, 0.01, _b("05226c0922240070"), drift=((2, 2, 120), (1, 1, 3), (4, 1, 3))),
    IdProfile(0x329, 0.01, _b("40b87f1411200014"), drift=((1, 1, 4),), mux=(0x40, 0x86, 0xDC)),
    IdProfile(0x350, 0.01, _b("052034687500000c"), counter=(7, 4)),
    IdProfile(0x370, 0.01, _b("ff20000000000000")),
    IdProfile(0x43F, 0.01, _b("0045600030000000")),
    IdProfile(0x440, 0.01, _b("ff000000ff860900")),
    IdProfile(0x1F1, 0.02, _b("0000000000000000"), drift=((0, 1, 2),)),
    IdProfile(0x4B1, 0.02, _b("292727230000009a")),
    IdProfile(0x4F0, 0.02, _b("0000000000000000"), counter=(1, 4), checksum=(7, "xor")),
    IdProfile(0x545, 0.02, _b("d800008500000000"), drift=((3, 1, 6),)),
    IdProfile(0x5F0, 0.05, _b("0100")),
    IdProfile(0x430, 0.1, _b("0000001000000000"), counter=(2, 4)),
    IdProfile(0x5A0, 0.1, _b("0000c9ff00000000")),
    IdProfile(0x5A2, 0.1, _b("0000000050000000"), drift=((4, 1, 2),)),
    IdProfile(0x690, 0.1, _b("0000000000000000")),
)


@dataclass(frozen=True)
class Attack:
    """An injection: ``can_id`` None = a random 11-bit ID per frame; ``payload`` None = random bytes."""

    period_s: float
    burst_s: float
    can_id: int | None
    payload: tuple[int, ...] | None


ATTACKS = {  # burst lengths give the per-intrusion frame counts of the real files (~1,600-2,200 frames)
    "dos": Attack(0.0003, 0.6, 0x000, _b("0000000000000000")),
    "fuzzy": Attack(0.0005, 0.8, None, None),
    "gear": Attack(0.001, 2.0, 0x43F, _b("0145600030000000")),
    "rpm": Attack(0.001, 2.2, 0x316, _b("0520c05d20200070")),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """One capture: ``attack`` None for attack-free traffic; bursts are sized so injected frames make up
    about ``injected_fraction`` of the capture (the real files: 13-16 %)."""

    duration_s: float = 60.0
    attack: str | None = None
    injected_fraction: float = 0.14
    jitter: float = 0.02
    bitrate: int = 500_000
    start_ts: float = 1478195721.0
    seed: int = 0


def frame_seconds(dlc: np.ndarray, bitrate: int) -> np.ndarray:
    """Wire time of standard frames: 47 overhead bits + data + about one stuff bit per ten."""
    return (47 + 8 * dlc + (34 + 8 * dlc) // 10) / bitrate


def generate(config: GeneratorConfig) -> Frames:
    """A capture as :class:`Frames` (flag 1 on injected frames), in bus order, timestamps at end of frame."""
    if config.attack is not None and config.attack not in ATTACKS:
        raise GeneratorError(f"unknown attack '{config.attack}'; choose from: {', '.join(ATTACKS)}")
    if config.duration_s <= 0:
        raise GeneratorError(f"duration_s must be positive, got {config.duration_s}")
    rng = np.random.default_rng(config.seed)
    sources = [_periodic(p, config, rng) for p in VEHICLE]
    if config.attack is not None:
        sources.append(_injection(ATTACKS[config.attack], config, rng, _legit_rate()))
    return _bus(sources, config)


def _legit_rate() -> float:
    return sum(1.0 / p.period_s for p in VEHICLE)


def _periodic(profile: IdProfile, config: GeneratorConfig, rng: np.random.Generator):
    count = int(config.duration_s / profile.period_s) + 1
    times = rng.uniform(0, profile.period_s) + profile.period_s * np.arange(count)
    times = np.sort(times + rng.normal(0, config.jitter * profile.period_s, count))
    keep = (times >= 0) & (times < config.duration_s)
    ids = np.full(count, profile.can_id)
    return times[keep], ids[keep], _payloads(profile, count, rng)[keep], np.zeros(keep.sum(), np.int8)


def _payloads(profile: IdProfile, count: int, rng: np.random.Generator) -> np.ndarray:
    data = np.zeros((count, 8), np.int64)
    data[:, :len(profile.base)] = profile.base
    for pos, width, span in profile.drift:
        base = int.from_bytes(bytes(profile.base[pos:pos + width]), "little")
        walk = np.clip(np.cumsum(rng.integers(-1, 2, count)) // 2, -span, span)
        value = np.clip(base + walk, 0, 256 ** width - 1)
        for k in range(width):
            data[:, pos + k] = (value >> (8 * k)) & 0xFF
    if profile.mux:
        data[:, 0] = np.asarray(profile.mux)[np.arange(count) % len(profile.mux)]
    if profile.counter is not None:
        pos, bits = profile.counter
        alive = (rng.integers(0, 1 << bits) + np.arange(count)) % (1 << bits)
        data[:, pos] = (data[:, pos] & ~((1 << bits) - 1)) | alive
    if profile.checksum is not None:
        pos, kind = profile.checksum
        others = np.delete(data[:, :len(profile.base)], pos, axis=1)
        data[:, pos] = np.bitwise_xor.reduce(others, axis=1) if kind == "xor" else others.sum(axis=1) & 0xFF
    dlc = np.full(count, len(profile.base))
    return np.concatenate([dlc[:, None], data], axis=1)


def _injection(attack: Attack, config: GeneratorConfig, rng: np.random.Generator, legit_rate: float):
    per_burst = attack.burst_s / attack.period_s
    wanted = config.injected_fraction / (1 - config.injected_fraction) * legit_rate * config.duration_s
    bursts = max(1, int(round(wanted / per_burst)))
    slot = config.duration_s / bursts
    if slot < attack.burst_s * 1.6:
        raise GeneratorError(f"{config.duration_s} s is too short for {bursts} {config.attack} burst(s) of "
                             f"{attack.burst_s} s; lengthen duration_s or lower injected_fraction")
    # evenly spaced intrusions (jittered), so every chronological block of a capture holds some
    starts = slot * (np.arange(bursts) + 0.5) - attack.burst_s / 2 + rng.uniform(-0.15, 0.15, bursts) * slot
    offsets = np.arange(0.0, attack.burst_s, attack.period_s)
    times = (starts[:, None] + offsets[None, :]).ravel()
    count = len(times)
    ids = rng.integers(0, 0x800, count) if attack.can_id is None else np.full(count, attack.can_id)
    if attack.payload is None:
        dlc = np.where(rng.random(count) < 0.9, 8, rng.integers(0, 9, count))
        data = np.where(np.arange(8) < dlc[:, None], rng.integers(0, 256, (count, 8)), 0)
    else:
        dlc, data = np.full(count, len(attack.payload)), np.tile(attack.payload, (count, 1))
    return times, ids, np.concatenate([dlc[:, None], data], axis=1), np.ones(count, np.int8)


def _bus(sources, config: GeneratorConfig) -> Frames:
    """Arbitrate: the lowest pending ID goes next. A node whose frame waited past its next one's time sends
    only the newest (its transmit buffer is overwritten); an attack tool waits its period after each send."""
    durations = [frame_seconds(rows[:, 0], config.bitrate) for _, _, rows, _ in sources]
    nxt = [0] * len(sources)
    waiting = [(times[0], s) for s, (times, *_) in enumerate(sources) if len(times)]
    heapq.heapify(waiting)
    ready: list[tuple[int, float, int]] = []
    out_time, out_source, out_index, clock = [], [], [], 0.0
    while waiting or ready:
        while waiting and waiting[0][0] <= clock:
            due, s = heapq.heappop(waiting)
            heapq.heappush(ready, (int(sources[s][1][nxt[s]]), due, s))
        if not ready:
            clock = waiting[0][0]
            continue
        _, _, s = heapq.heappop(ready)
        times, k, start = sources[s][0], nxt[s], clock
        clock += durations[s][k]
        out_time.append(clock), out_source.append(s), out_index.append(k)
        k += 1
        if k < len(times) and sources[s][3][0] == 1:  # an attack tool sleeps its period after each send
            nxt[s] = k
            heapq.heappush(waiting, (max(times[k], start + times[k] - times[k - 1]), s))
            continue
        while k + 1 < len(times) and times[k + 1] <= clock:  # overwritten in the transmit buffer
            k += 1
        if k < len(times):
            nxt[s] = k
            heapq.heappush(waiting, (times[k], s))
    return _collect(sources, np.array(out_time), np.array(out_source), np.array(out_index), config)


def _collect(sources, times, source, index, config: GeneratorConfig) -> Frames:
    ids = np.empty(len(times), np.int64)
    rows = np.empty((len(times), 9), np.int64)
    flags = np.empty(len(times), np.int8)
    for s, (_, src_ids, src_rows, src_flags) in enumerate(sources):
        mask = source == s
        ids[mask], rows[mask], flags[mask] = src_ids[index[mask]], src_rows[index[mask]], src_flags[index[mask]]
    keep = times < config.duration_s
    return Frames(config.start_ts + times[keep], ids[keep], rows[keep, 0], rows[keep, 1:].astype(np.uint8),
                  flags[keep])


def csv_lines(frames: Frames):
    """Car-Hacking CSV rows: ``ts,id,dlc,d0..d{dlc-1},flag`` (the flag column moves with the DLC)."""
    for ts, can_id, dlc, data, flag in zip(frames.ts, frames.can_id, frames.dlc, frames.data, frames.flag):
        payload = "".join(f"{b:02x}," for b in data[:dlc])
        yield f"{ts:.6f},{can_id:04x},{dlc},{payload}{'T' if flag == 1 else 'R'}\n"


def txt_lines(frames: Frames):
    """normal_run_data.txt rows (no label)."""
    for ts, can_id, dlc, data in zip(frames.ts, frames.can_id, frames.dlc, frames.data):
        payload = " ".join(f"{b:02x}" for b in data[:dlc])
        yield f"Timestamp: {ts:.6f}        ID: {can_id:04x}    000    DLC: {dlc}    {payload}\n"


def candump_lines(frames: Frames, interface: str = "can0"):
    """candump ``-L`` rows: ``(ts) can0 123#DEADBEEF``."""
    for ts, can_id, dlc, data in zip(frames.ts, frames.can_id, frames.dlc, frames.data):
        yield f"({ts:.6f}) {interface} {can_id:03X}#{bytes(data[:dlc]).hex().upper()}\n"


WRITERS = {"csv": csv_lines, "txt": txt_lines, "candump": candump_lines}


def write_log(frames: Frames, path: str | Path, fmt: str = "csv") -> Path:
    """Write ``frames`` in ``fmt`` (csv, txt or candump) to ``path`` atomically."""
    from compressor.core.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii") as handle:
            handle.writelines(WRITERS[fmt](frames))
    return path
