"""Tuning cache, packaged H100 table, data-driven impl='auto' dispatch and the tune / explain-auto commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bkbench import dispatch
from bkbench.harness import tuning
from bkbench.harness.cli import main as cli_main
from bkbench.registry import default_registry
from bkbench.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_bucket_and_key():
    assert tuning.bucket(4096, 4096) == "N4096_E16777216"
    assert tuning.bucket(1000, 1000) == "N1024_E1048576"
    assert tuning.bucket(1, 1) == "N1_E1"
    assert tuning.key("GPU", torch.bfloat16, True, 8, 65536) == "GPU|bfloat16|scalar|N65536_E1048576"


def test_parse_shapes_rejects_bad_text():
    assert tuning.parse_shapes("16384x1024, 8x65536") == [(16384, 1024), (8, 65536)]
    for bad in ("", "4096", "4096x", "0x10", "axb"):
        with pytest.raises(ValueError, match="shapes"):
            tuning.parse_shapes(bad)


def test_cache_roundtrip_is_reused_by_a_new_process(cache_dir):
    from bkbench.kernels.bk.triton_fused import FusedConfig

    cfg = FusedConfig(seg=128, L=8, H=2, M1=4, warps=4)
    a = torch.zeros(16, 256)
    k = torch.ones(16, 255)
    kk = tuning.key(tuning.gpu_name(a.device), a.dtype, False, 16, 256)
    path = tuning.save_entry(kk, {"config": cfg.to_dict(), "ms": 1.0, "source": "test"})
    assert path.parent == cache_dir
    assert tuning.lookup(a, k)[0] == cfg
    # another process finds the same entry without searching
    code = ("import torch; from bkbench.harness import tuning; "
            "print(tuning.lookup(torch.zeros(16, 256), torch.ones(16, 255))[0].to_dict())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1].replace("'", '"')) == cfg.to_dict()


def test_lookup_falls_back_to_defaults_without_entries(cache_dir):
    from bkbench.kernels.bk.triton_fused import BwdConfig, FusedConfig

    fwd, bwd = tuning.lookup(torch.zeros(3, 77), torch.ones(3, 76))
    assert fwd == FusedConfig() and bwd == BwdConfig()


def test_corrupt_cache_is_ignored(cache_dir):
    cache_dir.mkdir(parents=True)
    (cache_dir / tuning.CACHE_NAME).write_text("{not json")
    assert tuning.load_cache() == {}


def test_packaged_tables_are_valid_and_name_their_gpu():
    from bkbench.kernels.bk import _triton_fused_tables as tables
    from bkbench.kernels.bk.triton_fused import FusedConfig

    found = {gpu.name: entries for gpu, _, entries in tables.packaged_tables()}
    assert {"NVIDIA H100 80GB HBM3", "NVIDIA H200"} <= set(found)
    for gpu, _, entries in tables.packaged_tables():
        assert gpu.sms > 0 and gpu.memory_gib > 0 and gpu.cc == "9.0" and len(entries) >= 3
        for kk, entry in entries.items():
            dtype, coupling, bucket = kk.split("|")
            assert coupling in ("k", "scalar") and bucket.startswith("N")
            FusedConfig.from_dict(entry["config"])
            assert entry["ms"] > 0 and entry["source"]


def test_table_for_an_unknown_gpu_is_the_nearest_known_one():
    from bkbench.kernels.bk._triton_fused_tables import GpuId, table_for

    h200 = GpuId("NVIDIA H200", 132, 140, "9.0")
    assert table_for(h200)[0] == "exact" and table_for(h200)[1] == "triton_fused_h200.json"
    nvl = GpuId("NVIDIA H200 NVL", 132, 140, "9.0")  # another name: nearest, by SM count and memory
    how, name, _ = table_for(nvl)
    assert how.startswith("nearest") and name == "triton_fused_h200.json"
    h100_pcie = GpuId("NVIDIA H100 PCIe", 114, 80, "9.0")
    assert table_for(h100_pcie)[1] == "triton_fused_h100.json"
    assert table_for(GpuId("NVIDIA A100-SXM4-80GB", 108, 80, "8.0"))[0].startswith("nearest")


def test_search_space_and_stages():
    space = tuning.fwd_space()
    assert len({json.dumps(c, sort_keys=True) for c in space}) == len(space)
    first = tuning.stage1()
    assert all(c in space for c in first)
    second = tuning.stage2(first[0])
    assert all(c in space and c not in first for c in second)
    from bkbench.kernels.bk.triton_fused import BwdConfig, FusedConfig

    assert FusedConfig().to_dict() in space
    for c in tuning.bwd_space():
        BwdConfig.from_dict(c)
    assert BwdConfig().to_dict() in tuning.bwd_space()  # so the tuner reports the default's time


def test_configs_with_the_same_launch_are_measured_once():
    """seq only matters for chains of one to two tiles: elsewhere the seq = 1 / 2 twins are one launch."""
    space = tuning.fwd_space()
    seq1 = [c for c in space if c["seq"] == 1]
    assert len(seq1) * 2 == len(space) and all({**c, "seq": 2} in space for c in seq1)  # the space searches seq 2
    n1024 = tuning.distinct(space, 16384, 1024)  # seg*L = 512 < 1024 <= 1024 for the one-warp seg 32 / L 16 tile
    n65536 = tuning.distinct(space, 256, 65536)  # longer than two of the largest tiles: seq never applies
    assert len(n65536) == len(seq1) and len(n65536) < len(n1024) < len(space)
    assert all(tuning.launch_of(c, 256, 65536).seq == 1 for c in n65536)
    assert any(tuning.launch_of(c, 16384, 1024).seq == 2 for c in n1024)
    assert tuning.distinct(seq1, 16384, 1024) == seq1  # without the seq twins, no two configs launch the same


def test_the_space_holds_what_the_h200_sweep_found_fastest():
    """The packaged H200 table's configs (L 32 at N = 1024, two tiles in sequence, M1 12) are in the tuner's space,
    so a GPU without a table can find them (issue 23: the search space widened to what the kernel needs)."""
    space = tuning.fwd_space()
    table = json.loads((tuning.tables.DATA_DIR / "triton_fused_h200.json").read_text())
    configs = [tuning.FusedConfig.from_dict(e["config"]).to_dict() for e in table["entries"].values()]  # every field
    assert configs and all(c in space for c in configs)
    for best in tuning.stage1():  # stage 2 offers them on every tile
        offered = tuning.stage2(best)
        assert any(c["L"] == 32 for c in offered) and any(c["seq"] == 2 for c in offered)
        assert any(c["M1"] == 12 for c in offered)


def test_entries_written_before_seq_load_as_measured():
    from bkbench.kernels.bk.triton_fused import FusedConfig

    old = {"seg": 64, "L": 16, "H": 1, "M1": 16, "warps": 2, "stages": 1, "maxpass": 4, "store": 0}
    assert FusedConfig.from_dict(old).seq == 1 and FusedConfig(seq=2).seq == 2
    assert FusedConfig.from_dict(FusedConfig().to_dict()) == FusedConfig()


def _store_with(tmp_path, rows, gpu="TestGPU"):
    db = tmp_path / "bk.db"
    with Store(db) as st:
        run = st.start_run("s", "cuda", {"gpu": gpu})
        for i, r in enumerate(rows):
            st.add_result(run, {"case_id": f"c{i}", "kind": "bk", "mode": "fwd", "device": "cuda", "dtype": "float32",
                                "n": 4096, "batch": 1024, **r})
    return db


def test_dispatch_picks_fastest_correct_measured_impl(tmp_path):
    reg = default_registry()
    db = _store_with(tmp_path, [
        {"impl": "thomas", "status": "ok", "time_median_s": 0.2},
        {"impl": "assoc_scan", "status": "ok", "time_median_s": 0.02},
        {"impl": "naive_loop", "status": "incorrect", "time_median_s": 0.001},
    ])
    ev = dispatch.explain("cuda", torch.float32, 1024, 4096, reg, store_path=db, gpu="TestGPU")
    assert ev.choice.impl == "assoc_scan", ev.choice
    assert "fastest measured" in ev.choice.reason
    assert ev.candidates["naive_loop"]["incorrect"]
    # another bucket has no data: deterministic fallback
    ev2 = dispatch.explain("cuda", torch.float32, 8, 65536, reg, store_path=db, gpu="TestGPU")
    assert "fallback order" in ev2.choice.reason


def test_dispatch_uses_packaged_h100_data_and_respects_dtype(tmp_path):
    reg = default_registry()
    missing = tmp_path / "none.db"
    ev = dispatch.explain("cuda", torch.float32, 1024, 4096, reg, store_path=missing, gpu="NVIDIA H100 80GB HBM3")
    assert ev.choice.impl == "triton_fused" and "auto_h100.json" in ev.choice.reason
    ev64 = dispatch.explain("cuda", torch.float64, 1024, 4096, reg, store_path=missing, gpu="NVIDIA H100 80GB HBM3")
    assert ev64.choice.impl != "triton_fused"
    assert "float64" in ev64.candidates["triton_fused"]["usable"]


def test_choose_keeps_its_signature_and_is_deterministic():
    reg = default_registry()
    c1 = dispatch.choose("cpu", torch.float64, 4, 64, reg)
    c2 = dispatch.choose("cpu", torch.float64, 4, 64, reg)
    assert c1 == c2 and c1.impl in reg
    with pytest.raises(ValueError, match="device"):
        dispatch.choose("tpu", torch.float32, 4, 64, reg)


def test_explain_auto_command(capsys):
    rc = cli_main(["explain-auto", "--device", "cuda", "--n", "4096", "--batch", "1024", "--dtype", "float32",
                   "--gpu", "NVIDIA H100 80GB HBM3", "--db", "/nonexistent/bk.db"])
    out = capsys.readouterr().out
    assert rc == 0 and "pick: triton_fused" in out and "N4096_E4194304" in out


def test_tune_command_dry_run_and_errors(capsys, cache_dir):
    assert cli_main(["tune", "--dry-run", "--shapes", "4096x4096,8x65536"]) == 0
    assert "N65536_E1048576" in capsys.readouterr().out
    assert cli_main(["tune", "--shapes", "4096by4096"]) == 2
    assert cli_main(["tune", "--impl", "thomas", "--dry-run"]) == 2
