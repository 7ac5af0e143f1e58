"""The eager fast path of ``bk_core`` (``bkbench.bound_calls`` + ``triton_fused.bind``): a call of a signature seen
before skips the metadata work and gives the same result, bitwise, as the full path; new values in the same
buffers give new results; every error of the full path still comes; calls that cannot be bound (leading dims,
checked mode, options) take the full path, while broadcast couplings and shifts are bound (read in place); a call
whose input requires grad and the ``bkbench::bk_core_backward`` operator bind the backward too. The CPU interpreter
where no GPU exists (the tests set TRITON_INTERPRET=1 there); on a GPU machine, CUDA only: ``triton_fused`` does not
take CPU tensors with the interpreter off."""

from __future__ import annotations

import pytest
import torch

import bkbench
import bkbench.eager as eager
from bkbench import bound_calls
from bkbench.harness.problems import Inputs
from bkbench.harness.reference import reference

tf = pytest.importorskip("bkbench.kernels.bk.triton_fused")
from bkbench.kernels.bk._cplx_triton import interpreting  # noqa: E402
from bkbench.kernels.bk._triton_fused_bound import BoundForward, BoundGradForward, BoundVjp  # noqa: E402

HOST = "cpu" if interpreting() else "cuda"  # where the single-device tests run triton_fused


@pytest.fixture(params=sorted({HOST} | ({"cuda"} if torch.cuda.is_available() else set())))
def device(request):
    """The devices triton_fused takes here (overrides the suite-wide fixture, which always offers the CPU)."""
    return request.param


@pytest.fixture(autouse=True)
def _fresh_cache():
    bound_calls.clear()
    yield
    bound_calls.clear()


def _data(batch: int, n: int, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    a = (-2.0 + 0.5 * torch.randn(batch, n, generator=gen)).to(device)
    b = (1.0 + 0.3 * torch.rand(batch, n - 1, generator=gen)).to(device)
    c = (0.8 + 0.3 * torch.rand(batch, n - 1, generator=gen)).to(device)
    return a, b, c


def _forms(a, b, c):
    batch, dev = a.shape[0], a.device
    return {
        "b, c tensors": (b, c, 1j),
        "b is c": (b, b, 0.2 + 0.9j),
        "tensor, number": (b, 0.7, 1j),
        "number, tensor": (1.1, c, 0.5j),
        "numbers": (0.9, 1.2, 1j),
        "int numbers": (1, 1, 1j),
        "complex z tensor": (b, c, torch.full((batch,), 0.3 + 0.8j, dtype=torch.complex64, device=dev)),
        "real z tensor": (b, c, torch.full((batch,), -0.1, device=dev)),
        "column view of b": (b.t().contiguous().t(), c, 1j),
        "broadcast b (N-1,)": (b[0], c, 1j),
        "broadcast b, c (1, N-1)": (b[:1], c[1:2], 0.3 + 1j),
        "broadcast z (1,)": (b, c, torch.full((1,), 0.1 + 0.7j, dtype=torch.complex64, device=dev)),
    }


FORMS = list(_forms(*_data(2, 3, "cpu", 0)))


def _ref(a, b, c, z):
    """float64 G (CPU complex128) of (a, b, c, z) as the user holds them."""
    batch, n = a.shape

    def cpu(x, shape):  # broadcast operands as the full tensors they stand for
        return x.detach().cpu().expand(shape).contiguous() if isinstance(x, torch.Tensor) else x

    z = cpu(z, (batch,))
    zz = z.to(torch.complex128) if isinstance(z, torch.Tensor) else z
    return reference(Inputs(cpu(a, (batch, n)), cpu(b, (batch, n - 1)), cpu(c, (batch, n - 1)), zz))


def _full_path(a, b, c, z):
    """G through the full path (the cache forgotten first)."""
    bound_calls.clear()
    return bkbench.bk_core(a, b, c, z, impl="triton_fused")


def _refill(t, seed):
    if isinstance(t, torch.Tensor):
        gen = torch.Generator().manual_seed(seed)
        t.copy_(t + (0.1 * torch.rand(t.shape, generator=gen)).to(t.device))


@pytest.mark.parametrize("form,batch,n", [(f, 3, 2) for f in FORMS] + [(f, 2, 37) for f in FORMS]
                         + [("b, c tensors", 4, 300), ("numbers", 3, 300), ("complex z tensor", 2, 300)])
def test_bound_call_matches_the_full_path_on_new_values(device, form, batch, n):
    a, b, c = _data(batch, n, device, 1)
    args = _forms(a, b, c)[form]
    first = bkbench.bk_core(a, *args, impl="triton_fused")
    key = bound_calls.signature(a, *args, "triton_fused", eager.default_registry(), torch.is_grad_enabled())
    assert isinstance(bound_calls.bound(key), BoundForward)
    for seed in (2, 3):  # new values in the same buffers: a fresh result, not a remembered one
        _refill(a, seed)
        for t in args:
            _refill(t, seed + 10)
        fast = bkbench.bk_core(a, *args, impl="triton_fused")
        assert not torch.equal(fast, first)
        key = bound_calls.signature(a, *args, "triton_fused", eager.default_registry(), torch.is_grad_enabled())
        assert bound_calls.bound(key) is not None
        full = _full_path(a, *args)
        assert torch.equal(fast, full), form
        ref = _ref(a, *args)
        err = float((fast.cpu().to(torch.complex128) - ref).abs().max() / ref.abs().max())
        assert err < 1e-5, (form, err)
        bkbench.bk_core(a, *args, impl="triton_fused")  # bind again for the next round


def test_a_hit_does_no_metadata_work(monkeypatch):
    a, b, c = _data(2, 40, HOST, 0)
    g = bkbench.bk_core(a, b, c, 1j, impl="triton_fused")

    def boom(*args, **kwargs):
        raise AssertionError("full path taken")

    monkeypatch.setattr(eager, "call_args", boom)
    assert torch.equal(bkbench.bk_core(a, b, c, 1j, impl="triton_fused"), g)
    with pytest.raises(AssertionError, match="full path"):  # another shape is another signature
        bkbench.bk_core(a[:, :39].contiguous(), b[:, :38].contiguous(), c[:, :38].contiguous(), 1j,
                        impl="triton_fused")


@pytest.mark.parametrize("bad,match", [(float("nan"), "b: nan is not finite"), (float("inf"), "b: inf"),
                                       (10**400, "b: .* cannot be represented")])
def test_a_bad_number_after_binding_is_the_full_paths_error(bad, match):
    a, b, c = _data(2, 20, HOST, 0)
    bkbench.bk_core(a, 0.5, c, 1j, impl="triton_fused")
    bkbench.bk_core(a, 0.5, c, 1j, impl="triton_fused")
    with pytest.raises(ValueError, match=match):
        bkbench.bk_core(a, bad if not isinstance(bad, int) else bad, c, 1j, impl="triton_fused")


def test_a_bad_shift_after_binding_is_the_full_paths_error():
    a, b, c = _data(2, 20, HOST, 0)
    bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
    with pytest.raises(ValueError, match="z: .*not finite"):
        bkbench.bk_core(a, b, c, complex(float("nan"), 1.0), impl="triton_fused")


def test_coupling_grad_is_rejected_after_a_no_grad_binding():
    a, b, c = _data(2, 20, HOST, 0)
    b.requires_grad_(True)
    with torch.no_grad():
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
    with pytest.raises(ValueError, match="b: requires grad"):
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused")


def test_checked_calls_take_the_full_path():
    a, b, c = _data(2, 20, HOST, 0)
    bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
    a[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"a: .*NaN|a: .*not finite|a: .*Inf"):
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused", check=True)
    with bkbench.checked(), pytest.raises(ValueError, match="a:"):
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused")


def test_two_buffers_after_one_seen_twice():
    """A call whose b and c are two views of one buffer binds the two-tensor form, so a later call of the same
    signature with two different buffers reads both."""
    a, b, c = _data(2, 30, HOST, 0)
    bkbench.bk_core(a, b, b[:], 1j, impl="triton_fused")
    fast = bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
    assert torch.equal(fast, _full_path(a, b, c, 1j))


@pytest.mark.parametrize("case", ["broadcast over leading dims", "options", "auto on cpu"])
def test_calls_that_are_not_bound_stay_correct(case):
    a, b, c = _data(4, 25, HOST, 0)
    kwargs = {"impl": "triton_fused"}
    if case == "broadcast over leading dims":  # (2, 1, N-1) over (2, 2): its (B, N-1) view needs a copy
        b = b.reshape(2, 2, 24)[:, :1].expand(2, 2, 24).reshape(4, 24)
        args = (a.reshape(2, 2, 25), b.reshape(2, 2, 24)[:, :1], c.reshape(2, 2, 24), 1j)
    elif case == "options":
        args = (a, b, c, 1j)
        kwargs["tol"] = 1e-6
    else:
        args = (a.double(), b, c, 1j)
        kwargs = {}
    g1 = bkbench.bk_core(*args, **kwargs)
    g2 = bkbench.bk_core(*args, **kwargs)
    assert torch.equal(g1, g2)
    assert all(bound_calls.bound(k) is None for k in list(bound_calls._BOUND))
    ref = _ref(a, b, c, 1j)
    assert float((g2.detach().reshape(4, 25).to(torch.complex128) - ref).abs().max() / ref.abs().max()) < 1e-5


def _grads(a, b, c, z, w):
    """(G, grad a, grad z or None) of one training step through ``bk_core``."""
    a = a.detach().clone().requires_grad_(True)
    zg = z.detach().clone().requires_grad_(True) if isinstance(z, torch.Tensor) else z
    g = bkbench.bk_core(a, b, c, zg, impl="triton_fused")
    (g * w).real.sum().backward()
    return g.detach(), a.grad, zg.grad if isinstance(zg, torch.Tensor) else None


@pytest.mark.parametrize("form", ["b, c tensors", "numbers", "tensor, number", "complex z tensor", "real z tensor",
                                  "broadcast b (N-1,)", "broadcast z (1,)"])
def test_a_training_step_takes_the_bound_path(device, form, monkeypatch):
    """With an input that requires grad, a signature seen before runs the bound forward and the bound backward
    (``BoundGradForward``): G, grad a and grad z are bitwise those of the full path (``FusedGreen``), on new values
    too, and close to the float64 reference's gradient."""
    a, b, c = _data(3, 57, device, 4)
    args = _forms(a, b, c)[form]
    w = torch.randn(3, 57, dtype=torch.complex64, generator=torch.Generator().manual_seed(8)).to(device)
    full = _grads(a, *args, w)  # full path, then bound
    fast = _grads(a, *args, w)
    ag = a.detach().clone().requires_grad_(True)
    zg = args[2].detach().clone().requires_grad_(True) if isinstance(args[2], torch.Tensor) else args[2]
    key = bound_calls.signature(ag, args[0], args[1], zg, "triton_fused", eager.default_registry(), True)
    assert isinstance(bound_calls.bound(key), BoundGradForward)
    for x, y in zip(full, fast):
        assert (x is None and y is None) or torch.equal(x, y), form
    _refill(a, 9)
    monkeypatch.setattr(eager, "call_args", lambda *a, **k: pytest.fail("the bound call took the full path"))
    bound_step = _grads(a, *args, w)
    monkeypatch.undo()
    bound_calls.clear()
    full_step = _grads(a, *args, w)
    for x, y in zip(bound_step, full_step):
        assert (x is None and y is None) or torch.equal(x, y), form
    assert not torch.equal(bound_step[1], fast[1])
    # against float64 autograd through the reference formula (thomas in float64)
    a64 = a.detach().double().requires_grad_(True)
    b64, c64 = ((t.double() if isinstance(t, torch.Tensor) else t) for t in args[:2])
    g64 = bkbench.bk_core(a64, b64, c64, args[2] if not isinstance(args[2], torch.Tensor) else args[2].detach()
                          .to(torch.complex128), impl="thomas")
    (g64 * w.to(torch.complex128)).real.sum().backward()
    err = float((bound_step[1].double() - a64.grad).abs().max() / a64.grad.abs().max())
    assert err < (1e-3 if form == "real z tensor" else 1e-4), (form, err)  # z = -0.1: near the real axis


@pytest.mark.parametrize("bound", [False, True])
@pytest.mark.parametrize("changed", ["a", "b", "z"])
def test_an_operand_changed_in_place_before_backward_is_an_error(bound, changed):
    """The backward reads the forward's operands again: changing one in place between the two is autograd's usual
    error, on the full path (``FusedGreen``) and on the bound one (``_BoundGreen``), not a silently wrong
    gradient."""
    a, b, c = _data(2, 30, HOST, 3)
    z = torch.full((2,), 0.2 + 1j, dtype=torch.complex64)
    x = a.clone().requires_grad_(True)
    if bound:
        bkbench.bk_core(x, b, c, z, impl="triton_fused")  # binds the signature
    g = bkbench.bk_core(x, b, c, z, impl="triton_fused")
    if changed == "a":
        with torch.no_grad():
            x.add_(0.1)
    elif changed == "b":
        b.add_(0.1)
    else:
        z.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        g.real.sum().backward()


def test_leading_dims_are_bound(device, monkeypatch):
    """``a`` (2, 3, N) with ``b`` (2, 3, N-1) and a per-chain ``z`` (2, 3): the (B, N) views are the user's memory,
    so the call is bound, forward and training step; G and the gradients have the user's shapes and are bitwise
    those of the full path, on new values too."""
    gen = torch.Generator().manual_seed(11)
    a = (-2.0 + 0.5 * torch.randn(2, 3, 41, generator=gen)).to(device)
    b = (1.0 + 0.3 * torch.rand(2, 3, 40, generator=gen)).to(device)
    z = torch.full((2, 3), 0.2 + 0.9j, dtype=torch.complex64, device=device)
    w = torch.randn(2, 3, 41, dtype=torch.complex64, generator=gen).to(device)

    def step():
        x = a.clone().requires_grad_(True)
        zg = z.clone().requires_grad_(True)
        g = bkbench.bk_core(x, b, 0.8, zg, impl="triton_fused")
        (g * w).real.sum().backward()
        return bkbench.bk_core(a, b, 0.8, z, impl="triton_fused"), g.detach(), x.grad, zg.grad

    step()  # binds both signatures
    key = bound_calls.signature(a, b, 0.8, z, "triton_fused", eager.default_registry(), torch.is_grad_enabled())
    assert isinstance(bound_calls.bound(key), BoundForward)
    _refill(a, 12)
    with monkeypatch.context() as m:
        m.setattr(eager, "call_args", lambda *a, **k: pytest.fail("the bound call took the full path"))
        fast = step()
    bound_calls.clear()
    full = step()
    assert fast[0].shape == (2, 3, 41) and fast[2].shape == (2, 3, 41) and fast[3].shape == (2, 3)
    for x, y in zip(fast, full):
        assert torch.equal(x, y)
    ref = _ref(a.reshape(6, 41), b.reshape(6, 40), 0.8, z.reshape(6))
    err = float((fast[0].reshape(6, 41).cpu().to(torch.complex128) - ref).abs().max() / ref.abs().max())
    assert err < 1e-5


def test_the_backward_operator_binds_its_launch(device, monkeypatch):
    """``bkbench::bk_core_backward`` (a compiled training step's backward) binds like the forward: its second call
    of a signature does no metadata work and returns the first call's gradients bitwise."""
    from bkbench.op import bk_core_backward_op, bk_core_op

    a, b, c = _data(3, 40, device, 6)
    g = bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused", "{}", True)
    grad = torch.randn_like(g)
    z = torch.full((3,), 0.2 + 1j, dtype=torch.complex64, device=device)

    def bwd(zt, need_z):
        return bk_core_backward_op(grad, g, a, b, c, zt, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused", "{}", True,
                                   need_z)

    for zt, need_z in ((None, False), (z, True)):
        first = bwd(zt, need_z)
        key = bound_calls.signature(a, b, c, zt if zt is not None else 1j, "triton_fused", eager.default_registry(),
                                    ("vjp", True, need_z, grad.shape, grad.dtype, g.dtype))
        assert isinstance(bound_calls.bound(key), BoundVjp)
        with monkeypatch.context() as m:
            m.setattr(eager, "call_args", lambda *a, **k: pytest.fail("the backward operator took the full path"))
            second = bwd(zt, need_z)
        for x, y in zip(first, second):
            assert torch.equal(x, y)
        assert first[0].shape == a.shape and first[1].shape == ((3,) if need_z else (0,))


def test_the_cache_is_bounded(monkeypatch):
    a, b, c = _data(1, 8, HOST, 0)
    for n in range(2, 8):
        bkbench.bk_core(a[:, :n].contiguous(), b[:, : n - 1].contiguous(), 0.5, 1j, impl="triton_fused")
    assert len(bound_calls._BOUND) == 6
    monkeypatch.setattr(bound_calls, "_MAX_ENTRIES", 4)
    for n in range(2, 8):
        bkbench.bk_core(a[:, :n].contiguous(), 0.5, b[:, : n - 1].contiguous(), 1j, impl="triton_fused")
    assert 0 < len(bound_calls._BOUND) <= 4


@pytest.mark.parametrize("needs_grad", [False, True])
def test_the_operator_runs_the_bound_launch(monkeypatch, needs_grad):
    """``bkbench::bk_core`` (what a compiled graph calls) binds its forward like an eager call: its second call does
    no metadata work and matches the first call's path bitwise, for the forward of a training step too."""
    from bkbench.op import bk_core_op

    a, b, c = _data(3, 40, HOST, 5)

    def op():
        return bk_core_op(a, b, None, None, 0.0, 0.0, 0.7, 0.0, 0.0, 1.0, "triton_fused", "{}", needs_grad)

    first = op()
    assert first.shape == (*a.shape, 2) and first.dtype == torch.float32 and first.is_contiguous()  # G's real view
    key = bound_calls.signature(a, b, 0.7, 1j, "triton_fused", eager.default_registry(), ("op", needs_grad))
    assert isinstance(bound_calls.bound(key), BoundForward)
    monkeypatch.setattr(eager, "call_args", lambda *a, **k: pytest.fail("the operator took the full path"))
    assert torch.equal(op(), first)
    _refill(a, 3)
    assert not torch.equal(op(), first)


def _operator_calls(a, b, c):
    """Forward operator calls (full path, then the bound launch; with and without needs_grad) and backward operator
    calls; the last forward's real view of G."""
    from bkbench.op import bk_core_backward_op, bk_core_op

    for needs_grad in (False, True):
        for _ in range(3):
            out = bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused", "{}", needs_grad)
    for _ in range(3):
        bk_core_backward_op(torch.randn_like(out), out, a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused",
                            "{}", True, False)
    return out


def _kept_workspaces():
    import bkbench.kernels.bk._triton_fused_launch as launch_mod

    return (launch_mod._FLAGS, launch_mod._COUNTERS, launch_mod._SCRATCH)


def _clear_workspaces():
    bound_calls.clear()
    for cache in _kept_workspaces():
        cache.clear()


def _bound_launches():
    return [v for v in bound_calls._BOUND.values() if isinstance(v, (BoundForward, BoundVjp))]


def _kept_anything():
    return any(launch._buffers for launch in _bound_launches()) or any(cache for cache in _kept_workspaces())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA streams need a GPU")
def test_the_operators_keep_no_workspace_off_the_default_stream():
    """What a compiled graph calls (the ``bkbench::bk_core`` operators, forward and backward) keeps no buffer
    between calls when it runs off the device's default stream, as inductor's CUDA-graph trees warm up: that warm-up
    routes allocations to the graphs' pool and rejects a kept one ("tensor(s) in the cudagraph pool not tracked as
    outputs"). On the default stream the same calls keep their workspace (so this test sees the difference)."""
    from bkbench.workspace import pool_may_adopt

    _clear_workspaces()
    a, b, c = _data(3, 40, "cuda", 7)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        assert pool_may_adopt(a.device)
        out = _operator_calls(a, b, c)
    torch.cuda.current_stream().wait_stream(side)
    launches = _bound_launches()
    assert any(isinstance(v, BoundVjp) for v in launches)
    assert not _kept_anything()
    ref = _ref(a, b, c, 1j)
    assert torch.allclose(torch.view_as_complex(out).cpu().to(torch.complex128), ref, rtol=1e-4, atol=1e-5)
    _operator_calls(a, b, c)
    assert _kept_anything()


def test_the_operators_keep_their_workspace_where_no_graph_pool_can_adopt_it(device):
    """On the CPU, and on a CUDA device's default stream, the operators keep their workspace between calls as an
    eager call does (a fresh allocation and zero fill per call cost a compiled step about 15 µs per operator call on
    the development CPU), and give what the float64 reference gives."""
    from bkbench.workspace import pool_may_adopt

    _clear_workspaces()
    a, b, c = _data(3, 40, device, 7)
    assert not pool_may_adopt(a.device)
    out = _operator_calls(a, b, c)
    assert _kept_anything()
    ref = _ref(a, b, c, 1j)
    assert torch.allclose(torch.view_as_complex(out).cpu().to(torch.complex128), ref, rtol=1e-4, atol=1e-5)

