"""The registry is an explicit object: buildable in tests, discovering kernels/ and entry points."""

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from bkbench import Registry, bk_core, register
from bkbench.harness.gate import run_gate
from bkbench.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent


def test_registry_built_by_hand():
    reg = Registry()

    @reg.register("mine", kind="bk", exact=True, devices=("cpu",), dtypes=(torch.float64,))
    def mine(a, k, z):
        from bkbench.kernels.bk.thomas import thomas

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
    reg.discover_package("bkbench.kernels")

    @reg.register("wrong_on_purpose", devices=("cpu",), dtypes=(torch.float32, torch.float64))
    def wrong(a, k, z):
        from bkbench.kernels.bk.thomas import thomas

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
        from bkbench.kernels.bk.thomas import thomas

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
    from bkbench.harness.cli import build_parser

    args = build_parser().parse_args(["gate", "--impl", "thomas", "--impl", "assoc_scan", "naive_loop"])
    assert args.impl == ["thomas", "assoc_scan", "naive_loop"]


def test_auto_fallback_order_and_tuned_tables_are_record_fields():
    """impl="auto"'s fixed order and its shape buckets come from the records (fallback_rank, tuner), not from
    names written into the dispatcher; the gate's extra checks likewise (extra_checks)."""
    from bkbench import dispatch
    from bkbench.kernels.bk import _triton_fused_tables

    reg = default_registry()
    assert reg.fallback_order("cuda") == ("triton_fused", "assoc_scan", "thomas", "naive_loop")
    assert reg.fallback_order("cpu") == ("thomas", "assoc_scan", "naive_loop")
    assert dict(dispatch.FALLBACK_ORDER) == {d: reg.fallback_order(d) for d in ("cpu", "cuda")}
    assert dispatch.FALLBACK_ORDER.get("tpu", ()) == ()
    fused = reg.get("triton_fused")
    assert fused.load_tuner() is _triton_fused_tables and dispatch.tables() is _triton_fused_tables
    assert dispatch.bucket(1024, 4096) == _triton_fused_tables.bucket(1024, 4096) == "N4096_E4194304"
    assert callable(fused.load_extra_checks())
    others = [r for r in reg.implementations(None) if r.name != "triton_fused"]
    assert all(r.load_tuner() is None and r.load_extra_checks() is None for r in others)
    for path in ("bkbench/harness/gate.py", "bkbench/dispatch.py"):
        source = (ROOT / path).read_text()
        assert not [n for n in reg.names(None) if f'"{n}"' in source or f"'{n}'" in source], path
        assert "kernels." not in source and "import kernels" not in source, path


def test_fallback_rank_is_validated_and_orders_a_hand_built_registry():
    from bkbench import dispatch

    def g(a, k, z):
        from bkbench.kernels.bk.thomas import thomas

        return thomas(a, k, z)

    with pytest.raises(ValueError, match="fallback_rank"):
        register("x_rank", devices=("cpu",), fallback_rank={"cuda": 0})(g)
    with pytest.raises(ValueError, match="fallback_rank"):
        register("x_rank", devices=("cpu",), fallback_rank={"cpu": "first"})(g)
    reg = Registry()
    reg.register("late", devices=("cpu",), dtypes=(torch.float64,), fallback_rank={"cpu": 5})(g)
    reg.register("early", devices=("cpu",), dtypes=(torch.float32,), fallback_rank={"cpu": 1})(g)
    reg.register("unranked", devices=("cpu",), dtypes=(torch.float64,))(g)
    assert reg.fallback_order("cpu") == ("early", "late") and reg.fallback_order("cuda") == ()
    choice = dispatch.explain("cpu", torch.float64, 4, 64, reg, use_data=False).choice
    assert choice.impl == "late" and "first usable of early, late (skipped early: no float64 support)" in choice.reason
    with pytest.raises(ValueError, match="no registered implementation has a fallback_rank for cuda"):
        dispatch.explain("cuda", torch.float64, 4, 64, reg, use_data=False)


def _extra_rows(rec, device, *, quick, progress, jobs):
    """An ``extra_checks`` entry point (named by import path in the test below)."""
    if progress:
        progress(rec.name, "extra check")
    from bkbench.harness.gate_result import GateResult

    return [GateResult(rec.name, "extra check", f"{device}|quick={quick}|jobs={jobs}", "value", "fail",
                       detail="planted")]


def test_gate_runs_a_records_extra_checks():
    reg = Registry()

    @reg.register("mine_extra", devices=("cpu",), dtypes=(torch.float32, torch.float64),
                  extra_checks="tests.test_registry:_extra_rows")
    def mine(a, k, z):
        from bkbench.kernels.bk.thomas import thomas

        return thomas(a, k, z)

    seen = []
    report = run_gate(registry=reg, impls=["mine_extra"], quick=True, seeds=(0,), anticheat=False, tuned_jobs=3,
                      progress=lambda impl, case: seen.append((impl, case)))
    rows = [(r.impl, r.case, r.key) for r in report.failures]
    assert rows == [("mine_extra", "extra check", "cpu|quick=True|jobs=3")]
    assert seen[-1] == ("mine_extra", "extra check")
    assert not run_gate(registry=reg, impls=["mine_extra"], quick=True, seeds=(0,), anticheat=False,
                        tuned=False).failures  # --no-tuned leaves a record's extra checks out


def test_gate_and_baseline_battery_import_no_circle():
    """The gate's row type lives below both: the baseline battery does not import the gate, nor the tuned checks."""
    code = ("import sys, bkbench.harness.baselines.check, bkbench.harness.gate_tuned; "
            "assert 'bkbench.harness.gate' not in sys.modules, 'baselines.check or gate_tuned imported the gate'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_store_reads_forward_rows_read_only(tmp_path):
    from bkbench.store import Store

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert Store.bk_forward_rows(empty) == [] and empty.read_bytes() == b""  # no tables created
    (tmp_path / "junk.db").write_text("not sqlite")
    assert Store.bk_forward_rows(tmp_path / "junk.db") == []
    with Store(tmp_path / "bk.db") as st:
        run = st.start_run("s", "cuda", {"gpu": "G"})
        st.add_result(run, {"case_id": "a", "impl": "thomas", "kind": "bk", "mode": "fwd", "status": "ok", "n": 8,
                            "batch": 2, "device": "cuda", "dtype": "float32", "time_median_s": 0.5})
        st.add_result(run, {"case_id": "b", "impl": "thomas", "kind": "bk", "mode": "fwd+bwd", "status": "ok"})
    rows = Store.bk_forward_rows(tmp_path / "bk.db")
    assert rows == [{"impl": "thomas", "n": 8, "batch": 2, "status": "ok", "time_median_s": 0.5, "run_id": run,
                     "dtype": "float32", "mode": "fwd", "device": "cuda", "gpu": "G"}]
