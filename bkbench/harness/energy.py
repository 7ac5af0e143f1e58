"""Energy per call from hardware energy counters: NVML on NVIDIA GPUs, RAPL on the CPU when readable.

Protocol of :func:`measure_energy` (the anchors' method, as Zeus does it):

1. settle ``settle_s`` with the device idle, then read the counter over ``idle_s`` seconds: idle power;
2. warm-up: the call looped back to back for ``warmup_s`` (>= 1 s) so clocks, temperature and NVML's
   averaging windows are at steady state when the first window opens;
3. ``trials`` (>= 4) windows of >= ``window_s`` seconds (>= 5 s; the counter ticks every ~100 ms, so the
   quantisation error is <= ~2-4 %): device sync, counter read, the call looped back to back (synchronising
   every ~``chunk_s``), device sync, counter read. J per call = delta E / calls; dynamic (idle-subtracted)
   J per call = (delta E - P_idle x delta t) / calls; per element and per token divide further.
4. a sampler thread reads instantaneous power every ``sample_period_s`` (``NVML_FI_DEV_POWER_INSTANT``
   where the driver has it, else ``nvmlDeviceGetPowerUsage``) and, every ``telemetry_period_s``, SM clock,
   temperature, enforced power limit and clock-event (throttle) reasons; each trial logs them, and a trial
   whose reasons include a software power cap or the hardware power brake is flagged ``power_capped``.
   The instant-power integral over each window is kept next to the counter's energy (a cross-check).

Nothing here changes a setting of the card (clocks, power limits): every NVML call used is a read.
Without NVML (or RAPL on the CPU) the result says ``unavailable: <reason>``: never a made-up number.
"""

from __future__ import annotations

import glob
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
POWER_CAP_BITS = 0x4 | 0x80
THERMAL_BITS = 0x20 | 0x40


class EnergyUnavailable(RuntimeError):
    """No energy counter can be read here; ``str(exc)`` says why."""


@dataclass(frozen=True)
class EnergyConfig:
    """window_s: minimum length of one measured window (s); trials: number of windows; idle_s: idle-power
    measurement length; warmup_s: back-to-back warm-up before the first window; settle_s: idle wait before
    the idle measurement; chunk_s: calls are issued in chunks of about this length, with a device sync after
    each (so the window end is known); sample_period_s / telemetry_period_s: sampler periods."""

    window_s: float = 5.0
    trials: int = 4
    idle_s: float = 2.0
    warmup_s: float = 1.0
    settle_s: float = 1.0
    chunk_s: float = 0.2
    sample_period_s: float = 0.02
    telemetry_period_s: float = 0.25

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials: must be >= 1, got {self.trials}")
        if self.window_s <= 0 or self.idle_s <= 0:
            raise ValueError(f"window_s/idle_s: must be > 0, got {self.window_s}/{self.idle_s}")


# -- counters ----------------------------------------------------------------------------------------------
def _nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise EnergyUnavailable("nvidia-ml-py (pynvml) is not installed") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        raise EnergyUnavailable(f"NVML init failed: {type(exc).__name__}: {exc}") from exc
    return pynvml


def nvml_handle(device_index: int | None = None) -> Any:
    """NVML handle of the torch CUDA device (matched by UUID, so CUDA_VISIBLE_DEVICES is respected)."""
    nv = _nvml()
    idx = torch.cuda.current_device() if device_index is None else device_index
    props = torch.cuda.get_device_properties(idx)
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        for cand in (text if text.startswith("GPU-") else f"GPU-{text}", text):
            try:
                return nv.nvmlDeviceGetHandleByUUID(cand)
            except Exception:
                continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    phys = int(ids[idx]) if ids and ids[idx].isdigit() else idx
    return nv.nvmlDeviceGetHandleByIndex(phys)


class NvmlCounter:
    """NVML total-energy counter (mJ since driver load) of one GPU, plus instant power and telemetry."""

    name = "nvml"

    def __init__(self, device_index: int | None = None) -> None:
        self.nv = _nvml()
        self.handle = nvml_handle(device_index)
        try:
            self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:
            raise EnergyUnavailable(f"NVML energy counter not supported on this GPU: {exc}") from exc
        self.power_source = "instant"
        if self._instant_w() is None:
            self.power_source = "average"

    def read_j(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    def _instant_w(self) -> float | None:
        fid = getattr(self.nv, "NVML_FI_DEV_POWER_INSTANT", None)
        if fid is None:
            return None
        try:
            val = self.nv.nvmlDeviceGetFieldValues(self.handle, [fid])[0]
        except Exception:
            return None
        if getattr(val, "nvmlReturn", 1) != 0:
            return None
        field_name = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(
            int(getattr(val, "valueType", 1)), "uiVal"
        )
        return float(getattr(val.value, field_name)) / 1000.0

    def power_w(self) -> float:
        """Instantaneous board power (W) where the driver offers it, else NVML's averaged power."""
        if self.power_source == "instant":
            w = self._instant_w()
            if w is not None:
                return w
        return self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def telemetry(self) -> dict[str, Any]:
        nv, h = self.nv, self.handle
        out: dict[str, Any] = {}
        for key, call in (
            ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            ("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("power_limit_w", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
            ("reasons", lambda: _reasons(nv, h)),
        ):
            try:
                out[key] = call()
            except Exception:
                out[key] = None
        return out

    def sync(self) -> None:
        torch.cuda.synchronize()


def _reasons(nv: Any, h: Any) -> int:
    fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(fn(h))


def reason_names(bits: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if bits & bit]


class RaplCounter:
    """Intel/AMD RAPL package energy via /sys/class/powercap (sum over packages), with wrap-around handling."""

    name = "rapl"
    power_source = "none"

    def __init__(self) -> None:
        zones = sorted(p for p in glob.glob("/sys/class/powercap/intel-rapl:*") if p.count(":") == 1)
        if not zones:
            raise EnergyUnavailable("no RAPL zones under /sys/class/powercap (not an Intel/AMD RAPL host, or a VM)")
        self.zones = []
        for z in zones:
            try:
                with open(os.path.join(z, "energy_uj")) as f:
                    int(f.read())
                with open(os.path.join(z, "max_energy_range_uj")) as f:
                    rng = int(f.read())
            except (OSError, ValueError) as exc:
                raise EnergyUnavailable(
                    f"RAPL counter {z}/energy_uj is not readable ({exc}); it is root-only on Linux >= 5.10"
                ) from exc
            self.zones.append((z, rng))
        self._last = [self._raw(z) for z, _ in self.zones]
        self._acc = 0.0

    @staticmethod
    def _raw(zone: str) -> int:
        with open(os.path.join(zone, "energy_uj")) as f:
            return int(f.read())

    def read_j(self) -> float:
        for i, (z, rng) in enumerate(self.zones):
            now = self._raw(z)
            delta = now - self._last[i]
            if delta < 0:
                delta += rng
            self._acc += delta / 1e6
            self._last[i] = now
        return self._acc

    def power_w(self) -> float:  # pragma: no cover - RAPL has no instant power
        return math.nan

    def telemetry(self) -> dict[str, Any]:
        return {}

    def sync(self) -> None:
        return None


def open_counter(device: str) -> NvmlCounter | RaplCounter:
    """The energy counter for ``device`` ("cuda": NVML, "cpu": RAPL); raises EnergyUnavailable with the reason."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise EnergyUnavailable("no CUDA device")
        return NvmlCounter()
    if device == "cpu":
        return RaplCounter()
    raise ValueError(f"device: {device!r} is not 'cpu' or 'cuda'")


# -- sampler ------------------------------------------------------------------------------------------------
class Sampler:
    """Background thread: instant power every ``period`` s and telemetry every ``tele_period`` s."""

    def __init__(self, counter: Any, period: float, tele_period: float) -> None:
        self.counter = counter
        self.period = period
        self.tele_period = tele_period
        self.power: list[tuple[float, float]] = []
        self.tele: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        next_tele = 0.0
        has_power = self.counter.power_source != "none"
        while not self._stop.is_set():
            t = time.perf_counter()
            if has_power:
                try:
                    self.power.append((t, self.counter.power_w()))
                except Exception:
                    pass
            if t >= next_tele:
                self.tele.append((t, self.counter.telemetry()))
                next_tele = t + self.tele_period
            self._stop.wait(max(0.0, self.period - (time.perf_counter() - t)))

    def integral_j(self, t0: float, t1: float) -> float | None:
        """Trapezoid integral of the sampled power over [t0, t1] (J), or None without samples there."""
        pts = list(self.power)
        if len(pts) < 2:
            return None
        ts = np.array([p[0] for p in pts])
        ps = np.array([p[1] for p in pts])
        inside = (ts > t0) & (ts < t1)
        if inside.sum() < 2:
            return None
        grid = np.concatenate([[t0], ts[inside], [t1]])
        vals = np.interp(grid, ts, ps)
        return float(np.sum((vals[1:] + vals[:-1]) * 0.5 * np.diff(grid)))

    def telemetry_between(self, t0: float, t1: float) -> dict[str, Any]:
        rows = [d for t, d in self.tele if t0 <= t <= t1]
        out: dict[str, Any] = {"telemetry_samples": len(rows)}

        def col(key: str) -> list[float]:
            return [float(r[key]) for r in rows if r.get(key) is not None]

        sm = col("sm_clock_mhz")
        if sm:
            out.update(sm_clock_mhz_mean=float(np.mean(sm)), sm_clock_mhz_min=min(sm), sm_clock_mhz_max=max(sm))
        mem = col("mem_clock_mhz")
        if mem:
            out["mem_clock_mhz_mean"] = float(np.mean(mem))
        temp = col("temp_c")
        if temp:
            out.update(temp_c_max=max(temp), temp_c_mean=float(np.mean(temp)))
        lim = col("power_limit_w")
        if lim:
            out["power_limit_w"] = min(lim)
        bits = 0
        for r in rows:
            bits |= int(r.get("reasons") or 0)
        out["throttle_reasons"] = reason_names(bits)
        out["throttle_bits"] = bits
        out["power_capped"] = bool(bits & POWER_CAP_BITS)
        out["thermal_throttled"] = bool(bits & THERMAL_BITS)
        return out


# -- result ---------------------------------------------------------------------------------------------------
@dataclass
class Trial:
    calls: int
    seconds: float
    energy_j: float
    power_w: float
    j_per_call: float
    dynamic_j_per_call: float
    integral_j: float | None = None  # instant-power integral over the same window
    counter_vs_integral: float | None = None  # (energy_j - integral_j) / energy_j
    telemetry: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnergyResult:
    """``status`` is "ok" or "unavailable: <reason>"; every number is None unless status is "ok"."""

    status: str
    source: str = ""
    j_per_call: float | None = None
    dynamic_j_per_call: float | None = None
    j_per_element: float | None = None
    dynamic_j_per_element: float | None = None
    j_per_token: float | None = None
    power_avg_w: float | None = None
    power_idle_w: float | None = None
    spread: float | None = None  # (max - min) / median of the trials' J per call
    power_capped_trials: int = 0
    power_source: str = ""
    trials: list[Trial] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def columns(self) -> dict[str, Any]:
        """The results-store columns."""
        return {
            "energy_j_per_call": self.j_per_call,
            "energy_dynamic_j_per_call": self.dynamic_j_per_call,
            "energy_j_per_element": self.j_per_element,
            "power_avg_w": self.power_avg_w,
            "power_idle_w": self.power_idle_w,
            "energy_status": self.status,
            "energy_json": self.as_dict(),
        }


def unavailable(reason: str) -> EnergyResult:
    return EnergyResult(status=f"unavailable: {reason}")


def _loop(fn: Callable[[], Any], counter: Any, seconds: float, chunk: int) -> tuple[int, float, float, float, float]:
    """Call ``fn`` back to back for >= ``seconds``; returns (calls, t0, t1, e0, e1) with syncs at both ends."""
    counter.sync()
    e0, t0 = counter.read_j(), time.perf_counter()
    calls = 0
    while True:
        for _ in range(chunk):
            fn()
        calls += chunk
        counter.sync()
        if time.perf_counter() - t0 >= seconds:
            break
    t1 = time.perf_counter()
    e1 = counter.read_j()
    return calls, t0, t1, e0, e1


def measure_energy(
    fn: Callable[[], Any],
    *,
    device: str,
    per_call_s: float,
    elements: int,
    tokens: int | None = None,
    cfg: EnergyConfig | None = None,
    counter: Any = None,
) -> EnergyResult:
    """Energy of one call of ``fn`` on ``device`` (see the module docstring). ``per_call_s`` (e.g. the timed
    median) sizes the chunks; ``elements``/``tokens`` give the per-element and per-token figures."""
    cfg = cfg or EnergyConfig()
    try:
        counter = counter or open_counter(device)
    except EnergyUnavailable as exc:
        return unavailable(str(exc))
    chunk = max(1, int(cfg.chunk_s / max(per_call_s, 1e-7)))
    with Sampler(counter, cfg.sample_period_s, cfg.telemetry_period_s) as sampler:
        counter.sync()
        time.sleep(cfg.settle_s)
        e0, t0 = counter.read_j(), time.perf_counter()
        time.sleep(cfg.idle_s)
        e1, t1 = counter.read_j(), time.perf_counter()
        idle_w = (e1 - e0) / (t1 - t0)
        _loop(fn, counter, cfg.warmup_s, chunk)
        trials = []
        for _ in range(cfg.trials):
            calls, a, b, ea, eb = _loop(fn, counter, cfg.window_s, chunk)
            secs, joules = b - a, eb - ea
            integral = sampler.integral_j(a, b)
            trials.append(Trial(
                calls=calls, seconds=secs, energy_j=joules, power_w=joules / secs, j_per_call=joules / calls,
                dynamic_j_per_call=(joules - idle_w * secs) / calls, integral_j=integral,
                counter_vs_integral=None if integral is None or joules == 0 else (joules - integral) / joules,
                telemetry=sampler.telemetry_between(a, b),
            ))
    per_call = [t.j_per_call for t in trials]
    med = float(np.median(per_call))
    dyn = float(np.median([t.dynamic_j_per_call for t in trials]))
    return EnergyResult(
        status="ok",
        source=counter.name,
        j_per_call=med,
        dynamic_j_per_call=dyn,
        j_per_element=med / elements if elements else None,
        dynamic_j_per_element=dyn / elements if elements else None,
        j_per_token=med / tokens if tokens else None,
        power_avg_w=float(np.median([t.power_w for t in trials])),
        power_idle_w=idle_w,
        spread=(max(per_call) - min(per_call)) / med if med else None,
        power_capped_trials=sum(bool(t.telemetry.get("power_capped")) for t in trials),
        power_source=counter.power_source,
        trials=trials,
        config=asdict(cfg),
    )
