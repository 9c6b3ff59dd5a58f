"""Each leaderboard row's headline against an independent AutoAttack run on the same samples.

The headline is an upper bound until a stronger attack fails to lower it. This script attacks
every model of a home with the original AutoAttack (pyautoattack, called directly, not through
snnbench's attack wrappers) on the samples the leaderboard's main table used:

- deterministic models: ``version='standard'`` (APGD-CE, APGD-T, FAB-T, Square), its robust
  accuracy on one forward pass;
- stochastic models: ``version='rand'`` (APGD-CE and APGD-DLR with EoT 20), its returned
  inputs scored over ``--draws`` fresh draws per sample (expected accuracy).

``--every K`` attacks every K-th of those samples only (a cheaper check of a large board: the
rand version costs 2 x 100 steps x 20 draws per sample) and compares with the headline on the
same subset, recomputed from the per-sample counts the leaderboard stores.

It prints, per model, the headline with its interval, AutoAttack's number and the gap in
points; the target is a gap of at most 3 points (a headline below AutoAttack is fine: the
suite found a stronger attack). ``--markdown`` writes the table for docs/protocol.md.

    python benchmarks/headline_vs_autoattack.py --home snnbench-runs [--models a b] [--every K]
        [--markdown out.md]
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
from snnbench.metrics import accuracy_interval, decode_counts

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
    home: Path,
    models: list[str] | None,
    draws: int,
    cache: Path | None = None,
    every: int = 1,
) -> list[dict]:
    """Per model of the main table: headline, AutoAttack, gap. ``cache`` (a json file) keeps
    AutoAttack's numbers by (weights, samples, eps): the reference does not change when the
    suite does, so a rerun after a suite change costs nothing. ``every`` > 1: every K-th
    sample only, against the headline on the same samples."""
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
        positions = torch.arange(0, len(indices), every)
        picked = torch.as_tensor(indices)[positions]
        key = f"{row['sha256']}|{setting['samples']}|{setting['eps']}|{draws}"
        key += f"|every{every}" if every > 1 else ""
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
        if every > 1:  # the headline on the same subset, from its per-sample counts
            counts = decode_counts(top["per_sample"])[positions.numpy()]
            acc, ci, _ = accuracy_interval(counts, top["k_eval"])
            top = {"acc": acc, "ci95": ci}
        out.append(
            {
                "model": row["model"],
                "stochastic": row["stochastic"],
                "headline": top["acc"],
                "ci95": top["ci95"],
                "autoattack": reference,
                "gap": 100 * (top["acc"] - reference),
                "seconds": time.perf_counter() - start,
                "n": len(picked),
            }
        )
        print(
            f"{row['model']:<32} headline {100 * top['acc']:6.2f}  AutoAttack "
            f"{100 * reference:6.2f}  gap {out[-1]['gap']:+6.2f}  (n {len(picked)}, "
            f"{out[-1]['seconds']:.0f} s)",
            flush=True,
        )
    return out


def markdown(results: list[dict], draws: int) -> str:
    lines = [
        "| model | samples | headline [95% interval] | AutoAttack | headline - AutoAttack |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        kind = f"rand, {draws} fresh draws" if r["stochastic"] else "standard"
        lines.append(
            f"| {r['model']} | {r['n']} | {100 * r['headline']:.2f} [{100 * r['ci95'][0]:.2f}, "
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
    parser.add_argument("--every", type=int, default=1, help="every K-th of the board's samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.every < 1:
        parser.error("--every must be at least 1")
    results = compare(args.home, args.models, args.draws, args.cache, args.every)
    worst = max((r["gap"] for r in results), default=0.0)
    print(f"largest gap {worst:+.2f} points (target <= {TARGET_GAP})")
    if args.markdown:
        args.markdown.write_text(markdown(results, args.draws))
    raise SystemExit(0 if worst <= TARGET_GAP else 1)


if __name__ == "__main__":
    main()
