"""``bk_core`` as a PyTorch operator (issue 22): ``torch.library.opcheck`` passes, ``torch.compile(fullgraph=True)``
traces it with no graph break and matches eager (forward and backward), the default call reads no device value, the
library sets no process-wide state on import, and ``impl="auto"`` neither reads a database it was not given nor picks
a non-differentiable implementation when an input requires grad. (CUDA graphs and the H200 timings: the device
script bench/triton_fused_h200.py, stage ``graph``.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import bkbench
from bkbench import dispatch
from bkbench.op import bk_core_backward_op, bk_core_op
from bkbench.registry import default_registry
from tests.triton_devices import TRITON_HOST


def _inputs(batch=3, n=24, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = (-2 + 0.5 * torch.randn(batch, n, generator=gen, dtype=torch.float64)).to(dtype)
    b = (1 + 0.2 * torch.rand(batch, n - 1, generator=gen, dtype=torch.float64)).to(dtype)
    c = (1 - 0.2 * torch.rand(batch, n - 1, generator=gen, dtype=torch.float64)).to(dtype)
    return a, b, c


def test_opcheck_forward_and_backward():
    a, b, c = _inputs()
    z = torch.full((3,), 0.2 + 1j, dtype=torch.complex128)
    for args in [(a.requires_grad_(True), b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", True),
                 (a.detach(), None, c, z.requires_grad_(True), 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, "assoc_scan", "{}", True),
                 (a.detach().float(), b.float(), None, None, 0.0, 0.0, 0.9, 0.0, 0.0, 1.0, "auto", "{}", False)]:
        torch.library.opcheck(bk_core_op, args)
    g = bk_core_op(a.detach(), b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", False)
    torch.library.opcheck(bk_core_backward_op, (torch.randn_like(g), g, a.detach(), b, c, None, 0.0, 0.0, 0.0, 0.0,
                                                0.0, 1.0, "thomas", "{}", True, False))



def test_the_operator_has_no_second_derivative_and_takes_no_coupling_grad():
    a, b, c = _inputs()
    a.requires_grad_(True)
    out = bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", True)
    (ga,) = torch.autograd.grad(out.pow(2).sum(), a, create_graph=True)
    ref = torch.autograd.grad(bkbench.bk_core(a, b, c, 1j, impl="thomas").abs().pow(2).sum(), a)[0]
    torch.testing.assert_close(ga, ref)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(ga.sum(), a)
    with pytest.raises(ValueError, match="b, c: .*detached"):
        bk_core_op(a, b.requires_grad_(True), c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", True)
    with torch.no_grad():  # no autograd: nothing to reject
        bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", True)


class _Layer(torch.nn.Module):
    def __init__(self, n: int, impl: str) -> None:
        super().__init__()
        self.v = torch.nn.Parameter(0.1 * torch.randn(n, dtype=torch.float64))
        self.impl = impl

    def forward(self, a, b, c, z):
        g = bkbench.bk_core(a + self.v, b, c, z, impl=self.impl)
        return torch.view_as_real(g).flatten(-2)


@pytest.mark.parametrize("impl,z", [("thomas", 1j), ("auto", 0.3 + 0.8j), ("assoc_scan", "tensor")])
def test_compile_fullgraph_matches_eager(impl, z):
    torch._dynamo.reset()
    a, b, c = _inputs(n=20)
    zt = torch.full((3,), 0.5j, dtype=torch.complex128, requires_grad=True) if z == "tensor" else z
    layer = _Layer(20, impl)
    w = torch.randn(3, 40, dtype=torch.float64)

    def step(m):
        layer.v.grad = None
        if isinstance(zt, torch.Tensor):
            zt.grad = None
        out = m(a, b, c, zt)
        (out * w).sum().backward()
        return out.detach(), layer.v.grad.clone(), (zt.grad.clone() if isinstance(zt, torch.Tensor) else None)

    eager = step(layer)
    compiled = step(torch.compile(layer, fullgraph=True, backend="aot_eager"))
    for e, k in zip(eager, compiled):
        if e is not None:
            assert torch.allclose(e, k, rtol=1e-6, atol=1e-9)


def test_compile_fullgraph_with_triton_fused():
    """On the CPU under the Triton interpreter (CI), on CUDA where a GPU exists (triton_fused takes CPU tensors
    only under the interpreter)."""
    torch._dynamo.reset()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a, b, c = (t.to(dev) for t in _inputs(batch=2, n=40, dtype=torch.float32))
    x = a.clone().requires_grad_(True)

    def f(x):
        return torch.view_as_real(bkbench.bk_core(x, b, c, 1j, impl="triton_fused")).sum()

    f(x).backward()
    ge = x.grad.clone()
    x.grad = None
    torch.compile(f, fullgraph=True, backend="aot_eager")(x).backward()
    assert torch.allclose(ge, x.grad, rtol=1e-5, atol=1e-6)


def test_options_travel_through_the_operator():
    torch._dynamo.reset()
    a, b, c = _inputs(dtype=torch.float32)

    def f(a):
        return bkbench.bk_core(a, b, c, 1j, impl="lut_green", window=4)

    assert torch.equal(f(a), torch.compile(f, fullgraph=True, backend="aot_eager")(a))


@pytest.mark.parametrize("impl", ["triton_fused", "assoc_scan", "thomas", "auto"])
def test_default_call_reads_no_device_value(impl, monkeypatch):
    """No .item(), bool(tensor), .tolist() or .nonzero() in the default path (each is a host sync on CUDA). thomas
    decides on the CPU which chains need its zero-pivot guard (a value read, free there); it is made to take its
    CUDA branch here, which guards every chain instead."""
    import bkbench.kernels.bk.thomas

    monkeypatch.setattr(bkbench.kernels.bk.thomas, "guard_every_chain", lambda al: True)
    a, b, c = (t.to(TRITON_HOST if impl == "triton_fused" else "cpu")
               for t in _inputs(batch=2, n=30, dtype=torch.float32))
    bkbench.bk_core(a, b, c, 1j, impl=impl)  # first call: discovery, tables (may read files, not tensors)

    def trap(*args, **kwargs):
        raise AssertionError("the default bk_core path read a device value")

    for name in ("item", "__bool__", "tolist", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, trap)
    bkbench.bk_core(a, b, c, 1j, impl=impl)
    bkbench.bk_core(a, 1.0, 1.0, 0.5j, impl=impl)
    bkbench.bk_core_ex(a, b, c, 1j, impl=impl)


def test_importing_bkbench_sets_no_process_wide_setting():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import os, sys, bkbench; bkbench.bk_core; "
            "print(os.environ.get('TRITON_INTERPRET'), 'triton' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # nothing set, and triton not imported yet: a program (the CLI, the tests) can still choose the interpreter
    # before the first kernel module is imported (triton reads TRITON_INTERPRET when it is imported)
    assert out.stdout.split() == ["None", "False", "False"]


def test_auto_reads_no_database_unless_named(tmp_path, monkeypatch):
    monkeypatch.delenv("BKBENCH_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bkbench.db").write_bytes(b"not a database the library should open")
    ev = dispatch.explain("cpu", torch.float32, 4, 64, default_registry())
    assert any("none named" in s for s in ev.sources)
    monkeypatch.setenv("BKBENCH_DB", str(tmp_path / "results" / "bkbench.db"))
    ev = dispatch.explain("cpu", torch.float32, 4, 64, default_registry())
    assert any(str(tmp_path) in s for s in ev.sources)


def test_auto_picks_a_differentiable_implementation_when_grad_is_needed():
    reg = default_registry()
    ev = dispatch.explain("cpu", torch.float32, 4, 64, reg, needs_grad=True)
    assert reg.get(ev.choice.impl).differentiable
    assert all(c["usable"] is not None for name, c in ev.candidates.items() if not reg.get(name).differentiable)
    a, b, c = _inputs(dtype=torch.float32)
    x = a.clone().requires_grad_(True)
    torch.view_as_real(bkbench.bk_core(x, b, c, 1j)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_thomas_cuda_branch_guards_every_chain_with_the_same_result(monkeypatch):
    import bkbench.kernels.bk.thomas

    a, b, c = _inputs(batch=4, n=40)
    plain = bkbench.bk_core(a, b, c, 1j, impl="thomas")
    zero_pivot = bkbench.bk_core(torch.tensor([[0.0, 1.0]], dtype=torch.float64), 1.0, 1.0, 0.0, impl="thomas")
    monkeypatch.setattr(bkbench.kernels.bk.thomas, "guard_every_chain", lambda al: True)
    assert torch.equal(bkbench.bk_core(a, b, c, 1j, impl="thomas"), plain)
    guarded = bkbench.bk_core(torch.tensor([[0.0, 1.0]], dtype=torch.float64), 1.0, 1.0, 0.0, impl="thomas")
    assert torch.allclose(guarded, zero_pivot) and torch.allclose(guarded, torch.tensor([[-1.0 + 0j, 0j]],
                                                                                       dtype=torch.complex128))


def test_the_operator_returns_gs_real_view():
    """``bkbench::bk_core`` returns G's real view (inductor generates no code for complex tensors), float64 for
    float64 work; ``bk_core`` under torch.compile is still complex and equals the eager call."""
    torch._dynamo.reset()
    a, b, c = _inputs()
    out = bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", False)
    assert out.shape == (*a.shape, 2) and out.dtype == torch.float64
    eager = bkbench.bk_core(a, b, c, 1j, impl="thomas")
    assert torch.equal(torch.view_as_complex(out), eager)
    out32 = bk_core_op(a.float(), None, None, None, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, "thomas", "{}", False)
    assert out32.dtype == torch.float32

    def f(a):
        return bkbench.bk_core(a, b, c, 1j, impl="thomas")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(a)
    assert compiled.dtype == torch.complex128 and torch.equal(compiled, eager)


def test_the_autograd_kernel_runs_the_implementation_only_with_nothing_below_it(monkeypatch):
    """With no input requiring grad, the operator's Autograd kernel calls the implementation itself (one dispatch
    fewer: what a compiled graph runs) only for plain tensors with no dispatch mode active; fake tensors, functional
    tensors and an active mode take the dispatcher, whose fake kernel answers them."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    import bkbench.op as op

    a, b, c = _inputs()
    args = (b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "thomas", "{}", False)
    assert op._nothing_below_autograd(a, b, c, None)
    assert not op._nothing_below_autograd(torch._to_functional_tensor(a), b)
    calls = []
    impl = op._bk_core_impl
    monkeypatch.setattr(op, "_bk_core_impl", lambda *x: calls.append(1) or impl(*x))
    direct = bk_core_op(a, *args)
    assert calls == [1] and torch.equal(torch.view_as_complex(direct), bkbench.bk_core(a, b, c, 1j, impl="thomas"))
    with FakeTensorMode() as mode:
        fa, fb, fc = (mode.from_tensor(t) for t in (a, b, c))
        assert not op._nothing_below_autograd(fa, fb, fc, None)
        out = bk_core_op(fa, fb, fc, *args[2:])
    assert calls == [1] and out.shape == (*a.shape, 2)  # the fake kernel, not the implementation


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_compile_reduce_overhead_with_triton_fused():
    """``torch.compile(mode="reduce-overhead")`` (inductor's CUDA-graph trees) of a training step through
    ``bk_core``: warm-up, recording and replays match eager (the operators keep no buffer in the graphs' pool)."""
    torch._dynamo.reset()
    a, b, c = (t.cuda() for t in _inputs(batch=4, n=256, dtype=torch.float32))
    v = torch.nn.Parameter(0.1 * torch.randn(256, device="cuda"))
    w = torch.randn(4, 256, 2, device="cuda")

    def f(a):
        return (torch.view_as_real(bkbench.bk_core(a + v, b, c, 1j, impl="triton_fused")) * w).sum()

    f(a).backward()
    ge = v.grad.clone()
    compiled = torch.compile(f, fullgraph=True, mode="reduce-overhead")
    for _ in range(4):  # warm-up, recording, replays
        v.grad = None
        torch.compiler.cudagraph_mark_step_begin()
        compiled(a).backward()
        assert torch.allclose(v.grad, ge, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_of_forward_and_backward_is_eager_bitwise():
    """``torch.cuda.graph`` captures an eager ``bk_core`` forward and a forward + backward (warmed up on a side
    stream, where the calls are bound: ``BoundForward``, ``BoundGradForward``); replays on new values give what
    eager gives, bitwise, for G and for the gradient."""
    a, b, c = (t.cuda() for t in _inputs(batch=16, n=300, dtype=torch.float32, seed=1))
    static = a.clone()
    x = a.clone().requires_grad_(True)
    w = torch.randn(16, 300, dtype=torch.complex64, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            bkbench.bk_core(static, b, c, 1j, impl="triton_fused")
            x.grad = None
            (bkbench.bk_core(x, b, c, 1j, impl="triton_fused") * w).real.sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    fwd, both = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(fwd):
        out = bkbench.bk_core(static, b, c, 1j, impl="triton_fused")
    x.grad = None
    with torch.cuda.graph(both):
        (bkbench.bk_core(x, b, c, 1j, impl="triton_fused") * w).real.sum().backward()
    for seed in (2, 3):
        new = _inputs(batch=16, n=300, dtype=torch.float32, seed=seed)[0].cuda()
        static.copy_(new)
        with torch.no_grad():
            x.copy_(new)
        fwd.replay()
        both.replay()
        torch.cuda.synchronize()
        eager_x = new.clone().requires_grad_(True)
        g = bkbench.bk_core(eager_x, b, c, 1j, impl="triton_fused")
        (g * w).real.sum().backward()
        assert torch.equal(out, g.detach())
        assert torch.equal(x.grad, eager_x.grad)


@pytest.mark.parametrize("impl", ["thomas", "assoc_scan", "naive_loop", "triton_fused"])
def test_the_operator_below_autograd_records_no_graph(impl):
    """The operator's implementation runs without ``torch.no_grad()`` (it is below autograd): with grad enabled
    and a coupling that requires grad, its result still carries no autograd graph."""
    a, b, c = (t.to(TRITON_HOST if impl == "triton_fused" else "cpu")
               for t in _inputs(batch=3, n=8, dtype=torch.float32))
    b = b.clone().requires_grad_()
    with torch.enable_grad():
        out = bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, impl, "{}", False)
    assert out.grad_fn is None and not out.requires_grad
    assert torch.equal(torch.view_as_complex(out), bkbench.bk_core(a, b.detach(), c, 1j, impl=impl))
