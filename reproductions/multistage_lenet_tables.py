"""Tables of the LeNet multi-stage runs (reproductions/multistage_lenet300_mnist.yaml,
multistage_lenet5_mnist.yaml): one row per method, stage rule, λ and update-scale
grid; test and validation top-1 per sparsity, seconds, dead weights, and the
configuration that this model's own validation split picks; plus the records as JSON
lines.

    python reproductions/multistage_lenet_tables.py runs/reproductions/multistage_lenet5_mnist \\
        runs/reproductions/multistage_lenet5_mnist_cbs ... \\
        --jsonl reproductions/results/multistage_lenet5_mnist.jsonl

Several run folders may be given (cells run side by side need folders of their own);
a cell found in two of them (same method, sparsity, seed and settings hash) counts once.
Rules, read from each cell's ``settings.json``:
- "new rule": every stage draws fresh Fisher and loss samples, first-order term on
  (the default since issue 16);
- "earlier rule": the same m samples at every stage, no first-order term;
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

NEW, EARLIER, ONE = "new rule", "earlier rule", "one stage"
RULE_ORDER = {ONE: 0, NEW: 1, EARLIER: 2}
RULE_TEXT = {
    NEW: "new rule (fresh samples, first-order term)",
    EARLIER: "earlier rule (same samples, no first-order term)",
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
    """Every finished cell below the folders, each once, with its rule, λ and update
    scale grid attached."""
    seen: dict[tuple, dict] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            sys.exit(f"error: run folder {run_dir} does not exist")
        for path in sorted(run_dir.rglob("result.json")):
            record = json.loads(path.read_text())
            settings = json.loads((path.parent / "settings.json").read_text())["settings"]
            rule, stages = rule_of(settings)
            stage_file = path.parent / "stages.json"
            first = json.loads(stage_file.read_text())[0] if stage_file.exists() else {}
            record = {
                **record,
                "rule": rule,
                "stage_rule": stages,
                "fisher_damp": (settings.get("fisher") or {}).get("damp"),
                "scale_grid": list((settings.get("update") or {}).get("scale_grid") or []),
                "first_stage_training_loss": first.get("training_loss"),
                "first_stage_sparsity": first.get("sparsity"),
            }
            key = (record["method"], record["sparsity"], record["seed"], record["settings_hash"])
            earlier = seen.get(key)
            if earlier is not None and earlier["mask_checksum"] != record["mask_checksum"]:
                print(f"warning: {path} repeats a cell with another mask", file=sys.stderr)
            seen.setdefault(key, record)
    return sorted(seen.values(), key=lambda r: (r["method"], RULE_ORDER.get(r["rule"], 9),
                                                r["sparsity"], r["seed"]))


def row_key(record: dict) -> tuple:
    """One table row: method, stage description, rule, λ and update-scale grid."""
    damp = None if record["method"] == "magnitude" else record["fisher_damp"]
    return (record["method"], record["stage_rule"], record["rule"], damp,
            tuple(record["scale_grid"]))


def row_label(key: tuple) -> str:
    method, stages, rule, damp, grid = key
    parts = [method, stages if rule == ONE else f"{stages}, {RULE_TEXT.get(rule, rule)}"]
    if damp is not None:
        parts.append(f"λ {damp:g}")
    if grid:
        scales = "/".join(f"{a:g}" for a in grid)
        parts.append(f"update scale chosen on training loss among {scales}")
    return ", ".join(parts)


def row_order(key: tuple) -> tuple:
    method, _stages, rule, damp, grid = key
    return (RULE_ORDER.get(rule, 9), method != "l0", method, bool(grid), damp or 0.0)


def cell(values: list[float], with_n: bool = True) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{spread}" + (f" (n={len(values)})" if with_n else "")


def validation_choice(grouped: dict, sparsities: list[float]) -> list[str]:
    """Per method and sparsity, the multi-stage configuration (rule, λ, scale grid) with
    the highest mean validation top-1, among those run on the most seeds there (so
    every candidate is averaged over the same seeds); its test top-1 beside it."""
    by_method: dict[str, list[tuple]] = defaultdict(list)
    for key in grouped:
        if key[2] != ONE:
            by_method[key[0]].append(key)
    lines = []
    for method, keys in sorted(by_method.items()):
        keys = sorted(keys, key=row_order)  # ties go to the first in table order
        cells = []
        for sparsity in sparsities:
            seed_sets = {key: frozenset(r["seed"] for r in grouped[key].get(sparsity, []))
                         for key in keys}
            widest = max(seed_sets.values(), key=len)
            candidates = [key for key in keys if seed_sets[key] == widest and widest]
            if not candidates:
                cells.append("")
                continue
            val = {key: statistics.fmean(r["val_top1"] for r in grouped[key][sparsity])
                   for key in candidates}
            best = max(candidates, key=lambda key: val[key])
            test = cell([r["top1"] for r in grouped[best][sparsity]])
            cells.append(f"{short_label(best)}: {test}, val {val[best]:.2f} "
                         f"(of {len(candidates)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def short_label(key: tuple) -> str:
    _method, _stages, rule, damp, grid = key
    text = f"{rule.split()[0]}, λ {damp:g}"
    return text + (", scale grid" if grid else "")


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
    keys = sorted(grouped, key=row_order)
    head = "| method | " + " | ".join(f"{s:g}" for s in sparsities) + " |"
    rule_line = "|---|" + "---|" * len(sparsities)
    for metric, title in (("top1", "test top-1"),
                          ("val_top1", "validation top-1 (the 5,000 held-out training samples)")):
        print(f"{title}, mean ± std over seeds (n per cell):\n\n{head}\n{rule_line}")
        for key in keys:
            values = [cell([r[metric] for r in grouped[key].get(s, [])]) for s in sparsities]
            print(f"| {row_label(key)} | " + " | ".join(values) + " |")
        print()
    print("The configuration that this model's validation split picks, per method and "
          "sparsity (among those run on the most seeds there; the test top-1 of the one "
          f"picked, its validation mean, and how many were compared):\n\n{head}\n{rule_line}")
    print("\n".join(validation_choice(grouped, sparsities)))
    print("\nTraining loss after the first stage (on that stage's loss samples, drawn from "
          "the training split; mean over seeds), and the first stage's sparsity:"
          f"\n\n{head}\n{rule_line}")
    for key in keys:
        if key[2] == ONE:
            continue
        values = []
        for s in sparsities:
            rs = [r for r in grouped[key].get(s, []) if r["first_stage_training_loss"] is not None]
            values.append(
                f"{statistics.fmean(r['first_stage_training_loss'] for r in rs):.4f} "
                f"(at {rs[0]['first_stage_sparsity']:.2f})" if rs else "")
        print(f"| {row_label(key)} | " + " | ".join(values) + " |")
    print(f"\nSeconds per cell (gradients + pruning, mean over seeds):\n\n{head}\n{rule_line}")
    for key in keys:
        values = []
        for s in sparsities:
            seconds = [r["gradient_seconds"] + r["prune_seconds"] for r in grouped[key].get(s, [])]
            values.append(f"{statistics.fmean(seconds):.0f}" if seconds else "")
        print(f"| {row_label(key)} | " + " | ".join(values) + " |")
    dead = [r for r in records if r.get("dead_weights_kept") is not None]
    dense = sorted({r["dense_top1"] for r in records if not math.isnan(r["dense_top1"])})
    above = [f"{r['method']} ({short_label(row_key(r)) if r['rule'] != ONE else ONE}) "
             f"{r['sparsity']:g} seed {r['seed']}: {r['dead_weights_kept']}"
             for r in dead if r["dead_weights_kept"] > 0]
    print(f"\nDense test top-1: {', '.join(f'{d:g}' for d in dense)}. Kept weights on no "
          f"input-to-output path after reclaiming: max "
          f"{max((r['dead_weights_kept'] for r in dead), default='n/a')} over {len(dead)} "
          f"cells; cells above 0: {', '.join(above) or 'none'}.")


if __name__ == "__main__":
    main()
