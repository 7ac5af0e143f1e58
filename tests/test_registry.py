"""The registry is an explicit object: buildable in tests, discovering kernels/ and entry points."""

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from bkbench import Registry, bk_core, register
from bkbench.gate import run_gate
from bkbench.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent


def test_registry_built_by_hand():
    reg = Registry()

    @reg.register("mine", kind="bk", exact=True, devices=("cpu",), dtypes=(torch.float64,))
    def mine(a, k, z):
        from kernels.thomas import thomas

        return thomas(a, k, z)

    assert reg.names() == ["mine"]
    rec = reg.get("mine")
    assert (rec.kind, rec.exact, rec.devices, rec.differentiable) == ("bk", True, ("cpu",), False)
    g = bk_core(torch.randn(2, 5, dtype=torch.float64), 1.0, 1.0, impl="mine", registry=reg)
    assert g.shape == (2, 5)
    assert "mine" not in default_registry()  # nothing global changed


def test_register_is_pure_and_validates():
    @register("x_pure", kind="bk", devices=("cpu",))
    def f(a, k, z):
        return a

    assert f.__bkbench__[0].name == "x_pure"
    assert "x_pure" not in default_registry()
    with pytest.raises(ValueError, match="kind"):
        register("bad", kind="nope")(f)
    with pytest.raises(ValueError, match="error_model"):
        register("approx", exact=False)(f)


def test_duplicate_names_rejected():
    reg = Registry()
    reg.register("dup", devices=("cpu",))(lambda a, k, z: a)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("dup", devices=("cpu",))(lambda a, k, z: a)


def test_records_expose_contract_fields():
    for rec in default_registry().implementations(None):
        for field in ("name", "kind", "exact", "devices", "dtypes", "differentiable", "baseline"):
            assert hasattr(rec, field)
    assert sum(r.baseline for r in default_registry().implementations("bk")) == 1


def test_wrong_kernel_fails_the_gate_by_name_in_process():
    reg = Registry()
    reg.discover_package("kernels")

    @reg.register("wrong_on_purpose", devices=("cpu",), dtypes=(torch.float32, torch.float64))
    def wrong(a, k, z):
        from kernels.thomas import thomas

        g = thomas(a, k, z)
        return g * (1 + 1e-3)

    report = run_gate(registry=reg, impls=["thomas", "wrong_on_purpose"], quick=True, seeds=(0,))
    failing = {r.impl for r in report.failures}
    assert failing == {"wrong_on_purpose"}


def test_kernel_module_dropped_into_kernels_is_gated_and_fails_by_name(tmp_path):
    name = f"planted_wrong_{uuid.uuid4().hex[:8]}"
    path = ROOT / "kernels" / f"{name}.py"
    path.write_text(textwrap.dedent(f"""
        import torch
        from bkbench import register
        from kernels.thomas import thomas

        @register("{name}", devices=("cpu",), dtypes=(torch.float32, torch.float64))
        def {name}(a, k, z):
            g = thomas(a, k, z)
            g[..., -1] = g[..., -1] * 1.01  # wrong last element
            return g
    """))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bkbench", "gate", "--quick", "--seeds", "1", "--impl", name, "thomas",
             "--json", str(tmp_path / "gate.json")],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
    finally:
        path.unlink()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAIL {name}" in out.stdout
    assert "FAIL thomas" not in out.stdout
    assert (tmp_path / "gate.json").exists()
    assert f"gate: check 1: {name} :: N=1" in out.stderr  # a line per check when stderr is not a terminal


def test_broken_kernel_module_is_reported_not_hidden(tmp_path, monkeypatch):
    pkg = tmp_path / "plug_kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    reg.discover_package("plug_kernels")
    assert len(reg.failures) == 1 and "boom" in reg.failures[0].error
    report = run_gate(registry=reg, impls=[], quick=True)
    assert not report.passed


def test_gate_impl_flags_accumulate():
    """`bkbench gate --impl a --impl b` gates both (a repeated flag once replaced the earlier ones)."""
    from bkbench.cli import build_parser

    args = build_parser().parse_args(["gate", "--impl", "thomas", "--impl", "assoc_scan", "naive_loop"])
    assert args.impl == ["thomas", "assoc_scan", "naive_loop"]
