"""Launch configurations of ``triton_fused``: :class:`FusedConfig` (forward), :class:`BwdConfig` (backward) and
:func:`plan`, which resolves a config for one (B, N) problem (tile R x S x L, halo, chunks)."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

# register cap of the two-tile forward kernel when the config leaves maxnreg at 0 (see FusedConfig.seq)
SEQ2_MAXNREG = 128


@dataclass(frozen=True)
class FusedConfig:
    """Launch configuration of the forward kernel.

    seg: segments per program (rows x segments of the tile); L: positions per segment (one thread's run);
    H: halo segments on each side of a chunk (chains longer than one tile); M1: length of the first pass
    (<= L); warps: num_warps; stages: num_stages (the kernel has no pipelined loads; kept for the tuner's
    record); maxpass: most passes before a chain is flagged for the exact kernel; store: how the output tile
    is written (0: columns joined into one tile, which Triton converts to its coalesced layout join by join;
    1: one store per column; 2: one store per pair of columns — see ``_triton_fused_regs.store_cols``);
    seq: 2 = a chain of seg*L < N <= 2*seg*L positions that halo'd chunks would split into three or more is done
    by one program as two tiles one after the other, with exact carries between them (``_fwd_seq2_kernel``,
    about 2.1 tiles of work); chains the halo'd chunks cover in two tiles keep seq 1. 1 (default) = never.
    Measured on the H100: at N = 1024 (three halo'd chunks) 5 % faster than the halo'd chunks, with a scalar
    coupling the fastest layout (run 6: 93.1 against 97.9 µs at B 16384); at N = 768 and 520 (two halo'd
    chunks) 17-50 % slower (run 6), which is why it needs three chunks. The tuner does not search it; the
    packaged table uses it where it was measured fastest.
    maxnreg: register cap per thread passed to ptxas; 0 = the compiler's choice, except that the two-tile kernel
    is capped at ``SEQ2_MAXNREG`` (ptxas gives it 168 registers at a one-warp seg 32 / L 16 tile, 12 warps per
    SM; 128, the one-tile kernel's count, keeps 16 warps per SM and spills nothing; uncapped it measured 22 %
    slower at N = 1024).
    persist: 0 (default) = one program per tile; P > 0 = a persistent grid of P programs per SM (at most one per
    tile), each looping over tiles and issuing its next tile's loads before it solves the current one
    (``_fwd_persist_kernel``; seq 1 plans only).
    Entries of tuning tables written before ``seq`` existed load with seq = 1 (how they were measured).
    """

    _label: ClassVar[str] = "config"

    seg: int = 32
    L: int = 16
    H: int = 1
    M1: int = 16
    warps: int = 1
    stages: int = 1
    maxpass: int = 4
    store: int = 0
    seq: int = 1
    maxnreg: int = 0
    persist: int = 0

    def __post_init__(self) -> None:
        for name in ("seg", "L"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"config.{name}: must be a power of two >= 1, got {v}")
        if not 1 <= self.M1 <= self.L:
            raise ValueError(f"config.M1: must be in 1..L={self.L}, got {self.M1}")
        if self.H < 1 or 2 * self.H >= self.seg:
            raise ValueError(f"config.H: must be >= 1 and < seg/2 = {self.seg // 2}, got {self.H}")
        if self.warps not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"config.warps: must be a power of two in 1..32, got {self.warps}")
        if self.maxpass < 2:
            raise ValueError(f"config.maxpass: must be >= 2, got {self.maxpass}")
        if self.store not in (0, 1, 2):
            raise ValueError(f"config.store: must be 0 (joined tile), 1 (per column) or 2 (column pairs), "
                             f"got {self.store}")
        if self.seq not in (1, 2):
            raise ValueError(f"config.seq: must be 1 (halo'd chunks) or 2 (two tiles in sequence), got {self.seq}")
        if self.maxnreg and not 24 <= self.maxnreg <= 255:
            raise ValueError(f"config.maxnreg: must be 0 (compiler's choice) or in 24..255, got {self.maxnreg}")
        if not 0 <= self.persist <= 64:
            raise ValueError(f"config.persist: must be 0 (one program per tile) or 1..64 programs per SM, "
                             f"got {self.persist}")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusedConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls._label}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{"seq": 1, **{k: int(v) for k, v in d.items()}})  # no "seq": written before it existed


@dataclass(frozen=True)
class BwdConfig(FusedConfig):
    """Launch configuration of the backward kernel: the fields of :class:`FusedConfig` (with backward
    defaults) plus ``lin_exact``, how the F/R recurrences cross segments: 1, exact affine scans (five shuffle
    levels in a one-warp tile); 2, each segment composes its neighbour's map with the segment before (one
    shuffle level; the dropped carry is bounded by the two segments' contraction, else the chain goes to the
    exact kernel); 0, a one-segment halo with a contraction bound."""

    _label: ClassVar[str] = "bwd_config"

    seg: int = 32
    L: int = 8
    H: int = 2
    M1: int = 8
    warps: int = 1
    stages: int = 1
    maxpass: int = 4
    store: int = 0
    seq: int = 1
    lin_exact: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lin_exact not in (0, 1, 2):
            raise ValueError(f"bwd_config.lin_exact: must be 0, 1 or 2, got {self.lin_exact}")
        if self.persist:
            raise ValueError(f"bwd_config.persist: the backward kernel has no persistent grid (persist must be 0), "
                             f"got {self.persist}")
        if self.seq != 1:
            raise ValueError(f"bwd_config.seq: the backward kernel has no two-tile mode (seq must be 1), "
                             f"got {self.seq}")


@dataclass(frozen=True)
class Plan:
    """A config resolved for one (B, N): tile R x S x L, halo H, chunks per chain NCH of CORE positions;
    seq 2: one program per R chains does two tiles in sequence (NCH = 1, H = 0)."""

    R: int
    S: int
    L: int
    H: int
    NCH: int
    CORE: int
    M1: int
    warps: int
    stages: int
    maxpass: int
    store: int = 0
    seq: int = 1
    maxnreg: int = 0
    persist: int = 0

    def programs(self, batch: int) -> int:
        return math.ceil(batch / self.R) * self.NCH

    @property
    def gather(self) -> bool:
        """Shift carries between segments by ``tl.gather`` (one warp: shuffles) rather than a scan (the kernels'
        ``GATHER``; across warps a gather replicates the tile)."""
        return self.warps == 1


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


@functools.lru_cache(maxsize=4096)
def plan(cfg: FusedConfig | BwdConfig, batch: int, n: int) -> Plan:
    """Resolve ``cfg`` for a (batch, n) problem: one chunk per chain when a tile holds the chain."""
    segs = math.ceil(n / cfg.L)
    store = min(cfg.store, cfg.L)  # a column pair needs L >= 2
    if segs <= cfg.seg:
        s = _pow2_at_least(segs)
        r = max(1, min(cfg.seg // s, _pow2_at_least(batch)))
        return Plan(r, s, cfg.L, 0, 1, s * cfg.L, min(cfg.M1, cfg.L), cfg.warps, cfg.stages, cfg.maxpass, store,
                    maxnreg=cfg.maxnreg, persist=cfg.persist)
    core = (cfg.seg - 2 * cfg.H) * cfg.L
    if cfg.seq == 2 and segs <= 2 * cfg.seg and cfg.seg >= 2 and math.ceil(n / core) > 2:
        return Plan(1, cfg.seg, cfg.L, 0, 1, 2 * cfg.seg * cfg.L, cfg.M1, cfg.warps, cfg.stages, cfg.maxpass, store,
                    seq=2, maxnreg=cfg.maxnreg or SEQ2_MAXNREG)
    return Plan(1, cfg.seg, cfg.L, cfg.H, math.ceil(n / core), core, cfg.M1, cfg.warps, cfg.stages, cfg.maxpass,
                store, maxnreg=cfg.maxnreg, persist=cfg.persist)
