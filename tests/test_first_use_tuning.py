"""Opt-in tuning of triton_fused on first use: once per bucket, bounded, cached, never fatal to the call."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from bkbench.harness import first_use_tuning, tuning
from bkbench.harness.cli import main as cli_main
from bkbench.kernels.bk import _triton_fused_tables as tables
from bkbench.kernels.bk._cplx_triton import interpreting
from bkbench.kernels.bk.triton_fused import BwdConfig, FusedConfig

UNKNOWN = tables.GpuId("NVIDIA Imaginary X1", 100, 64, "9.0")  # no packaged table of its own: nearest is used
H200 = tables.GpuId("NVIDIA H200", 132, 140, "9.0")
CUDA = torch.device("cuda", 0)


@pytest.fixture
def fresh(cache_dir, monkeypatch):
    """An empty user cache, no tuner, no memo, no earlier warnings; ``gpu(GpuId)`` fakes the CUDA device."""
    monkeypatch.setattr(tables, "_WARNED", set())
    first_use_tuning.disable()

    def gpu(g: tables.GpuId) -> None:
        monkeypatch.setattr(tables, "gpu_id", lambda index=None: g)
        tables.clear_memo()

    yield gpu
    first_use_tuning.disable()


def _recording_tuner(calls: list, cfg: FusedConfig):
    def tuner(device, dtype, scalar, batch, n):
        calls.append((dtype, scalar, batch, n))
        key = tuning.key(tables.gpu_id().label(), dtype, scalar, batch, n)
        tuning.save_entry(key, {"config": cfg.to_dict(), "ms": 1.0, "source": "first use", "searched": 3,
                                "space": 40, "budget_s": 5.0})
    return tuner


def test_the_tuner_runs_once_per_bucket_and_its_entry_is_read(fresh):
    fresh(UNKNOWN)
    with pytest.warns(tables.UntunedGpuWarning):
        before = tables.lookup(CUDA, torch.float32, False, 4096, 4096)
    assert before.origin == "nearest" and not before.tuned_here
    tables.clear_memo()
    calls: list = []
    tuned = FusedConfig(seg=64, L=8, H=2, M1=8, warps=2)
    tables.set_first_use_tuner(_recording_tuner(calls, tuned))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a tuner installed there is nothing to warn about
        found = tables.lookup(CUDA, torch.float32, False, 4096, 4096)
    assert calls == [(torch.float32, False, 4096, 4096)]
    assert found.fwd == tuned and found.origin == "user cache" and found.tuned_here
    assert "first use: 3 of 40" in found.source
    # same bucket, another shape in it: read from the cache, not tuned again; another bucket: tuned once
    assert tables.lookup(CUDA, torch.float32, False, 4000, 4096).fwd == tuned
    tables.lookup(CUDA, torch.bfloat16, True, 8, 65536)
    tables.lookup(CUDA, torch.bfloat16, True, 8, 65536)
    assert len(calls) == 2
    # the CPU never tunes on first use
    tables.lookup(torch.device("cpu"), torch.float32, False, 3, 77)
    assert len(calls) == 2


def test_a_gpu_with_its_own_table_tunes_only_buckets_the_table_lacks(fresh):
    fresh(H200)
    calls: list = []
    tables.set_first_use_tuner(_recording_tuner(calls, FusedConfig(seg=64, L=8, H=2, M1=8, warps=2)))
    assert tables.lookup(CUDA, torch.float32, False, 4096, 4096).origin == "exact"
    assert calls == []
    own = {k for _, name, entries in tables.packaged_tables() if name == "triton_fused_h200.json" for k in entries}
    assert tables.entry_key(torch.float16, True, 3, 77) not in own
    tables.lookup(CUDA, torch.float16, True, 3, 77)
    assert calls == [(torch.float16, True, 3, 77)]


def test_a_failing_tuner_warns_and_the_call_keeps_its_fallback(fresh):
    fresh(UNKNOWN)
    fallback = tables.explain(CUDA, torch.float32, False, 4096, 4096)

    def broken(*args):
        raise RuntimeError("out of memory")

    tables.set_first_use_tuner(broken)
    with pytest.warns(tables.UntunedGpuWarning, match="out of memory"):
        found = tables.lookup(CUDA, torch.float32, False, 4096, 4096)
    assert found == fallback


def test_nothing_is_tuned_or_memoised_while_a_cuda_graph_is_captured(fresh, monkeypatch):
    fresh(UNKNOWN)
    calls: list = []
    tables.set_first_use_tuner(_recording_tuner(calls, FusedConfig(seg=64, L=8, H=2, M1=8, warps=2)))
    monkeypatch.setattr(tables, "capturing", lambda: True)
    assert tables.lookup(CUDA, torch.float32, False, 4096, 4096).origin == "nearest" and calls == []
    monkeypatch.setattr(tables, "capturing", lambda: False)
    assert tables.lookup(CUDA, torch.float32, False, 4096, 4096).origin == "user cache" and len(calls) == 1


def test_without_a_tuner_an_untabled_gpu_warns_once_and_a_tabled_one_never(fresh):
    fresh(UNKNOWN)
    with pytest.warns(tables.UntunedGpuWarning, match="bkbench tune") as record:
        tables.lookup(CUDA, torch.float32, False, 4096, 4096)
        tables.lookup(CUDA, torch.float32, False, 16384, 1024)
    assert len([w for w in record if w.category is tables.UntunedGpuWarning]) == 1
    fresh(H200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables.lookup(CUDA, torch.float32, False, 4096, 4096)
        tables.lookup(CUDA, torch.float16, True, 3, 77)  # a bucket the H200 table lacks: defaults, silently


@pytest.mark.parametrize("bad", [0, -1.0, "60", True, float("nan")])
def test_enable_rejects_a_bad_budget(bad):
    with pytest.raises(ValueError, match="budget_s"):
        first_use_tuning.enable(budget_s=bad)
    assert not first_use_tuning.enabled()


@pytest.mark.skipif(not interpreting(), reason="the CPU search needs TRITON_INTERPRET=1 (the GPU test covers CUDA)")
def test_a_real_search_within_a_spent_budget_keeps_the_fallback_and_says_so(fresh):
    """The tuner end to end (Triton interpreter, CPU tensors): a budget already spent measures only the
    configs the call would have run, checks them against float64 and caches them as a first-use entry."""
    entry = first_use_tuning.tune_bucket(torch.device("cpu"), torch.float32, False, 2, 12, budget_s=1e-6,
                                         with_bwd=True)
    assert entry is not None and entry["source"] == "first use" and entry["deadline_reached"]
    assert entry["searched"] == 1 and entry["space"] > 1 and entry["check_error"] < 2e-4
    assert FusedConfig.from_dict(entry["config"]) == FusedConfig()  # the CPU's fallback: the defaults
    assert BwdConfig.from_dict(entry["bwd_config"]) == BwdConfig()
    assert entry["fallback"].startswith("built-in defaults") and entry["fallback_ms"] == entry["ms"]
    found = tables.explain(torch.device("cpu"), torch.float32, False, 2, 12)
    assert found.origin == "user cache" and "1 of" in found.source


def test_explain_auto_offers_tuning_on_a_gpu_without_a_table(capsys):
    rc = cli_main(["explain-auto", "--device", "cuda", "--n", "4096", "--batch", "1024",
                   "--gpu", "NVIDIA Imaginary X1", "--db", "/nonexistent/bk.db"])
    out = capsys.readouterr().out
    assert rc == 0 and "not tuned on this GPU" in out and "first_use_tuning.enable" in out


def test_tune_writes_a_packaged_table_from_measured_entries_and_merges_calls(fresh, tmp_path, monkeypatch, capsys):
    fresh(UNKNOWN)
    cfg = FusedConfig(seg=64, L=8, H=2, M1=8, warps=2)
    for dtype, bn in ((torch.float32, (4096, 4096)), (torch.bfloat16, (16384, 1024))):
        tuning.save_entry(tuning.key(UNKNOWN.label(), dtype, False, *bn),
                          {"config": cfg.to_dict(), "ms": 0.1, "default_ms": 0.12, "source": "tuned"})
    tuning.save_entry(tuning.key("another GPU [1 SMs, 1 GiB, sm_90]", torch.float32, False, 8, 8),
                      {"config": cfg.to_dict(), "ms": 0.1, "source": "tuned"})
    data = tmp_path / "data"
    path = data / "triton_fused_x1.json"
    assert cli_main(["tune", "--write-table", str(path), "--from-cache"]) == 0
    first = json.loads(path.read_text())
    assert tables.GpuId.from_dict(first["gpu"]) == UNKNOWN
    assert sorted(first["entries"]) == ["bfloat16|k|N1024_E16777216", "float32|k|N4096_E16777216"]
    # a later call with one more bucket adds to the same table
    tuning.save_entry(tuning.key(UNKNOWN.label(), torch.float32, True, 8, 65536),
                      {"config": cfg.to_dict(), "ms": 0.01, "source": "tuned"})
    assert cli_main(["tune", "--write-table", str(path), "--from-cache"]) == 0
    assert len(json.loads(path.read_text())["entries"]) == 3
    # the library reads it as this GPU's own table
    monkeypatch.setattr(tables, "DATA_DIR", data)
    tables.clear_memo()
    assert tables.table_for(UNKNOWN)[0] == "exact"
    monkeypatch.setenv("BKBENCH_CACHE_DIR", str(tmp_path / "empty-cache"))
    found = tables.explain(CUDA, torch.float32, False, 4096, 4096)
    assert found.origin == "exact" and found.fwd == cfg
    # another GPU may not write into it; flags are checked
    fresh(H200)
    capsys.readouterr()
    assert cli_main(["tune", "--write-table", str(path), "--from-cache"]) == 2
    assert "not of this GPU" in capsys.readouterr().err
    assert cli_main(["tune", "--from-cache"]) == 2
    assert cli_main(["tune", "--dtype", "float32,bf16", "--dry-run"]) == 2


def test_tune_dry_run_lists_every_dtype(fresh, capsys):
    assert cli_main(["tune", "--dtype", "float32,bfloat16", "--coupling", "k", "--shapes", "8x65536",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "float32|k|N65536" in out and "bfloat16|k|N65536" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="first-use tuning of real kernels needs a CUDA GPU")
def test_on_a_gpu_the_first_call_tunes_within_its_budget_and_stays_correct(fresh):
    """The whole path on a real GPU presented as one without a table: the user's first ``bk_core`` call tunes
    its bucket (forward only, a 20 s budget), the entry lands in the user cache, and G matches float64."""
    import bkbench

    fresh(UNKNOWN)
    first_use_tuning.enable(budget_s=20, with_bwd=False)
    gen = torch.Generator().manual_seed(3)
    a = (-2.0 + 0.5 * torch.randn(48, 1000, generator=gen)).cuda()  # a shape no other test uses
    b = (1.0 + 0.1 * torch.randn(48, 999, generator=gen)).cuda()
    g = bkbench.bk_core(a, b, b, 1j, impl="triton_fused")
    entry = tuning.load_cache()[tuning.key(UNKNOWN.label(), torch.float32, False, 48, 1000)]
    assert entry["source"] == "first use" and entry["searched"] >= 1 and entry["check_error"] < 2e-4
    assert entry["wall_s"] < 20 + 120  # the budget, plus one compile that may start just before it ends
    ref = bkbench.bk_core(a.double().cpu(), b.double().cpu(), b.double().cpu(), 1j, impl="thomas")
    assert torch.allclose(g.cpu().to(torch.complex128), ref, rtol=1e-4, atol=1e-5)
