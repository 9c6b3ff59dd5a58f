"""benchmarks/device_agreement.py on the CPU alone: the dry run (cpu vs cpu) of the CUDA check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location(
        "device_agreement", ROOT / "benchmarks" / "device_agreement.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("device_agreement", module)
    spec.loader.exec_module(module)
    return module


def test_two_cpu_runs_of_the_pinned_models_agree_sample_for_sample(tmp_path):
    tool = _tool()
    models = ["vanilla-tiny-digits", "tgo-tiny-digits"]
    runs = [
        tool.attack_on("cpu", models, None, 40, tmp_path / f"home{i}", ["fgsm", "pgd10"])
        for i in range(2)
    ]
    rows = tool.compare(*runs)
    assert {(model, attack) for model, attack, *_ in rows} >= {
        ("vanilla-tiny-digits", "fgsm"),
        ("tgo-tiny-digits", "pgd10"),
    }
    for _, _, one, two, agree in rows:
        assert agree and one["robust_acc"] == two["robust_acc"] and one["ci95"] == two["ci95"]


def test_intervals_that_do_not_overlap_disagree():
    tool = _tool()
    first = {"rows": {("m", "fgsm"): {"robust_acc": 0.5, "ci95": [0.45, 0.55]}}}
    second = {"rows": {("m", "fgsm"): {"robust_acc": 0.7, "ci95": [0.65, 0.75]}}}
    assert tool.compare(first, second)[0][-1] is False
    second["rows"][("m", "fgsm")]["ci95"] = [0.55, 0.75]
    assert tool.compare(first, second)[0][-1] is True
