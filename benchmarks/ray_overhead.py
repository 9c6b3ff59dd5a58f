"""What Ray costs on one CPU machine: the same attack run by the local and the Ray executor.

    python benchmarks/ray_overhead.py [--epochs 6] [--n 60] [--chunk-size 25]
        [--attacks fgsm,pgd10] [--cpus 2] [--threads 1]

Trains two tiny digits models (vanilla, deterministic; randhet, stochastic) in a temporary home,
then attacks them side by side in two fresh copies of that home:

1. ``api.attack(executor="local")``: in this process;
2. ``api.attack(executor="ray")`` on a local Ray started beforehand (its start-up is timed
   apart), with ``--cpus`` CPUs: every task loads its checkpoint and data set in a worker;
3. the same again in a third copy, on the same Ray: its worker processes already run.

It prints both wall times, the Ray start-up, and the ratio Ray / local (start-up excluded), and
checks that both give the same per-sample results. Seconds depend on the machine; the ratio,
measured side by side, is the result. The default workload is tests/test_ray.py's.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--attacks", default="fgsm,pgd10")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(args.threads)
    os.environ["SNNBENCH_THREADS"] = str(args.threads)
    kwargs = dict(
        attacks=args.attacks.split(","), n=args.n, chunk_size=args.chunk_size, device="cpu"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        for defense in ("vanilla", "randhet"):
            train_model(
                ModelConfig(defense, "tiny", "digits", 4),
                TrainConfig(epochs=args.epochs),
                home=base,
                device="cpu",
            )
        homes = {kind: Path(tmp) / kind for kind in ("local", "ray", "warm")}
        for home in homes.values():
            shutil.copytree(base, home)

        start = time.perf_counter()
        local = api.attack(home=homes["local"], **kwargs)
        local_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(
            num_cpus=args.cpus,
            include_dashboard=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"SNNBENCH_THREADS": str(args.threads)}},
        )
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        remote = api.attack(home=homes["ray"], executor="ray", **kwargs)
        ray_s = time.perf_counter() - start
        start = time.perf_counter()  # again, in a fresh home: workers already started
        warm = api.attack(home=homes["warm"], executor="ray", **kwargs)
        warm_s = time.perf_counter() - start
        ray.shutdown()

    same = (
        [c["per_sample"] for c in local]
        == [c["per_sample"] for c in remote]
        == [c["per_sample"] for c in warm]
    )
    tasks = len(local) * -(-args.n // args.chunk_size)
    print(
        f"workload: 2 models x {len(kwargs['attacks'])} attacks x {args.n} samples in chunks "
        f"of {args.chunk_size} ({tasks} attack tasks), {args.threads} torch thread(s)"
    )
    print(f"local executor:          {local_s:7.2f} s")
    print(f"ray executor ({args.cpus} CPUs):   {ray_s:7.2f} s   (+ {startup_s:.2f} s to start Ray)")
    print(f"ray, workers warm:       {warm_s:7.2f} s")
    print(
        f"ray / local:             {ray_s / local_s:7.2f}x  (start-up excluded); "
        f"{(ray_s + startup_s) / local_s:.2f}x with it; {warm_s / local_s:.2f}x warm"
    )
    print(f"same per-sample results: {same}")


if __name__ == "__main__":
    main()
