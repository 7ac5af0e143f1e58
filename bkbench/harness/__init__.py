"""bkbench's harness: what measures, checks, tunes and reports the library (``bkbench``) and its kernels.

It imports the library; no library module imports it (``tests/test_layers.py``). Its parts
(docs/architecture.md, "Two layers"):

- run: ``suites``, ``workloads``, ``usercall``, ``runner``, ``worker``, ``worker_protocol``, ``pool``, ``warm``,
  ``executors``, ``jobs``;
- measure: ``timing``, ``benchtimer``, ``benchcase``, ``memory``, ``energy``, ``metrics``, ``env``,
  ``plausibility``;
- check: ``problems``, ``reference``, ``accuracy``, ``gate``, ``gate_result``, ``gate_tuned``, ``anticheat``,
  ``baselines/``;
- tune: ``tuning``, ``tune_compile``, ``tuned_table``, ``first_use_tuning``;
- compare and report: ``premerge``, ``premerge_git``, ``premerge_worker``, ``verdicts``, ``report/``,
  ``plots_pareto``;
- the command line: ``cli/`` (the ``bkbench`` command), ``console``.

Importing this package imports none of them.
"""
