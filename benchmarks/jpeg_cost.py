"""How sensitive a trained model is to JPEG re-encoding: a proxy for what the mirror costs.

The official CIFAR-10 cannot be downloaded on this project's machines, so the JPEG mirror's own
cost (its images are CIFAR-10 re-encoded at quality 75) cannot be measured directly. This
measures the nearest thing: a run's test accuracy on the mirror's test images as they are, and
after one more JPEG pass at several qualities. The first pass at a given quality loses more than
a second one, so the drop at quality 75 here is a lower bound on the mirror's cost at test time
(training on re-encoded images may recover part of it).

    python benchmarks/jpeg_cost.py results/runs/<dense run> [--out results/benchmarks/jpeg-cost.json]
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from dprp_lib.method.checkpoint import load_checkpoint
from dprp_lib.engine.data import BatchLoader, load_dataset
from dprp_lib.course.notebook import save_metrics
from dprp_lib.engine.runs import model_from_checkpoint
from dprp_lib.engine.train import evaluate

QUALITIES = (95, 75, 50)


def reencode(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 N×3×H×W images through one JPEG encode/decode at `quality` (Pillow, 4:2:0 as libjpeg's default)."""
    from PIL import Image

    out = []
    for img in images.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder with checkpoint.pt (trained on the mirror)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", default="results/benchmarks/jpeg-cost.json")
    args = p.parse_args(argv)
    run = Path(args.run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    config = ckpt["config"]
    if config["dataset"] != "cifar10-mirror":
        raise ValueError(f"{run} was trained on {config['dataset']}, not the JPEG mirror")
    model = model_from_checkpoint(ckpt).eval()
    data = load_dataset("cifar10-mirror", args.data_dir)
    norm = ckpt["normalization"]

    def accuracy(images):
        loader = BatchLoader(images, data.test_y, 500, norm["mean"], norm["std"], train=False)
        return evaluate(model, loader)["test_acc"]

    result = {"run": run.name, "method": config["method"], "seed": config["seed"], "as_is": accuracy(data.test_x)}
    result["reencoded"] = {q: accuracy(reencode(data.test_x, q)) for q in QUALITIES}
    print(f"{run.name} ({config['method']}, seed {config['seed']}), mirror test set, 10,000 images")
    print(f"{'test images':<32}{'accuracy':>10}{'change (points)':>17}")
    print(f"{'as in the mirror (JPEG q75)':<32}{result['as_is']:>10.2%}{'':>17}")
    for q, acc in result["reencoded"].items():
        print(f"{'+ one more JPEG pass, q' + str(q):<32}{acc:>10.2%}{100 * (acc - result['as_is']):>+17.2f}")
    print(f"wrote {save_metrics(args.out, **result)}")
    return result


if __name__ == "__main__":
    main()
