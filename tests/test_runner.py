"""The suite runner: crash isolation, timeouts, resume after a kill, sharding, export, suites.

Planted implementations (a module written to a temporary directory and loaded as a ``--plugin``) make a
worker segfault, hang, run out of memory, raise, or return wrong numbers; every other case of the suite must
still complete, and each planted failure must be stored with the right status.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bkbench.harness.pool import WorkerHandle, drive
from bkbench.harness.runner import plan, run_suite
from bkbench.harness.suites import list_suites, load_suite, parse_suite, shard
from bkbench.store import Store

ROOT = Path(__file__).resolve().parent.parent

PLANTED = textwrap.dedent(
    '''
    """Planted implementations for tests/test_runner.py."""
    import ctypes
    import os
    import time

    import torch

    from bkbench import register
    from bkbench.kernels.bk.thomas import thomas as _thomas

    DT = (torch.float32, torch.float64)


    @register("planted_segfault", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_segfault(a, k, z):
        """Reads address 0: the worker dies with SIGSEGV."""
        ctypes.string_at(0)
        return _thomas(a, k, z)


    @register("planted_hang", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_hang(a, k, z):
        """Never returns."""
        while True:
            time.sleep(1)


    @register("planted_oom", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_oom(a, k, z):
        """Fails to allocate."""
        raise MemoryError("planted: cannot allocate")


    @register("planted_raise", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_raise(a, k, z):
        """Raises a Python exception (the worker survives)."""
        raise RuntimeError("planted failure")


    @register("planted_wrong", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_wrong(a, k, z):
        """Finite but wrong: G = 1 / (a - z) ignores the couplings."""
        return 1.0 / (a.to(z.dtype) - z[:, None])


    @register("planted_slow", kind="bk", devices=("cpu", "cuda"), dtypes=DT)
    def planted_slow(a, k, z):
        """Correct, but takes >= 20 ms per call."""
        time.sleep(0.02)
        return _thomas(a, k, z)
    '''
)


@pytest.fixture()
def planted(tmp_path, monkeypatch):
    """Make ``planted_kernels`` importable here and in the workers."""
    mod_dir = tmp_path / "plug"
    mod_dir.mkdir()
    (mod_dir / "planted_kernels.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mod_dir), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    sys.modules.pop("planted_kernels", None)
    return mod_dir


def _suite(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body) + FAST)
    return path


FAST = """
[settings]
budget_s = 0.02
warmup_s = 0.0
min_reps = 3
min_reps_long = 2
timeout_s = 60
"""


def test_crash_hang_oom_and_wrong_are_isolated(tmp_path, planted):
    suite = _suite(tmp_path, """
        name = "isolation"
        [[group]]
        name = "g"
        implementations = ["thomas", "planted_segfault", "planted_hang", "planted_oom", "planted_raise",
                           "planted_wrong", "assoc_scan"]
        n = [8, 33]
        batch = [1]
        d = [2]
        [caps.planted_hang]
        max_n = 8
        timeout_s = 4
        [caps.planted_segfault]
        max_n = 8
        """)
    db = tmp_path / "r.db"
    summary = run_suite(str(suite), device="cpu", db=db, plugins=["planted_kernels"], progress=False,
                        log_dir=tmp_path / "logs")
    assert summary.total == 14 and summary.executed == 14 and not summary.interrupted
    with Store(db) as store:
        rows = {(r["impl"], r["n"]): r for r in store.results()}
    assert len(rows) == 14
    for impl in ("thomas", "assoc_scan"):
        for n in (8, 33):
            r = rows[(impl, n)]
            assert r["status"] == "ok", r["reason"]
            assert r["time_median_s"] > 0 and r["rel_err"] < 1e-4 and r["n_samples"] >= 2
    seg = rows[("planted_segfault", 8)]
    assert seg["status"] == "crash" and "SIGSEGV" in seg["reason"] and "first call" in seg["reason"]
    hang = rows[("planted_hang", 8)]
    assert hang["status"] == "timeout" and "4 s" in hang["reason"]
    for n in (8, 33):
        assert rows[("planted_oom", n)]["status"] == "oom"
        assert rows[("planted_raise", n)]["status"] == "crash"
        assert "planted failure" in rows[("planted_raise", n)]["reason"]
        wrong = rows[("planted_wrong", n)]
        assert wrong["status"] == "incorrect" and wrong["time_median_s"] is None and wrong["rel_err"] > 1e-2
    for impl in ("planted_segfault", "planted_hang"):
        r = rows[(impl, 33)]
        assert r["status"] == "skipped" and "suite cap" in r["reason"]


def test_kill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path, planted):
    suite = _suite(tmp_path, """
        name = "resume"
        [[group]]
        name = "g"
        implementations = ["planted_slow", "thomas"]
        n = [8, 9, 10, 11, 12, 13]
        batch = [1]
        d = [2]
        """)
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "bkbench", "run", str(suite), "--device", "cpu", "--db", str(db),
           "--plugin", "planted_kernels", "--no-progress", "--log-dir", str(tmp_path / "logs")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if db.exists():
                with sqlite3.connect(db) as conn:
                    try:
                        stored = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                    except sqlite3.OperationalError:
                        stored = 0
            if stored >= 3:
                break
        assert proc.poll() is None, "the run finished before it could be killed; make the cases slower"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with Store(db) as store:
        before = {r["case_id"]: (r["id"], r["created"], r["time_median_s"]) for r in store.results()}
        assert store.runs()[0]["status"] == "running"
    total = 12
    assert 3 <= len(before) < total
    summary = run_suite(str(suite), device="cpu", db=db, resume=True, plugins=["planted_kernels"], progress=False,
                        log_dir=tmp_path / "logs")
    assert summary.already_done == len(before)
    assert summary.executed == total - len(before)
    with Store(db) as store:
        rows = store.results()
        runs = store.runs()
    assert len(runs) == 1 and runs[0]["status"] == "finished"
    ids = [r["case_id"] for r in rows]
    assert len(ids) == total and len(set(ids)) == total
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:  # rows stored before the kill are untouched
        if r["case_id"] in before:
            assert (r["id"], r["created"], r["time_median_s"]) == before[r["case_id"]]
    again = run_suite(str(suite), device="cpu", db=db, resume=True, plugins=["planted_kernels"], progress=False)
    assert again.executed == 0 and again.already_done == total


def test_two_workers_share_the_queue(tmp_path, planted):
    suite = load_suite(_suite(tmp_path, """
        name = "pool"
        [[group]]
        name = "g"
        implementations = ["thomas", "planted_slow"]
        n = [8, 16, 24]
        batch = [1]
        d = [1]
        """))
    cases = plan(suite, "cpu", plugins=["planted_kernels"])
    db = tmp_path / "p.db"
    store = Store(db)
    run_id = store.start_run("pool", "cpu", {})
    workers = [WorkerHandle(f"w{i}", "cpu", None, ["planted_kernels"], tmp_path, measure_bandwidth=False)
               for i in range(2)]
    try:
        drive(workers, [[c] for c in cases], lambda row: store.add_result(run_id, row), show=False)
    finally:
        for w in workers:
            w.stop()
    rows = store.results()
    store.close()
    assert sorted(r["case_id"] for r in rows) == sorted(c.case_id for c in cases)
    used = {json.loads(r["metrics_json"])["worker"] for r in rows}
    assert used == {"w0", "w1"}
    assert {r["host"] for r in rows} == {socket.gethostname()}  # every row says where it ran


def test_a_worker_that_cannot_start_does_not_hang_the_run(tmp_path):
    """A worker whose process dies before saying hello (here: a plugin it cannot import) is reported and the
    loop ends (it used to wait forever); its cases get no row, so the run lacks them and --resume runs them."""
    import threading

    from bkbench.harness.console import make_console

    cases = plan("quick", "cpu")[:2]
    rows: list[dict] = []
    worker = WorkerHandle("w", "cpu", None, ["no_such_module_for_bkbench"], tmp_path, measure_bandwidth=False)
    loop = threading.Thread(target=drive, args=([worker], [[c] for c in cases], rows.append),
                            kwargs={"show": False, "console": make_console()}, daemon=True)
    loop.start()
    loop.join(timeout=120)
    assert not loop.is_alive() and rows == []


PROTOCOL_WORKER = """
import os, sys, time
from bkbench.harness.worker_protocol import connect, serve

channel = connect()
print("a kernel's print on stdout", flush=True)
channel.hello(note=sys.argv[1])


def echo(req):
    channel.progress(stage="echoing")
    print("noise", flush=True)
    return {"echo": req["x"]}


def die(req):
    print("about to die", flush=True)
    os._exit(7)


serve(channel, {"echo": echo, "sleep": lambda req: time.sleep(60) or {}, "die": die,
                "raise": lambda req: 1 / 0})
"""


def test_worker_protocol_answers_times_out_and_reports_death(tmp_path):
    """bkbench.harness.worker_protocol, both sides: hello with the script's arguments, answers with progress, prints
    kept out of the channel (in the log), a handler's exception answered as an error, a deadline, a death with its exit
    status and log tail, a restart, a clean exit."""
    from bkbench.harness.worker_protocol import WorkerDied, WorkerProcess, WorkerTimeout, script_command

    script = tmp_path / "w.py"
    script.write_text(PROTOCOL_WORKER)
    w = WorkerProcess("t", script_command(script, "hi"), tmp_path / "logs" / "t.log", pythonpath=[ROOT],
                      env={"X_TEST": "1"})
    assert w.start(timeout_s=60)["note"] == "hi"
    seen = []
    ans = w.request("echo", x=[1, 2], on_progress=seen.append)
    assert ans == {"op": "answer", "ok": True, "echo": [1, 2]} and seen == [{"op": "progress", "stage": "echoing"}]
    err = w.request("raise")
    assert not err["ok"] and err["error"].startswith("ZeroDivisionError")
    with pytest.raises(WorkerTimeout):
        w.request("sleep", timeout_s=0.5)
    assert w.alive() and w.kill() == -signal.SIGKILL and not w.alive()
    w.start(timeout_s=60)
    with pytest.raises(WorkerDied) as died:
        w.request("die")
    assert died.value.code == 7 and "about to die" in died.value.log_tail
    log = (tmp_path / "logs" / "t.log").read_text()
    assert log.count("=== worker start") == 2 and "a kernel's print on stdout" in log and "noise" in log
    w.start(timeout_s=60)
    proc = w.proc
    w.stop()
    assert proc.returncode == 0 and not w.alive()


def test_shards_partition_the_plan():
    suite = load_suite("quick")
    cases = plan(suite, "cpu")
    parts = [shard(cases, f"{i}/3") for i in (1, 2, 3)]
    ids = [c.case_id for p in parts for c in p]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(set(ids)) == len(ids)
    with pytest.raises(ValueError, match="shard"):
        shard(cases, "4/3")
    with pytest.raises(ValueError, match="shard"):
        shard(cases, "one/two")


def test_suites_are_listed_and_quick_is_big_enough():
    suites = {s.name: s for s in list_suites()}
    assert {"quick", "gpu", "energy"} <= set(suites)
    for s in suites.values():
        assert s.description and s.case_count > 0
    runnable = [c for c in plan("quick", "cpu") if not c.skip_reason]
    assert len(runnable) >= 20
    gpu = plan("gpu", "cuda")
    assert {c.dtype for c in gpu} >= {"float32", "float64", "bfloat16", "float16"}
    assert {c.sparsity for c in gpu} >= {0.0, 0.1, 0.5, 0.9}
    assert {c.mode for c in gpu} == {"fwd", "fwd+bwd"}
    assert min(c.n for c in gpu) <= 256 and max(c.n for c in gpu) >= 65536
    assert {c.kind for c in gpu} >= {"bk", "ssm", "attention"}
    energy = plan("energy", "cuda")
    sweep = [c for c in energy if c.group == "widths-sweep"]
    assert sweep and all(c.energy and c.energy["window_s"] == 2 and c.energy["trials"] == 3 for c in sweep)
    assert {c.n for c in sweep} == {256, 1024, 4096, 16384, 65536} and {c.mode for c in sweep} == {"fwd", "fwd+bwd"}
    for group, dtype in (("fill", "bfloat16"), ("fill-fp32", "float32")):
        fill = [c for c in energy if c.group == group]
        assert fill and all(c.energy["window_s"] == 1 and c.energy["trials"] == 2 and c.energy["idle_s"] == 0.5
                            for c in fill)
        assert {(c.batch, c.n) for c in fill} == {(1024, 256), (256, 1024), (64, 4096), (16, 16384), (4, 65536)}
        assert {c.dtype for c in fill} == {dtype} and {c.d for c in fill} == {256, 1024}
    lean = [c for c in energy if c.group == "fill-lean"]  # issue 21's first H200 call: the fill windows
    assert lean and all(c.energy["window_s"] == 1 and c.energy["trials"] == 2 and c.mode == "fwd" for c in lean)
    rest = [c for c in energy if c.group not in ("widths-sweep", "fill", "fill-fp32", "fill-lean")]  # group wins
    assert rest and all(c.energy and c.energy["window_s"] >= 5 and c.energy["trials"] >= 4 for c in rest)


def test_suite_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        parse_suite('name = "x"\n[[group]]\nimplementations = "bk"\nn = [8]\nbogus = 1\n')
    with pytest.raises(ValueError, match="dtype"):
        parse_suite('name = "x"\n[[group]]\nimplementations = "bk"\nn = [8]\ndtype = ["int8"]\n').expand(
            __import__("bkbench").default_registry(), "cpu")
    with pytest.raises(ValueError, match="sparsity"):
        parse_suite('name = "x"\n[[group]]\nimplementations = "bk"\nn = [8]\nsparsity = [1.0]\n').expand(
            __import__("bkbench").default_registry(), "cpu")
    with pytest.raises(ValueError, match="needs at least one"):
        parse_suite('name = "x"\n')
    with pytest.raises(ValueError, match="no suite named"):
        load_suite("no_such_suite")


def test_device_overrides_and_caps():
    s = parse_suite(textwrap.dedent("""
        name = "o"
        [caps.thomas]
        max_n = 100
        [caps.thomas.cuda]
        max_n = 1000
        [[group]]
        name = "g"
        implementations = ["thomas"]
        n = [64, 512]
        [group.cuda]
        n = [512, 4096]
        timing = ["cold", "graph"]
        """))
    from bkbench import default_registry

    cpu = s.expand(default_registry(), "cpu")
    assert [(c.impl, c.n, c.timing, bool(c.skip_reason)) for c in cpu if c.impl == "thomas"] == [
        ("thomas", 64, "cpu", False), ("thomas", 512, "cpu", True)]
    cuda = s.expand(default_registry(), "cuda")
    th = [(c.n, c.timing, bool(c.skip_reason)) for c in cuda if c.impl == "thomas"]
    assert th == [(512, "cold", False), (512, "graph", False), (4096, "cold", True), (4096, "graph", True)]


def test_unregistered_implementation_is_refused_before_running(tmp_path):
    """An unknown name is a typo or a plug-in not passed with --plugin: refused, nothing stored (issue 25, bug 6;
    a kernel module that fails to import stays a skipped case: tests/test_suites_validation.py)."""
    suite = _suite(tmp_path, """
        name = "missing"
        [[group]]
        implementations = ["not_written_yet"]
        n = [8]
        """)
    db = tmp_path / "m.db"
    with pytest.raises(ValueError, match="unknown implementation"):
        run_suite(str(suite), device="cpu", db=db, progress=False)
    assert not db.exists()


def test_cli_run_dry_run_and_export(tmp_path, planted):
    suite = _suite(tmp_path, """
        name = "cli"
        [[group]]
        implementations = ["thomas", "planted_wrong"]
        n = [8]
        """)
    db = tmp_path / "c.db"
    env = dict(os.environ)
    base = [sys.executable, "-m", "bkbench"]
    out = subprocess.run(base + ["run", str(suite), "--device", "cpu", "--dry-run", "--plugin", "planted_kernels"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "planted_wrong" in out.stdout
    out = subprocess.run(base + ["run", str(suite), "--device", "cpu", "--db", str(db), "--plugin",
                                 "planted_kernels", "--no-progress", "--strict"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr  # --strict: planted_wrong is incorrect
    csv = tmp_path / "out.csv"
    out = subprocess.run(base + ["export", "--db", str(db), "--out", str(csv)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import pandas as pd

    df = pd.read_csv(csv)
    assert set(df["status"]) == {"ok", "incorrect"} and len(df) == 2
    assert df.loc[df["impl"] == "thomas", "time_median_s"].iloc[0] > 0
    out = subprocess.run(base + ["export", "--db", str(tmp_path / "none.db")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_out_of_bounds_triton_store_is_a_crash_on_gpu(tmp_path, monkeypatch):
    """An illegal memory access (a Triton store far out of bounds) poisons the CUDA context: the worker must
    report it (or die), be replaced, and the next case must still run."""
    mod_dir = tmp_path / "plug"
    mod_dir.mkdir()
    (mod_dir / "planted_oob.py").write_text(OOB)
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mod_dir), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    suite = _suite(tmp_path, """
        name = "oob"
        [[group]]
        implementations = ["planted_oob", "thomas"]
        n = [64]
        batch = [4]
        """)
    db = tmp_path / "g.db"
    run_suite(str(suite), device="cuda", db=db, plugins=["planted_oob"], progress=False)
    with Store(db) as store:
        rows = {r["impl"]: r for r in store.results()}
    assert rows["planted_oob"]["status"] == "crash"
    assert rows["thomas"]["status"] == "ok"


OOB = textwrap.dedent(
    '''
    import torch
    import triton
    import triton.language as tl

    from bkbench import register
    from bkbench.kernels.bk.thomas import thomas as _thomas


    @triton.jit
    def _oob_store(out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tl.store(out_ptr + offs + (1 << 40), tl.zeros([BLOCK], dtype=tl.float32), mask=offs < n)


    @register("planted_oob", kind="bk", devices=("cuda",), dtypes=(torch.float32,))
    def planted_oob(a, k, z):
        out = torch.empty(a.numel(), device=a.device, dtype=torch.float32)
        _oob_store[(1,)](out, out.numel(), BLOCK=1024)
        torch.cuda.synchronize()
        return _thomas(a, k, z)
    '''
)


def test_resume_never_continues_another_shard_with_the_same_label(tmp_path, capsys):
    suite = _suite(tmp_path, """
        name = "shards"
        [[group]]
        name = "g"
        implementations = ["thomas"]
        n = [5, 6, 7, 8]
        batch = [1]
        d = [2]
        """)
    db = tmp_path / "s.db"
    common = dict(device="cpu", db=db, progress=False, label="same", log_dir=tmp_path / "logs")
    first = run_suite(str(suite), shard_spec="1/2", **common)
    capsys.readouterr()
    second = run_suite(str(suite), shard_spec="2/2", resume=True, **common)
    assert second.run_id != first.run_id and second.already_done == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"no run to continue (the latest run of 'shards' on cpu, run {first.run_id}, had shard '1/2' (now '2/2'))" \
        in said and "starting a new run" in said
    third = run_suite(str(suite), shard_spec="1/2", resume=True, missing=True, **common)  # not the same command
    assert third.run_id not in (first.run_id, second.run_id)
    said = " ".join(capsys.readouterr().out.split())
    assert "had shard '2/2' (now '1/2'), selection {} (now {'missing': True})" in said
    again = run_suite(str(suite), shard_spec="1/2", resume=True, **common)
    assert again.run_id == first.run_id and again.executed == 0


def test_resume_continues_a_run_started_with_retry(tmp_path):
    """--retry is part of the run's selection like --missing: the same command plus --resume reopens that run."""
    suite = _suite(tmp_path, """
        name = "retry"
        [[group]]
        name = "g"
        implementations = ["thomas"]
        n = [5, 6]
        batch = [1]
        d = [2]
        """)
    common = dict(device="cpu", db=tmp_path / "r.db", progress=False, log_dir=tmp_path / "logs", missing=True,
                  retry=["incorrect"])
    first = run_suite(str(suite), **common)
    again = run_suite(str(suite), resume=True, **common)
    assert first.run_id > 0 and again.run_id == first.run_id and again.executed == 0


def test_impl_selection_and_missing_fill_in_across_runs(tmp_path):
    """--impl/--skip-impl select implementations (a typo is an error); --missing runs only the cases that no
    earlier run of the suite holds, whatever shard or group stored them."""
    from bkbench.harness.runner import select_impls

    suite = _suite(tmp_path, """
        name = "fill"
        [[group]]
        name = "g"
        implementations = ["thomas", "assoc_scan"]
        n = [5, 6, 7, 8]
        batch = [1]
        d = [2]
        """)
    cases = plan(str(suite), "cpu")
    assert {c.impl for c in select_impls(cases, ["thomas"])} == {"thomas"}
    assert {c.impl for c in select_impls(cases, None, ["thomas"])} == {"assoc_scan"}
    with pytest.raises(ValueError, match="impl: \\['thomass'\\] not in this plan"):
        select_impls(cases, ["thomass"])
    db = tmp_path / "f.db"
    common = dict(device="cpu", db=db, progress=False, log_dir=tmp_path / "logs")
    first = run_suite(str(suite), shard_spec="1/2", impls=["thomas"], **common)
    assert first.executed == len([c for c in shard(cases, "1/2") if c.impl == "thomas"])
    fill = run_suite(str(suite), missing=True, **common)
    assert fill.run_id != first.run_id
    assert fill.executed == len(cases) - first.executed and fill.already_done == first.executed
    with Store(db) as store:
        ids = [r["case_id"] for r in store.results()]
    assert sorted(ids) == sorted(c.case_id for c in cases)  # every case exactly once over the two runs
    with Store(db) as store:
        n_runs = len(store.runs())
    again = run_suite(str(suite), missing=True, **common)
    assert again.executed == 0 and again.run_id == 0 and again.already_done == len(cases)
    with Store(db) as store:
        assert len(store.runs()) == n_runs  # nothing missing: no empty run is recorded

    # --retry incorrect: a case whose stored row is incorrect (e.g. a check fixed since) runs again; the row stays
    from bkbench.harness.runner import missing_cases

    victim = cases[0].case_id
    with Store(db) as store:
        store.conn.execute("UPDATE results SET status = 'incorrect' WHERE case_id = ?", (victim,))
        store.conn.commit()
    assert missing_cases(cases, "fill", "cpu", db) == []
    assert [c.case_id for c in missing_cases(cases, "fill", "cpu", db, ["incorrect"])] == [victim]
    with pytest.raises(ValueError, match="retry: re-runs stored cases of a status only together with --missing"):
        run_suite(str(suite), retry=["incorrect"], **common)
    with pytest.raises(ValueError, match="retry: \\['timeout'\\] are not statuses"):
        run_suite(str(suite), missing=True, retry=["timeout"], **common)
    redo = run_suite(str(suite), missing=True, retry=["incorrect"], **common)
    assert redo.executed == 1 and redo.already_done == len(cases) - 1
    with Store(db) as store:
        rows = [r for r in store.results() if r["case_id"] == victim]
    assert sorted(r["status"] for r in rows) == ["incorrect", "ok"]


def test_warm_runs_each_kernel_in_order_of_n_and_reports_failures(tmp_path, planted):
    """bkbench warm: the cases grouped by kernel (everything but N), each group in order of N in one worker;
    a raising kernel is a crash and a hanging one a timeout, reported and not raised, and the rest of that
    kernel is not warmed; the temporary logs are kept and named only then; nothing is stored."""
    from bkbench.harness.warm import compile_columns, kernels, slowest_kernels, warm, with_compile_columns

    suite = _suite(tmp_path, """
        name = "warmt"
        [[group]]
        implementations = ["thomas", "planted_raise", "planted_hang"]
        n = [16, 8, 32]
        batch = [1]
        d = [2]
        """)
    cases = plan(str(suite), "cpu", plugins=["planted_kernels"])
    groups = kernels(cases)
    assert sorted((g[0].impl, [c.n for c in g]) for g in groups) == [
        ("planted_hang", [8, 16, 32]), ("planted_raise", [8, 16, 32]), ("thomas", [8, 16, 32])]
    seen = []
    results = warm(cases, jobs=3, timeout_s=5, plugins=["planted_kernels"], on_done=seen.append)
    assert seen == results and len(results) == 9
    by = {(r.impl, int(r.case_key.split("_N")[1].split("_")[0])): r for r in results}
    assert all(by[("thomas", n)].status == "ok" and by[("thomas", n)].seconds > 0 for n in (8, 16, 32))
    assert by[("planted_raise", 8)].status == "crash" and "planted failure" in by[("planted_raise", 8)].detail
    assert by[("planted_hang", 8)].status == "timeout" and by[("planted_hang", 8)].seconds < 60
    for impl in ("planted_raise", "planted_hang"):
        for n in (16, 32):
            assert by[(impl, n)].status == "skipped" and "ended with" in by[(impl, n)].detail
    kept = by[("planted_hang", 8)].detail.split("(worker logs: ")[1].rstrip(")")
    assert Path(kept).is_dir()  # a case timed out: the logs are kept and named
    import shutil

    shutil.rmtree(kept)
    cols = compile_columns(results)
    thomas8 = next(r for r in results if r.impl == "thomas" and "_N8_" in r.case_key)
    assert cols[thomas8.case_id] == {"compile_s": thomas8.seconds, "compile_source": "warm-up"}
    timed = with_compile_columns({"case_id": thomas8.case_id, "first_call_s": 9.0}, cols)
    assert timed["compile_s"] == thomas8.seconds and timed["compile_source"] == "warm-up"
    untimed = with_compile_columns({"case_id": "other", "first_call_s": 9.0}, cols)
    assert untimed["compile_s"] == 9.0 and untimed["compile_source"] == "first call"
    total = sum(r.seconds for r in results if r.impl == "thomas")  # failed warm calls count 0 s
    assert slowest_kernels(results, top=1) == [f"thomas fwd: {total:.1f} s (3 cases)"]
    assert len(slowest_kernels(results)) == 3
    with pytest.raises(ValueError, match="jobs"):
        warm(cases, jobs=0)
    db = tmp_path / "none.db"
    out = subprocess.run([sys.executable, "-m", "bkbench", "warm", str(suite), "--device", "cpu", "--impl", "thomas",
                          "--plugin", "planted_kernels", "--jobs", "1", "--missing", "--db", str(db)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "3 cases of 1 distinct kernels" in out.stdout and "3 of 3 done" in out.stdout, \
        out.stdout + out.stderr
    assert not db.exists()  # warm stores nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks planning a GPU run on a machine without one")
def test_dry_run_plans_a_gpu_run_without_a_gpu(tmp_path):
    """--dry-run --device cuda works on a CPU-only machine (plan a GPU run from a laptop); a real run says why not."""
    suite = _suite(tmp_path, """
        name = "plan"
        [[group]]
        implementations = ["thomas"]
        n = [8]
        """)
    base = [sys.executable, "-m", "bkbench", "run", str(suite), "--device", "cuda"]
    out = subprocess.run(base + ["--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "thomas" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(base + ["--db", str(tmp_path / "x.db")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "torch.cuda.is_available() is False" in out.stderr


def test_gate_tuned_checks_in_workers_fail_alone_when_a_worker_dies(tmp_path, monkeypatch):
    """The gate's tuned checks with jobs > 1 run in runner workers (request ``tuned``); a worker that cannot start
    (here: a plugin it cannot import) fails each check it took, naming the worker and its kept log folder."""
    import shutil

    from bkbench.harness import gate_tuned, pool

    class Broken(pool.WorkerHandle):
        def __init__(self, name, device, cuda_index, plugins, log_dir, **kw):
            super().__init__(name, device, cuda_index, ["no_such_module_for_bkbench"], log_dir, **kw)

    monkeypatch.setattr(pool, "WorkerHandle", Broken)
    entries = {"cpu-interpreter|float32|k|N64_E256": {"config": {"seq": 1}, "bwd_config": {"seq": 1}}}
    seen: list[str] = []
    res = gate_tuned.check_tuned_configs("cpu", quick=True, entries=entries, jobs=2,
                                         progress=lambda impl, case: seen.append(case))
    assert [(r.check, r.status) for r in res] == [("value", "fail"), ("grad", "fail")]
    assert all("worker process: WorkerDied: worker tuned" in r.detail and "did not start" in r.detail for r in res)
    logs = Path(res[0].detail.split("(worker logs: ")[1].rstrip(")"))
    assert any(logs.glob("worker-tuned*.log")) and len(seen) == 2 and all(c.endswith(": fail") for c in seen)
    shutil.rmtree(logs)
