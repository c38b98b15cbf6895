"""Command line: `python -m dprp_lib <command>`.

    demo    train a factored ResNet-20 for a few epochs on a small real subset, pruning its
            ranks as it goes, and print the rank table and sizes
"""
from __future__ import annotations

import argparse
import os
import sys


def _default_dataset() -> str:
    return "cifar10-mirror" if os.environ.get("DPRP_CIFAR10_MIRROR") else "cifar10"


def demo(args) -> int:
    from .data import DataUnavailable
    from .demo import run_demo

    try:
        run_demo(args.dataset, args.data_dir, args.epochs, args.per_class, args.batch_size,
                 args.lr, args.sparse, args.energy, args.seed)
    except DataUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dprp_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="a short DPRP run on a small real subset")
    p.add_argument("--dataset", default=_default_dataset(),
                   help="cifar10-mirror (needs DPRP_CIFAR10_MIRROR), cifar10 or cifar100 (download)")
    p.add_argument("--data-dir", default="data", help="download and cache folder (default: data)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--per-class", type=int, default=200, help="training images per class")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--sparse", type=float, default=5e-3, help="L1 weight on the singular values")
    p.add_argument("--energy", type=float, default=0.02, help="fraction of Σ s² a cut may drop")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
