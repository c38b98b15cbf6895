"""The campaign side of the experiments: train a grid's missing runs as parallel processes,
snapshot a campaign's runs to commit, and the `dprp grid` command.

    dprp grid 07_ablations --mode quick    # (re)build a chapter's committed results
    dprp grid 08_resnet20_cifar10 --mode full --parallel 2 --threads 1   # the full-data set
    dprp grid 08_resnet20_cifar10 --mode paper --device cuda --parallel 14 --threads 1   # at 164 epochs

`--parallel N` runs N trainings at once as separate processes, each writing its own
`results/runs/<key>/`; runs already there are skipped, interrupted ones resume. On a CPU one
thread each gives the most images/s; on one H200, 14 at once did 6 times the work of one at a
time, each run 2.3-2.9 times slower (results/full-data.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .. import paths
from ..method.checkpoint import load_checkpoint, save_checkpoint, write_text_atomic
from . import runs
from .config import TrainConfig
from .data import load_dataset, other_test_sets
from .experiments import KEEP_CHECKPOINTS, MODES, CHAPTER_GRIDS, collect, find_run, grid, run_or_load, variant_of
from .runs import config_key, definite


def launch(configs: dict[str, TrainConfig], results, parallel: int, log=print, threads=None,
           limit: int | None = None) -> dict[str, int]:
    """Train every config not yet in `results` (the first `limit` of them, if given), `parallel`
    processes at a time, each with `threads` torch threads (default: the cores shared out);
    {name: exit code}."""
    results = Path(results)
    # One run can have several names (chapters share runs): train each key once. amp="auto" is
    # settled first: a run started in one precision resumes in it, a new one takes this machine's.
    unique = {}
    for n, c in configs.items():
        c = runs.definite(c, results)
        unique.setdefault(config_key(c), (n, c))
    missing = [(n, c) for n, c in unique.values() if find_run(c, results, results) is None]
    pending = missing[:limit]
    threads = threads or max(1, (os.cpu_count() or 1) // max(parallel, 1))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    running, codes = [], {}
    log(f"{len(unique) - len(missing)} of {len(unique)} runs already in {results}; "
        f"training {len(pending)}{f' of the {len(missing)} missing' if len(pending) < len(missing) else ''}, "
        f"{parallel} at a time")
    # Decode (or download) each data set once, here: processes that all start without a cache
    # would each decode it, or all download it into the same folder at once.
    for dataset in {(c.dataset, c.data_dir, c.data_source) for _, c in pending}:
        load_dataset(*dataset)
        other_test_sets(dataset[0], dataset[1])
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < parallel:
            name, config = pending.pop(0)
            out = results / config_key(config)
            out.mkdir(parents=True, exist_ok=True)
            spec = out / "launch.json"
            spec.write_text(json.dumps(dataclasses.replace(config, out_dir=str(out), resume=True,
                                                           progress=False).to_dict()))
            with open(out / "train.log", "a") as logfile:
                proc = subprocess.Popen([sys.executable, "-m", "dprp_lib", "train", str(spec)],
                                        stdout=logfile, stderr=subprocess.STDOUT, env=env)
            running.append((name, proc))
        time.sleep(0.5)
        for name, proc in [r for r in running if r[1].poll() is not None]:
            running.remove((name, proc))
            codes[name] = proc.returncode
            log(f"  [{len(codes)}/{len(codes) + len(running) + len(pending)}] {name}: "
                f"{'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'} "
                f"after {time.perf_counter() - t0:.0f} s")
    return codes


def snapshot(configs: dict[str, TrainConfig], source, dest, log=print) -> list[str]:
    """Copy every run of `configs` that `source` (a campaign's results) holds, finished or not, into
    `dest` (the checkout that is committed): config, metrics and the latest checkpoint, so that the
    launcher resumes an unfinished run from `dest` on any machine. The metrics are rewritten from the
    checkpoint's history, so that both hold the same epochs. Returns the keys copied."""
    source, dest = Path(source), Path(dest)
    copied = []
    for name, config in configs.items():
        config = definite(config, source)
        folder = source / config_key(config)
        ckpt_path = folder / runs.CHECKPOINT
        if not ckpt_path.is_file():
            continue
        out = dest / folder.name
        out.mkdir(parents=True, exist_ok=True)
        ckpt = load_checkpoint(ckpt_path)  # read once: the campaign may replace the file meanwhile
        save_checkpoint(out / runs.CHECKPOINT, **ckpt)
        # config.json records where the copy lives (relative to the checkout, as committed), not the campaign's folder
        where = out.resolve().relative_to(paths.ROOT) if out.resolve().is_relative_to(paths.ROOT) else out
        committed = TrainConfig.from_dict(json.loads((folder / runs.CONFIG).read_text()))
        runs.RunFolder(out).start(dataclasses.replace(committed, out_dir=str(where)), ckpt["history"])
        finished = (folder / runs.SUMMARY).is_file() and len(ckpt["history"]) == config.epochs + config.finetune_epochs
        if finished:
            write_text_atomic(out / runs.SUMMARY, (folder / runs.SUMMARY).read_text())
        if log:
            log(f"  {name}: {len(ckpt['history'])} epochs{' (finished)' if finished else ''} -> {out}")
        copied.append(folder.name)
    return copied


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprp grid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chapter", nargs="+", choices=list(CHAPTER_GRIDS),
                   help="one or more grids, trained in this order")
    p.add_argument("--mode", default="quick", choices=MODES)
    p.add_argument("--results", default=str(paths.RESULTS), help="where the runs are written and committed")
    p.add_argument("--device", default="auto")
    p.add_argument("--parallel", type=int, default=1, help="trainings at once, as separate processes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per training process (default: the cores shared among --parallel); "
                        "on CPU, 1 thread a process gives the most images/s")
    p.add_argument("--max-runs", type=int, default=None, help="train at most this many of the runs still missing, "
                   "in order (with --parallel or --threads)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (recorded in each run)")
    p.add_argument("--compile", action="store_true", help="torch.compile (recorded in each run)")
    p.add_argument("--dataset", default=None, help="cifar10 (official, downloaded) or cifar10-mirror; "
                   "default: the mirror when DPRP_CIFAR10_MIRROR is set, else cifar10")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="train only these variants of the grid, in this order (names as collect prints them, "
                        "e.g. 'resnet20 dense' 'resnet20 dprp 94%%')")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="train only these seeds of a seeded grid (default: its 3 seeds; collect lists the rest as missing)")
    p.add_argument("--collect", metavar="JSON", help="after training, write the aggregated table here")
    p.add_argument("--snapshot-from", metavar="RESULTS", default=None,
                   help="train nothing: copy the runs of the grid that RESULTS (a campaign's folder) holds, finished "
                        "or not, into --results with their latest checkpoints, to commit (git add -f the checkpoints)")
    return p


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    runs = _selected_runs(args, p)
    if args.snapshot_from:
        copied = snapshot(runs, args.snapshot_from, args.results)
        print(f"copied {len(copied)} run(s) from {args.snapshot_from} into {args.results}")
        return 0
    t0 = time.perf_counter()
    failed = _train(runs, args)
    _drop_finished_checkpoints(runs, args)
    print(f"{' '.join(args.chapter)}: {len(runs)} runs in {time.perf_counter() - t0:.0f} s"
          + (f"; FAILED: {failed}" if failed else ""))
    if args.collect:
        table = collect(args.chapter[-1], args.mode, args.results, args.dataset)
        Path(args.collect).parent.mkdir(parents=True, exist_ok=True)
        Path(args.collect).write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote {args.collect} ({len(table['rows'])} rows, {len(table['missing'])} runs missing)")
    return 1 if failed else 0


def _selected_runs(args, p) -> dict:
    """The runs the command line names, in training order, with its device and fast-path flags."""
    runs = {}
    for chapter in args.chapter:
        # Seed-major within a grid: a campaign stopped part-way holds every variant's first
        # seed before any variant's second.
        configs = grid(chapter, args.mode, seeds=args.seeds, dataset=args.dataset)
        order = sorted(configs, key=lambda n: configs[n].seed)
        if args.variants:
            known = {variant_of(n) for n in configs}
            unknown = [v for v in args.variants if v not in known]
            if unknown:
                p.error(f"--variants: {unknown} not in the {chapter} grid; it has {sorted(known)}")
            order = [n for v in args.variants for n in order if variant_of(n) == v]
        for name in order:
            config = configs[name]
            runs.setdefault(name, dataclasses.replace(config, device=args.device, amp=args.amp or config.amp,
                                                      compile=args.compile or config.compile))
    return runs


def _train(runs: dict, args) -> list[str]:
    """Train the runs not yet finished (as separate processes with --parallel or --threads);
    return the names of those that failed."""
    if args.parallel > 1 or args.threads:
        codes = launch(runs, args.results, args.parallel, threads=args.threads, limit=args.max_runs)
        return [n for n, c in codes.items() if c != 0]
    for i, (name, config) in enumerate(runs.items(), 1):
        print(f"[{i}/{len(runs)}] {name}")
        s = run_or_load(config, results=args.results, scratch=args.results).summary
        print(f"    test acc {s['test_acc']:.2%}, deployed {s['deployed_fraction']:.1%} of dense, "
              f"rank {s['total_rank']}/{s['full_rank']}, {s['time']:.0f} s")
    return []


def _drop_finished_checkpoints(runs: dict, args) -> None:
    # One run can appear in several chapters' grids: keep checkpoints by key, not by name.
    keep = {config_key(grid(ch, args.mode)[name]) for ch, names in KEEP_CHECKPOINTS.items() for name in names}
    for config in runs.values():
        config = definite(config, args.results)
        folder = Path(args.results) / config_key(config)
        # Unfinished runs keep theirs (they resume from it); full-data and paper-length runs keep
        # theirs (for the deployment chapters, and to read them on other test images later).
        if args.mode not in ("full", "paper") and config_key(config) not in keep \
                and (folder / "summary.json").is_file():
            (folder / "checkpoint.pt").unlink(missing_ok=True)


