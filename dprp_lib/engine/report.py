"""The full-data evidence as one table, and the paper's targets checked against it.

    dprp report                 # print the table; --write updates results/full-data.md and README.md

Each row is one variant of the full-data run set (`experiments.full_set`) over the seeds that
are committed: test accuracy (mean ± standard deviation over seeds), the change against dense
ResNet-20 computed per seed (paired: same seed, same data order) with its 95% t-interval,
deployed parameters, multiply-accumulates and training time as fractions of dense. Rows with
fewer seeds than planned say so, and the runs still missing are listed: a partial set is never
shown as complete.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from ..method.metrics import count_params
from ..paths import RESULTS, ROOT
from .experiments import DPRP_POINTS, FULL_RECIPE, collect, find_run, grid, variant_of
from .models import build_model
from .runs import config_key, definite
from .stats import accuracy_change, mean_interval, time_ratio

CHAPTER = "08_resnet20_cifar10"
# The CPU set (30 epochs) and the same set at the paper's length (164 epochs, on a GPU).
SET_MODES = ("full", "paper")
DENSE = "resnet20 dense"
# The paper's headline (arXiv 2401.08014, official CIFAR-10): 5.79% fewer parameters, +1.18
# points. (b) is this project's reading of the journal version's "up to 50% fewer parameters".
TARGETS = {
    "a": {"text": "(a) the paper's: DPRP at or above dense with at least 5.79% fewer deployed parameters",
          "max_fraction": 1 - 0.0579, "min_change": 0.0},
    "b": {"text": "(b) ours: DPRP within 1 point of dense with at least 50% fewer deployed parameters",
          "max_fraction": 0.5, "min_change": -1.0},
}
MIN_SEEDS = 3  # a target is decided on at least this many paired seeds
PAGES = (ROOT / "README.md", ROOT / "results" / "full-data.md")  # the pages that carry these tables


def full_data_rows(results=None, dataset=None, mode: str = "full", chapter: str = CHAPTER) -> dict:
    """{"rows": [...], "missing": [...], "dataset": label, "mode": mode} for the committed runs of
    the full-data set (`mode` "full": 30 epochs on CPU; "paper": 164 epochs, on a GPU), or of
    another set of dense and DPRP runs (`chapter` "paper-length": 164 epochs on the lossless
    images; "jpeg-cost": their 30-epoch twins of the JPEG set)."""
    if mode not in SET_MODES:
        raise ValueError(f"mode must be one of {SET_MODES}, got {mode!r}")
    table = collect(chapter, mode, results, dataset)
    by = {r["variant"]: r for r in table["rows"]}
    dense = by.get(DENSE)
    rows = []
    for r in table["rows"]:
        deltas = accuracy_change(r, dense) if dense and r is not dense else []
        val_deltas = accuracy_change(r, dense, "val_acc") if dense and r is not dense and "val_acc" in r and "val_acc" in dense else []
        acc = [100 * a for a in r["test_acc_values"]]
        val = [100 * a for a in r.get("val_acc_values", [])]
        rows.append({
            "variant": r["variant"].removeprefix("resnet20 "),
            "method": r["method"],
            "seeds": r["seeds"], "planned_seeds": r["planned_seeds"],
            "test_acc": statistics.fmean(acc), "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else None,
            "test_acc_values": r["test_acc_values"],  # per seed, fractions as `collect` gives them
            "val_acc": 100 * r["val_acc"] if "val_acc" in r else None,
            "val_acc_std": statistics.stdev(val) if len(val) > 1 else None,
            "deltas": deltas, "interval": mean_interval(deltas),
            "val_deltas": val_deltas, "val_interval": mean_interval(val_deltas),
            "deployed_fraction": r["deployed_fraction"], "macs_fraction": r["macs_fraction"],
            "time_fraction": time_ratio(r, dense) if dense else None,
            "dataset": r["dataset"], "device": r["device"], "amps": r["amps"],
            "epochs": r["epochs"], "train_images": r["train_images"], "test_images": r["test_images"],
            "runs": r["runs"],
        })
    label = table["rows"][0]["dataset"] if table["rows"] else None
    # Dense first, then DPRP's operating points from largest to smallest, then the rest.
    def order(r):
        point = r["method"] == "dprp" and " no " not in r["variant"]
        return (r["method"] != "dense" or r["variant"] != DENSE.removeprefix("resnet20 "), not point,
                -r["deployed_fraction"] if point else 0)
    return {"rows": sorted(rows, key=order), "missing": table["missing"], "dataset": label, "mode": mode}


def display_rows(report: dict, validation: bool = False) -> list[dict]:
    """The rows as strings: what chapters print and the README shows. `validation`: the
    validation images' accuracy and paired change too (5,000 images: where the test images are
    only 1,000, the better-powered read of the same runs)."""
    out = []
    for r in report["rows"]:
        n = len(r["seeds"])
        row = {"variant": r["variant"], "seeds": f"{n}" if n == r["planned_seeds"] else f"{n} of {r['planned_seeds']}"}
        reads = (("val", "val_acc", "val_deltas", "val_interval"),) if validation else ()
        for label, acc, deltas, interval in reads + (("test", "test_acc", "deltas", "interval"),):
            sd, delta, ci = r[f"{acc}_std"], statistics.fmean(r[deltas]) if r[deltas] else None, r[interval]
            row.update({
                f"{label} acc %": "—" if r[acc] is None else f"{r[acc]:.2f}" + (f" ± {sd:.2f}" if sd is not None else ""),
                f"Δ {label} (points)" if validation else "Δ vs dense (points)": "—" if delta is None else f"{delta:+.2f}",
                f"{label} 95% interval" if validation else "95% interval": f"[{ci[1]:+.2f}, {ci[2]:+.2f}]" if ci else "—"})
        out.append({
            **row,
            "deployed/dense": f"{r['deployed_fraction']:.1%}",
            "MACs/dense": f"{r['macs_fraction']:.1%}",
            "time/dense": f"{r['time_fraction']:.2f}" if r["time_fraction"] else "—",
        })
    return out


DEPLOY_BENCHMARK = ROOT / "results" / "benchmarks" / "deploy-cpu.json"


def cost_rows(report: dict, deploy: dict | None = None) -> list[dict]:
    """Beside each variant's sizes, what it costs: its training time against the dense run's (the
    full-data runs' own clocks: 1-thread runs, two at a time on a 2-core CPU) and, where
    benchmarks/deploy.py timed one of its runs' ranks, the deployed model's speed-up over dense (at
    batch 1, the deployment for latency, whose stages were checked, where the benchmark has it)."""
    if deploy is None and DEPLOY_BENCHMARK.is_file():
        deploy = json.loads(DEPLOY_BENCHMARK.read_text())
    timed = {}
    for size, info in (deploy or {}).get("sizes", {}).items():
        found = re.search(r"results/runs/(\w+)", info["source"])
        if found:
            timed[found[1]] = size
    speedups = (deploy or {}).get("speedup_vs_dense", {})
    latency = "onnxruntime_stage_checked" if "onnxruntime_stage_checked" in speedups else "onnxruntime"
    rows = []
    for r in report["rows"]:
        size = next((timed[k] for k in r.get("runs", []) if k in timed), None)

        def speedup(runtime, batch):
            if r["variant"] == DENSE.removeprefix("resnet20 "):
                return "1 (reference)"
            return f"{speedups[runtime][batch][size]:.2f}×" if size else "not timed"
        rows.append({"variant": r["variant"], "deployed/dense": f"{r['deployed_fraction']:.1%}",
                     "MACs/dense": f"{r['macs_fraction']:.1%}",
                     "training time/dense": f"{r['time_fraction']:.2f}" if r["time_fraction"] else "—",
                     "inference speed-up, batch 1 (ONNX Runtime)": speedup(latency, "1"),
                     "batch 256 (ONNX Runtime)": speedup("onnxruntime", "256"),
                     "batch 256 (torch eager)": speedup("eager", "256")})
    return rows


def show(variants=None, results=None, dataset=None, mode: str = "full") -> dict:
    """Print the full-data rows of `variants` (names as in the table, e.g. "dprp 50%"; None: all)
    and the runs of theirs still missing; return both, for a chapter's metrics."""
    from ..method.metrics import format_table

    report = full_data_rows(results, dataset, mode)
    keep = (lambda v: True) if variants is None else (lambda v: v in variants)
    rows = [r for r in report["rows"] if keep(r["variant"])]
    missing = [m for m in report["missing"] if keep(m.split(" | ")[0].removeprefix("resnet20 "))]
    shown = display_rows({"rows": rows})
    if rows:  # which set this is: its length and the devices that trained it
        devices = sorted({r["device"] for r in rows})
        print(f"{report['dataset']}, {'/'.join(str(e) for e in sorted({r['epochs'] for r in rows}))} epochs, "
              f"trained on {', '.join(devices)}:")
    print(format_table(shown) if shown else "none of these runs is committed yet")
    if missing:
        print(f"\nstill missing, {len(missing)} run(s): {missing_by_variant(missing)}")
    else:
        print(f"\ncomplete: every planned seed of these variants is committed")
    return {"rows": rows, "missing": missing, "dataset": report["dataset"], "mode": mode}


def paired_rows(report: dict, reference: str, variants) -> list[dict]:
    """Each of `variants` against `reference` (e.g. the other methods at DPRP's 50% size, or its
    ablations), per seed both hold: test accuracy changes in points, their mean and 95% interval.
    A variant not committed yet gets a row with no seeds."""
    rows = {r["variant"]: r for r in report["rows"]}
    ref = rows.get(reference)
    out = []
    for variant in variants:
        r = rows.get(variant)
        paired = r is not None and ref is not None
        diffs = accuracy_change(r, ref) if paired else []
        seeds = [s for s in r["seeds"] if s in ref["seeds"]] if paired else []  # accuracy_change's order
        out.append({"variant": variant, "reference": reference, "seeds": seeds, "diffs": diffs,
                    "mean": statistics.fmean(diffs) if diffs else None, "interval": mean_interval(diffs),
                    "deployed_fraction": r["deployed_fraction"] if r else None})
    return out


def seeds_label(seeds) -> str:
    """Seeds as text, "seed 0" or "seeds 0, 1, 2" (not a bare "0" that reads as a count)."""
    return f"seed{'s' if len(seeds) > 1 else ''} " + ", ".join(map(str, seeds))


def show_paired(report: dict, reference: str, variants) -> list[dict]:
    """Print `paired_rows` as a table; return them."""
    from ..method.metrics import format_table

    rows = paired_rows(report, reference, variants)
    print(format_table([{
        "variant": r["variant"],
        "deployed/dense": "not committed yet" if r["deployed_fraction"] is None else f"{r['deployed_fraction']:.1%}",
        "paired seeds": seeds_label(r["seeds"]) if r["seeds"] else "none yet",
        f"Δ vs {reference} (points)": "—" if r["mean"] is None else f"{r['mean']:+.2f}",
        "per seed": ", ".join(f"{d:+.2f}" for d in r["diffs"]) or "—",
        "95% interval": f"[{r['interval'][1]:+.2f}, {r['interval'][2]:+.2f}]" if r["interval"] else "— (needs 2 seeds)",
    } for r in rows]))
    return rows


def paired_verdict(r: dict) -> str:
    """One line on a `paired_rows` row: what its paired seeds decide against the reference."""
    if r["mean"] is None:
        return f"{r['variant']}: not committed yet"
    if r["interval"] is None:
        return f"{r['variant']}: {r['mean']:+.2f} pt on one paired seed: no interval yet, so not decided"
    mean, low, high = r["interval"]
    word = "more accurate than" if low > 0 else "less accurate than" if high < 0 else "not separated from"
    return (f"{r['variant']}: {mean:+.2f} pt, 95% interval [{low:+.2f}, {high:+.2f}] over "
            f"{len(r['diffs'])} seeds: {word} {r['reference']}")


def target_verdicts(report: dict) -> dict:
    """For each target: every DPRP operating point's verdict, and whether any point meets it.

    A point meets a target when its deployed size is within the bound and the whole interval of
    its paired change lies at or above the bound; it misses it when the size is over or the whole
    95% interval lies below; otherwise the seeds do not decide it. "Some point meets it" is one
    claim made with several tries, so the interval that meets is Bonferroni's: at 1 - 0.05/m for
    the m points that are tried (within the size, enough seeds), as chapter 07 teaches; a point
    whose 95% interval alone clears the bound is not decided.
    """
    points = [r for r in report["rows"] if r["method"] == "dprp" and " no " not in r["variant"]]
    verdicts = {}
    for key, t in TARGETS.items():
        tried = [r for r in points if r["deployed_fraction"] <= t["max_fraction"] and len(r["deltas"]) >= MIN_SEEDS]
        level = 1 - 0.05 / max(len(tried), 1)
        per_point = {}
        for r in points:
            if r["deployed_fraction"] > t["max_fraction"]:
                per_point[r["variant"]] = f"misses: {r['deployed_fraction']:.1%} of dense parameters"
            elif len(r["deltas"]) < MIN_SEEDS:
                per_point[r["variant"]] = f"not decided: {len(r['deltas'])} paired seed(s), {MIN_SEEDS} needed"
            else:
                mean, low, high = r["interval"]
                corrected_low = mean_interval(r["deltas"], level)[1]
                shown = f"{mean:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}]"
                if corrected_low >= t["min_change"]:
                    per_point[r["variant"]] = f"meets it: {shown}" + (
                        f", {level:.2%} interval from {corrected_low:+.2f} ({len(tried)} points tried)" if len(tried) > 1 else "")
                elif low >= t["min_change"]:
                    per_point[r["variant"]] = (f"not decided: {shown}, but at the {level:.2%} level for {len(tried)} points "
                                               f"tried it starts at {corrected_low:+.2f}")
                elif high < t["min_change"]:
                    per_point[r["variant"]] = f"misses: {shown}"
                else:
                    per_point[r["variant"]] = f"not decided: {shown} spans {t['min_change']:+g}"
        met = [v for v, text in per_point.items() if text.startswith("meets")]
        decided_missing = all(text.startswith("misses") for text in per_point.values()) and per_point
        verdicts[key] = {"text": t["text"], "points": per_point, "met_by": met,
                         "status": "holds" if met else ("does not hold" if decided_missing else "not decided")}
    return verdicts


def verdict_lines(verdict: dict) -> list[str]:
    """One target's verdict point by point ("dprp 94%: not decided: ..."), as the README and chapter 09 show it."""
    return [f"{variant}: {why}" for variant, why in verdict["points"].items()] or ["no DPRP operating point is committed yet"]


def missing_by_variant(names: list[str]) -> str:
    """"resnet20 dense | seed 1", "resnet20 dense | seed 2" -> "dense (seeds 1, 2)"."""
    seeds = {}
    for name in names:
        variant, _, seed = name.partition(" | seed ")
        seeds.setdefault(variant.removeprefix("resnet20 "), []).append(seed)
    return "; ".join(f"{v} (seed{'s' if len(s) > 1 else ''} {', '.join(s)})" for v, s in seeds.items())


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no runs of the set are committed yet_"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def precision_label(rows: list[dict]) -> str:
    """The arithmetic the rows' runs trained in: one name when all agree, else the most common one
    and the runs that differ (a run keeps the precision of the machine that started it)."""
    name = {"bf16": "bf16 autocast", "off": "float32"}
    runs = [(r["variant"], seed, name.get(amp, str(amp))) for r in rows for seed, amp in zip(r["seeds"], r["amps"])]
    labels = [label for *_, label in runs]
    common = max(dict.fromkeys(labels), key=labels.count)
    others = [f"{v} seed {s} in {label}" for v, s, label in runs if label != common]
    return common + (f" ({'; '.join(others)})" if others else "")


def markdown(report: dict, validation: bool = False) -> str:
    """The table, the targets and the missing runs, as markdown (README and results/full-data.md)."""
    rows = report["rows"]
    total = sum(len(r["seeds"]) for r in rows)
    head = (f"{report['dataset'] or 'CIFAR-10'}, ResNet-20, {rows[0]['epochs']} epochs on "
            f"{rows[0]['train_images']:,} training images (5,000 held out for validation), "
            f"{rows[0]['test_images']:,} test images, {precision_label(rows)}, "
            f"device: {rows[0]['device']}. " if rows else "")
    on_gpu = any("cpu" not in str(r["device"]).lower() for r in rows)
    clocks = ("runs sharing one GPU for part of their time" if on_gpu else
              "1-thread runs sharing 2 cores, at times with other work")
    text = [head + f"{total} run{'s' if total != 1 else ''} committed, {len(report['missing'])} still missing. "
            "Accuracy changes are in "
            "percentage points, per seed against the dense run of the same seed. Training time is each run's "
            f"wall clock ({clocks}), likewise against the same seed's dense run: a rough ratio only; "
            "`benchmarks/speed.py` measures training speed under control.", "", markdown_table(display_rows(report, validation)), ""]
    for v in target_verdicts(report).values():
        text.append(f"- {v['text']}: **{v['status']}**" + (f" (by {', '.join(v['met_by'])})" if v["met_by"] else ""))
        text += [f"  - {line}" for line in verdict_lines(v)]
    if report["missing"]:
        text += ["", f"Missing ({len(report['missing'])} run{'s' * (len(report['missing']) != 1)}): " + missing_by_variant(report["missing"]) + "."]
    return "\n".join(text) + "\n"


# The paper's question at its length on the real pixels, and the 30-epoch twins of the JPEG set.
LOSSLESS_SETS = {"paper-length": "paper", "jpeg-cost": "full"}


def progress(chapter: str = "paper-length", results=None) -> list[dict]:
    """Every run of a lossless set as committed: finished, in progress (the epochs its committed
    checkpoint holds; it resumes from there) or not started, with its history so far."""
    results = Path(results or RESULTS)
    mode = LOSSLESS_SETS[chapter]
    rows = []
    for name, config in grid(chapter, mode).items():
        config = definite(config, results)
        folder = results / config_key(config)
        metrics = folder / "metrics.jsonl"
        history = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
        state = ("finished" if (folder / "summary.json").is_file() else
                 "in progress" if (folder / "checkpoint.pt").is_file() else "not started")
        dense = count_params(build_model(config.model, 10))
        rows.append({"run": name, "state": state, "epochs_done": len(history),
                     "epochs": config.epochs + config.finetune_epochs, "history": history, "key": folder.name,
                     "deployed_fraction": history[-1]["deployed_params"] / dense if history else None,
                     "amp": config.amp if state != "not started" else None})  # a run keeps its precision
    return rows


def progress_rows(rows: list[dict]) -> list[dict]:
    """`progress` as strings: the last saved epoch of each run."""
    out = []
    for r in rows:
        last = r["history"][-1] if r["history"] else {}
        out.append({"run": r["run"].removeprefix("resnet20 "), "state": r["state"],
                    "epochs": f"{r['epochs_done']} of {r['epochs']}",
                    "training acc %": f"{100 * last['train_acc']:.2f}" if last else "—",
                    "validation acc %": f"{100 * last['val_acc']:.2f}" if last.get("val_acc") is not None else "—",
                    "deployed/dense": f"{r['deployed_fraction']:.1%}" if last else "—",
                    "precision": {True: "bf16", False: "float32"}.get(r.get("amp"), "—"),
                    "trained on": ", ".join(sorted({h["processor"] for h in r["history"] if "processor" in h})) or "—"})
    return out


def progress_markdown(chapter: str = "paper-length", results=None) -> str:
    rows = progress(chapter, results)
    done = sum(r["state"] == "finished" for r in rows)
    going = [r for r in rows if r["state"] == "in progress"]
    text = [f"{done} of {len(rows)} runs finished, {len(going)} in progress "
            f"({sum(r['epochs_done'] for r in going)} epochs saved in their committed checkpoints, which "
            "resume on any machine).", "", markdown_table(progress_rows(rows))]
    return "\n".join(text) + "\n"


def jpeg_cost(results=None) -> dict:
    """What the JPEG copy costs: each 30-epoch run on the lossless images (`jpeg-cost` grid) beside
    its JPEG twin (the full-data run of the same variant and seed: same recipe, data order and
    validation images), in points, lossless minus JPEG.

    Three readings: validation accuracy, each model on its own encoding of the same 5,000 images
    (what a result on the mirror reports); the mirror's 10,000 test images, both models on JPEG;
    and, for the lossless model only, official test images 0-999 against the mirror's copy of them
    (what the encoding costs at test time alone). {"rows": per variant and seed, "paired": per
    variant, the changes with their mean and 95% interval, "missing": runs not committed}.
    """
    lossless = grid("jpeg-cost", "full")
    twins = grid(CHAPTER, "full", dataset="cifar10-mirror")
    rows, missing = [], []
    for name, config in lossless.items():
        mine, twin = find_run(config, results), find_run(twins[name], results)
        missing += [f"{name} ({which})" for which, run in (("lossless", mine), ("JPEG twin", twin)) if run is None]
        if mine is None or twin is None:
            continue
        a, b = mine.summary, twin.summary
        rows.append({"run": name, "variant": variant_of(name), "seed": config.seed,
                     "val": 100 * (a["val_acc"] - b["val_acc"]),
                     "jpeg_test": 100 * (a["test:jpeg 10000_acc"] - b["test_acc"]) if "test:jpeg 10000_acc" in a else None,
                     "encoding_0_999": (100 * (a["test_acc"] - a["test:jpeg 0-999_acc"])
                                        if "test:jpeg 0-999_acc" in a else None),
                     "val_acc": (100 * a["val_acc"], 100 * b["val_acc"]), "lossless_test_acc": 100 * a["test_acc"]})
    paired = {}
    for variant in dict.fromkeys(variant_of(n) for n in lossless):
        mine = [r for r in rows if r["variant"] == variant]
        paired[variant] = {}
        for key in ("val", "jpeg_test", "encoding_0_999"):
            values = [r[key] for r in mine if r[key] is not None]
            paired[variant][key] = {"values": values, "mean": statistics.fmean(values) if values else None,
                                    "interval": mean_interval(values)}
    return {"rows": rows, "paired": paired, "missing": missing}


JPEG_COST_READINGS = {"val": "validation, each on its own encoding", "jpeg_test": "mirror test 10,000 (both JPEG)",
                      "encoding_0_999": "test 0-999: official - mirror copy (lossless model)"}


def jpeg_cost_rows(cost: dict) -> list[dict]:
    """`jpeg_cost` as strings, one row a variant: each reading's mean change (lossless - JPEG, points)
    with its 95% interval and the per-seed values."""
    out = []
    for variant, readings in cost["paired"].items():
        row = {"variant": variant.removeprefix("resnet20 "), "seeds": len(readings["val"]["values"])}
        for key, label in JPEG_COST_READINGS.items():
            r = readings[key]
            interval = r["interval"]
            row[label] = ("—" if r["mean"] is None else f"{r['mean']:+.2f}" +
                          (f" [{interval[1]:+.2f}, {interval[2]:+.2f}]" if interval else "") +
                          " (" + ", ".join(f"{v:+.2f}" for v in r["values"]) + ")")
        out.append(row)
    return out


def jpeg_cost_markdown(results=None, dataset=None) -> str:
    """What the JPEG copy costs (`jpeg_cost`), and how far the lossless 30-epoch runs have come."""
    cost = jpeg_cost(results)
    text = ["What the JPEG mirror costs, measured: each 30-epoch run on the lossless training images against "
            "its JPEG twin (the full-data run of the same variant and seed: same recipe, data order and "
            "validation images). Changes in points, lossless minus JPEG: mean [95% interval] (per seed).", "",
            markdown_table(jpeg_cost_rows(cost)) if cost["rows"] else "_no lossless run of the set has finished yet_"]
    if cost["missing"]:
        text += ["", f"Missing ({len(cost['missing'])}): " + ", ".join(m.removeprefix("resnet20 ") for m in cost["missing"]) + "."]
    return "\n".join(text) + "\n\n" + progress_markdown("jpeg-cost", results)


def _summary_rows(chapter: str, results, dataset, columns) -> list[dict]:
    """One row per run of a small grid (committed or not run yet), with `columns(name, config, run)`."""
    rows = []
    for name, config in grid(chapter, "full", dataset=dataset).items():
        run = find_run(config, results)
        rows.append({"run": name, **columns(config, run.summary if run else None)})
    return rows


def _pct(summary, key):
    return f"{100 * summary[key]:.2f}" if summary else "not run yet"


def recipe_markdown(results=None, dataset=None) -> str:
    """The recipe candidates (dense, seed 0) and which one the validation split chose."""
    rows = _summary_rows("full-recipe", results, dataset, lambda c, s: {
        "label smoothing": f"{c.label_smoothing:g}", "validation acc %": _pct(s, "val_acc"), "test acc %": _pct(s, "test_acc"),
        "chosen": "**yes**" if all(getattr(c, k) == v for k, v in FULL_RECIPE.items()) else ""})
    return markdown_table(rows) + "\n"


def calibration_rows(results=None, dataset=None) -> list[dict]:
    """Every ε tried for DPRP (seed 0): the deployed size it reached, its validation accuracy
    (what the choice reads) and its test accuracy (reported, not used to choose)."""
    return _summary_rows("full-calibration", results, dataset, lambda c, s: {
        "ε": f"{c.energy:g}", "deployed/dense": f"{s['deployed_fraction']:.1%}" if s else "not run yet",
        "total rank": f"{s['total_rank']}/{s['full_rank']}" if s else "—", "validation acc %": _pct(s, "val_acc"),
        "test acc %": _pct(s, "test_acc"),
        "estimate for": ", ".join(p for p, e in DPRP_POINTS.items() if e == c.energy)})


def calibration_points(results=None, dataset=None) -> list[dict]:
    """The committed runs of `calibration_rows` as numbers: energy, deployed_fraction, val_acc and
    test_acc (fractions), for a figure."""
    rows = []
    for name, config in grid("full-calibration", "full", dataset=dataset).items():
        run = find_run(config, results)
        if run:
            rows.append({"energy": config.energy, **{k: run.summary[k] for k in
                                                    ("deployed_fraction", "val_acc", "test_acc")}})
    return rows


def calibration_markdown(results=None, dataset=None) -> str:
    return markdown_table(calibration_rows(results, dataset)) + "\n"


def parity_markdown(results=None, dataset=None) -> str:
    """bf16 against float32: the same DPRP config and seeds, 4 epochs through a cut."""
    rows = _summary_rows("fast-path-parity", results, dataset, lambda c, s: {
        "validation acc %": _pct(s, "val_acc"), "test acc %": _pct(s, "test_acc"),
        "deployed/dense": f"{s['deployed_fraction']:.1%}" if s else "—",
        "time (s)": f"{s['time']:.0f}" if s else "—"})
    return markdown_table(rows) + "\n"


SECTIONS = {"table": lambda results, dataset: markdown(full_data_rows(results, dataset)),
            "paper-length table": lambda results, dataset: markdown(full_data_rows(results, dataset, "paper")),
            "lossless paper-length table": lambda results, dataset: (
                markdown(full_data_rows(results, None, "paper", "paper-length"), validation=True) + "\n" + progress_markdown("paper-length", results)),
            "jpeg cost": jpeg_cost_markdown,
            "recipe": recipe_markdown, "calibration": calibration_markdown, "parity": parity_markdown}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- full-data {name}: start (dprp report --write) -->", f"<!-- full-data {name}: end -->")


def with_sections(text: str, results=None, dataset=None) -> str:
    """`text` with every section whose markers it holds rendered anew from the committed runs."""
    found = False
    for name, render in SECTIONS.items():
        start, end = markers(name)
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if pattern.search(text):
            found = True
            content = render(results, dataset)
            text = pattern.sub(lambda _: f"{start}\n{content}{end}", text)
    if not found:
        raise ValueError(f"no full-data section markers (e.g. {markers('table')[0]!r}) in the text")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dprp report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--dataset", default=None, help="whose runs (default: the mirror when DPRP_CIFAR10_MIRROR is set, "
                   "else the official CIFAR-10)")
    p.add_argument("--write", action="store_true", help="update the table in README.md and results/full-data.md")
    args = p.parse_args(argv)
    print(markdown(full_data_rows(args.results, args.dataset)))
    if args.write:
        for path in PAGES:
            path.write_text(with_sections(path.read_text(), args.results, args.dataset))
            print(f"updated {path}")
    return 0


def show_history(report: dict, columns: dict, results=None) -> list[dict]:
    """What a `show` report's committed runs logged while they trained, read back from their folders:
    per variant, the mean over its seeds of each of `columns`, {header: (history key, "last",
    "mean" over epochs or an epoch number (from 1), format)}, beside its weights (λ, ε), the epochs of its cuts and its final
    total rank. Prints the table (or that no run is committed yet) and returns the rows."""
    from ..method.metrics import format_table
    from ..method.pruning import PruneSchedule
    from .runs import load_run

    folder = Path(results or RESULTS)
    rows = []
    for r in report["rows"]:
        runs = [load_run(folder / key) for key in r["runs"] if (folder / key).is_dir()]
        if not runs:
            continue
        c = runs[0].config
        schedule = PruneSchedule(c.prune_warmup, c.prune_every, c.prune_stop)
        cuts = [e for e in range(1, c.epochs + 1) if schedule.due(e)] if c.method == "dprp" else []
        row = {"variant": r["variant"], "seeds": len(runs),
               "λ orth / sort / sparse": f"{c.orth:g} / {c.sort:g} / {c.sparse:g} ({c.sparse_kind})", "ε": f"{c.energy:g}",
               "cuts after epoch": f"{cuts[0]}–{cuts[-1]} ({len(cuts)})" if cuts else "none"}
        for header, (key, how, fmt) in columns.items():
            values = [run.history[-1][key] if how == "last" else run.history[how - 1][key] if isinstance(how, int)
                      else statistics.fmean(h[key] for h in run.history) for run in runs]
            row[header] = format(statistics.fmean(values), fmt)
        row["total rank"] = f"{statistics.fmean(run.summary['total_rank'] for run in runs):.0f}/{runs[0].summary['full_rank']}"
        rows.append(row)
    if rows:
        s = runs[0].summary
        held = f", {s['val_images']:,} validation (val)" if s.get("val_images") else ""
        print(f"each run: {s['train_images']:,} training{held} and {s['test_images']:,} test images, "
              f"{runs[0].config.epochs} epochs; means over each variant's seeds")
    print(format_table(rows) if rows else "none of these runs is committed yet")
    return rows
