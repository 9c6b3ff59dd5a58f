"""The attack matrix: chunks, resume, and agreement with the libraries run directly."""

from __future__ import annotations

import shutil

import torch
import torchattacks
from pyautoattack import AutoAttack

import snnbench
from snnbench import api
from snnbench.metrics import decode_counts

NAME = "vanilla-tiny-digits"
EPS = 32 / 255


def per_sample(cards):
    return {c["attack"]["id"]: decode_counts(c["per_sample"]["adv"]).tolist() for c in cards}


def test_resume_after_an_injected_stop_matches_an_uninterrupted_run(home, tmp_path):
    fresh = tmp_path / "fresh"
    shutil.copytree(home, fresh)
    calls = []
    kwargs = dict(attacks=["fgsm", "pgd10"], chunk_size=100, device="cpu")
    partial = api.attack(home=home, max_chunks=3, on_chunk=lambda *a: calls.append(a), **kwargs)
    assert len(calls) == 3 and [c["attack"]["id"] for c in partial] == []
    resumed = api.attack(home=home, on_chunk=lambda *a: calls.append(a), **kwargs)
    assert len(calls) == 8  # 2 attacks x 4 chunks of 360 samples, none twice
    whole = api.attack(home=fresh, **kwargs)
    assert per_sample(resumed) == per_sample(whole)
    again = api.attack(home=home, on_chunk=lambda *a: calls.append(a), **kwargs)
    assert len(calls) == 8 and per_sample(again) == per_sample(whole)


def test_libraries_on_the_loaded_model_agree_with_snnbench_attack(home):
    cards = {
        c["attack"]["id"]: c
        for c in api.attack(home=home, attacks=["pgd10", "apgd-ce"], device="cpu")
    }
    model = snnbench.load(NAME, home)
    x, y = snnbench.load_dataset("digits", "test")
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    torch.manual_seed(123)  # another seed than snnbench's: agreement within the interval
    x_pgd = torchattacks.PGD(model, eps=EPS, alpha=EPS * 0.31875, steps=10, random_start=True)(x, y)
    aa = AutoAttack(
        model, norm="Linf", eps=EPS, version="custom", attacks=["apgd-ce"], device="cpu", seed=0
    )
    aa.apgd.n_restarts = 1
    x_aa, _ = aa.run_standard_evaluation(x, y, batch_size=500)
    for attack_id, x_adv in (("pgd10", x_pgd), ("apgd-ce", x_aa)):
        with torch.no_grad():
            robust = ((model(x_adv).argmax(1) == y) & clean).float().mean().item()
        lo, hi = cards[attack_id]["result"]["ci95"]
        assert lo <= robust <= hi, (attack_id, robust, lo, hi)
        assert robust < cards[attack_id]["result"]["clean_acc"]


def test_evaluate_in_memory_model():
    torch.manual_seed(0)
    model = snnbench.create_model("vanilla", arch="tiny", dataset="digits", timesteps=2)
    result = snnbench.evaluate(
        model, dataset="digits", attacks=["fgsm"], n=50, device="cpu", checks=False
    )
    (card,) = result.cards
    assert (
        card["eval"]["n"] == 50 and 0 <= card["result"]["robust_acc"] <= card["result"]["clean_acc"]
    )
