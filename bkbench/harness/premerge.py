"""``bkbench premerge``: refuse a kernel change that is wrong or slower, before it is merged.

Two checks against a base revision (default ``main``):

1. **Correctness** — ``bkbench gate`` on every BK-core implementation of the working tree (a subprocess with the
   working tree first on ``sys.path``). Any failure (or a kernel module that fails to import) fails premerge and
   is named.
2. **Speed of the changed kernels** — ``git diff`` against the merge base names the changed files; a changed
   ``kernels/<name>.py`` selects the implementations registered in it, a changed helper ``kernels/_x.py`` the
   implementations whose modules import it (transitively), a changed ``kernels/__init__.py`` all of them. The base
   revision is exported (``git archive``) into a temporary directory and both trees are timed by two worker
   processes on the same interpreter (:mod:`bkbench.harness.premerge_worker`). The parent interleaves the two: in each
   round one short block of back-to-back calls on each side, the order alternating (base, head), (head, base),
   ...; a round's ratio is stat(head block) / stat(base block) (stat: min on the CPU, median on CUDA, see
   :func:`block_statistic`). The verdict (:mod:`bkbench.harness.verdicts`) compares the 95 % confidence interval of the
   median ratio with the band [1 / (1 + threshold), 1 + threshold]: FAST, SLOW, SAME or AMBIGUOUS; an ambiguous
   comparison gets more rounds (up to ``max_rounds``) before it settles. SLOW fails premerge and names the kernel
   and the case. A head time below the physical floor (ideal bytes / copy bandwidth,
   :mod:`bkbench.harness.plausibility`) is IMPLAUSIBLE and fails premerge too: the kernel skipped work or ran where the
   events do not look.

Why this and not ``asv continuous`` or ``pytest-benchmark --benchmark-compare``: those compare two runs made
minutes apart (asv also builds an environment per commit). On a shared, noisy machine — CI's 2-core CPU runner —
load changes between the runs shift every timing of one run by the same factor, which reads as a regression or
hides one. Interleaved, paired blocks see the same load on both sides, and the median of paired ratios ignores
the rounds a burst of load hit. Exporting with ``git archive`` leaves the repository's state untouched (no
worktree entries to prune if the run is interrupted). Both workers load the *working tree's* measuring code, so
only the kernels differ.

Exit status: 0 pass, 1 a correctness failure, a SLOW or IMPLAUSIBLE comparison, or a changed kernel crashing while
timed; 2 bad usage (e.g. an unknown base).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bkbench.harness.premerge_git import (  # noqa: F401 - re-exported: tests and callers import them from here
    _imports,
    changed_files,
    changed_kernel_modules,
    export_tree,
    merge_base,
    repo_root,
)
from bkbench.harness.worker_protocol import WorkerError, WorkerProcess, script_command

HERE = Path(__file__).resolve().parent
DEFAULT_THRESHOLD = {"cpu": 0.25, "cuda": 0.10}
DEFAULT_SHAPES = {"cpu": [(8, 1024, "float32")], "cuda": [(1024, 4096, "float32"), (16384, 4096, "float32")]}


# -- workers -------------------------------------------------------------------------------------------------------
class WorkerProc:
    """One timing worker over ``tree`` (see bkbench/harness/premerge_worker.py), started at once (it says hello before
    it imports anything of the tree). Its failures are :class:`WorkerError` ``<label> worker exited with status
    <code>; log tail: ...``, ``<label> worker died (<error>); log tail: ...`` or, for a request it answered with an
    error, ``<label>: <error>``."""

    def __init__(self, label: str, tree: Path, log_dir: Path, threads: int = 0) -> None:
        self.label = label
        self.tree = tree
        self.log_path = log_dir / f"worker-{label}.log"
        self.proc = WorkerProcess(label, script_command(HERE / "premerge_worker.py", "--threads", str(threads)),
                                  self.log_path, pythonpath=[tree], unset=["BKBENCH_BENCH_INTERPRETED"], cwd=tree,
                                  append_log=False)
        try:
            self.proc.start()
        except WorkerError as exc:
            raise self._error(exc) from None

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        try:
            ans = self.proc.request(op, **fields)
        except WorkerError as exc:
            raise self._error(exc) from None
        if not ans.get("ok"):
            raise WorkerError(f"{self.label}: {ans.get('error')}")
        return ans

    def _error(self, exc: WorkerError) -> WorkerError:
        if exc.cause is not None:
            return WorkerError(f"{self.label} worker died ({exc.cause}); {self.log_tail()}", exc.code, exc.cause)
        return WorkerError(f"{self.label} worker exited with status {exc.code}; {self.log_tail()}", exc.code)

    def log_tail(self, chars: int = 1500) -> str:
        text = self.proc.log_tail(chars)
        return f"log tail:\n{text}" if text else "(empty log)"

    def close(self) -> None:
        self.proc.stop(timeout_s=30)


# -- report ---------------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    impl: str
    case: str
    status: str  # a verdict "fast", "slow", "same", "ambiguous"; or "implausible", "new", "skip", "error"
    base_median_s: float | None = None  # median over rounds of the base blocks' statistic (s per call)
    head_median_s: float | None = None  # the same for the working tree
    ratio: float | None = None  # median over rounds of head/base
    ratio_min: float | None = None
    ratio_max: float | None = None
    ratio_ci_low: float | None = None  # 95 % confidence interval of the median ratio (bkbench/harness/verdicts.py)
    ratio_ci_high: float | None = None
    rounds: int = 0
    calls_per_block: int = 0
    detail: str = ""
    # bare kernel medians (one block each; recorded, not compared: bkbench/harness/benchcase.py)
    base_kernel_s: float | None = None
    head_kernel_s: float | None = None


@dataclass
class PremergeReport:
    base: str
    base_sha: str
    device: str
    threshold: float
    changed_files: list[str] = field(default_factory=list)
    changed_impls: list[str] = field(default_factory=list)
    gate_scope: str = "all"
    gate_passed: bool | None = None
    gate_failures: list[str] = field(default_factory=list)
    gate_failed_impls: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def regressions(self) -> list[Comparison]:
        """SLOW comparisons, and IMPLAUSIBLE ones (a head time below the physical floor)."""
        return [c for c in self.comparisons if c.status in ("slow", "implausible")]

    @property
    def head_errors(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.status == "error"]

    @property
    def passed(self) -> bool:
        return self.gate_passed is not False and not self.regressions and not self.head_errors

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


# -- the steps ------------------------------------------------------------------------------------------------------
def _say(msg: str) -> None:
    print(msg, flush=True)


def run_gate(root: Path, device: str, scope: str, impls: Sequence[str], quick: bool, seeds: int,
             workdir: Path) -> tuple[bool, list[str], list[str]]:
    """``bkbench gate`` on the working tree in a subprocess. Returns (passed, failure lines, failing impls)."""
    out = workdir / "gate.json"
    cmd = [sys.executable, "-m", "bkbench", "gate", "--device", device, "--seeds", str(seeds), "--json", str(out)]
    if quick:
        cmd.append("--quick")
    if scope == "changed":
        if not impls:
            return True, [], []
        cmd += ["--impl", *impls]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    res = subprocess.run(cmd, cwd=root, env=env)
    if not out.is_file():
        return False, [f"the gate did not run (exit status {res.returncode})"], []
    data = json.loads(out.read_text())
    failing = sorted({r["impl"] for r in data.get("results", []) if r.get("status") == "fail"})
    lines = list(data.get("failures", [])) + [f"import failure {f['module']}: {f['error']}"
                                              for f in data.get("import_failures", [])]
    failing += sorted({f["module"] for f in data.get("import_failures", [])})
    passed = bool(data.get("passed")) and res.returncode == 0
    return passed, lines, failing


def block_statistic(samples: Sequence[float], device: str) -> float:
    """One number per block of per-call times: the minimum on the CPU, where interference from other processes
    only ever adds time (the fastest call is the least disturbed); the median on CUDA (event timings have little
    one-sided noise, and the median does not reward a lucky call)."""
    return min(samples) if device == "cpu" else statistics.median(samples)


def _floor_check(shape: tuple[int, int, str], device: str, head_s: float, bandwidth_gbs: float | None) -> str | None:
    """Why the head's time per call is below the physical floor of the case, or None (bkbench/harness/plausibility.py).
    The workers time without flushing caches (CPU perf_counter, CUDA events back to back): cache slack applies
    when the working set fits."""
    import torch

    from bkbench.harness.plausibility import bk_forward_bytes, cache_bytes, implausible, slack_for

    batch, n, dtype = shape
    work = getattr(torch, dtype)
    work = torch.float32 if work in (torch.bfloat16, torch.float16) else work
    out = torch.complex128 if work == torch.float64 else torch.complex64
    ideal = bk_forward_bytes(batch, n, work, work, out)
    return implausible(head_s, ideal, bandwidth_gbs, slack_for("cpu" if device == "cpu" else "warm", ideal,
                                                                cache_bytes(device)))


def copy_bandwidth_gbs(device: str) -> float | None:
    """The copy bandwidth the floor is judged with: ``$BKBENCH_COPY_BW`` (GB/s) when set, else measured here."""
    if os.environ.get("BKBENCH_COPY_BW"):
        return float(os.environ["BKBENCH_COPY_BW"])
    from bkbench.harness.timing import copy_bandwidth

    return copy_bandwidth(device)


def _compare(impl: str, shape: tuple[int, int, str], device: str, base: WorkerProc, head: WorkerProc,
             rounds: int, block_s: float, threshold: float, max_rounds: int | None = None,
             bandwidth: Any = None) -> Comparison:
    """Interleaved rounds of base and head blocks, then the verdict (:func:`bkbench.harness.verdicts.judge`); an
    AMBIGUOUS verdict gets ``rounds`` more rounds at a time, up to ``max_rounds`` (default 3 x ``rounds``).
    ``bandwidth()`` gives the copy bandwidth for the physical-floor check (None: no check)."""
    from bkbench.harness.verdicts import judge

    batch, n, dtype = shape
    req = {"impl": impl, "batch": batch, "n": n, "dtype": dtype, "device": device}
    try:
        h = head.ask("prepare", **req)
    except WorkerError as exc:
        return Comparison(impl, f"B{batch}xN{n} {dtype}", "error", detail=f"working tree: {exc}")
    case = h["key"].split(":", 1)[1]
    if h.get("skip"):
        return Comparison(impl, case, "skip", detail=f"not timed here: {h['skip']}")
    try:
        b = base.ask("prepare", **req)
    except WorkerError as exc:
        return Comparison(impl, case, "skip", detail=f"base cannot run it: {exc}")
    if b.get("skip"):
        return Comparison(impl, case, "skip", detail=f"base declines it: {b['skip']}")
    per = max(h["per_call_s"], b["per_call_s"], 1e-9)
    calls = int(min(1000, max(3, math.ceil(block_s / per))))
    ratios: list[float] = []
    base_stats: list[float] = []
    head_stats: list[float] = []
    limit = max(rounds, max_rounds if max_rounds is not None else 3 * rounds)
    todo = rounds
    while True:
        for _ in range(todo):
            order = (base, head) if len(ratios) % 2 == 0 else (head, base)
            med: dict[str, float] = {}
            for side in order:
                try:
                    samples = side.ask("time", key=h["key"], calls=calls)["samples"]
                except WorkerError as exc:
                    if side is head:
                        return Comparison(impl, case, "error", detail=f"working tree crashed while timed: {exc}")
                    return Comparison(impl, case, "skip", detail=f"base crashed while timed: {exc}")
                med[side.label] = block_statistic(samples, device)
                (head_stats if side is head else base_stats).append(med[side.label])
            ratios.append(med["head"] / med["base"])
        verdict = judge(ratios, threshold)
        todo = min(rounds, limit - len(ratios))
        if verdict.status != "ambiguous" or todo <= 0:
            break
    comp = Comparison(impl, case, verdict.status, base_median_s=statistics.median(base_stats),
                      head_median_s=statistics.median(head_stats), ratio=verdict.ratio, ratio_min=min(ratios),
                      ratio_max=max(ratios), ratio_ci_low=verdict.low, ratio_ci_high=verdict.high,
                      rounds=len(ratios), calls_per_block=calls, detail=verdict.detail,
                      base_kernel_s=b.get("kernel_median_s"), head_kernel_s=h.get("kernel_median_s"))
    if bandwidth is not None:  # both numbers the head reports: the user call, and the bare kernel under it
        for label, t in (("user call", comp.head_median_s), ("bare kernel", comp.head_kernel_s)):
            why = _floor_check(shape, device, t, bandwidth()) if t is not None else None
            if why:
                comp.status = "implausible"
                comp.detail = f"{why} (the {label}; verdict before: {verdict.status.upper()})"
                break
    return comp


def run_premerge(
    base: str = "main",
    repo: str | Path = ".",
    device: str = "auto",
    threshold: float | None = None,
    shapes: Sequence[tuple[int, int, str]] | None = None,
    rounds: int = 15,
    block_s: float = 0.05,
    max_rounds: int | None = None,
    gate: str = "all",
    gate_quick: bool = True,
    seeds: int = 2,
    impls: Sequence[str] = (),
    threads: int | None = None,
) -> PremergeReport:
    """Run both checks; see the module docstring. Prints progress; returns the report."""
    t_start = time.perf_counter()
    if gate not in ("all", "changed", "none"):
        raise ValueError(f"gate: {gate!r} must be one of all, changed, none")
    if rounds < 3:
        raise ValueError(f"rounds: need at least 3 interleaved rounds for a median, got {rounds}")
    if max_rounds is not None and max_rounds < rounds:
        raise ValueError(f"max_rounds: must be >= rounds ({rounds}), got {max_rounds}")
    if block_s <= 0:
        raise ValueError(f"block_s: must be > 0 seconds, got {block_s}")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} must be cpu, cuda or auto")
    thr = DEFAULT_THRESHOLD[device] if threshold is None else float(threshold)
    if not thr > 0:
        raise ValueError(f"threshold: must be > 0 (0.25 = fail when 25 % slower), got {threshold}")
    shapes = list(shapes or DEFAULT_SHAPES[device])
    if threads is None:
        threads = 1 if device == "cpu" else 0

    root = repo_root(repo)
    base_sha = merge_base(root, base)
    files = changed_files(root, base_sha)
    report = PremergeReport(base=base, base_sha=base_sha, device=device, threshold=thr, changed_files=files,
                            gate_scope=gate)
    modules = changed_kernel_modules(root, files)
    _say(f"premerge: base {base} (merge base {base_sha[:12]}), device {device}, threshold "
         f"{100 * thr:.0f} %, {len(files)} changed file(s), changed kernel modules: "
         f"{', '.join(sorted(modules)) or 'none'}")

    with tempfile.TemporaryDirectory(prefix="bkbench-premerge-") as tmp:
        tmpdir = Path(tmp)
        head = base_w = None
        try:
            head = WorkerProc("head", root, tmpdir, threads)
            hello = head.ask("hello")
            if Path(hello["bkbench"]).resolve() != (root / "bkbench").resolve():
                raise ValueError(f"repo: the worker imported bkbench from {hello['bkbench']}, not from {root}; "
                                 "run premerge inside the checkout it should test")
            by_module: dict[str, list[str]] = {}
            for rec in hello["impls"]:
                by_module.setdefault(rec["module"], []).append(rec["name"])
            changed = sorted({n for m in modules for n in by_module.get(m, [])} | set(impls))
            unknown = sorted(set(impls) - {r["name"] for r in hello["impls"]})
            if unknown:
                raise ValueError(f"impl: {', '.join(unknown)} not registered in the working tree")
            report.changed_impls = changed
            _say(f"premerge: changed implementations: {', '.join(changed) or 'none'}")

            if gate != "none":
                _say(f"premerge: correctness gate ({gate}) on {device}")
                ok, lines, failing = run_gate(root, device, gate, changed, gate_quick, seeds, tmpdir)
                report.gate_passed, report.gate_failures, report.gate_failed_impls = ok, lines, failing

            if changed:
                export_tree(root, base_sha, tmpdir / "base")
                base_w = WorkerProc("base", tmpdir / "base", tmpdir, threads)
                base_hello = base_w.ask("hello")
                if Path(base_hello["bkbench"]).resolve() != (tmpdir / "base" / "bkbench").resolve():
                    raise ValueError(f"base: the base worker imported bkbench from {base_hello['bkbench']}, not "
                                     "from the exported base revision; is bkbench installed non-editable with a "
                                     "path that shadows the checkout?")
                base_names = {r["name"] for r in base_hello["impls"]}
                measured: list[float | None] = []

                def bandwidth() -> float | None:  # measured once, when the first comparison needs it
                    if not measured:
                        measured.append(copy_bandwidth_gbs(device))
                    return measured[0]

                for impl in changed:
                    if impl not in base_names:
                        new = Comparison(impl, "-", "new", detail="not in base: nothing to compare")
                        report.comparisons.append(new)
                        continue
                    for shape in shapes:
                        _say(f"premerge: timing {impl} B{shape[0]}xN{shape[1]} {shape[2]} (base vs working tree)")
                        comp = _compare(impl, shape, device, base_w, head, rounds, block_s, thr, max_rounds,
                                        bandwidth)
                        report.comparisons.append(comp)
                        _say(f"  {_fmt_comp(comp)}")
        finally:
            for w in (head, base_w):
                if w is not None:
                    w.close()
    report.seconds = time.perf_counter() - t_start
    return report


# -- output -----------------------------------------------------------------------------------------------------------
def _us(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1e6:.1f} us" if x < 1e-3 else f"{x * 1e3:.3f} ms")


def _fmt_comp(c: Comparison) -> str:
    if c.ratio is None:
        return f"{c.impl:<22} {c.case:<22} {c.status.upper():<10} {c.detail}"
    return (f"{c.impl:<22} {c.case:<22} {c.status.upper():<11} base {_us(c.base_median_s)}  head "
            f"{_us(c.head_median_s)}  ratio {c.ratio:.3f} (rounds {c.ratio_min:.2f}..{c.ratio_max:.2f}, "
            f"{c.rounds} x {c.calls_per_block} calls)  {c.detail}")


def render(report: PremergeReport) -> None:
    _say("")
    _say("== premerge summary")
    if report.gate_passed is None:
        _say("correctness: not run (--gate none)")
    elif report.gate_passed:
        _say(f"correctness: PASSED (gate, {report.gate_scope} implementations)")
    else:
        _say(f"correctness: FAILED — {', '.join(report.gate_failed_impls) or 'see the gate output'}")
        for line in report.gate_failures[:20]:
            _say(f"  {line}")
        if len(report.gate_failures) > 20:
            _say(f"  ... and {len(report.gate_failures) - 20} more")
    if not report.comparisons:
        _say("speed: no changed BK-core implementation to compare")
    for c in report.comparisons:
        _say(f"speed: {_fmt_comp(c)}")
    verdict = "PASSED" if report.passed else "FAILED"
    reasons = []
    if report.gate_passed is False:
        reasons.append(f"correctness failure in {', '.join(report.gate_failed_impls) or 'the gate'}")
    for c in report.regressions:
        if c.status == "slow":
            reasons.append(f"regression in {c.impl} at {c.case}: {c.detail}")
        else:  # implausible: the detail starts with "implausible speed"
            reasons.append(f"{c.impl} at {c.case}: {c.detail}")
    for c in report.head_errors:
        reasons.append(f"{c.impl} at {c.case}: {c.detail.splitlines()[0]}")
    _say(f"premerge {verdict}" + (": " + "; ".join(reasons) if reasons else "") + f" ({report.seconds:.0f} s)")


def write_json(report: PremergeReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1, default=str))
    return path


def parse_shape(text: str) -> tuple[int, int, str]:
    """``"8x1024"`` or ``"8x1024:float64"`` -> (8, 1024, "float32"/"float64")."""
    dims, _, dtype = text.partition(":")
    try:
        b, n = (int(x) for x in dims.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape: {text!r} is not BxN[:dtype], e.g. 8x1024 or 1024x4096:float64") from None
    if b < 1 or n < 1:
        raise ValueError(f"shape: {text!r} needs B >= 1 and N >= 1")
    dtype = dtype or "float32"
    if dtype not in ("float32", "float64", "bfloat16", "float16"):
        raise ValueError(f"shape: dtype {dtype!r} must be float32, float64, bfloat16 or float16")
    return b, n, dtype
