"""Make the heavy dependencies of the interpreter that runs asv importable inside an asv-managed environment.

asv builds one virtualenv per (python, matrix) and installs every benchmarked commit into it. bkbench's
dependencies (torch, triton, numpy, pandas, ...) are GB-sized and do not change with the commit, so asv.conf.json
installs the commit's wheel with ``--no-deps`` and runs this script first (``install_command``)::

    python {conf_dir}/suites/asv_benchmarks/_host_site.py {env_dir}

It writes ``bkbench_host_site.pth`` into the environment's site-packages, listing the site-packages directories
of the *host* interpreter (the one asv runs from, e.g. the ``.venv`` made by ``make setup``). Python appends
those directories to ``sys.path`` *after* the environment's own site-packages, so the benchmarked commit's
``bkbench``/``kernels`` (installed in the environment) win, and torch/triton/numpy come from the host — the
same builds for every commit. ``.pth`` files inside the host directories are not executed (the host's
editable install of bkbench stays inactive).

The host interpreter is, in order: ``$BKBENCH_ASV_HOST_PYTHON``; ``$VIRTUAL_ENV/bin/python`` (an activated
venv); the interpreter of the asv process (this script's parent, Linux ``/proc``); ``<conf_dir>/.venv/bin/python``
(the README setup). The first one that can import torch is used. Exit status 1 with a message when none can.

Run by asv with the environment's python; standard library only. This file is in asv's benchmark package, which
asv imports while discovering benchmarks: it does nothing on import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "bkbench_host_site.pth"
PROBE = (
    "import json, site, sys, sysconfig; import torch; "
    "paths = [sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']] + list(site.getsitepackages()) "
    "+ [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]; "
    "print(json.dumps({'executable': sys.executable, 'torch': torch.__version__, 'paths': paths}))"
)


def _parent_python() -> str | None:
    """argv[0] of the parent process (the asv process) when it is an absolute path to a python executable."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    argv0 = raw.split(b"\0")[0].decode(errors="replace")
    if os.path.isabs(argv0) and "python" in os.path.basename(argv0) and os.access(argv0, os.X_OK):
        return argv0
    return None


def candidates(conf_dir: Path) -> list[tuple[str, str]]:
    """(source, python executable) pairs to probe, in order of preference."""
    out = []
    if os.environ.get("BKBENCH_ASV_HOST_PYTHON"):
        out.append(("$BKBENCH_ASV_HOST_PYTHON", os.environ["BKBENCH_ASV_HOST_PYTHON"]))
    if os.environ.get("VIRTUAL_ENV"):
        out.append(("$VIRTUAL_ENV", str(Path(os.environ["VIRTUAL_ENV"]) / "bin" / "python")))
    parent = _parent_python()
    if parent:
        out.append(("the asv process", parent))
    out.append(("<conf_dir>/.venv", str(conf_dir / ".venv" / "bin" / "python")))
    return out


def probe(python: str) -> dict | None:
    """The host's executable, torch version and site directories, or None when it cannot import torch."""
    try:
        res = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=300,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def link(env_dir: Path, conf_dir: Path) -> int:
    own = sysconfig.get_paths()["purelib"]
    if not Path(sys.prefix).resolve() == env_dir.resolve():
        print(f"_host_site: run me with the environment's python ({env_dir}), not {sys.executable}", file=sys.stderr)
        return 2
    tried = []
    for source, python in candidates(conf_dir):
        info = probe(python)
        tried.append(f"{source}: {python} -> {'torch ' + info['torch'] if info else 'no torch'}")
        if info is None:
            continue
        own_real = {os.path.realpath(p) for p in sysconfig.get_paths().values()}
        paths = []
        for p in info["paths"]:
            if os.path.isdir(p) and os.path.realpath(p) not in own_real and p not in paths:
                paths.append(p)
        Path(own, PTH_NAME).write_text("".join(p + "\n" for p in paths))
        print(f"_host_site: {env_dir.name}: torch {info['torch']} and the other dependencies come from "
              f"{info['executable']} ({source}); wrote {Path(own, PTH_NAME)}")
        return 0
    print("_host_site: no interpreter with torch found for the asv environment; tried:\n  " + "\n  ".join(tried)
          + "\nset BKBENCH_ASV_HOST_PYTHON=/path/to/python (one that imports torch) and rerun asv",
          file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python _host_site.py ENV_DIR   (run by asv's install_command)", file=sys.stderr)
        return 2
    conf_dir = Path(os.environ.get("ASV_CONF_DIR", Path(__file__).resolve().parents[2]))
    return link(Path(argv[0]), conf_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
