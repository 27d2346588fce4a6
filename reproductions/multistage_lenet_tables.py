"""Tables of the LeNet multi-stage runs (reproductions/multistage_lenet300_mnist.yaml,
multistage_lenet5_mnist.yaml): one row per method and stage rule, test and validation
top-1 per sparsity, the Fisher dampening λ, seconds, dead weights, and the rule that
this model's own validation split picks; plus the records as JSON lines.

    python reproductions/multistage_lenet_tables.py runs/reproductions/multistage_lenet5_mnist \\
        runs/reproductions/multistage_lenet5_mnist_cbs ... \\
        --jsonl reproductions/results/multistage_lenet5_mnist.jsonl

Several run folders may be given (cells run side by side need folders of their own);
a cell found in two of them (same method, sparsity, seed and settings hash) counts once.
Rules, read from each cell's ``settings.json``:
- "new default": every stage draws fresh Fisher and loss samples, first-order term on;
- "earlier default": the same m samples at every stage, no first-order term;
- "one stage": one-shot pruning (the first-order term is off in one shot).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NEW, EARLIER, ONE = "new default", "earlier default", "one stage"
RULE_ORDER = {ONE: 0, NEW: 1, EARLIER: 2}
RULE_TEXT = {
    NEW: "new default (fresh samples, first-order term)",
    EARLIER: "earlier default (same samples, no first-order term)",
}


def rule_of(settings: dict) -> tuple[str, str]:
    """(rule, stage description) of one cell's resolved settings."""
    stages = settings.get("stages") or {}
    count = stages.get("count") or 1
    if count == 1:
        return ONE, "one stage"
    described = f"{count} {stages.get('schedule', '')} stages".replace("  ", " ")
    fresh = stages.get("samples") == "fresh"
    first_order = bool((settings.get("fisher") or {}).get("first_order"))
    if fresh and first_order:
        return NEW, described
    if not fresh and not first_order:
        return EARLIER, described
    return f"samples {stages.get('samples')}, first-order {first_order}", described


def read_cells(run_dirs: list[Path]) -> list[dict]:
    """Every finished cell below the folders, each once, with its rule and λ attached."""
    seen: dict[tuple, dict] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            sys.exit(f"error: run folder {run_dir} does not exist")
        for path in sorted(run_dir.rglob("result.json")):
            record = json.loads(path.read_text())
            settings = json.loads((path.parent / "settings.json").read_text())["settings"]
            rule, stages = rule_of(settings)
            record = {
                **record,
                "rule": rule,
                "stage_rule": stages,
                "fisher_damp": (settings.get("fisher") or {}).get("damp"),
            }
            key = (record["method"], record["sparsity"], record["seed"], record["settings_hash"])
            earlier = seen.get(key)
            if earlier is not None and earlier["mask_checksum"] != record["mask_checksum"]:
                print(f"warning: {path} repeats a cell with another mask", file=sys.stderr)
            seen.setdefault(key, record)
    return sorted(seen.values(), key=lambda r: (r["method"], RULE_ORDER.get(r["rule"], 9),
                                                r["sparsity"], r["seed"]))


def row_key(record: dict) -> tuple[str, str, str]:
    return record["method"], record["stage_rule"], record["rule"]


def row_label(key: tuple[str, str, str]) -> str:
    method, stages, rule = key
    if rule == ONE:
        return f"{method}, one stage"
    return f"{method}, {stages}, {RULE_TEXT.get(rule, rule)}"


def cell(values: list[float], with_n: bool = True) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{spread}" + (f" (n={len(values)})" if with_n else "")


def validation_choice(grouped: dict, sparsities: list[float]) -> list[str]:
    """For each method run under both stage rules, the rule with the higher mean
    validation top-1 over the seeds both rules ran, and that rule's test top-1."""
    lines = []
    by_method: dict[str, dict[str, tuple]] = defaultdict(dict)
    for key in grouped:
        if key[2] in (NEW, EARLIER):
            by_method[key[0]][key[2]] = key
    for method, rules in sorted(by_method.items()):
        if len(rules) < 2:
            continue
        cells = []
        for sparsity in sparsities:
            runs = {rule: {r["seed"]: r for r in grouped[key].get(sparsity, [])}
                    for rule, key in rules.items()}
            seeds = sorted(set(runs[NEW]) & set(runs[EARLIER]))
            if not seeds:
                cells.append("")
                continue
            val = {rule: statistics.fmean(runs[rule][s]["val_top1"] for s in seeds)
                   for rule in runs}
            chosen = max(val, key=lambda rule: val[rule])
            test = cell([runs[chosen][s]["top1"] for s in seeds])
            cells.append(f"{chosen.split()[0]}: {test} (val {val[NEW]:.2f} / {val[EARLIER]:.2f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--jsonl", type=Path, help="write the records here as JSON lines")
    args = parser.parse_args()
    records = read_cells(args.run_dirs)
    if not records:
        sys.exit("error: no finished cell (result.json) below the folders given")
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    sparsities = sorted({r["sparsity"] for r in records})
    grouped: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[row_key(record)][record["sparsity"]].append(record)
    keys = sorted(grouped, key=lambda k: (RULE_ORDER.get(k[2], 9), k[0] != "l0", k[0]))
    labels = {key: row_label(key) for key in keys}
    head = "| method | " + " | ".join(f"{s:g}" for s in sparsities) + " |"
    rule_line = "|---|" + "---|" * len(sparsities)
    for metric, title in (("top1", "test top-1"),
                          ("val_top1", "validation top-1 (the 5,000 held-out training samples)")):
        print(f"{title}, mean ± std over seeds (n per cell):\n\n{head}\n{rule_line}")
        for key in keys:
            values = [cell([r[metric] for r in grouped[key].get(s, [])]) for s in sparsities]
            print(f"| {labels[key]} | " + " | ".join(values) + " |")
        print()
    print("λ (the Fisher dampening) per sparsity: " + "; ".join(
        f"{labels[key]}: "
        + ", ".join(f"{s:g} {grouped[key][s][0]['fisher_damp']:g}" for s in sparsities
                    if grouped[key].get(s) and grouped[key][s][0]["fisher_damp"] is not None)
        for key in keys if key[2] != ONE or key[0] != "magnitude"))
    print("\nThe stage rule that this model's validation split picks, per method and sparsity "
          "(means over the seeds both rules ran; the test top-1 of the rule picked, then the "
          f"validation means new / earlier):\n\n{head}\n{rule_line}")
    print("\n".join(validation_choice(grouped, sparsities)))
    print(f"\nSeconds per cell (gradients + pruning, mean over seeds):\n\n{head}\n{rule_line}")
    for key in keys:
        values = []
        for s in sparsities:
            rs = grouped[key].get(s, [])
            seconds = [r["gradient_seconds"] + r["prune_seconds"] for r in rs]
            values.append(f"{statistics.fmean(seconds):.0f}" if seconds else "")
        print(f"| {labels[key]} | " + " | ".join(values) + " |")
    dead = [r for r in records if r.get("dead_weights_kept") is not None]
    dense = sorted({r["dense_top1"] for r in records if not math.isnan(r["dense_top1"])})
    print(f"\nDense test top-1: {', '.join(f'{d:g}' for d in dense)}. Kept weights on no "
          f"input-to-output path after reclaiming: max "
          f"{max((r['dead_weights_kept'] for r in dead), default='n/a')} over {len(dead)} "
          f"cells; per cell above 0: " + (", ".join(
              f"{r['method']} {r['rule']} {r['sparsity']:g} seed {r['seed']}: "
              f"{r['dead_weights_kept']}" for r in dead if r["dead_weights_kept"] > 0) or "none")
          + ".")


if __name__ == "__main__":
    main()
