"""triton_fused: forward and backward against float64 references (CPU interpreter here, also CUDA when present).

Small tiles (seg=8) so that the CPU interpreter runs multi-chunk chains with halos at small N; every output is
NaN-poisoned before the kernels run, so an element they do not write fails.
"""

from __future__ import annotations

import pytest
import torch

from bkbench.harness.accuracy import relative_error
from bkbench.harness.problems import Inputs, Problem, make_inputs
from bkbench.harness.reference import dense_grad_reference, reference
from bkbench.validate import normalize

tf = pytest.importorskip("bkbench.kernels.bk.triton_fused")
from bkbench.kernels.bk._triton_fused_launch import from_kernel_convention  # noqa: E402
from tests.triton_devices import TRITON_DEVICES, TRITON_HOST  # noqa: E402

SMALL = tf.FusedConfig(seg=8, L=16, H=1, M1=16, warps=1, seq=1)
SMALL_BWD = tf.BwdConfig(seg=8, L=8, H=2, M1=8, warps=1)
SEQ = tf.FusedConfig(seg=8, L=16, H=2, M1=16, warps=1, seq=2)  # 128-position tiles: N in 129..256 runs two
# (with H 2 the halo'd chunks hold 64 positions, so every such N would take three or more of them)
TOL = 2e-6  # far below the gate's 2e-4: the kernel is exact up to fp32 rounding


@pytest.fixture(params=TRITON_DEVICES)
def device(request):
    """The CPU under the interpreter (no GPU), and CUDA where there is one (tests/triton_devices.py)."""
    return request.param


@pytest.fixture(autouse=True)
def nan_poison(monkeypatch):
    def poisoned(*shape, dtype, device):
        t = torch.empty(*shape, dtype=dtype, device=device)
        t.fill_(float("nan"))
        return t

    monkeypatch.setattr(tf, "_empty", poisoned)


def _run(p: Problem, device: str, **kw):
    q = p.with_(device=device)
    inp = make_inputs(q)
    nm = normalize(inp.a, inp.b, inp.c, inp.z)
    g, flags = tf.forward(nm.a, nm.k, nm.z, return_flags=True, **kw)
    ref = reference(make_inputs(q.with_(device="cpu")))
    return relative_error(g.reshape(ref.shape), ref), flags


CASES = [
    Problem(batch=(3,), n=1),
    Problem(batch=(2,), n=2, seed=1),
    Problem(batch=(2, 3), n=17),  # odd N, leading dims
    Problem(batch=(2,), n=301, coupling="random", negative=0.3, z=0.2 + 1.5j, coupling_scale=0.2),  # 3 chunks
    Problem(batch=(3,), n=200, sparsity=0.3, seed=1),
    Problem(batch=(2,), n=50, sparsity=1.0),
    Problem(batch=(2,), n=190, coupling="scalar"),
    Problem(batch=(3,), n=64, dtype="bfloat16", z_spread=0.5),
]


@pytest.mark.parametrize("p", CASES, ids=lambda p: p.key)
def test_forward_matches_float64_reference(p, device):
    err, flags = _run(p, device, config=SMALL)
    assert err.finite and err.rel_err < TOL, err


def test_near_real_z_is_flagged_and_recomputed_exactly(device):
    """Im z = 0.01: the carries do not converge in a halo; the exact kernel redoes the flagged chains."""
    err, flags = _run(Problem(batch=(2,), n=300, z=0.3 + 0.01j), device, config=SMALL)
    assert int(flags.sum()) > 0
    assert err.finite and err.rel_err < 1e-5, err


def test_exact_path_alone_matches_reference(device):
    err, flags = _run(Problem(batch=(2,), n=150, coupling="random", sparsity=0.2), device, config=SMALL,
                      force_exact=True)
    assert bool((flags == 1).all())
    assert err.finite and err.rel_err < TOL, err


def test_the_fold_redoes_exactly_the_flagged_chains(device):
    """Near-real z on three chains of 21 (flagged), z = i elsewhere: in the same launch, the program that finishes a
    flagged chain last recomputes it exactly (the fold), so every chain matches float64; without the fold the
    flagged chains keep the fast path's unconverged values. The backward the same."""
    bad = [1, 13, 20]
    inp = make_inputs(Problem(batch=(21,), n=200, coupling="random", seed=4).with_(device=device))
    z = torch.full((21,), 1j, dtype=torch.complex64)
    z[bad] = 0.3 + 0.01j
    nm = normalize(inp.a, inp.b, inp.c, z.to(device))
    g, flags = tf.forward(nm.a, nm.k, nm.z, config=SMALL, return_flags=True)
    assert flags.amax(1).nonzero().flatten().tolist() == bad
    ref = reference(Inputs(inp.a.cpu(), inp.b.cpu(), inp.c.cpu(), z.to(torch.complex128)))
    err = relative_error(g.cpu(), ref)
    assert err.finite and err.rel_err < 1e-5, err
    unfolded = tf.forward_operands(from_kernel_convention(nm.a, nm.k, nm.z), SMALL, fold=False)
    assert not relative_error(unfolded[bad].cpu(), ref[bad]).rel_err < 1e-5
    go = torch.randn(g.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(5)).to(device)
    got, bflags = tf.vjp(nm.a, nm.k, nm.z, g, go, config=SMALL_BWD, return_flags=True)
    exact = tf.vjp(nm.a, nm.k, nm.z, g, go, config=SMALL_BWD, force_exact=True)
    assert bflags.amax(1).nonzero().flatten().tolist() == bad
    assert torch.isfinite(got).all()
    assert float((got - exact).abs().max() / exact.abs().max()) < 1e-5


def test_im_z_one_needs_no_fallback(device):
    """z = 1j forgets within one 16-position segment: the fast path alone is exact (no chain flagged)."""
    err, flags = _run(Problem(batch=(2,), n=300, seed=2), device, config=SMALL)
    assert int(flags.sum()) == 0
    assert err.rel_err < TOL


@pytest.mark.parametrize(
    "p",
    [Problem(batch=(2,), n=1), Problem(batch=(2,), n=33, coupling="random", seed=1),
     Problem(batch=(2,), n=70, sparsity=0.3, z_spread=0.5)],
    ids=lambda p: p.key,
)
def test_gradients_match_dense_float64_autograd(p, device):
    q = p.with_(device=device)
    inp = make_inputs(q)
    a = inp.a.detach().clone().requires_grad_(True)
    z = inp.z.detach().clone().requires_grad_(True) if isinstance(inp.z, torch.Tensor) else inp.z
    nm = normalize(a, inp.b, inp.c, z)
    g = tf.triton_fused(nm.a, nm.k, nm.z, config=SMALL, bwd_config=SMALL_BWD)
    gen = torch.Generator().manual_seed(3)
    gout = torch.complex(torch.randn(g.shape, generator=gen), torch.randn(g.shape, generator=gen)).to(device)
    g.backward(gout)
    ref_a, ref_z = dense_grad_reference(Inputs(inp.a.cpu(), inp.b, inp.c, inp.z if not isinstance(inp.z, torch.Tensor)
                                               else inp.z.cpu()), gout.cpu().to(torch.complex128))
    err = relative_error(a.grad.reshape(ref_a.shape), ref_a)
    assert err.finite and err.rel_err < 1e-5, err
    if isinstance(z, torch.Tensor):
        ez = relative_error(z.grad, ref_z)
        assert ez.finite and ez.rel_err < 1e-5, ez


def test_backward_exact_path_matches_fast_path(device):
    p = Problem(batch=(2,), n=100, coupling="scalar").with_(device=device)
    inp = make_inputs(p)
    nm = normalize(inp.a, inp.b, inp.c, inp.z)
    g = tf.forward(nm.a, nm.k, nm.z, config=SMALL)
    go = torch.randn(g.shape, dtype=torch.complex64, device=device)
    fast, fl = tf.vjp(nm.a, nm.k, nm.z, g, go, config=SMALL_BWD, return_flags=True)
    exact = tf.vjp(nm.a, nm.k, nm.z, g, go, config=SMALL_BWD, force_exact=True)
    assert int(fl.sum()) == 0
    assert torch.isfinite(fast).all() and torch.isfinite(exact).all()
    assert float((fast - exact).abs().max() / exact.abs().max()) < 1e-5


def test_bad_inputs_raise_value_error_naming_the_argument():
    a = torch.zeros(2, 5, dtype=torch.float64, device=TRITON_HOST)
    k = torch.ones(2, 4, dtype=torch.float64, device=TRITON_HOST)
    z = torch.full((2,), 1j, dtype=torch.complex64, device=TRITON_HOST)
    with pytest.raises(ValueError, match="^a: dtype"):
        tf.forward(a, k, z)
    with pytest.raises(ValueError, match="^k: complex"):
        tf.forward(a.float(), torch.ones(2, 4, dtype=torch.complex64, device=TRITON_HOST), z)
    with pytest.raises(ValueError, match="config.seg"):
        tf.FusedConfig(seg=48)
    with pytest.raises(ValueError, match="config.M1"):
        tf.FusedConfig(L=8, M1=16)
    with pytest.raises(ValueError, match="unknown keys"):
        tf.FusedConfig.from_dict({"seg": 64, "tile": 3})


def test_supports_declines_large_problems_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tf.supports(Problem(batch=(2,), n=65536)) is not None
    assert tf.supports(Problem(batch=(2,), n=64)) is None
    assert "complex a" in tf.supports(Problem(batch=(2,), n=64, complex_a=0.5).with_(device="cuda"))


def test_plan_covers_every_position():
    for cfg in (SMALL, SEQ, tf.FusedConfig(), tf.BwdConfig()):
        for n in (1, 2, 17, 129, 255, 256, 257, 1000, 1024, 1025, 4097, 65536):
            p = tf.plan(cfg, 3, n)
            if p.seq == 2:  # two tiles in sequence: more than one tile, at most two
                assert p.S * p.L < n <= 2 * p.S * p.L and p.H == 0 and p.NCH == 1 and p.maxnreg > 0
            elif p.NCH == 1:
                assert p.S * p.L >= n and p.H == 0
            else:
                assert p.NCH * p.CORE >= n and p.CORE == (p.S - 2 * p.H) * p.L
    assert tf.plan(tf.FusedConfig(seq=2), 4, 1024).seq == 2 and tf.plan(tf.FusedConfig(), 4, 1024).seq == 1
    # seq 2 only where the halo'd chunks (480 positions with the default tile) would take three or more
    assert tf.plan(tf.FusedConfig(seq=2), 4, 961).seq == 2
    assert tf.plan(tf.FusedConfig(seq=2), 4, 960).seq == 1 and tf.plan(tf.FusedConfig(seq=2), 4, 960).NCH == 2
    assert tf.plan(tf.FusedConfig(seq=2), 4, 768).seq == 1
    with pytest.raises(ValueError, match="config.seq"):
        tf.FusedConfig(seq=3)
    with pytest.raises(ValueError, match="bwd_config.seq"):
        tf.BwdConfig(seq=2)


SEQ_CASES = [
    Problem(batch=(2,), n=129),  # one position into the second tile
    Problem(batch=(2,), n=200, coupling="random", negative=0.3, z=0.2 + 1.5j, coupling_scale=0.2),
    Problem(batch=(3,), n=256, sparsity=0.3, seed=1),  # exactly two tiles
    Problem(batch=(2,), n=250, sparsity=1.0),  # zero couplings: the carries are exactly zero
    Problem(batch=(2,), n=190, coupling="scalar"),
    Problem(batch=(3,), n=160, dtype="bfloat16", z_spread=0.5),
]


@pytest.mark.parametrize("p", SEQ_CASES, ids=lambda p: p.key)
def test_two_tiles_in_sequence_match_float64_reference(p, device):
    """seq = 2 (chains of one to two tiles: _fwd_seq2_kernel) with the carries between the tiles."""
    assert tf.plan(SEQ, 3, p.n).seq == 2
    err, flags = _run(p, device, config=SEQ)
    assert int(flags.sum()) == 0  # z = 1j and Im z = 1.5 forget within a segment: no fallback needed
    assert err.finite and err.rel_err < TOL, err


def test_two_tiles_near_real_z_fall_back_to_the_exact_kernel(device):
    err, flags = _run(Problem(batch=(2,), n=240, z=0.3 + 0.01j), device, config=SEQ)
    assert flags.shape == (2, 1) and int(flags.sum()) == 2
    assert err.finite and err.rel_err < 1e-5, err


@pytest.mark.parametrize("store", [1, 2])
def test_store_modes_write_the_same_values(store, device):
    """Per-column (1) and column-pair (2) stores write exactly what the joined-tile store (0) writes: forward
    G, grad_a and S, on a multi-chunk chain with halos and odd N (unwritten elements stay NaN and fail)."""
    from dataclasses import replace

    p = Problem(batch=(2,), n=301, coupling="random", z=0.2 + 1.5j, coupling_scale=0.2).with_(device=device)
    nm = normalize(*_inputs_of(p))
    outs = {}
    for st in (0, store):
        g = tf.forward(nm.a, nm.k, nm.z, config=replace(SMALL, store=st))
        go = torch.randn(g.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(3)).to(g.device)
        bc = replace(SMALL_BWD, store=st)
        outs[st] = (g, tf.vjp(nm.a, nm.k, nm.z, g, go, config=bc),
                    tf.vjp(nm.a, nm.k, nm.z, g, go, need_s=True, config=bc))
    for x, y in zip(outs[0], outs[store]):
        assert torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()
        assert torch.equal(x, y)


def test_store_mode_is_validated():
    with pytest.raises(ValueError, match="config.store"):
        tf.FusedConfig(store=3)
    with pytest.raises(ValueError, match="lin_exact: must be 0, 1 or 2"):
        tf.BwdConfig(lin_exact=3)
    assert tf.plan(tf.FusedConfig(L=1, H=1, M1=1, seg=4, store=2), 2, 8).store == 1  # a pair needs L >= 2


def _inputs_of(p: Problem):
    inp = make_inputs(p)
    return inp.a, inp.b, inp.c, inp.z


@pytest.mark.parametrize("p", [Problem(batch=(2,), n=300, coupling="random", seed=4),
                               Problem(batch=(2,), n=200, coupling="scalar", z=0.1 + 0.05j)], ids=lambda p: p.key)
def test_backward_halo_recurrences_match_exact_scans(p, device):
    """lin_exact = 0 (each segment takes its neighbour's F/R from a one-segment halo, with a contraction bound;
    chains where the bound fails go to the exact kernel) and lin_exact = 2 (two segments composed, bounded the
    same way) give the gradient of lin_exact = 1 and of the exact kernel, on multi-chunk chains, also at a
    near-real z where the halo does not contract."""
    from dataclasses import replace

    q = p.with_(device=device)
    inp = make_inputs(q)
    nm = normalize(inp.a, inp.b, inp.c, inp.z)
    g = tf.forward(nm.a, nm.k, nm.z, config=SMALL)
    go = torch.randn(g.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(5)).to(device)
    exact = tf.vjp(nm.a, nm.k, nm.z, g, go, config=SMALL_BWD, force_exact=True)
    for lin in (0, 1, 2):
        got = tf.vjp(nm.a, nm.k, nm.z, g, go, config=replace(SMALL_BWD, lin_exact=lin))
        assert torch.isfinite(got).all()
        assert float((got - exact).abs().max() / exact.abs().max()) < 1e-5, lin


@pytest.mark.parametrize("lin", [1, 2])
def test_backward_fast_path_carries(lin, device):
    """lin_exact 1 and 2 on contracting chains (z = i): no chunk is flagged, so the fast kernel's own result is
    what matches the exact kernel; at a near-real z, where two L 8 segments do not contract enough, lin 2 flags
    the chunks (the exact kernel takes them) rather than returning the truncated carry."""
    from dataclasses import replace

    cfg = replace(SMALL_BWD, lin_exact=lin)
    for p, fast in ((Problem(batch=(3,), n=700, coupling="random", seed=7), True),
                    (Problem(batch=(2,), n=513, coupling="scalar", seed=3), True),
                    (Problem(batch=(2,), n=200, coupling="scalar", z=0.1 + 0.05j), False)):
        inp = make_inputs(p.with_(device=device))
        nm = normalize(inp.a, inp.b, inp.c, inp.z)
        g = tf.forward(nm.a, nm.k, nm.z, config=SMALL)
        go = torch.randn(g.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(6)).to(device)
        exact = tf.vjp(nm.a, nm.k, nm.z, g, go, config=cfg, force_exact=True)
        got, flags = tf.vjp(nm.a, nm.k, nm.z, g, go, config=cfg, return_flags=True)
        assert (int(flags.sum()) == 0) == fast, (p.key, int(flags.sum()))
        assert float((got - exact).abs().max() / exact.abs().max()) < 1e-5, p.key


def test_gate_checks_every_tuned_config_of_this_device(device, monkeypatch, tmp_path):
    """bkbench gate runs each distinct table / cache configuration at its bucket's N against float64, and
    fails a configuration that errs or computes wrong values."""
    from bkbench.harness import gate_tuned, tuning

    gpu = tuning.gpu_name(device)  # "cpu-interpreter" off the GPU
    entries = {
        f"{gpu}|float32|scalar|N256_E1024": {"config": SEQ.to_dict(), "bwd_config": SMALL_BWD.to_dict()},
        f"{gpu}|float32|scalar|N256_E4096": {"config": SEQ.to_dict(), "bwd_config": SMALL_BWD.to_dict()},  # same
        f"{gpu}|float32|k|N256_E4096": {"config": SEQ.to_dict()},
    }
    res = gate_tuned.check_tuned_configs(device, quick=True, entries=entries)
    assert [(r.check, r.status) for r in res] == [("value", "pass"), ("value", "pass"), ("grad", "pass")], res  # by key
    assert all("N=255" in r.case and r.error < 1e-5 for r in res)
    assert tf.plan(SEQ, 4, 255).seq == 2  # the two-tile kernel is the one checked
    assert len(gate_tuned.check_tuned_configs(device, quick=False, entries=entries)) == 6  # N = 256 and 255
    # in worker processes: the same checks, results and order
    done = []
    par = gate_tuned.check_tuned_configs(device, quick=True, entries=entries, jobs=2,
                                         progress=lambda i, c: done.append(c))
    assert [(r.case, r.check, r.status, r.error) for r in par] == [(r.case, r.check, r.status, r.error) for r in res]
    assert len(done) == 3 and all(c.endswith(": pass") for c in done)

    bad = {f"{gpu}|float32|k|N64_E256": {"config": {**SMALL.to_dict(), "seq": 3}}, f"{gpu}|float32|k": {}}
    res = gate_tuned.check_tuned_configs(device, quick=True, entries=bad)
    assert sorted(r.status for r in res) == ["fail", "fail"]
    assert any("config.seq" in r.detail for r in res) and any("malformed" in r.detail for r in res)

    forward = tf.forward
    monkeypatch.setattr(tf, "forward", lambda *a, **kw: forward(*a, **kw) * (1 + 1e-3))
    res = gate_tuned.check_tuned_configs(device, quick=True, entries={f"{gpu}|float32|k|N64_E256": {"config":
                                                                                               SMALL.to_dict()}})
    assert [r.status for r in res] == ["fail"] and res[0].error > gate_tuned.TUNED_FWD_TOL

    # the entries of this device: the packaged table for its GPU, overridden by the user's cache
    monkeypatch.setenv("BKBENCH_CACHE_DIR", str(tmp_path))
    tuning.save_entry(f"{gpu}|float32|k|N64_E256", {"config": SMALL.to_dict()})
    tuning.save_entry("Some Other GPU|float32|k|N64_E256", {"config": SMALL.to_dict()})
    mine = gate_tuned.tuned_entries(device)
    assert mine[f"{gpu}|float32|k|N64_E256"] == {"config": SMALL.to_dict()}
    assert all(k.startswith(gpu + "|") for k in mine)


def test_run_gate_adds_the_tuned_checks_to_the_default_battery(monkeypatch):
    from bkbench.harness import gate, gate_tuned, tuning

    small = [gate.GateCase("N=17", Problem(batch=(2,), n=17))]
    monkeypatch.setattr(gate, "battery", lambda *a, **kw: small)
    monkeypatch.setattr(gate_tuned, "tuned_entries", lambda device: {
        f"{tuning.gpu_name(TRITON_HOST)}|float32|k|N64_E256": {"config": SMALL.to_dict()}})
    seen = []
    rep = gate.run_gate(impls=["triton_fused"], device=TRITON_HOST, quick=True, anticheat=False,
                        progress=lambda i, c: seen.append((i, c)))
    assert [r.case for r in rep.results] == ["N=17", "tuned forward config, k coupling, N=63"]
    assert rep.passed and seen == [("triton_fused", "N=17"), ("triton_fused", "tuned forward config, k coupling, "
                                                                            "N=63 [N64_E256]")]
    assert [r.case for r in gate.run_gate(impls=["triton_fused"], device=TRITON_HOST, tuned=False,
                                          anticheat=False).results] == ["N=17"]
    assert [r.case for r in gate.run_gate(impls=["triton_fused"], device=TRITON_HOST, cases=small,
                                          anticheat=False).results] == ["N=17"]


PERSIST = tf.FusedConfig(seg=8, L=16, H=1, M1=16, warps=1, persist=1)  # one program per "SM": every program loops
PERSIST_CASES = [
    Problem(batch=(3,), n=1),
    Problem(batch=(9,), n=17),  # one chunk per chain, three tiles over two programs (on the CPU)
    Problem(batch=(2,), n=301, coupling="random", negative=0.3, z=0.2 + 1.5j, coupling_scale=0.2),  # 3 chunks
    Problem(batch=(3,), n=190, coupling="scalar", seed=2),
    Problem(batch=(3,), n=64, dtype="bfloat16", z_spread=0.5),
]


@pytest.mark.parametrize("p", PERSIST_CASES, ids=lambda p: p.key)
def test_persistent_grid_matches_float64_reference(p, device):
    """persist > 0 (_fwd_persist_kernel: fewer programs than tiles, each loading its next tile while it solves the
    current one) gives the float64 G on one- and multi-chunk chains, and exactly what one program per tile gives."""
    from dataclasses import replace

    dev = torch.device(device)
    kernel, programs, *_ = tf.fwd_launch_spec(tf.plan(PERSIST, 9, 17), 2, 0, 9, 17, device=dev)
    assert kernel is tf._kern._fwd_persist_kernel and tf.plan(PERSIST, 9, 17).programs(9) == 3
    assert programs == min(3, tf.processors(dev))  # two on the CPU: the programs loop
    err, flags = _run(p, device, config=PERSIST)
    assert err.finite and err.rel_err < TOL, err
    nm = normalize(*_inputs_of(p.with_(device=device)))
    assert torch.equal(tf.forward(nm.a, nm.k, nm.z, config=PERSIST), tf.forward(nm.a, nm.k, nm.z,
                                                                                config=replace(PERSIST, persist=0)))


def test_persistent_grid_recomputes_flagged_chains_exactly(device):
    """Near-real z flags chains; the persistent kernel's fold (after its loop, from the flags it wrote) redoes
    them, for one-chunk tiles (own rows) and for chunked chains (the program that counts a chain last)."""
    for n, z in ((100, 0.001j), (301, 0.3 + 0.01j)):
        err, flags = _run(Problem(batch=(3,), n=n, z=z), device, config=PERSIST)
        assert int(flags.sum()) > 0
        assert err.finite and err.rel_err < 1e-5, (n, err)


def test_persist_is_validated():
    with pytest.raises(ValueError, match="config.persist"):
        tf.FusedConfig(persist=-1)
    with pytest.raises(ValueError, match="bwd_config.persist"):
        tf.BwdConfig(persist=4)
    assert tf.FusedConfig.from_dict({"seg": 32}).persist == 0  # tables written before the field load unchanged
