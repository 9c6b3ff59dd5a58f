"""What the cascade saves: wall time of the ``full`` suite against its most expensive attack.

    python benchmarks/suite_cost.py [--defense vanilla] [--epochs 20] [--n 360] [--eot 10]
        [--steps N] [--threads 1] [--home DIR]

Trains (or reuses, with ``--home``) one tiny digits model, then, in two fresh copies of its home
and in one run:

1. ``snnbench attack --suite full``: the cascade, each attack only on the samples that survived
   every earlier one; its wall time is measured from the outside (clean draws included).
2. ``--per-attack-full``: every member alone on all clean-correct samples; each member's own
   time is the ``timing.seconds`` of its card (the cascade columns are then derived, free).

It prints each member's time alone, the cascade's time, and the ratio of the cascade to the
single most expensive member alone: the issue's target is at most 1.50x (docs/protocol.md section
6, issue 10). Seconds depend on the machine; the ratio, measured side by side, is the result.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from snnbench import api
from snnbench.config import ModelConfig, TrainConfig
from snnbench.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--defense", default="vanilla")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n", type=int, default=360)
    parser.add_argument("--eot", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override every member's steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--home", type=Path, default=None, help="a home holding the model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.home or Path(tmp) / "base"
        config = ModelConfig(args.defense, "tiny", "digits", 4)
        outcome = train_model(config, TrainConfig(epochs=args.epochs), home=base, device="cpu")
        name = outcome.name
        # attacks only: the suite's sanity checks (about 10 s on 100 samples) are not an attack
        kwargs = dict(
            suite="full", n=args.n, eot=args.eot, steps=args.steps, device="cpu", checks=False
        )

        cascade_home = Path(tmp) / "cascade"
        shutil.copytree(base, cascade_home)
        start = time.perf_counter()
        cascade = api.attack([name], home=cascade_home, **kwargs)
        cascade_s = time.perf_counter() - start

        alone_home = Path(tmp) / "alone"
        shutil.copytree(base, alone_home)
        alone = [
            c
            for c in api.attack([name], home=alone_home, per_attack_full=True, **kwargs)
            if "cascade" not in c["eval"]
        ]

    steps = {c["eval"]["cascade"]["member"]: c for c in cascade if "cascade" in c["eval"]}
    singles = {c["attack"]["key"]: c for c in alone}
    print(
        f"model {name}: clean {100 * cascade[-1]['result']['clean_acc']:.2f} %, n = {args.n}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    print(f"{'attack':40s} {'alone s':>9s} {'RA alone':>9s} {'cascade s':>10s} {'RA cascade':>11s}")
    by_key = {c["attack"]["key"].split("|cascade=")[0]: c for c in steps.values()}
    for key, single in singles.items():
        step = by_key.get(key)
        label = step["eval"]["cascade"]["member"] if step else single["attack"]["id"]
        print(
            f"{label:40s} {single['timing']['seconds']:9.2f} "
            f"{100 * single['result']['robust_acc']:9.2f} "
            f"{step['timing']['seconds'] if step else float('nan'):10.2f} "
            f"{100 * step['result']['robust_acc'] if step else float('nan'):11.2f}"
        )
    worst = max(singles.values(), key=lambda c: c["timing"]["seconds"])
    worst_s = worst["timing"]["seconds"]
    print(
        f"full suite (cascade), wall time: {cascade_s:.2f} s; most expensive attack alone: "
        f"{worst['attack']['id']} {worst_s:.2f} s; every attack alone: "
        f"{sum(c['timing']['seconds'] for c in singles.values()):.2f} s"
    )
    print(f"cascade / most expensive alone: {cascade_s / worst_s:.2f}x (target <= 1.50x)")


if __name__ == "__main__":
    main()
