"""Declarative, seeded BK-core problems with self-describing case keys.

A :class:`Problem` says everything needed to rebuild the same inputs anywhere::

    Problem(batch=(64,), n=4096, dtype="float32", sparsity=0.3, z=1j).key == "B64_N4096_f32_s0.3_zi1"

Coupling modes:
    ``laplacian``  b = c = 1 (ResNet-BK's H0 = discrete Laplacian: diagonal -2 + potential, off-diagonals 1),
                   passed as per-position tensors;
    ``scalar``     the same Laplacian couplings passed as the numbers 1.0 (uniform coupling: kernels may
                   skip reading k);
    ``random``     non-symmetric b != c, drawn around 1 with spread ``coupling_scale``; a fraction
                   ``negative`` of the products k_i = b_i c_i is negative.
Potential: a = -2 + potential * randn (+ 1j * complex_a * (-|randn|) when ``complex_a`` > 0, an absorbing
imaginary part, so every pivot keeps |Im| >= Im z).
Sparsity s: a fraction s of the couplings (b_i and c_i) is set to exactly 0.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
SHORT = {"float32": "f32", "float64": "f64", "bfloat16": "bf16", "float16": "f16"}
COUPLINGS = ("laplacian", "scalar", "random")

# Tensors of at least PARALLEL_DRAW_MIN elements are drawn in chunks of DRAW_CHUNK elements, each chunk from its
# own generator, on a thread pool: one sequential float64 draw of 2^28 numbers costs ~5 s of host time, and the
# suites' largest cases draw three of them.
PARALLEL_DRAW_MIN = 1 << 24
DRAW_CHUNK = 1 << 22


def draw(kind: str, shape: tuple[int, ...], gen: torch.Generator, seed: int, stream: int) -> torch.Tensor:
    """float64 random numbers of ``shape`` on the CPU: ``kind`` "normal" (randn) or "uniform" (rand on [0, 1)).

    Below :data:`PARALLEL_DRAW_MIN` elements they come from ``gen`` (which advances). From there on, chunk j
    of the flattened tensor comes from a generator seeded with ``SeedSequence([seed, stream, j])`` and ``gen``
    is left alone; ``stream`` must differ between the tensors of one problem. Either way the values depend
    only on (shape, seed, stream) and the draws before it, never on the device or the thread count.
    """
    if kind not in ("normal", "uniform"):
        raise ValueError(f"kind: {kind!r} is not 'normal' or 'uniform'")
    numel = math.prod(shape)
    if numel < PARALLEL_DRAW_MIN:
        fn = torch.randn if kind == "normal" else torch.rand
        return fn(shape, generator=gen, dtype=torch.float64)
    out = torch.empty(numel, dtype=torch.float64)
    starts = range(0, numel, DRAW_CHUNK)

    def fill(j: int) -> None:
        state = np.random.SeedSequence([seed, stream, j]).generate_state(1, np.uint64)[0]
        g = torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))
        piece = out[starts[j]:starts[j] + DRAW_CHUNK]
        piece.normal_(generator=g) if kind == "normal" else piece.uniform_(generator=g)

    with ThreadPoolExecutor(max_workers=max(1, min(len(starts), os.cpu_count() or 1))) as pool:
        list(pool.map(fill, range(len(starts))))
    return out.reshape(shape)


def _fmt_num(x: float) -> str:
    return f"{x:g}"


def _fmt_z(z: complex) -> str:
    re, im = z.real, z.imag
    if re == 0:
        return f"zi{_fmt_num(im)}"
    return f"z{_fmt_num(re)}{'+' if im >= 0 else '-'}{_fmt_num(abs(im))}i"


@dataclass(frozen=True)
class Problem:
    """One BK-core problem. Inputs are a pure function of these fields (and the seed).

    batch: leading shape of ``a`` (chains = product); n: chain length N; dtype: input dtype name;
    device: "cpu" or "cuda"; coupling: see module docstring; potential: std of the random potential;
    z: shift; z_spread > 0 gives one shift per chain, z + z_spread * (randn + 1j * rand); sparsity: fraction
    of zero couplings; complex_a: scale of the absorbing imaginary potential; negative: fraction of negative
    k (random coupling); coupling_scale: spread of random couplings; noncontiguous: hand ``a`` over as a
    strided view; seed: RNG seed; tag: free-form label (goes into the key).
    """

    batch: tuple[int, ...] = (4,)
    n: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    coupling: str = "laplacian"
    potential: float = 0.5
    z: complex = 1j
    z_spread: float = 0.0
    sparsity: float = 0.0
    complex_a: float = 0.0
    negative: float = 0.0
    coupling_scale: float = 0.3
    noncontiguous: bool = False
    seed: int = 0
    tag: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch", tuple(int(b) for b in self.batch))
        object.__setattr__(self, "z", complex(self.z))
        if self.n < 1:
            raise ValueError(f"n: chain length must be >= 1, got {self.n}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling: {self.coupling!r} is not one of {COUPLINGS}")
        if not 0.0 <= self.sparsity <= 1.0:
            raise ValueError(f"sparsity: must be in [0, 1], got {self.sparsity}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: {self.device!r} is not 'cpu' or 'cuda'")

    @property
    def chains(self) -> int:
        return math.prod(self.batch)

    @property
    def elements(self) -> int:
        return self.chains * self.n

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def key(self) -> str:
        """Self-describing case key, e.g. ``B64_N4096_f32_s0.3_zi1`` (defaults are left out)."""
        parts = [f"B{'x'.join(str(b) for b in self.batch) or '1'}", f"N{self.n}", SHORT[self.dtype]]
        if self.sparsity:
            parts.append(f"s{_fmt_num(self.sparsity)}")
        parts.append(_fmt_z(self.z))
        if self.z_spread:
            parts.append(f"zs{_fmt_num(self.z_spread)}")
        if self.coupling != "laplacian":
            parts.append({"scalar": "kscalar", "random": "krand"}[self.coupling])
        if self.negative:
            parts.append(f"neg{_fmt_num(self.negative)}")
        if self.potential != 0.5:
            parts.append(f"v{_fmt_num(self.potential)}")
        if self.complex_a:
            parts.append(f"ca{_fmt_num(self.complex_a)}")
        if self.noncontiguous:
            parts.append("strided")
        if self.seed:
            parts.append(f"seed{self.seed}")
        if self.tag:
            parts.append(self.tag)
        return "_".join(parts)

    def with_(self, **changes: Any) -> Problem:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["z"] = [self.z.real, self.z.imag]
        d["batch"] = list(self.batch)
        d["key"] = self.key
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        d = {k: v for k, v in d.items() if k != "key"}
        if isinstance(d.get("z"), (list, tuple)):
            d["z"] = complex(*d["z"])
        return cls(**d)


@dataclass(frozen=True)
class Inputs:
    """Arguments for ``bk_core(a, b, c, z)``; b, c are tensors or numbers (scalar coupling)."""

    a: torch.Tensor
    b: torch.Tensor | float
    c: torch.Tensor | float
    z: complex | torch.Tensor


def make_inputs(p: Problem, device: str | None = None) -> Inputs:
    """Build the inputs of ``p`` (on ``device`` if given, else ``p.device``), deterministic in ``p.seed``.

    Random numbers are drawn in float64 on the CPU (:func:`draw`: in parallel chunks for large tensors) and then
    cast and moved, so the same problem gives the same values on every device and for every dtype.
    """
    gen = torch.Generator().manual_seed(p.seed)
    shape = (*p.batch, p.n)
    f64 = torch.float64
    seed = p.seed
    a = -2.0 + p.potential * draw("normal", shape, gen, seed, 1)
    if p.complex_a:
        a = a + 1j * (-p.complex_a * draw("normal", shape, gen, seed, 2).abs())
    off = (*p.batch, p.n - 1)
    b: torch.Tensor | None = None  # None: all ones (built at the end, directly in the input dtype)
    c: torch.Tensor | None = None
    if p.coupling == "random":
        b = 1.0 + p.coupling_scale * draw("normal", off, gen, seed, 3)
        c = 1.0 + p.coupling_scale * draw("normal", off, gen, seed, 4)
        if p.negative:
            flip = draw("uniform", off, gen, seed, 5) < p.negative
            c = torch.where(flip, -c.abs(), c.abs())
            b = b.abs()
    if p.sparsity:
        zero = draw("uniform", off, gen, seed, 6) < p.sparsity
        b = torch.where(zero, 0.0, b if b is not None else 1.0)
        c = torch.where(zero, 0.0, c if c is not None else 1.0)
    z: complex | torch.Tensor = p.z
    if p.z_spread:
        zr = torch.randn(p.batch, generator=gen, dtype=f64)
        zi = torch.rand(p.batch, generator=gen, dtype=f64)
        z = p.z + p.z_spread * (zr + 1j * zi)

    dev = device or p.device
    real_dtype = p.torch_dtype
    cplx = torch.complex128 if real_dtype == f64 else torch.complex64

    def cast(t: torch.Tensor) -> torch.Tensor:
        if t.is_complex():
            return t.to(cplx).to(dev)
        return t.to(real_dtype).to(dev)

    a_t = cast(a)
    if p.noncontiguous:
        wide = torch.zeros((*p.batch, 2 * p.n), dtype=a_t.dtype, device=dev)
        wide[..., ::2] = a_t
        a_t = wide[..., ::2]
    if isinstance(z, torch.Tensor):
        z = z.to(cplx).to(dev)
    if p.coupling == "scalar" and not p.sparsity:
        return Inputs(a_t, 1.0, 1.0, z)
    if b is None or c is None:  # Laplacian couplings: exactly 1 in every dtype, so no float64 detour
        ones = [torch.ones(off, dtype=real_dtype, device=dev) for _ in range(2)]
        return Inputs(a_t, ones[0], ones[1], z)
    return Inputs(a_t, cast(b), cast(c), z)
