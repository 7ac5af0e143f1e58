"""Equal-work mapping: one (B, N, d) point named in every family's own terms.

Core level (the kernels alone):

| family            | work at (B, N, d)                                                        |
|-------------------|--------------------------------------------------------------------------|
| BK-core           | B·d independent chains of length N (one chain per channel)               |
| selective scan    | (B, d, N) channels with state n (Mamba-1, n = 16)                         |
| SSD / GLA         | H = d/64 heads of P = 64 channels, state n (Mamba-2 SSD n = 128; GLA K=64) |
| attention         | H = d/64 heads of size 64 over N tokens (causal)                          |

Layer level (a block mapping (B, N, d) -> (B, N, d)): see :mod:`bkbench.harness.baselines.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bkbench.harness.baselines.case import Case


@dataclass(frozen=True)
class CoreShapes:
    """The shapes each family works on at one (B, N, d)."""

    bk_chains: int
    bk_length: int
    scan_shape: tuple[int, int, int]
    scan_state: int
    ssd_heads: int
    ssd_head_dim: int
    ssd_state: int
    attention_heads: int
    attention_head_dim: int

    @property
    def bk_problem(self) -> tuple[int, int]:
        """(batch, N) of the BK-core problem: ``bk_core(a)`` with ``a`` of this shape."""
        return (self.bk_chains, self.bk_length)


def core_shapes(case: Case, scan_state: int = 16, ssd_state: int = 128) -> CoreShapes:
    """Map ``case`` (B, N, d) to each family's shapes. ``case.state`` overrides both state sizes."""
    heads = case.heads  # raises ValueError when d is not a multiple of head_dim
    return CoreShapes(
        bk_chains=case.B * case.d,
        bk_length=case.N,
        scan_shape=(case.B, case.d, case.N),
        scan_state=case.state or scan_state,
        ssd_heads=heads,
        ssd_head_dim=case.head_dim,
        ssd_state=case.state or ssd_state,
        attention_heads=heads,
        attention_head_dim=case.head_dim,
    )
