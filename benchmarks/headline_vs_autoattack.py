"""Each leaderboard row's headline against an independent AutoAttack run on the same samples.

The headline is an upper bound until a stronger attack fails to lower it. This script attacks
every model of a home with the original AutoAttack (pyautoattack, called directly, not through
snnbench's attack wrappers) on the samples the leaderboard's main table used:

- deterministic models: ``version='standard'`` (APGD-CE, APGD-T, FAB-T, Square), its robust
  accuracy on one forward pass;
- stochastic models: ``version='rand'`` (APGD-CE and APGD-DLR with EoT 20), its returned
  inputs scored over ``--draws`` fresh draws per sample (expected accuracy).

It prints, per model, the headline with its interval, AutoAttack's number and the gap in
points; the target is a gap of at most 3 points (a headline below AutoAttack is fine: the
suite found a stronger attack). ``--markdown`` writes the table for docs/protocol.md.

    python benchmarks/headline_vs_autoattack.py --home snnbench-runs [--models a b] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from pyautoattack import AutoAttack

import snnbench
from snnbench.api import leaderboard
from snnbench.data import dataset_info, load_dataset
from snnbench.evaluate import sample_indices, samples_digest
from snnbench.files import stable_seed

TARGET_GAP = 3.0  # points: the headline may sit at most this far above AutoAttack


def autoattack_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    stochastic: bool,
    draws: int,
) -> float:
    """AutoAttack's robust accuracy: one pass (deterministic) or the mean over fresh draws."""
    model.eval()
    version = "rand" if stochastic else "standard"
    attack = AutoAttack(model, norm="Linf", eps=eps, version=version, device="cpu", seed=0)
    x_adv = attack.run_standard_evaluation(x, y, batch_size=len(x))[0]
    with torch.no_grad():
        hits = []
        for draw in range(draws if stochastic else 1):
            torch.manual_seed(stable_seed(0, "autoattack-score", draw))
            hits.append((model(x_adv).argmax(1) == y).float())
    return float(torch.stack(hits).mean())


def compare(
    home: Path, models: list[str] | None, draws: int, cache: Path | None = None
) -> list[dict]:
    """Per model of the main table: headline, AutoAttack, gap. ``cache`` (a json file) keeps
    AutoAttack's numbers by (weights, samples, eps): the reference does not change when the
    suite does, so a rerun after a suite change costs nothing."""
    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    board = leaderboard(home)
    rows = [r for r in board.main_rows() if not models or r["model"] in models]
    out = []
    for row in rows:
        setting = row["setting"]
        x, y = load_dataset(setting["dataset"], setting["split"])
        indices = sample_indices(y, setting["n"], dataset_info(setting["dataset"]).num_classes)
        if (
            setting["samples"]
            and samples_digest(setting["dataset"], setting["split"], indices) != setting["samples"]
        ):
            raise SystemExit(f"{row['model']}: cannot rebuild the leaderboard's samples")
        picked = torch.as_tensor(indices)
        key = f"{row['sha256']}|{setting['samples']}|{setting['eps']}|{draws}"
        start = time.perf_counter()
        if key not in known:
            model = snnbench.load(row["model"], home=home, device="cpu")
            known[key] = autoattack_accuracy(
                model, x[picked], y[picked], setting["eps"], row["stochastic"], draws
            )
            if cache:
                cache.write_text(json.dumps(known, indent=1))
        reference = known[key]
        top = row["headline"]
        out.append(
            {
                "model": row["model"],
                "stochastic": row["stochastic"],
                "headline": top["acc"],
                "ci95": top["ci95"],
                "autoattack": reference,
                "gap": 100 * (top["acc"] - reference),
                "seconds": time.perf_counter() - start,
            }
        )
        print(
            f"{row['model']:<32} headline {100 * top['acc']:6.2f}  AutoAttack "
            f"{100 * reference:6.2f}  gap {out[-1]['gap']:+6.2f}  ({out[-1]['seconds']:.0f} s)",
            flush=True,
        )
    return out


def markdown(results: list[dict], draws: int) -> str:
    lines = [
        "| model | headline [95% interval] | AutoAttack | headline - AutoAttack |",
        "|---|---|---|---|",
    ]
    for r in results:
        kind = f"rand, {draws} fresh draws" if r["stochastic"] else "standard"
        lines.append(
            f"| {r['model']} | {100 * r['headline']:.2f} [{100 * r['ci95'][0]:.2f}, "
            f"{100 * r['ci95'][1]:.2f}] | {100 * r['autoattack']:.2f} ({kind}) | "
            f"{r['gap']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("snnbench-runs"))
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--draws", type=int, default=9)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--cache", type=Path, help="json file keeping AutoAttack's numbers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = compare(args.home, args.models, args.draws, args.cache)
    worst = max((r["gap"] for r in results), default=0.0)
    print(f"largest gap {worst:+.2f} points (target <= {TARGET_GAP})")
    if args.markdown:
        args.markdown.write_text(markdown(results, args.draws))
    raise SystemExit(0 if worst <= TARGET_GAP else 1)


if __name__ == "__main__":
    main()
