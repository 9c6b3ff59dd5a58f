"""Does a leaderboard measured on CUDA agree with one measured on the CPU? (issue 10, item 4)

    python benchmarks/device_agreement.py [--models vanilla-tiny-digits,tgo-tiny-digits]
        [--suite quick | --attacks fgsm,pgd10] [--n 360] [--devices cpu,cuda]

The same checkpoints (by default the pinned tiny digits models of ``zoo/models.toml``, pulled
offline, one deterministic and one stochastic) are attacked with the same suite, seeds and
samples in two fresh homes, once per device. For every (model, attack) pair it prints both robust
accuracies with their 95% intervals and whether the intervals overlap: the two devices round
differently (cuDNN's convolutions, bf16 autocast in training only, fp32 in attacks), so
per-sample bits may differ, but the leaderboards must agree within their intervals. Exit status
1 when a pair does not. On a machine without a GPU, ``--devices cpu,cpu`` is the dry run (the
two runs are then identical sample for sample).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnbench import api, zoo

DEFAULT_MODELS = "vanilla-tiny-digits,tgo-tiny-digits"


def attack_on(
    device: str,
    models: list[str],
    suite: str | None,
    n: int,
    home: Path,
    attacks: list[str] | None = None,
) -> dict:
    """Robust accuracy and interval per (model, attack key) of one device's run."""
    for name in models:
        zoo.pull(name, home=home)
    start = time.perf_counter()
    cards = api.attack(
        models,
        home=home,
        suite=None if attacks else suite,
        attacks=attacks,
        n=n,
        device=device,
        checks=False,
    )
    seconds = time.perf_counter() - start
    rows = {(c["model"]["name"], c["attack"]["key"]): c["result"] for c in cards}
    return {"rows": rows, "seconds": seconds}


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare(first: dict, second: dict) -> list[tuple[str, str, dict, dict, bool]]:
    """One row per pair measured on both devices: (model, attack, result 1, result 2, agree)."""
    shared = sorted(set(first["rows"]) & set(second["rows"]))
    return [
        (
            model,
            key.split("|")[0],
            first["rows"][(model, key)],
            second["rows"][(model, key)],
            overlap(first["rows"][(model, key)]["ci95"], second["rows"][(model, key)]["ci95"]),
        )
        for model, key in shared
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--suite", default="quick")
    parser.add_argument(
        "--attacks", default=None, help="comma-separated attacks instead of --suite"
    )
    parser.add_argument("--n", type=int, default=360)
    parser.add_argument("--devices", default="cpu,cuda")
    args = parser.parse_args()
    devices = args.devices.split(",")
    if len(devices) != 2:
        sys.exit("--devices takes two devices, e.g. cpu,cuda")
    models = args.models.split(",")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"models {', '.join(models)}; suite {args.suite}; n = {args.n}; torch "
        f"{torch.__version__}; GPU: {gpu}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        attacks = args.attacks.split(",") if args.attacks else None
        runs = [
            attack_on(device, models, args.suite, args.n, Path(tmp) / f"home{i}", attacks)
            for i, device in enumerate(devices)
        ]
    rows = compare(*runs)
    print(
        f"{'model':24}{'attack':28}{devices[0] + ' RA % [95%]':>24}"
        f"{devices[1] + ' RA % [95%]':>24}  agree"
    )
    for model, attack, one, two, agree in rows:

        def cell(r):
            return f"{100 * r['robust_acc']:6.2f} [{100 * r['ci95'][0]:5.1f}, {100 * r['ci95'][1]:5.1f}]"

        print(f"{model:24}{attack:28}{cell(one):>24}{cell(two):>24}  {'yes' if agree else 'NO'}")
    agreed = sum(row[-1] for row in rows)
    print(
        f"{agreed} of {len(rows)} pairs agree within their 95% intervals; attack time "
        f"{devices[0]} {runs[0]['seconds']:.1f} s, {devices[1]} {runs[1]['seconds']:.1f} s "
        f"({runs[0]['seconds'] / max(runs[1]['seconds'], 1e-9):.2f}x)"
    )
    return 0 if rows and agreed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
