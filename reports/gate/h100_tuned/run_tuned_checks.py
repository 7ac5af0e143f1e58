# Run on the H100 for reports/gate/h100_tuned: check_tuned_configs one table entry at a time, a line per check.
import json, os, sys, time
from bkbench import gate_tuned as gate  # bkbench.gate before the tuned checks moved to gate_tuned
t0 = time.perf_counter()
entries = gate.tuned_entries("cuda")
print(f"{len(entries)} entries", flush=True)
res = []
for key in [k for k in sorted(entries) if all(f in k for f in sys.argv[1:] if not f.startswith("--"))]:
    r = gate.check_tuned_configs("cuda", quick="--quick" in sys.argv, entries={key: entries[key]})
    for x in r:
        print(f"{time.perf_counter()-t0:7.1f}s {x.status} {x.error} {x.seconds:.1f}s {x.key} {x.case} {x.detail}", flush=True)
    res += r
json.dump([x.__dict__ for x in res], open(os.environ["OUT"] + "/tuned.json", "w"), indent=1)
print("fail", sum(x.status != "pass" for x in res), "of", len(res))
