"""The `dprp` command (also `python -m dprp_lib`, which torchrun needs).

    dprp train    CONFIG.json [--set key=value ...]   train as the config says (configs/ has the paper's settings)
    dprp eval     RUN_DIR|CHECKPOINT [--on SET]       test accuracy of a run's checkpoint (--on: another encoding)
    dprp export   RUN_DIR|CHECKPOINT -o FILE.onnx|.pt2 the deployed model (ONNX or torch.export; no dprp_lib needed to load)
    dprp runs     RUN_DIR [RUN_DIR ...]               a table of finished runs' summaries
    dprp grid     CHAPTER [--mode M --parallel N]     train (or resume) a chapter's or a campaign's grid of runs
    dprp report   [--write]                           the full-data evidence as tables (--write: README, results/)
    dprp course   [--mode M --out build]              execute the course headless and build its site
    dprp release  [--out release]                     the students' release of the exercises
    dprp demo                                         a one-minute DPRP run on a small real subset

`dprp COMMAND --help` tells more. Multi-GPU: torchrun --nproc_per_node=N -m dprp_lib train CONFIG.json
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path


def cmd_train(args) -> int:
    from .engine.config import TrainConfig
    from .engine.train import Distributed, bf16_is_fast, fit

    try:
        config = TrainConfig.load(args.config, args.set)
    except (ValueError, TypeError) as e:
        print(f"error: bad config: {e}", file=sys.stderr)
        return 2
    if not config.amp and bf16_is_fast(config.device):
        print("note: this machine runs bf16 natively; --set amp=true trains faster (about 2x the images/s on "
              "this project's CPUs; bf16 autocast, recorded in the run)", file=sys.stderr)
    summary = fit(config)
    ddp = Distributed()  # this process's place in a torchrun job, as fit saw it
    if ddp.main:
        print(_report_table([summary]))
        print(f"run written to {config.out_dir}")
    if ddp.enabled:
        # The run is on disk and the process group destroyed. Leave without interpreter teardown:
        # Gloo work objects freed there can abort a finished process ("terminate called without an
        # active exception", pytorch/pytorch#65237), which fails the whole torchrun job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_eval(args) -> int:
    import torch

    from .engine.data import OTHER_TESTS, BatchLoader, load_dataset, other_test_sets
    from .method.metrics import count_params, deployed_params
    from .engine.runs import open_run
    from .engine.train import evaluate

    run = open_run(args.run)
    config, ckpt = run.config, run.checkpoint()
    device = torch.device(args.device)
    model = run.model().to(device)
    data_dir = args.data_dir or config.data_dir
    if args.on:  # the same test images in another encoding (the lossless archive, the JPEG mirror)
        sets = other_test_sets(config.dataset, data_dir)
        if args.on not in sets:
            print(f"error: test set {args.on!r} is not available for a {config.dataset} run here "
                  f"(available: {sorted(sets) or 'none'}; set DPRP_CIFAR10_LOSSLESS and DPRP_CIFAR10_MIRROR)",
                  file=sys.stderr)
            return 2
        (test_x, test_y), label = sets[args.on], OTHER_TESTS[args.on]
    else:
        data = load_dataset(config.dataset, data_dir, config.data_source).subset(None, config.test_per_class)
        test_x, test_y, label = data.test_x, data.test_y, data.label
    norm = ckpt["normalization"]  # the training images' statistics, as in training
    loader = BatchLoader(test_x, test_y, 500, norm["mean"], norm["std"], train=False, device=device)
    result = evaluate(model, loader)
    print(f"{config.method} {config.model} on {label} (epoch {ckpt['epoch']}): "
          f"test accuracy {result['test_acc']:.2%} over {len(test_y)} images; "
          f"parameters {count_params(model):,} as trained, {deployed_params(model):,} deployed")
    return 0


def cmd_export(args) -> int:
    import torch

    from .method.deployment import EXPORT_FORMATS, deploy, export
    from .method.metrics import count_params
    from .engine.runs import open_run

    out = Path(args.output)
    if out.suffix not in EXPORT_FORMATS:
        formats = ", ".join(EXPORT_FORMATS)
        print(f"error: cannot export to {out}: the format comes from the suffix, one of {formats}", file=sys.stderr)
        return 2
    # Forms are timed in the runtime that will run the file: ONNX Runtime for .onnx; a .pt2 runs
    # in torch, eager unless the user says they will torch.compile it.
    runtime = args.runtime or ("onnxruntime" if out.suffix == ".onnx" else "eager")
    if (runtime == "onnxruntime") != (out.suffix == ".onnx"):
        runs_in = "ONNX Runtime (--runtime onnxruntime)" if out.suffix == ".onnx" else "torch (--runtime eager or compiled)"
        print(f"error: --runtime {runtime} cannot run {out}: a {out.suffix} file runs in {runs_in}", file=sys.stderr)
        return 2
    try:
        run = open_run(args.run)
        model = run.model().eval()
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    channels = 1 if run.config.dataset == "fashion-mnist" else 3
    size = 28 if channels == 1 else 32
    example = torch.zeros(args.tune_batch, channels, size, size)
    small = deploy(model, example, forms=args.forms, runtime=runtime, check_stages=args.check_stages)
    export(small, out, example[:2])
    load = "torch.export.load(path).module()" if out.suffix == ".pt2" else "onnxruntime.InferenceSession(path)"
    how = f"timed in {runtime} at batch {args.tune_batch}" if args.forms == "measured" else "counted"
    if args.check_stages and args.forms == "measured":
        how += ", stages checked on the whole model"
    print(f"wrote {out} and {out}.deployment.json: {count_params(small):,} parameters (factored model: "
          f"{count_params(model):,}; BatchNorm folded, layer forms {how}); load it with {load}")
    return 0


def _report_table(summaries) -> str:
    from .method.metrics import format_table

    rows = [{"method": s["method"], "model": s["model"], "dataset": s["dataset"], "seed": s["seed"],
             "epochs": s["epochs"], "test_acc": f"{s['test_acc']:.2%}",
             "params": s["params"], "deployed": s["deployed_params"],
             "deployed/dense": f"{s['deployed_fraction']:.1%}", "MACs/dense": f"{s['macs_fraction']:.1%}",
             "rank": f"{s['total_rank']}/{s['full_rank']}", "time_s": round(s["time"], 1)}
            for s in summaries]
    return format_table(rows)


def cmd_runs(args) -> int:
    # Folders without a summary (runs in progress, lock files a glob picks up) are named and
    # skipped, so that `dprp runs results/runs/*` tables the finished ones.
    finished = [Path(run) for run in args.runs if (Path(run) / "summary.json").is_file()]
    unfinished = [run for run in args.runs if Path(run) not in finished]
    if unfinished:
        print(f"{'error' if not finished else 'skipped'}: no summary.json in {', '.join(unfinished)} "
              "(not a finished run)", file=sys.stderr)
    if not finished:
        return 2
    print(_report_table([json.loads((run / "summary.json").read_text()) for run in finished]))
    return 0


def cmd_demo(args) -> int:
    from .course.demo import run_demo

    run_demo(args.dataset, args.data_dir, args.epochs, args.per_class, args.batch_size,
             args.lr, args.sparse, args.energy, args.seed)
    return 0


# Commands whose module has its own parser: `dprp NAME ARGS` is that module's main(ARGS).
DELEGATED = {
    "grid": ("engine.launcher", "train (or resume) a chapter's or a campaign's grid of runs"),
    "report": ("engine.report", "the full-data evidence as tables; --write updates README.md and results/"),
    "course": ("course.build", "execute the course headless and build its site"),
    "release": ("course.release", "the students' release of the exercises"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(f"{__package__}.{DELEGATED[argv[0]][0]}")
        return module.main(argv[1:])

    from .engine.data import DataUnavailable

    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataUnavailable, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from .engine.data import OTHER_TESTS, default_dataset

    parser = argparse.ArgumentParser(prog="dprp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)  # listed in --help; run above

    p = sub.add_parser("train", help="train as a config file says")
    p.add_argument("config", help="a JSON config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=2 --set out_dir=runs/x")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="test accuracy of a run's checkpoint")
    p.add_argument("run", help="a run folder or a checkpoint file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--on", default=None, choices=sorted(OTHER_TESTS),
                   help="read the model on these test images instead of its own data set's: official test images "
                        "0-999 (lossless), the JPEG mirror's copy of them, or all of the mirror's 10,000")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export the deployed (compacted) model")
    p.add_argument("run", help="a run folder or a checkpoint file")
    p.add_argument("-o", "--output", required=True, help="the file to write: .onnx or .pt2 (format from the suffix)")
    p.add_argument("--forms", choices=["measured", "count"], default="measured",
                   help="each layer's form: the fastest one timed here in the file's runtime (ONNX Runtime for .onnx, "
                        "torch for .pt2; default), or the one with fewer weights")
    p.add_argument("--tune-batch", type=int, default=64, help="the batch size the forms are timed at")
    p.add_argument("--runtime", choices=["eager", "compiled", "onnxruntime"], default=None,
                   help="where the forms are timed: the runtime that will run the file (default: onnxruntime for .onnx, "
                        "eager for .pt2; compiled for a .pt2 that will be run through torch.compile)")
    p.add_argument("--check-stages", action="store_true",
                   help="then time the whole model with whole stages turned dense and keep what is faster, "
                        "dense unless a factored model beats it (for latency: with --tune-batch 1)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="a table of finished runs")
    p.add_argument("runs", nargs="+", help="run folders")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("demo", help="a one-minute DPRP run on a small real subset")
    p.add_argument("--dataset", default=default_dataset(),
                   help="cifar10-mirror (needs DPRP_CIFAR10_MIRROR), cifar10 or cifar100 (download)")
    p.add_argument("--data-dir", default="data", help="download and cache folder (default: data)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--per-class", type=int, default=200, help="training images per class")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--sparse", type=float, default=5e-3, help="L1 weight on the singular values")
    p.add_argument("--energy", type=float, default=0.02, help="fraction of Σ s² a cut may drop")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


if __name__ == "__main__":
    sys.exit(main())
