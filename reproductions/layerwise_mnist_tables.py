"""Tables of reproductions/layerwise_mnist.yaml's runs: one row per method and
allocation (which ``prunekit report`` would tell apart only by settings hash), test and
validation top-1 per sparsity, seconds and memory; plus the records as JSON lines.

    python reproductions/layerwise_mnist_tables.py runs/reproductions/layerwise_mnist \\
        --jsonl reproductions/results/layerwise_mnist.jsonl

Process RSS is read from ``/usr/bin/time -v`` files named MODEL_ALLOCATION_METHOD.time
in --time-dir, when given (one ``prunekit prune`` call per model, allocation, method).
Runs under a ``global_unfloored`` folder (the global allocation before its per-layer
floor) are rows of their own, "global, no floor" (time files MODEL_global_unfloored_METHOD).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

ORDER = ["magnitude", "lw_magnitude", "sparsegpt", "obc", "lw_l0"]


def row_name(record: dict) -> tuple[str, str]:
    method = record["method"]
    if method == "magnitude":
        return method, "global (one ranking)"
    allocation = record.get("allocation", "uniform")
    if record.get("_unfloored"):  # run before the per-layer floor (min_layer_density 0)
        return method, f"{allocation}, no floor"
    return method, allocation


def cell(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def rss_mib(time_dir: Path | None, model: str, allocation: str, method: str) -> str:
    if time_dir is None:
        return ""
    alloc = "uniform" if method == "magnitude" else allocation.replace(", no floor", "_unfloored")
    path = time_dir / f"{model}_{alloc}_{method}.time"
    if not path.exists():
        return ""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", path.read_text())
    return f"{int(match.group(1)) / 1024:.0f}" if match else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--jsonl", type=Path)
    parser.add_argument("--time-dir", type=Path)
    args = parser.parse_args()
    records = []
    for path in sorted(args.run_dir.rglob("result.json")):
        record = json.loads(path.read_text())
        if "global_unfloored" in path.parts:
            record["_unfloored"] = True
        records.append(record)
    records.sort(key=lambda r: (r["model"], r["method"], r.get("allocation", ""),
                                r["sparsity"], r["seed"]))
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    by_model: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_model[record["model"]].append(record)
    for model, rows in by_model.items():
        sparsities = sorted({r["sparsity"] for r in rows})
        grouped: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for record in rows:
            grouped[row_name(record)][record["sparsity"]].append(record)
        keys = sorted(grouped, key=lambda k: (ORDER.index(k[0]), k[1]))
        print(f"### {model} (dense {rows[0]['dense_top1']:.2f})\n")
        head = "| method | allocation | seeds | " + " | ".join(f"{s:g}" for s in sparsities)
        for metric, label in (("top1", "test top-1"), ("val_top1", "validation top-1")):
            print(f"{label}, mean ± std over seeds:\n")
            print(head + " |")
            print("|---|---|---|" + "---|" * len(sparsities))
            for key in keys:
                seeds = sorted({r["seed"] for c in grouped[key].values() for r in c})
                cells = [cell([r[metric] for r in grouped[key].get(s, [])]) for s in sparsities]
                print(f"| {key[0]} | {key[1]} | {','.join(map(str, seeds))} | "
                      + " | ".join(cells) + " |")
            print()
        print("seconds per cell (the solver's, `prune_seconds`, and the calibration's, "
              "means over seeds and sparsities), estimated peak (MiB: the largest layer's "
              "Hessians, "
              "solve and one batch; + the carried activations) and the process's peak "
              "RSS (MiB, whole `prunekit prune` call incl. data):\n")
        print("| method | allocation | solve s | calibration s | est. peak MiB | "
              "carried MiB | RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for key in keys:
            cells = [r for c in grouped[key].values() for r in c]
            seconds = statistics.fmean(r["prune_seconds"] for r in cells)
            calibration = [r["calibration_seconds"] for r in cells if "calibration_seconds" in r]
            peak = max((r.get("peak_memory_bytes") or 0) for r in cells) / 2**20
            carried = max((r.get("calibration_cache_bytes") or 0) for r in cells) / 2**20
            print(f"| {key[0]} | {key[1]} | {seconds:.1f} | "
                  f"{statistics.fmean(calibration) if calibration else 0:.2f} | "
                  f"{peak:.1f} | {carried:.1f} | {rss_mib(args.time_dir, model, key[1], key[0])} |")
        print()


if __name__ == "__main__":
    main()
