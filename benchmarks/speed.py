"""Speed benchmark: dense against DPRP training steps, the data pipeline, inference.

Measures in one process, one run (nothing else should run on the machine meanwhile):
  - training step time (forward, penalties, backward, SGD step) of the dense ResNet and of
    its factored form at full rank, after cutting every layer to half rank, and after cutting
    to under half the dense parameters; the cut models with each layer's form counted (the
    default) and measured (`forms="measured"`, see dprp_lib.method.forms);
  - the data pipeline's share of an epoch (batch gather + crop/flip + normalise on the device);
  - the fast path: dense and DPRP (full rank, penalties) training steps in float32 eager
    against bf16 autocast, channels_last, and both (the training default where bf16 is supported).
Writes JSON and prints a table of ratios. Targets (reported, not asserted): DPRP step ≤ 1.15×
dense at full rank on CPU; with measured forms, the half-rank step no slower (relative to
dense) than the full-rank one, and below dense under half the parameters; data pipeline ≤ 5%
of an epoch; fast path ≥ 1.6× float32's images/s. Inference: benchmarks/deploy.py.

    python benchmarks/speed.py [--device cpu|cuda] [--threads 1] [--out results/benchmarks/speed-cpu.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dprp_lib as dprp
from dprp_lib.engine.data import BatchLoader
from dprp_lib.method.forms import measure_forms, set_forms
from dprp_lib.engine.precision import choose_amp, processor
from dprp_lib.engine.train import resolve_device


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, rounds: int) -> float:
    """Median over `rounds` of the mean time of `repeats` calls, after one warm-up round."""
    results = []
    for r in range(rounds + 1):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        if r:
            results.append((time.perf_counter() - t0) / repeats)
    return statistics.median(results)


def train_step(model, opt, reg, x, y, amp=False):
    def step():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        if reg is not None:
            loss = loss + reg(model)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def cut_ranks(model, kind):
    """"half": every layer at half its full rank; "small": every layer at the rank whose
    deployed form holds 45% of its dense weights (r·(m + n) = 0.45·m·n)."""
    for _, layer in dprp.svd_layers(model):
        m, n = layer.m, layer.n
        r = layer.max_rank // 2 if kind == "half" else int(0.45 * m * n / (m + n))
        layer.truncate(max(1, r))
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=10, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="JSON path (default results/benchmarks/speed-<device>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    b = args.batch_size
    x = torch.randn(b, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (b,), device=device)
    timing = dict(device=device, repeats=args.repeats, rounds=args.rounds)

    def build(kind):
        torch.manual_seed(0)
        model = dprp.models.build_model(args.model).to(device)
        if kind != "dense":
            dprp.svdify(model)
        if kind in ("half", "small"):
            cut_ranks(model, kind)
        return model

    # 1. training steps; the cut models with counted and with measured layer forms
    steps, params = {}, {}
    for kind, forms in (("dense", "count"), ("full", "count"), ("half", "count"), ("half", "measured"),
                        ("small", "count"), ("small", "measured")):
        model = build(kind)
        if forms == "measured":
            set_forms(model, measure_forms(model, x, training=True))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        reg = None if kind == "dense" else dprp.Regularizer(orth=1.0, sort=1.0, sparse=1e-4)
        name = kind if forms == "count" else f"{kind} measured"
        steps[name] = timed(train_step(model, opt, reg, x, y), **timing)
        params[kind] = dprp.deployed_params(model)

    # 2. data pipeline: batches of a CIFAR-sized uint8 set, on the device, against a step
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    loader = BatchLoader(images, torch.randint(0, 10, (50_000,)), b, [0.49, 0.48, 0.45],
                         [0.25, 0.24, 0.26], train=True, device=device)
    it = iter(loader)
    batch_time = timed(lambda: next(it), **timing)
    epoch_steps = len(loader)

    # 3. the fast path: bf16 autocast and channels_last, each alone and together
    fast = {}
    for kind in ("dense", "full"):
        for amp, nhwc in ((False, False), (True, False), (False, True), (True, True)):
            model = build(kind)
            xx = x.contiguous(memory_format=torch.channels_last) if nhwc else x
            if nhwc:
                model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            reg = None if kind == "dense" else dprp.Regularizer(orth=1.0, sort=1.0, sparse=1e-4)
            name = f"{kind}{' bf16' if amp else ''}{' channels_last' if nhwc else ''}"
            fast[name] = b / timed(train_step(model, opt, reg, xx, y, amp), **timing)

    # What a run with amp="auto" (the full and paper presets) trains in on this machine.
    amp = choose_amp(device.type)
    chosen = "bf16 channels_last" if amp else "channels_last"
    dense = params["dense"]
    result = {
        "processor": processor(),
        "fast_path_chosen": {"amp": amp, "form": chosen,
                             **{f"{kind}_vs_float32": fast[f"{kind} {chosen}"] / fast[kind] for kind in ("dense", "full")},
                             **{f"{kind}_images_per_s": fast[f"{kind} {chosen}"] for kind in ("dense", "full")}},
        "model": args.model, "batch_size": b, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": "float32",
        "train_step_s": steps, "batch_pipeline_s": batch_time, "deployed_params": params,
        "ratios": {
            "dprp_full_rank_step_vs_dense": steps["full"] / steps["dense"],
            "dprp_half_rank_step_vs_dense": steps["half"] / steps["dense"],
            "dprp_half_rank_measured_forms_step_vs_dense": steps["half measured"] / steps["dense"],
            "small_params_vs_dense": params["small"] / dense,
            "dprp_small_step_vs_dense": steps["small"] / steps["dense"],
            "dprp_small_measured_forms_step_vs_dense": steps["small measured"] / steps["dense"],
            "data_pipeline_share_of_epoch": batch_time / (batch_time + steps["dense"]),
            **{f"{kind}_{variant.replace(' ', '_')}_vs_float32": fast[f"{kind} {variant}"] / fast[kind]
               for kind in ("dense", "full") for variant in ("bf16", "channels_last", "bf16 channels_last")},
        },
        "fast_path_images_per_s": fast,
        "epoch_steps": epoch_steps,
        "dense_images_per_s": b / steps["dense"],
    }
    r = result["ratios"]
    rows = [
        ("DPRP step / dense step, full rank", r["dprp_full_rank_step_vs_dense"], "<= 1.15"),
        ("DPRP step / dense step, half rank, counted forms", r["dprp_half_rank_step_vs_dense"], ""),
        ("DPRP step / dense step, half rank, measured forms", r["dprp_half_rank_measured_forms_step_vs_dense"],
         f"<= {r['dprp_full_rank_step_vs_dense']:.3f} (full rank)"),
        (f"DPRP step / dense, {r['small_params_vs_dense']:.0%} params, counted forms", r["dprp_small_step_vs_dense"], ""),
        (f"DPRP step / dense, {r['small_params_vs_dense']:.0%} params, measured forms",
         r["dprp_small_measured_forms_step_vs_dense"], "< 1.00"),
        ("data pipeline share of an epoch", r["data_pipeline_share_of_epoch"], "<= 0.05"),
    ] + [(f"{'DPRP' if kind == 'full' else 'dense'} step images/s, {variant} / float32",
          r[f"{kind}_{variant.replace(' ', '_')}_vs_float32"], ">= 1.6" if variant == "bf16 channels_last" else "")
         for kind in ("dense", "full") for variant in ("bf16", "channels_last", "bf16 channels_last")]
    print(f"{args.model}, batch {b}, {result['device']} ({result['device_name']}), "
          f"{result['threads']} threads, float32; dense training {result['dense_images_per_s']:.0f} images/s")
    print(f"processor: {result['processor']}; amp=\"auto\" trains in {chosen.replace(' ', ' + ')} here: "
          f"dense {fast['dense ' + chosen]:.0f} images/s, DPRP {fast['full ' + chosen]:.0f} images/s")
    print(f"{'measure':<52}{'ratio':>8}  target")
    for name, value, target in rows:
        print(f"{name:<52}{value:>8.3f}  {target}")
    out = Path(args.out or f"results/benchmarks/speed-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
