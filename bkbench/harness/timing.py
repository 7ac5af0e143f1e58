"""Timing: CUDA events on the GPU, ``perf_counter`` on the CPU, adaptive repetitions, raw samples kept.

Modes (``TimingConfig.mode``):

``cold``   GPU. Before every timed call a buffer larger than the L2 cache is zeroed (the flush runs *outside*
           the start/end events), so each call reads its inputs from HBM — what a kernel sees inside a model.
           This is ``triton.testing.do_bench``'s protocol.
``warm``   GPU. Calls back to back with events around each; inputs may sit in L2.
``graph``  GPU. The call is captured into a CUDA graph (``unroll`` copies per graph, chosen so one replay
           lasts >= ~200 us) and the replays are timed: launch overhead removed. No flush.
``cpu``    CPU. ``time.perf_counter`` around each call.

Protocol of :func:`measure` (all modes):

1. warm-up by time: at least ``min_warmup_calls`` calls and until ``warmup_s`` seconds have passed (the
   caller has already made the first, compiling/autotuning call);
2. timed repetitions in batches; after each batch the 95 % confidence interval of the median (distribution-free,
   from order statistics) is computed and the loop stops when its half-width is <= ``rel_ci`` x median, or
   when the ``budget_s`` wall-clock budget or ``max_reps`` is reached. At least ``min_reps`` samples are taken
   (``min_reps_long`` when one call is so long that ``min_reps`` would blow the budget).
3. every sample is kept (seconds); :func:`summarize` gives median, p20, p80, IQR, mean, std, CI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

MODES = ("cold", "warm", "graph", "cpu")
FLUSH_MIN_BYTES = 256 * 1024 * 1024  # as triton.testing.do_bench
GRAPH_TARGET_S = 200e-6  # one graph replay should last at least this long
GRAPH_MAX_UNROLL = 100


@dataclass(frozen=True)
class TimingConfig:
    """How to time one callable.

    mode: "cold" | "warm" | "graph" (GPU) or "cpu". warmup_s: warm-up duration (seconds) after the first call.
    budget_s: wall-clock budget (seconds) of the timed repetitions. rel_ci: stop when the 95 % CI half-width of
    the median is <= rel_ci * median. min_reps / max_reps: bounds on the number of samples. min_reps_long:
    the floor used instead of min_reps when one call takes longer than budget_s / min_reps.
    min_warmup_calls: warm-up calls even when one call exceeds warmup_s. flush_bytes: L2 flush buffer size
    (default max(256 MiB, 4 x L2)). per_call_hint_s: a measured wall time of one (synchronised) call; with
    min_warmup_calls=0 and a hint >= warmup_s the warm-up is skipped (the caller's earlier calls warmed it).
    """

    mode: str = "cold"
    warmup_s: float = 0.05
    budget_s: float = 1.0
    rel_ci: float = 0.01
    min_reps: int = 10
    max_reps: int = 10_000
    min_reps_long: int = 3
    min_warmup_calls: int = 1
    flush_bytes: int | None = None
    per_call_hint_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {MODES}")
        for name in ("warmup_s", "budget_s", "rel_ci"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.min_reps < 1 or self.max_reps < self.min_reps or self.min_reps_long < 1:
            raise ValueError(
                f"min_reps/max_reps/min_reps_long: need 1 <= min_reps <= max_reps and min_reps_long >= 1, got "
                f"{self.min_reps}/{self.max_reps}/{self.min_reps_long}"
            )


@dataclass(frozen=True)
class Stats:
    """Summary of samples (seconds). ci95: half-width of the 95 % CI of the median (inf when n is too small)."""

    n: int
    median: float
    p20: float
    p80: float
    p25: float
    p75: float
    iqr: float
    mean: float
    std: float
    min: float
    max: float
    ci95: float

    @property
    def rel_ci(self) -> float:
        return self.ci95 / self.median if self.median > 0 else math.inf

    @property
    def cv(self) -> float:
        """Coefficient of variation std / mean."""
        return self.std / self.mean if self.mean > 0 else math.inf


@dataclass
class Timing:
    """The result of :func:`measure`: raw samples (seconds per call) and their statistics."""

    mode: str
    samples: list[float]
    stats: Stats
    converged: bool  # the CI criterion was met (else the budget or max_reps stopped the loop)
    stop: str  # "ci", "budget", "max_reps"
    warmup_calls: int
    warmup_s: float
    measure_s: float  # wall-clock of the timed phase
    unroll: int = 1  # graph mode: calls per replay
    flush_bytes: int = 0  # cold mode: size of the L2 flush buffer
    host_s: float | None = None  # GPU modes: median host (CPU) time to issue one timed call, flush included
    flush_s: float = 0.0  # cold mode: GPU time of one L2 flush (runs between timed calls)
    notes: list[str] = field(default_factory=list)

    @property
    def host_bound(self) -> bool:
        """True when issuing a call takes the CPU about as long as the GPU takes to run it (flush included):
        the events then include waits for the host (the back-to-back cost of the call); ``graph`` mode removes
        them."""
        return self.host_s is not None and self.host_s >= 0.9 * (self.stats.median + self.flush_s)

    @property
    def median(self) -> float:
        return self.stats.median

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stats"] = asdict(self.stats)
        return d


# -- statistics ------------------------------------------------------------------------------------------
def median_ci95(sorted_samples: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95 % confidence interval of the median from order statistics.

    Ranks (1-based) ``n/2 -+ 1.96 sqrt(n)/2`` (normal approximation to the binomial), clipped to [1, n]; with
    fewer than 6 samples the interval is the whole range.
    """
    n = len(sorted_samples)
    if n == 0:
        return (math.nan, math.nan)
    half = 1.96 * math.sqrt(n) / 2.0
    lo = max(1, int(math.floor(n / 2.0 - half)))
    hi = min(n, int(math.ceil(n / 2.0 + half + 1)))
    return (float(sorted_samples[lo - 1]), float(sorted_samples[hi - 1]))


def summarize(samples: Sequence[float]) -> Stats:
    """Median, p20, p80, quartiles, IQR, mean, std (ddof=1), min, max and CI half-width of the median."""
    if len(samples) == 0:
        raise ValueError("samples: need at least one sample to summarize")
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    p20, p25, p50, p75, p80 = (float(v) for v in np.percentile(x, [20, 25, 50, 75, 80]))
    lo, hi = median_ci95(x)
    ci = (hi - lo) / 2.0 if n >= 6 else math.inf
    return Stats(
        n=n, median=p50, p20=p20, p80=p80, p25=p25, p75=p75, iqr=p75 - p25, mean=float(x.mean()),
        std=float(x.std(ddof=1)) if n > 1 else 0.0, min=float(x[0]), max=float(x[-1]), ci95=ci,
    )


# -- the adaptive loop -----------------------------------------------------------------------------------
def _adaptive(
    sample_batch: Callable[[int], list[float]], per_sample_wall: float, cfg: TimingConfig
) -> tuple[list[float], str, float]:
    """Draw batches of samples until the CI, the budget or max_reps stops it. Returns (samples, stop, wall)."""
    t0 = time.perf_counter()
    per = max(per_sample_wall, 1e-7)
    floor = cfg.min_reps if cfg.min_reps * per <= cfg.budget_s else min(cfg.min_reps, cfg.min_reps_long)
    samples: list[float] = []
    stop = "max_reps"
    while len(samples) < cfg.max_reps:
        elapsed = time.perf_counter() - t0
        if len(samples) >= floor:
            st = summarize(samples)
            if st.rel_ci <= cfg.rel_ci:
                stop = "ci"
                break
            if elapsed >= cfg.budget_s:
                stop = "budget"
                break
        if len(samples) < floor:
            want = floor - len(samples)
        else:
            left = max(cfg.budget_s - elapsed, 0.0)
            want = max(1, min(max(len(samples) // 2, 5), int(left / per) + 1))
        want = min(want, cfg.max_reps - len(samples))
        b0 = time.perf_counter()
        samples.extend(sample_batch(want))
        per = max((time.perf_counter() - b0) / want, 1e-7)
    return samples, stop, time.perf_counter() - t0


def _finish(mode: str, samples: list[float], stop: str, wall: float, warm_calls: int, warm_s: float,
            **extra: Any) -> Timing:
    return Timing(mode=mode, samples=samples, stats=summarize(samples), converged=stop == "ci", stop=stop,
                  warmup_calls=warm_calls, warmup_s=warm_s, measure_s=wall, **extra)


# -- CPU -----------------------------------------------------------------------------------------------------
def time_cpu(fn: Callable[[], Any], cfg: TimingConfig | None = None) -> Timing:
    """Time ``fn`` on the CPU with ``perf_counter`` (cfg.mode is ignored; the result's mode is "cpu")."""
    cfg = cfg or TimingConfig(mode="cpu")
    hint = cfg.per_call_hint_s
    calls, t0 = 0, time.perf_counter()
    if hint is not None and cfg.min_warmup_calls == 0 and hint >= cfg.warmup_s:
        warm_s, per = 0.0, float(hint)
    else:
        while calls < max(cfg.min_warmup_calls, 1) or time.perf_counter() - t0 < cfg.warmup_s:
            fn()
            calls += 1
        warm_s = time.perf_counter() - t0
        per = warm_s / calls

    def batch(n: int) -> list[float]:
        out = []
        for _ in range(n):
            s = time.perf_counter()
            fn()
            out.append(time.perf_counter() - s)
        return out

    samples, stop, wall = _adaptive(batch, per, cfg)
    return _finish("cpu", samples, stop, wall, calls, warm_s)


# -- CUDA ------------------------------------------------------------------------------------------------------
_FLUSH: dict[tuple[int, int], torch.Tensor] = {}


def l2_bytes(device: torch.device | int | None = None) -> int:
    """L2 cache size of the CUDA device (bytes); 50 MiB if torch does not report it."""
    props = torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device())
    return int(getattr(props, "L2_cache_size", 0) or 50 * 1024 * 1024)


def flush_buffer(device: torch.device | int | None = None, nbytes: int | None = None) -> torch.Tensor:
    """A cached int8 buffer of max(256 MiB, 4 x L2) bytes (or ``nbytes``); zeroing it evicts the L2 cache."""
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    size = int(nbytes or max(FLUSH_MIN_BYTES, 4 * l2_bytes(idx)))
    if size <= l2_bytes(idx):
        raise ValueError(f"flush_bytes: {size} is not larger than the L2 cache ({l2_bytes(idx)} bytes)")
    key = (idx, size)
    if key not in _FLUSH:
        _FLUSH[key] = torch.empty(size, dtype=torch.int8, device=torch.device("cuda", idx))
    return _FLUSH[key]


QUEUE_S = 2e-3  # GPU work (untimed calls) kept queued ahead of each batch of timed calls
QUEUE_MAX_CALLS = 64
HOST_SAMPLES = 32  # host issue time is taken from the first calls of each batch only


_FLUSH_S: dict[int, float] = {}


def flush_seconds(flush: torch.Tensor) -> float:
    """GPU time of one ``flush.zero_()`` (median of 5, cached per buffer)."""
    key = flush.data_ptr()
    if key not in _FLUSH_S:
        times = []
        for _ in range(5):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            flush.zero_()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) * 1e-3)
        _FLUSH_S[key] = float(np.median(times))
    return _FLUSH_S[key]


def _queue_calls(per: float) -> int:
    """Untimed calls to queue before each batch so the GPU is busy when the first timed call starts (0 for
    calls longer than QUEUE_S: their start-of-batch gap is negligible)."""
    return 0 if per >= QUEUE_S else int(min(QUEUE_MAX_CALLS, math.ceil(QUEUE_S / max(per, 1e-7))))


def _cuda_warmup(fn: Callable[[], Any], cfg: TimingConfig, flush: torch.Tensor | None) -> tuple[int, float, float]:
    """Warm-up by time; returns (calls, seconds, wall seconds per flush+call)."""
    hint = cfg.per_call_hint_s
    if hint is not None and cfg.min_warmup_calls == 0 and hint >= cfg.warmup_s:
        return 0, 0.0, float(hint)
    torch.cuda.synchronize()
    calls, t0 = 0, time.perf_counter()
    while calls < max(cfg.min_warmup_calls, 1) or time.perf_counter() - t0 < cfg.warmup_s:
        if flush is not None:
            flush.zero_()
        fn()
        torch.cuda.synchronize()
        calls += 1
    warm_s = time.perf_counter() - t0
    return calls, warm_s, warm_s / calls


def time_cuda(fn: Callable[[], Any], cfg: TimingConfig | None = None) -> Timing:
    """Time ``fn`` (which launches work on the current CUDA stream) with CUDA events; cfg.mode cold/warm/graph."""
    cfg = cfg or TimingConfig()
    if cfg.mode == "cpu":
        raise ValueError("mode: 'cpu' is not a CUDA timing mode; use time_cpu or cold/warm/graph")
    if cfg.mode == "graph":
        return _time_graph(fn, cfg)
    flush = flush_buffer(nbytes=cfg.flush_bytes) if cfg.mode == "cold" else None
    calls, warm_s, per = _cuda_warmup(fn, cfg, flush)
    queue = _queue_calls(per)
    host: list[float] = []

    def call() -> None:
        if flush is not None:
            flush.zero_()
        fn()

    def batch(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for _ in range(queue):  # keep the GPU busy while the first timed calls are issued
            call()
        for i in range(n):
            h0 = time.perf_counter()
            if flush is not None:
                flush.zero_()
            starts[i].record()
            fn()
            ends[i].record()
            if i < HOST_SAMPLES:  # later in a long batch the launch queue may be full and the CPU waits
                host.append(time.perf_counter() - h0)
        ends[-1].synchronize()
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]

    samples, stop, wall = _adaptive(batch, per, cfg)
    timing = _finish(cfg.mode, samples, stop, wall, calls, warm_s,
                     flush_bytes=flush.numel() if flush is not None else 0, host_s=float(np.median(host)),
                     flush_s=flush_seconds(flush) if flush is not None else 0.0)
    if timing.host_bound:
        timing.notes.append("host-bound: issuing a call takes the CPU about as long as the GPU runs it")
    return timing


def _time_graph(fn: Callable[[], Any], cfg: TimingConfig) -> Timing:
    calls, warm_s, per = _cuda_warmup(fn, cfg, None)
    unroll = int(min(GRAPH_MAX_UNROLL, max(1, math.ceil(GRAPH_TARGET_S / max(per, 1e-9)))))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm the side stream (allocator pools, lazy init) before capture
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(unroll):
            fn()
    graph.replay()
    torch.cuda.synchronize()

    def batch(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            starts[i].record()
            graph.replay()
            ends[i].record()
        ends[-1].synchronize()
        return [s.elapsed_time(e) * 1e-3 / unroll for s, e in zip(starts, ends)]

    try:
        samples, stop, wall = _adaptive(batch, per * unroll, cfg)
    finally:
        torch.cuda.synchronize()
    return _finish("graph", samples, stop, wall, calls, warm_s, unroll=unroll)


def measure(fn: Callable[[], Any], cfg: TimingConfig, device: str = "cuda") -> Timing:
    """Time ``fn`` on ``device`` ("cpu" or "cuda") following ``cfg`` (on the CPU every mode becomes "cpu")."""
    if device == "cpu":
        return time_cpu(fn, cfg)
    if device != "cuda":
        raise ValueError(f"device: {device!r} is not 'cpu' or 'cuda'")
    if not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch.cuda.is_available() is False; use 'cpu'")
    return time_cuda(fn, cfg)


# -- copy bandwidth ---------------------------------------------------------------------------------------------
def copy_bandwidth(device: str = "cuda", nbytes: int = 256 * 1024 * 1024, budget_s: float = 0.5) -> float:
    """Measured device-to-device copy bandwidth in GB/s (1e9 bytes/s), counting bytes read + written.

    ``dst.copy_(src)`` of ``nbytes`` (default 256 MiB, as the anchors' 2954 GB/s on an H100), timed warm
    (the buffers are far larger than L2), median of the samples. On the CPU a 64 MiB buffer is used by default.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch.cuda.is_available() is False; use 'cpu'")
    if device == "cpu" and nbytes == 256 * 1024 * 1024:
        nbytes = 64 * 1024 * 1024
    n = nbytes // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    mode = "cpu" if device == "cpu" else "warm"
    cfg = TimingConfig(mode=mode, warmup_s=0.05, budget_s=budget_s, min_reps=10, rel_ci=0.005)
    timing = measure(lambda: dst.copy_(src), cfg, device)
    return float(2.0 * n * 4 / timing.median / 1e9)
