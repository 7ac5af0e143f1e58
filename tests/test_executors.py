"""Running a suite as jobs (bkbench.harness.executors, bkbench.harness.jobs): the local executor stores what the inline
runner stores, a killed job is resumed, jobs are placed one per GPU, the SLURM submission (without a cluster: fake
sbatch/srun on PATH) carries the settings; merging databases; unreadable databases; worker log folders."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest

from bkbench.harness.executors import (
    SlotScheduler,
    SlurmSettings,
    group_into_jobs,
    local_parameters,
    local_slots,
    slurm_settings,
    submit,
)
from bkbench.harness.jobs import JobSpec, held_lock, is_running, supersede
from bkbench.harness.runner import plan, run_suite
from bkbench.store import Store, StoreError
from tests.test_runner import ROOT, _suite, planted  # noqa: F401  (planted: a fixture these tests use)

SMALL = """
    name = "jobs"
    [[group]]
    name = "g"
    implementations = ["thomas", "assoc_scan", "planted_wrong"]
    n = [8, 16, 33]
    batch = [1]
    d = [2]
    [caps.assoc_scan]
    max_n = 16
    """


def _rows(db: Path) -> dict[str, dict]:
    with Store(db) as store:
        return {r["case_id"]: r for r in store.results()}


@pytest.mark.usefixtures("planted")
def test_local_executor_stores_what_inline_stores(tmp_path, monkeypatch):
    """--executor local --jobs 2 stores every case with the same case keys and statuses as an inline run, each row
    with its host, job and compile time from the warm-up; only the driver writes the main database; the jobs
    folder is removed after a clean run."""
    import bkbench.harness.warm

    monkeypatch.setattr(bkbench.harness.warm, "needs_warm", lambda cases: True)  # the CPU compiles nothing: warm anyway
    suite = str(_suite(tmp_path, SMALL))
    common = dict(device="cpu", plugins=["planted_kernels"], progress=False)
    inline = run_suite(suite, db=tmp_path / "inline.db", **common)
    local = run_suite(suite, db=tmp_path / "local.db", executor="local", jobs=2, **common)
    a, b = _rows(tmp_path / "inline.db"), _rows(tmp_path / "local.db")
    assert len(a) == 9 and inline.executed == local.executed == 9 and not local.missing
    assert {k: r["status"] for k, r in a.items()} == {k: r["status"] for k, r in b.items()}
    assert {r["status"] for r in b.values()} == {"ok", "incorrect", "skipped"}
    jobs = {json.loads(r["metrics_json"]).get("job") for r in b.values() if r["status"] != "skipped"}
    assert jobs == {"attempt-1/job-000", "attempt-1/job-001"}
    assert all(r["host"] for r in b.values())  # a case declined by the plan too: where it was declined
    assert all(r["host"] for r in a.values())
    for rows in (a, b):  # compile time per case, from the warm-up
        ok = [r for r in rows.values() if r["status"] == "ok"]
        assert ok and all(r["compile_s"] > 0 for r in ok)
        assert {json.loads(r["metrics_json"])["compile_source"] for r in ok} == {"warm-up"}
    assert inline.warm_s > 0 and local.warm_s > 0
    with Store(tmp_path / "local.db") as store:
        (run,) = store.runs()
    assert run["status"] == "finished" and json.loads(run["config_json"])["executor"] == "local"
    assert [j["job"] for j in sorted(json.loads(run["env_json"])["jobs"], key=lambda j: j["job"])] == sorted(jobs)
    assert not (tmp_path / "local-jobs").exists()


@pytest.mark.usefixtures("planted")
def test_killed_job_is_resumed(tmp_path):
    """A job killed midway: the driver merges what it stored, finishes the other job, says to resume and keeps
    the jobs folder; --resume runs only the missing cases in a new attempt; nothing is repeated or lost."""
    suite = _suite(tmp_path, """
        name = "killjob"
        [[group]]
        name = "g"
        implementations = ["planted_slow", "thomas"]
        n = [8, 9, 10, 11, 12, 13]
        batch = [1]
        d = [2]
        """).read_text().replace("budget_s = 0.02", "budget_s = 0.4")
    path = tmp_path / "killjob.toml"
    path.write_text(suite)
    db = tmp_path / "k.db"
    cmd = [sys.executable, "-m", "bkbench", "run", str(path), "--device", "cpu", "--db", str(db), "--plugin",
           "planted_kernels", "--no-progress", "--executor", "local", "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "k-jobs" / "run-1"
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        for job in sorted(run_dir.glob("attempt-1/job-*")):
            try:
                with closing(sqlite3.connect(job / "results.db")) as conn:
                    n = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                continue
            if n >= 1 and (job / "pid").exists():
                victim = job
                os.kill(int((job / "pid").read_text().split()[0]), signal.SIGKILL)
                break
    out, _ = proc.communicate(timeout=240)
    assert victim is not None, "no job stored a row before the run ended; make the cases slower\n" + out
    assert proc.returncode == 1 and "--resume" in out and "not stored" in out, out
    before = _rows(db)
    assert 1 <= len(before) < 12 and (run_dir / victim.name).parent.exists()
    with Store(db) as store:
        assert store.runs()[0]["status"] == "interrupted"
    summary = run_suite(str(path), device="cpu", db=db, resume=True, plugins=["planted_kernels"], progress=False,
                        executor="local", jobs=2)
    after = _rows(db)
    assert summary.already_done == len(before) and summary.executed == 12 - len(before) and not summary.missing
    assert len(after) == 12 and all(r["status"] == "ok" for r in after.values())
    for case_id, r in before.items():  # rows stored before the kill are untouched
        assert (after[case_id]["id"], after[case_id]["created"]) == (r["id"], r["created"])
    assert {json.loads(r["metrics_json"])["job"].split("/")[0] for r in after.values()} == {"attempt-1", "attempt-2"}
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["finished"]
    assert not run_dir.exists()


def test_jobs_are_placed_one_per_gpu_at_a_time():
    """The local executor's placement with a faked device list: never two jobs on one GPU, every job run once, in
    order, each submitted with CUDA_VISIBLE_DEVICES set to its GPU (ids through submitit, a UUID by the shell)."""
    jobs = [JobSpec(name=f"j{i}", folder=f"/x/j{i}", suite="s", device="cuda", cases=[]) for i in range(5)]
    sched = SlotScheduler([3, 5, 7], jobs)
    started = sched.start()
    assert [(j.name, slot) for j, slot in started] == [("j0", 3), ("j1", 5), ("j2", 7)]
    assert sched.start() == []  # every GPU is busy
    sched.done(jobs[1])
    assert [(j.name, slot) for j, slot in sched.start()] == [("j3", 5)]
    sched.done(jobs[0])
    sched.done(jobs[2])
    assert [(j.name, slot) for j, slot in sched.start()] == [("j4", 3)]
    assert not sched.finished
    sched.done(jobs[3])
    sched.done(jobs[4])
    assert sched.finished
    with pytest.raises(ValueError, match="slots"):
        SlotScheduler([], jobs)
    assert local_parameters(5, 30) == {"timeout_min": 30, "gpus_per_node": 1, "visible_gpus": [5],
                                       "setup": local_parameters(None, 30)["setup"]}
    uuid = local_parameters("GPU-1234", 30)
    assert uuid["gpus_per_node"] == 0 and uuid["setup"][-1] == "export CUDA_VISIBLE_DEVICES=GPU-1234"
    assert local_slots("cuda", [2, 0], None) == [2, 0]
    assert local_slots("cpu", None, 3) == [None, None, None]


def test_local_slots_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert local_slots("cuda", None, None) == [4, 6]


def test_grouping_keeps_kernels_together_and_balances():
    cases = plan("quick", "cpu")
    work = [c for c in cases if not c.skip_reason]
    for n in (1, 2, 3, 7):
        groups = group_into_jobs(work, n)
        ids = [c.case_id for g in groups for c in g]
        assert sorted(ids) == sorted(c.case_id for c in work) and len(ids) == len(set(ids))
        assert len(groups) == min(n, len(groups)) and all(groups)
    groups = group_into_jobs(work, 2)
    where = {c.case_id: i for i, g in enumerate(groups) for c in g}
    by_kernel: dict[tuple, set[int]] = {}
    for c in work:
        by_kernel.setdefault((c.impl, c.mode, c.dtype, c.batch, c.d, c.sparsity, c.options_json), set()).add(
            where[c.case_id])
    assert all(len(v) == 1 for v in by_kernel.values())  # a kernel's Ns stay in one job
    one = [c for c in work if c.impl == "thomas" and c.group == "bk-n"]
    assert len(group_into_jobs(one, 3)) == 3  # fewer kernels than jobs: a kernel is split
    with pytest.raises(ValueError, match="jobs"):
        group_into_jobs(work, 0)


def test_slurm_submission_carries_the_settings(tmp_path, monkeypatch):
    """Without a cluster: fake `srun` and `sbatch` on PATH. The generated sbatch script has the partition, GPUs,
    time limit, account, extra options, setup lines and the requeue signal; the pickled job is our SuiteJob."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho Submitted batch job 4242\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "cluster.toml"
    config.write_text('[slurm]\npartition = "gpu"\naccount = "proj"\ntime_min = 30\nsetup = ["module load cuda"]\n'
                      '[slurm.options]\nqos = "high"\n')
    settings = slurm_settings(config, gpus_per_job=2, options={"constraint": "h200"}, setup=["echo hi"])
    assert settings == SlurmSettings(partition="gpu", gpus_per_job=2, time_min=30, account="proj",
                                     setup=["module load cuda", "echo hi"],
                                     options={"qos": "high", "constraint": "h200"})
    spec = JobSpec(name="attempt-1/job-000", folder=str(tmp_path / "job-000"), suite="quick", device="cuda",
                   cases=[c.to_dict() for c in plan("quick", "cuda")[:3]], warm=True)
    spec.write()
    job = submit("slurm", spec, slurm=settings)
    assert job.job_id == "4242"
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --time=30", "#SBATCH --qos=high",
                 "#SBATCH --constraint=h200", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --signal=USR2@90", "#SBATCH --job-name=bkbench-quick-job-000", "module load cuda",
                 f"export PYTHONPATH={ROOT}"):
        assert line in script, (line, script)
    from submitit.core.utils import DelayedSubmission

    pickled = DelayedSubmission.load(job.paths.submitted_pickle)
    assert type(pickled.function).__name__ == "SuiteJob" and pickled.function.spec == spec
    assert pickled._timeout_countdown == 3  # requeued up to 3 times after a preemption or time limit
    with pytest.raises(ValueError, match="unknown key"):
        config.write_text("[slurm]\npartitoin = 'gpu'\n")
        slurm_settings(config)
    with pytest.raises(ValueError, match="time_min"):
        SlurmSettings(time_min=0)


def test_job_lock_and_supersede(tmp_path):
    """A running job (holding its lock) is never superseded; a job that is not running is, and then never starts."""
    from bkbench.harness.jobs import run_job

    folder = tmp_path / "job"
    folder.mkdir()
    assert not is_running(folder)
    with held_lock(folder) as got:
        assert got
        child = subprocess.run([sys.executable, "-c", "import sys; from bkbench.harness.jobs import is_running; "
                                f"sys.exit(0 if is_running({str(folder)!r}) else 1)"], cwd=ROOT, timeout=60)
        assert child.returncode == 0  # another process sees it running
        assert not supersede(folder) and not (folder / "superseded").exists()
    assert supersede(folder) and (folder / "superseded").exists()
    spec = JobSpec(name="j", folder=str(folder), suite="s", device="cpu", cases=[])
    assert run_job(spec)["status"] == "superseded" and not (folder / "results.db").exists()


def test_executor_without_submitit_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit" or name.startswith("submitit."):
            raise ImportError("No module named 'submitit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(ValueError, match=r"pip install 'bkbench\[cluster\]'"):
        run_suite(str(_suite(tmp_path, SMALL)), device="cpu", db=tmp_path / "x.db", executor="local",
                  progress=False)
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


# -- merging ---------------------------------------------------------------------------------------------------------
def _store_with(path: Path, statuses: dict[str, str]) -> str:
    with Store(path) as store:
        run_id = store.start_run("s", "cpu", {"host": "h"})
        for case_id, status in statuses.items():
            store.add_result(run_id, {"case_id": case_id, "impl": case_id.split("|")[0], "status": status,
                                      "time_median_s": 1e-3 if status == "ok" else None})
        store.finish_run(run_id)
        return store.run(run_id)["uid"]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from bkbench.harness.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_merge_is_deduplicated_reports_conflicts_and_twice_changes_nothing(tmp_path, capsys):
    a, b, dst = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "dst.db"
    _store_with(a, {"x|1": "ok", "y|1": "incorrect"})
    _store_with(b, {"z|1": "ok"})
    code, out, err = _cli(capsys, "merge", str(a), str(b), "--into", str(dst))
    assert code == 0 and "2 row(s) added" in out and "1 row(s) added" in out, out + err
    snapshot = _dump(dst)
    code, out, err = _cli(capsys, "merge", str(a), str(b), "--into", str(dst))
    assert code == 0 and out.count("0 run(s) and 0 row(s) added") == 2, out + err
    assert _dump(dst) == snapshot  # merging twice changes nothing
    with Store(dst) as store:
        assert len(store.runs()) == 2 and len(store.results()) == 3
    # a copy of a whose row differs: reported, never written over
    c = tmp_path / "c.db"
    c.write_bytes(a.read_bytes())
    with closing(sqlite3.connect(c)) as conn, conn:
        conn.execute("UPDATE results SET time_median_s = 2e-3 WHERE case_id = 'x|1'")
    code, out, err = _cli(capsys, "merge", str(c), "--into", str(dst))
    assert code == 1 and "conflict" in err and "x|1" in err, out + err
    assert _dump(dst) == snapshot
    with Store(dst) as store:
        with pytest.raises(StoreError, match="destination itself"):
            store.merge_from(dst)


def test_merge_matches_runs_stored_before_uids(tmp_path):
    """A database written before runs had a uid: two copies of it merge into one run, not two."""
    a = tmp_path / "old.db"
    _store_with(a, {"x|1": "ok"})
    with closing(sqlite3.connect(a)) as conn, conn:
        conn.execute("UPDATE runs SET uid = NULL")
    dst = tmp_path / "dst.db"
    with Store(dst) as store:
        assert store.merge_from(a).rows_added == 1
        copy = tmp_path / "copy.db"
        copy.write_bytes(a.read_bytes())
        rep = store.merge_from(copy)
        assert (rep.runs_added, rep.rows_added, rep.rows_same) == (0, 0, 1)


def _dump(path: Path) -> list:
    with closing(sqlite3.connect(path)) as conn:
        return [conn.execute("SELECT * FROM runs ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM results ORDER BY id").fetchall()]


# -- unreadable databases, worker log folders ------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["text", "random", "truncated"])
def test_unreadable_database_is_a_one_line_error(tmp_path, capsys, content):
    """report, run --resume, export and merge on a file that is not a (sound) SQLite database: exit 2, one line
    naming the file and what to do, no traceback (the CLI turns only ValueErrors into such lines)."""
    bad = tmp_path / "bad.db"
    if content == "text":
        bad.write_text("these are not the results you are looking for\n" * 20)
    elif content == "random":
        bad.write_bytes(os.urandom(8192))
    else:
        good = tmp_path / "good.db"
        _store_with(good, {f"x|{i}": "ok" for i in range(400)})
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    before = bad.read_bytes()
    commands = [["report", "--db", str(bad), "--out", str(tmp_path / "r")],
                ["run", "quick", "--device", "cpu", "--db", str(bad), "--resume", "--no-progress"],
                ["export", "--db", str(bad)],
                ["merge", str(bad), "--into", str(tmp_path / "dst.db")]]
    for args in commands:
        code, out, err = _cli(capsys, *args)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        assert str(bad) in lines[0] and "not a readable SQLite results database" in lines[0] and "--db" in lines[0]
    assert bad.read_bytes() == before  # and the file is left as it was


@pytest.mark.usefixtures("planted")
def test_worker_log_folder_removed_after_a_clean_run_kept_after_a_crash(tmp_path, monkeypatch):
    """Worker logs go to a temporary folder: removed when the run ends normally, kept and named when a case
    crashed (its row says where)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    clean = run_suite(str(_suite(tmp_path, SMALL)), device="cpu", db=tmp_path / "a.db", plugins=["planted_kernels"],
                      progress=False)
    assert clean.executed == 9 and not clean.kept
    assert list((tmp_path / "tmp").iterdir()) == []
    crash = _suite(tmp_path, """
        name = "crashes"
        [[group]]
        implementations = ["thomas", "planted_segfault"]
        n = [8]
        batch = [1]
        d = [2]
        """, name="crashes")
    summary = run_suite(str(crash), device="cpu", db=tmp_path / "b.db", plugins=["planted_kernels"], progress=False)
    (kept,) = summary.kept
    assert Path(kept).parent == tmp_path / "tmp" and any(Path(kept).glob("worker-*.log"))
    (row,) = [r for r in _rows(tmp_path / "b.db").values() if r["status"] == "crash"]
    assert json.loads(row["metrics_json"])["worker_log"].startswith(kept)
