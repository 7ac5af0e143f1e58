"""Autotuning of ``triton_fused`` launch configurations, with a persistent cache and committed per-GPU tables.

Key of a tuned entry: (GPU label, input dtype, coupling kind, shape bucket); the GPU label is its name, SM count,
memory and compute capability (``bkbench.kernels.bk._triton_fused_tables.GpuId``). The shape bucket is
``N<2^ceil(log2 N)>_E<2^(2*ceil(log2(B*N)/2))>`` — chain length decides the tile structure (one chunk per chain
or halo chunks), total work decides occupancy. Lookup order (``bkbench.kernels.bk._triton_fused_tables.lookup``):
the user cache (``platformdirs.user_cache_dir("bkbench")/tuned_triton_fused.json``, or ``$BKBENCH_CACHE_DIR``), the
packaged table of this GPU (``kernels/bk/data/triton_fused_<gpu>.json``), the table of the nearest known GPU, then
the built-in defaults (``FusedConfig()``, ``BwdConfig()``). Nothing is searched at call time unless the user opts
in to tuning on first use (:mod:`bkbench.harness.first_use_tuning`).

:func:`tune` measures a staged search (forward: tile/warps first at L=16, then segment length and first-pass
length around the winner; backward: a small grid), checks each winner against the float64 reference, and
stores it. :class:`Tuner` takes a deadline (the search stops measuring when it passes) and configs to measure
first. :func:`exhaustive` measures the whole space (for the "within 5 % of exhaustive" check).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bkbench.harness.reference import pivot_sensitivity, quotient_pivots
from bkbench.kernels.bk import _triton_fused_tables as tables
from bkbench.kernels.bk._triton_fused_config import FusedConfig
from bkbench.kernels.bk._triton_fused_tables import CACHE_NAME, SCHEMA, bucket, cache_path  # noqa: F401  (re-exported)

# forward search space: (seg, warps) tiles x (L, M1) segment shapes x output store modes x two-tile mode;
# H = max(1, 16 // L) (a halo of at least 16 positions); maxpass 4. Store modes: FusedConfig.store (1 per-column
# stores, 0 the joined tile, 2 column pairs). seq: FusedConfig.seq (2: chains of one to two tiles run as two
# tiles in sequence; for other N it changes nothing; configs that resolve to the same launch are measured
# once: see distinct()). The segment shapes L 32 / M1 16 and L 16 / M1 12 and seq 2 are what the H200 sweep found
# fastest where it beat the default (N = 1024 with per-position and with scalar couplings, 8 x 65536): the tuner
# searches them, so a GPU without a table (bkbench tune, tuning on first use) can find them too.
FWD_TILES = ((32, 1), (64, 1), (16, 1), (64, 2), (128, 4), (256, 4))
FWD_SEGMENTS = ((16, 16), (16, 8), (8, 8), (8, 4), (32, 16), (16, 12))
FWD_MAXPASS = (4,)
FWD_STORES = (0, 2)
FWD_SEQ = (1, 2)
FWD_START = (16, 16, 4, 0, 1)  # (L, M1, maxpass, store, seq) of stage 1
BWD_SPACE = ((32, 8, 1), (32, 16, 1), (64, 8, 1), (64, 8, 2), (128, 8, 4), (256, 8, 4))  # (seg, L, warps)
BWD_LIN = (2, 1)  # BwdConfig.lin_exact: two segments composed (bounded), or exact affine scans. 0 (one-segment
# halo) is not searched: its bound fails at L 8 for every chain of the tuning inputs (all go to the exact kernel)


def gpu_name(device: torch.device | str | None = None) -> str:
    """The GPU's table label (name, SM count, memory, compute capability), or ``cpu-interpreter`` off CUDA."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        dev = torch.device(device) if device is not None else torch.device("cuda")
        return tables.gpu_id(dev.index).label()
    return "cpu-interpreter"


def key(gpu: str, dtype: torch.dtype, uniform: bool, batch: int, n: int) -> str:
    """User-cache key: ``<gpu label>|dtype|scalar or k|bucket``."""
    return f"{gpu}|{tables.entry_key(dtype, uniform, batch, n)}"


def load_cache() -> dict[str, Any]:
    """The user cache's entries (keys as :func:`key`)."""
    return tables.user_cache()


def packaged_table(gpu: str) -> dict[str, Any]:
    """Entries of the packaged table that applies to the current GPU when ``gpu`` is its label (exactly or the
    nearest known GPU), keyed as :func:`key`; {} for another label or off CUDA."""
    if gpu == "cpu-interpreter" or not torch.cuda.is_available() or gpu != gpu_name("cuda"):
        return {}
    found = tables.table_for(tables.gpu_id())
    return {f"{gpu}|{k}": v for k, v in found[2].items()} if found else {}


def save_entry(k: str, entry: dict[str, Any], path: Path | None = None) -> Path:
    """Merge one entry into the JSON user cache (atomic replace)."""
    path = path or cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = tables.read_json(path).get("entries", {})
    entries[k] = entry
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"schema": SCHEMA, "entries": entries}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    tables.clear_memo()
    return path


def lookup(a: torch.Tensor, k: torch.Tensor) -> tuple[Any, Any]:
    """(FusedConfig, BwdConfig) for a problem in the registry calling convention (``tables.lookup``)."""
    from bkbench.registry import is_uniform

    found = tables.lookup(a.device, a.dtype, is_uniform(k), a.shape[0], a.shape[1])
    return found.fwd, found.bwd


def clear_memo() -> None:
    tables.clear_memo()


# --------------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------------


def time_ms(fn: Callable[[], Any], budget_s: float = 0.25, device: str = "cuda") -> float:
    """Median milliseconds per call on ``device`` ("cuda": L2 flushed before every call; "cpu": the
    interpreter's wall time), by bkbench.harness.timing if present, else do_bench."""
    try:
        from bkbench.harness.timing import TimingConfig, measure

        t = measure(fn, TimingConfig(mode="cold", warmup_s=0.02, budget_s=budget_s, rel_ci=0.01, min_reps=10),
                    device)
        return float(t.median * 1e3)
    except ImportError:
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=10, rep=int(budget_s * 1000), return_mode="median"))


def _fcfg(seg: int, warps: int, L: int, m1: int, maxpass: int, store: int, seq: int) -> dict[str, int]:
    """A full ``FusedConfig`` dict (every field, so configs compare equal to ``FusedConfig().to_dict()``)."""
    return FusedConfig(seg=seg, L=L, H=max(1, 16 // L), M1=m1, warps=warps, stages=1, maxpass=maxpass,
                       store=store, seq=seq).to_dict()


def fwd_space() -> list[dict[str, int]]:
    """Every forward config the tuner may choose (the exhaustive sweep's space)."""
    return [_fcfg(seg, w, L, m1, mp, st, sq) for seg, w in FWD_TILES for L, m1 in FWD_SEGMENTS for mp in FWD_MAXPASS
            for st in FWD_STORES for sq in FWD_SEQ]


def launch_of(cfg: dict[str, int], batch: int, n: int) -> Any:
    """What ``cfg`` launches for a (batch, n) problem (its resolved plan): configs with the same launch are
    the same measurement."""
    from bkbench.kernels.bk import triton_fused as tf

    return tf.plan(tf.FusedConfig.from_dict(cfg), batch, n)


def distinct(configs: Iterable[dict[str, int]], batch: int, n: int) -> list[dict[str, int]]:
    """``configs`` less those that launch the same kernel as an earlier one for this (batch, n)."""
    seen = set()
    out = []
    for c in configs:
        p = launch_of(c, batch, n)
        if p not in seen:
            seen.add(p)
            out.append(c)
    return out


def time_of(cfg: dict[str, int], results: dict[str, float], batch: int, n: int) -> float:
    """The time in ``results`` (config JSON -> ms) of the config that launches what ``cfg`` launches for this
    (batch, n); inf when none does (e.g. ``cfg`` from a tuner entry, ``results`` from :func:`exhaustive`, which
    keeps one config per launch)."""
    same = launch_of(cfg, batch, n)
    return next((ms for kk, ms in results.items() if launch_of(json.loads(kk), batch, n) == same), math.inf)


def bwd_space() -> list[dict[str, int]]:
    """Every backward config the tuner measures, as full ``BwdConfig`` dicts (so the default is found in it)."""
    from bkbench.kernels.bk.triton_fused import BwdConfig

    return [BwdConfig(seg=seg, L=L, H=max(1, 16 // L), M1=L, warps=w, stages=1, maxpass=4, lin_exact=lin).to_dict()
            for seg, L, w in BWD_SPACE for lin in BWD_LIN]


def stage1(prob: TuneProblem | None = None) -> list[dict[str, int]]:
    """Tuner stage 1: every tile at the start segment shape."""
    L, m1, mp, st, sq = FWD_START
    return [_fcfg(seg, w, L, m1, mp, st, sq) for seg, w in FWD_TILES]


def stage2(best: dict[str, int]) -> list[dict[str, int]]:
    """Tuner stage 2: every segment shape, pass limit and store mode on the best tile of stage 1."""
    return [c for c in fwd_space() if (c["seg"], c["warps"]) == (best["seg"], best["warps"])
            and c not in stage1()]


@dataclass
class TuneProblem:
    """A tuning target: shape, dtype, coupling kind (inputs are the Laplacian + 0.5 randn at z = 1j)."""

    batch: int
    n: int
    dtype: torch.dtype = torch.float32
    uniform: bool = False
    device: str = "cuda"
    extra: dict[str, Any] = field(default_factory=dict)

    def inputs(self, batch: int | None = None, seed: int = 0, random: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, k, z) in the registry calling convention; ``random`` False: a = -2 made on the device (no host
        generator: for a launch whose values do not matter, e.g. compiling)."""
        b = batch or self.batch
        if random:
            gen = torch.Generator().manual_seed(seed)
            a = (-2.0 + 0.5 * torch.randn(b, self.n, generator=gen)).to(self.dtype).to(self.device)
        else:
            a = torch.full((b, self.n), -2.0, dtype=self.dtype, device=self.device)
        if self.uniform:
            k = torch.ones((), dtype=self.dtype, device=self.device).expand(b, max(self.n - 1, 0))
        else:
            k = torch.ones(b, max(self.n - 1, 0), dtype=self.dtype, device=self.device)
        z = torch.full((b,), 1j, dtype=torch.complex64, device=self.device)
        return a, k, z


def _check(cfg: Any, prob: TuneProblem, bwd: bool = False) -> float:
    """Relative error (max-abs / max-abs) of ``cfg`` on 4 chains of ``prob`` against float64 references:
    G from the pivot form, or (``bwd``) S_j = sum_i w_i G_ij G_ji from the float64 F/R recurrences."""
    from bkbench.kernels.bk import triton_fused as tf

    b = min(prob.batch, 4)
    a, k, z = prob.inputs(batch=b, seed=1)
    a64 = a.double().cpu().numpy()
    k64 = (k.double().cpu().numpy() if not prob.uniform
           else np.full((b, max(prob.n - 1, 0)), float(k.flatten()[0]) if k.numel() else 0.0))
    z64 = z.cpu().numpy().astype(np.complex128)
    alpha = (a64 - z64[:, None]).T.copy()  # (N, B)
    k_nb = k64.T.astype(np.complex128)
    if not bwd:
        d, e = quotient_pivots(alpha, k_nb)
        ref = (1.0 / (d + e - alpha)).T
        g = tf.forward(a, k, z, config=cfg).cpu().numpy().astype(np.complex128)
        if not np.isfinite(g).all():
            return math.inf
        return float(np.abs(g - ref).max() / np.abs(ref).max())
    gen = torch.Generator().manual_seed(7)
    go = torch.complex(torch.randn(b, prob.n, generator=gen), torch.randn(b, prob.n, generator=gen))
    w = go.numpy().astype(np.complex128).conj()
    _, s_nb = pivot_sensitivity(alpha, k_nb, w.T.copy())
    sref = s_nb.T
    g32 = tf.forward(a, k, z, config=tf.FusedConfig())
    s = tf.vjp(a, k, z, g32, go.to(torch.complex64).to(a.device), need_s=True, config=cfg)
    s = s.cpu().numpy().astype(np.complex128)
    if not np.isfinite(s).all():
        return math.inf
    return float(np.abs(s - sref).max() / np.abs(sref).max())


def measure_fwd(cfg_dict: dict[str, int], prob: TuneProblem, budget_s: float = 0.25,
                inputs: tuple[torch.Tensor, ...] | None = None) -> float:
    from bkbench.kernels.bk import triton_fused as tf

    a, k, z = inputs or prob.inputs()
    cfg = tf.FusedConfig.from_dict(cfg_dict)
    tf.forward(a, k, z, config=cfg)  # compile
    return time_ms(lambda: tf.forward(a, k, z, config=cfg), budget_s, a.device.type)


def measure_bwd(cfg_dict: dict[str, int], prob: TuneProblem, budget_s: float = 0.25,
                inputs: tuple[torch.Tensor, ...] | None = None) -> float:
    from bkbench.kernels.bk import triton_fused as tf

    a, k, z = inputs or prob.inputs()
    g = tf.forward(a, k, z, config=tf.FusedConfig())  # an explicit config: no table lookup inside a search
    go = torch.randn_like(g)
    cfg = tf.BwdConfig.from_dict(cfg_dict)
    tf.vjp(a, k, z, g, go, config=cfg)
    return time_ms(lambda: tf.vjp(a, k, z, g, go, config=cfg), budget_s, a.device.type)


def _best(results: dict[str, float]) -> str:
    return min(results, key=lambda c: results[c])


class Tuner:
    """The staged search for one problem, in steps so that a driver can compile a stage's candidates for
    many problems at once (``candidates()`` -> compile -> ``measure()``), or just call :func:`tune`.

    ``first`` / ``bwd_first``: configs measured before the search's own (e.g. the ones the call would run
    without tuning, so the pick is never slower than them). ``deadline`` (``time.monotonic()`` seconds): no
    candidate starts after it, except the first one of the forward search; ``truncated``: the deadline passed.
    """

    def __init__(self, prob: TuneProblem, budget_s: float = 0.2, log: Callable[[str], None] | None = None,
                 deadline: float | None = None, first: Sequence[dict[str, int]] = (),
                 bwd_first: Sequence[dict[str, int]] = ()) -> None:
        self.prob = prob
        self.budget_s = budget_s
        self.log = log or (lambda s: None)
        self.deadline = deadline
        self.first = list(first)
        self.bwd_first = list(bwd_first)
        self.truncated = False
        self.results: dict[str, float] = {}
        self.bwd_results: dict[str, float] = {}
        self.stage = 1
        self.measured = 0
        self._inputs: tuple[torch.Tensor, ...] | None = None

    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The problem's inputs, made once per search."""
        if self._inputs is None:
            self._inputs = self.prob.inputs()
        return self._inputs

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.truncated = True
        return self.truncated

    def candidates(self) -> list[dict[str, int]]:
        if self.stage == 1:
            return self.first + [c for c in stage1(self.prob) if c not in self.first]
        best = json.loads(_best(self.results))
        return stage2(best)

    def measure(self) -> None:
        """Time this stage's candidates; a candidate that launches the same kernel as one already timed
        (see :func:`distinct`) gets that time and is not counted in ``measured``."""
        timed = {launch_of(json.loads(kk), self.prob.batch, self.prob.n): ms for kk, ms in self.results.items()}
        for cfg in self.candidates():
            kk = json.dumps(cfg, sort_keys=True)
            if kk in self.results:
                continue
            same = launch_of(cfg, self.prob.batch, self.prob.n)
            if same in timed:
                self.results[kk] = timed[same]
                continue
            if self.results and self.out_of_time():
                self.log(f"  deadline: {self.measured} forward config(s) measured")
                break
            try:
                self.results[kk] = measure_fwd(cfg, self.prob, self.budget_s, self.inputs())
            except Exception as exc:  # a config that does not compile/run is skipped
                self.log(f"  skip {cfg}: {type(exc).__name__}: {str(exc)[:120]}")
                self.results[kk] = math.inf
            timed[same] = self.results[kk]
            self.measured += 1
        self.stage += 1

    def measure_bwd(self) -> None:
        for c in self.bwd_first + [c for c in bwd_space() if c not in self.bwd_first]:
            kk = json.dumps(c, sort_keys=True)
            if kk in self.bwd_results:
                continue
            if self.out_of_time():
                self.log(f"  deadline: {len(self.bwd_results)} backward config(s) measured")
                break
            try:
                self.bwd_results[kk] = measure_bwd(c, self.prob, self.budget_s, self.inputs())
            except Exception as exc:
                self.log(f"  skip bwd {c}: {type(exc).__name__}: {str(exc)[:120]}")

    def finish(self, tolerance: float = 2e-4, save: bool = True) -> dict[str, Any]:
        from bkbench.kernels.bk import triton_fused as tf

        prob = self.prob
        results = self.results
        winner = None
        err = math.inf
        for cand in sorted(results, key=lambda c: results[c])[:3]:  # the fastest that passes the check
            if not math.isfinite(results[cand]):
                break
            err = _check(tf.FusedConfig.from_dict(json.loads(cand)), prob)
            if err <= tolerance:
                winner = cand
                break
            self.log(f"  {cand} failed the check: error {err:.2e}")
        if winner is None:
            raise ValueError(f"tune: no configuration passed the correctness check for {prob}")
        default_kk = json.dumps(tf.FusedConfig().to_dict(), sort_keys=True)
        default_ms = results.get(default_kk)
        if default_ms is None and not self.out_of_time():
            try:
                default_ms = measure_fwd(tf.FusedConfig().to_dict(), prob, self.budget_s, self.inputs())
            except Exception:
                default_ms = math.inf
        entry: dict[str, Any] = {
            "config": json.loads(winner),
            "ms": results[winner],
            "default_ms": default_ms,
            "check_error": err,
            "searched": self.measured,
            "space": len(distinct(fwd_space(), prob.batch, prob.n)),
            "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "triton": _version("triton"),
            "torch": torch.__version__,
            "source": "tuned",
        }
        if self.bwd_results:
            for cand in sorted(self.bwd_results, key=lambda c: self.bwd_results[c])[:3]:
                berr = _check(tf.BwdConfig.from_dict(json.loads(cand)), prob, bwd=True)
                if berr <= 1e-3:
                    entry["bwd_config"] = json.loads(cand)
                    entry["bwd_ms"] = self.bwd_results[cand]
                    entry["bwd_check_error"] = berr
                    break
            entry["bwd_default_ms"] = self.bwd_results.get(json.dumps(tf.BwdConfig().to_dict(), sort_keys=True))
        if save:
            save_entry(key(gpu_name(prob.device), prob.dtype, prob.uniform, prob.batch, prob.n), entry)
            clear_memo()
        return entry


def tune(prob: TuneProblem, tolerance: float = 2e-4, budget_s: float = 0.2, save: bool = True,
         log: Callable[[str], None] | None = None, with_bwd: bool = True) -> dict[str, Any]:
    """Staged search for ``prob`` (stage 1: tiles; stage 2: segment shapes and pass limits on the best tile);
    the fastest candidate that passes the float64 check wins. Returns (and by default caches) the entry.
    (``bkbench.harness.tune_compile.tune_many``: the same for several problems, each stage compiled in parallel
    first.)"""
    t = Tuner(prob, budget_s, log)
    for _ in range(2):
        t.measure()
    if with_bwd:
        t.measure_bwd()
    return t.finish(tolerance, save)


def exhaustive(prob: TuneProblem, budget_s: float = 0.2) -> dict[str, float]:
    """Forward time (ms) of every distinct config of :func:`fwd_space` on ``prob`` (inf where it fails)."""
    out = {}
    for c in distinct(fwd_space(), prob.batch, prob.n):
        kk = json.dumps(c, sort_keys=True)
        try:
            out[kk] = measure_fwd(c, prob, budget_s)
        except Exception:
            out[kk] = math.inf
    return out


def _version(mod: str) -> str | None:
    try:
        return __import__(mod).__version__
    except Exception:
        return None


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"16384x1024,8x65536"`` -> [(16384, 1024), (8, 65536)] (BATCHxN pairs)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            b, n = part.lower().split("x")
            out.append((int(b), int(n)))
        except ValueError:
            raise ValueError(f"shapes: {part!r} is not BATCHxN (e.g. 4096x4096)") from None
        if out[-1][0] < 1 or out[-1][1] < 1:
            raise ValueError(f"shapes: {part!r} needs BATCH >= 1 and N >= 1")
    if not out:
        raise ValueError("shapes: give at least one BATCHxN pair")
    return out


def default_shapes() -> list[tuple[int, int]]:
    return [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (8, 65536), (1024, 4096), (64, 4096)]


def iter_problems(shapes: Iterable[tuple[int, int]], dtypes: Iterable[torch.dtype],
                  couplings: Iterable[bool]) -> list[TuneProblem]:
    return [TuneProblem(b, n, dt, u) for (b, n) in shapes for dt in dtypes for u in couplings]
