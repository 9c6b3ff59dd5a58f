"""Gradient-masking sanity checks (evaluation.md section 7), registered by id.

Two kinds. *Probe* checks run the model on a small class-balanced test subset (C02-C08, C10,
C22, C23): determinism, mode side effects, NaN, zero gradients, a PGD loss path, a huge-eps
APGD, batch-size independence, gradient agreement. *Result* checks read the stored result
cards of the model (C09, C11-C21): strength order of the attacks, black-box or transfer beating
white-box, EoT and iteration convergence, bookkeeping. A difference between two attacks counts
only above ``max(margin, 2 SE)``, SE of the mean per-sample difference on the shared samples
(for deterministic models: from the discordant pairs).

Levels: ``error`` voids the run, ``unreliable`` flags the model in every leaderboard,
``warn`` is a footnote. ``check`` stores every outcome in the results store.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snnbench.attacks import create_attack
from snnbench.metrics import decode_counts
from snnbench.plots import SWEEP
from snnbench.registry import Registry

LEVELS = ("error", "unreliable", "warn")
FLAGGING = ("error", "unreliable")


@dataclass(frozen=True)
class Outcome:
    """One check on one model: ``status`` is ``pass``, ``fail`` or ``skip`` (not applicable)."""

    id: str
    level: str
    status: str
    detail: str = ""

    @property
    def flags(self) -> bool:
        """A failed ``error`` or ``unreliable`` check marks the model unreliable."""
        return self.status == "fail" and self.level in FLAGGING

    def label(self) -> str:
        return f"{self.id} {CHECKS.entry(self.id).summary}"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "level": self.level, "status": self.status, "detail": self.detail}


@dataclass
class Probe:
    """What probe checks share: the model, a small subset of test samples, the budget."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    stochastic: bool
    num_classes: int
    eps: float
    norm: str = "Linf"
    eot: int = 1                  # gradient draws per step on a stochastic model
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _cache: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: torch.Tensor | None = None, seed: int | None = None) -> torch.Tensor:
        torch.manual_seed(self.seed if seed is None else seed)
        with torch.no_grad():
            return self.model((self.x if x is None else x).to(self.device)).float().cpu()

    def gradients(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample CE input gradients at the clean inputs and the loss of one draw."""
        torch.manual_seed(self.seed if seed is None else seed)
        x = self.x.to(self.device).clone().requires_grad_(True)
        loss = F.cross_entropy(self.model(x).float(), self.y.to(self.device), reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return grad.detach().cpu(), loss.detach().cpu()


@dataclass
class Results:
    """The stored result cards of one model (its current weights)."""

    cards: list[dict[str, Any]]
    row: dict[str, Any] | None = None       # its leaderboard row, when one is built


CheckFn = Callable[[Any], tuple[str, str]]   # -> (status, detail)
CHECKS: Registry[CheckSpec] = Registry("check")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    level: str
    kind: str          # "probe" or "results"
    fn: CheckFn


def register(check_id: str, level: str, kind: str, summary: str) -> Callable[[CheckFn], CheckFn]:
    def decorator(fn: CheckFn) -> CheckFn:
        CHECKS.add(check_id.lower(), CheckSpec(check_id, level, kind, fn), summary=summary,
                   paper="evaluation.md section 7")
        return fn
    return decorator


def list_checks() -> list[str]:
    return [e.obj.id for e in CHECKS.entries()]


# ---------------------------------------------------------------------------- statistics
def significantly_lower(low: np.ndarray, high: np.ndarray, k_eval: int,
                        margin: float) -> tuple[bool, float, float]:
    """Whether per-sample accuracy ``low`` lies below ``high`` by more than ``max(margin, 2 SE)``.

    Returns ``(verdict, difference high - low, SE)``; SE is that of the mean per-sample
    difference, which for 0/1 outcomes is the discordant-pair (McNemar) standard error.
    """
    diff = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / k_eval
    if len(diff) < 2:
        return False, float(diff.mean()) if len(diff) else 0.0, 0.0
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff)))
    return mean > max(margin, 2 * se), mean, se


def _pp(value: float) -> str:
    return f"{100 * value:.2f} pp"


# ---------------------------------------------------------------------------- probe checks
def _pgd_path(probe: Probe, batch: int | None = None, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A PGD without random start (so the path is a function of the model alone), EoT over
    ``probe.eot`` draws: per-sample losses at the start and at the end, and final predictions."""
    size = batch or len(probe.y)
    alpha = probe.eps / 4
    first, last, preds = [], [], []
    for start in range(0, len(probe.y), size):
        x0 = probe.x[start:start + size].to(probe.device)
        y = probe.y[start:start + size].to(probe.device)
        x = x0.clone()
        losses = []
        torch.manual_seed(probe.seed)
        for step in range(steps + 1):
            x_in = x.clone().requires_grad_(True)
            draws = probe.eot if probe.stochastic else 1
            grad, loss = torch.zeros_like(x), torch.zeros(len(y), device=x.device)
            for _ in range(draws):
                per = F.cross_entropy(probe.model(x_in).float(), y, reduction="none")
                grad += torch.autograd.grad(per.sum(), x_in)[0]
                loss += per.detach()
            losses.append(loss / draws)
            if step == steps:
                break
            if probe.norm == "Linf":
                x = torch.min(torch.max(x + alpha * grad.sign(), x0 - probe.eps), x0 + probe.eps)
            else:
                flat = grad.flatten(1)
                x = x + alpha * (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(x)
                delta = (x - x0).flatten(1)
                scale = (probe.eps / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1)
                x = x0 + (delta * scale).view_as(x)
            x = x.clamp(0, 1).detach()
        path = torch.stack(losses, 1).cpu()
        first.append(path[:, 0])
        last.append(path)
        with torch.no_grad():
            torch.manual_seed(probe.seed)
            preds.append(probe.model(x).argmax(1).cpu())
    return torch.cat(first), torch.cat(last), torch.cat(preds)


def _clean_correct(probe: Probe) -> torch.Tensor:
    if "correct" not in probe._cache:
        probe._cache["correct"] = probe.logits().argmax(1) == probe.y
    return probe._cache["correct"]


@register("C02", "error", "probe", "clean predictions change after an attack (state leak)")
def _c02(probe: Probe) -> tuple[str, str]:
    before = probe.logits(seed=probe.seed + 1).argmax(1)
    create_attack("pgd10", probe.eps, probe.norm)(probe.model, probe.x.to(probe.device),
                                                  probe.y.to(probe.device))
    after = probe.logits(seed=probe.seed + 1).argmax(1)
    changed = float((before != after).float().mean())
    acc = (before == probe.y).float(), (after == probe.y).float()
    lower, _, _ = significantly_lower(acc[1].numpy(), acc[0].numpy(), 1, 0.0)
    # Same seeds before and after: any change of a prediction is state carried over, but a
    # change on <= 1% is left to float noise on GPUs.
    bad = changed > 0.01 or lower
    return ("fail" if bad else "pass",
            (f"{100 * changed:.1f}% of predictions changed across a PGD-10 run (same seeds); "
            f"accuracy {100 * float(acc[0].mean()):.1f}% then {100 * float(acc[1].mean()):.1f}%"))


@register("C03", "unreliable", "probe", "randomness does not match the model's declaration")
def _c03(probe: Probe) -> tuple[str, str]:
    a, b = probe.logits(seed=probe.seed), probe.logits(seed=probe.seed + 7)
    gap = float((a - b).abs().max())
    if probe.stochastic:
        return ("fail" if gap == 0 else "pass",
                f"declared stochastic; two draws differ by up to {gap:.3g} in the logits"
                + (" (noise is off)" if gap == 0 else ""))
    return ("fail" if gap > 1e-5 else "pass",
            f"declared deterministic; two passes with other seeds differ by up to {gap:.3g}")


@register("C04", "error", "probe", "logits depend on the batch or on earlier passes")
def _c04(probe: Probe) -> tuple[str, str]:
    a, b = probe.logits(), probe.logits()
    repeat = float((a - b).abs().max())
    if probe.stochastic:       # with the same seed a stochastic model must repeat itself too
        return ("fail" if repeat > 1e-5 else "pass",
                f"the same batch twice under one seed differs by {repeat:.3g}")
    alone = torch.cat([probe.logits(probe.x[i:i + 1]) for i in range(min(8, len(probe.y)))])
    single = float((alone - a[:len(alone)]).abs().max())
    scale = float(a.abs().max()) or 1.0
    bad = repeat > 1e-5 or single > 1e-4 * max(1.0, scale)
    return ("fail" if bad else "pass",
            f"same batch twice: {repeat:.3g}; sample alone vs in the batch: {single:.3g}")


@register("C05", "error", "probe", "the model is in training mode during or after an attack")
def _c05(probe: Probe) -> tuple[str, str]:
    seen: list[bool] = []
    hook = probe.model.register_forward_pre_hook(
        lambda module, args: seen.append(any(m.training for m in module.modules())))
    try:
        probe.model.eval()
        create_attack("pgd10", probe.eps, probe.norm)(probe.model, probe.x.to(probe.device),
                                                      probe.y.to(probe.device))
    finally:
        hook.remove()
    during = sum(seen)
    after = any(m.training for m in probe.model.modules())
    probe.model.eval()
    return ("fail" if during or after else "pass",
            (f"{during} of {len(seen)} forward passes in training mode; after: "
            f"{'training' if after else 'eval'}"))


@register("C06", "unreliable", "probe", "NaN or Inf in the logits or input gradients")
def _c06(probe: Probe) -> tuple[str, str]:
    logits = probe.logits()
    grad, _ = probe.gradients()
    bad_logits = int((~torch.isfinite(logits)).any(1).sum())
    bad_grads = int((~torch.isfinite(grad.flatten(1))).any(1).sum())
    return ("fail" if bad_logits or bad_grads else "pass",
            f"{bad_logits} samples with non-finite logits, {bad_grads} with non-finite gradients")


@register("C07", "unreliable", "probe", "more than 1% of samples have a zero input gradient")
def _c07(probe: Probe) -> tuple[str, str]:
    grad, _ = probe.gradients()
    zero = float((grad.flatten(1).abs().sum(1) == 0).float().mean())
    return ("fail" if zero > 0.01 else "pass",
            f"{100 * zero:.1f}% of samples with ||grad_x L||_1 = 0")


@register("C08", "unreliable", "probe", "PGD does not raise the loss")
def _c08(probe: Probe) -> tuple[str, str]:
    correct = _clean_correct(probe)
    if not bool(correct.any()):
        return "skip", "no clean-correct sample to attack"
    start, path, _ = _pgd_path(probe)
    start, path = start[correct], path[correct]
    gain = float((path[:, -1] - start).median())
    never = float((path[:, 1:].amax(1) <= start).float().mean())
    bad = gain <= 0 or never > 0.05
    return ("fail" if bad else "pass",
            (f"median loss gain {gain:.3g} over 10 PGD steps; {100 * never:.1f}% of samples "
            "never above their start"))


@register("C10", "unreliable", "probe", "APGD-CE at eps 64/255 leaves accuracy above chance")
def _c10(probe: Probe) -> tuple[str, str]:
    eps = 64 / 255 if probe.norm == "Linf" else 8.0
    attack = create_attack("apgd-ce", eps, probe.norm, eot=probe.eot if probe.stochastic else 1)
    torch.manual_seed(probe.seed)
    x_adv = attack(probe.model, probe.x.to(probe.device), probe.y.to(probe.device))
    robust = float(((probe.logits(x_adv).argmax(1) == probe.y) & _clean_correct(probe)).float().mean())
    chance = 1 / probe.num_classes
    return ("fail" if robust > chance + 0.02 else "pass",
            (f"robust accuracy {100 * robust:.1f}% at eps {64 if probe.norm == 'Linf' else 8}"
            f"{'/255' if probe.norm == 'Linf' else ''} (chance {100 * chance:.1f}%)"))


@register("C22", "error", "probe", "results depend on the batch size")
def _c22(probe: Probe) -> tuple[str, str]:
    if probe.stochastic:
        return "skip", "stochastic model: draws depend on the batch shape"
    size = max(2, len(probe.y) // 2)
    _, _, full = _pgd_path(probe, size, steps=5)
    _, _, half = _pgd_path(probe, max(1, size // 2), steps=5)
    a, b = (full == probe.y).numpy(), (half == probe.y).numpy()
    lower_a, diff, se = significantly_lower(a, b, 1, 0.0)
    lower_b, _, _ = significantly_lower(b, a, 1, 0.0)
    flipped = int((full != half).sum())
    return ("fail" if lower_a or lower_b else "pass",
            (f"PGD-5 at batch {size} vs {max(1, size // 2)}: accuracy differs by {_pp(abs(diff))} "
            f"(2 SE {_pp(2 * se)}), {flipped} predictions differ"))


@register("C23", "warn", "probe", "a deterministic model's gradients differ between passes")
def _c23(probe: Probe) -> tuple[str, str]:
    if probe.stochastic:
        return "skip", "stochastic model: AGCS is a diagnostic (snnbench diagnose)"
    from snnbench.diagnostics import agcs_value
    value, excluded = agcs_value(probe)
    return ("fail" if value < 0.999 else "pass",
            f"AGCS {value:.4f} ({excluded} zero-gradient pairs left out)")


# ---------------------------------------------------------------------------- result checks
@dataclass(frozen=True)
class Column:
    """One stored per-attack run: its id, settings and per-sample correct-draw counts."""

    id: str
    eps: float
    norm: str
    steps: int
    eot: int
    grad: str
    counts: np.ndarray
    k_eval: int
    group: tuple          # samples and budget: runs compare only within a group
    card: dict[str, Any]

    @property
    def acc(self) -> float:
        return float(self.counts.mean() / self.k_eval) if len(self.counts) else 0.0

    @property
    def name(self) -> str:
        extra = f"/{self.grad}" if self.grad != "bptt" else ""
        return f"{self.id}{extra}" + (f"+eot{self.eot}" if self.eot > 1 else "")


def columns(results: Results, cascade: bool = False) -> list[Column]:
    out = []
    for card in results.cards:
        if ("cascade" in card["eval"]) != cascade:
            continue
        attack, ev = card["attack"], card["eval"]
        group = (ev["n"], ev["split"], ev["k_eval"], attack["norm"], round(attack["eps"], 8))
        out.append(Column(attack["id"], attack["eps"], attack["norm"],
                          int(attack.get("params", {}).get("steps", 1)), int(attack.get("eot", 1)),
                          attack.get("grad", "bptt"), decode_counts(card["per_sample"]["adv"]),
                          ev["k_eval"], group, card))
    return out


def _groups(cols: Iterable[Column]) -> list[list[Column]]:
    by: dict[tuple, list[Column]] = defaultdict(list)
    for col in cols:
        by[col.group].append(col)
    return list(by.values())


def _family(col: Column) -> str:
    """``pgd`` for pgd7/10/20/40, ``apgd`` for apgd7.. and apgd-ce, ...: steps vary within one."""
    if col.id == "apgd-ce" or re.fullmatch(r"apgd\d+", col.id):
        return "apgd"
    return re.sub(r"\d+$", "", col.id)


WHITE_BOX = re.compile(r"^(fgsm|rfgsm|pgd\d+|mifgsm.*|apgd.*|mtpgd\d+|fab-t|autoattack-.*)$")


def _white(col: Column) -> bool:
    return bool(WHITE_BOX.match(col.id)) and not col.id.endswith("-rh")


def _compare_all(pairs: Iterable[tuple[Column, Column]], margin: float) -> tuple[str, str]:
    """Fail on the first pair whose first member is significantly below the second."""
    seen = 0
    for low, high in pairs:
        seen += 1
        bad, diff, se = significantly_lower(low.counts, high.counts, low.k_eval, margin)
        if bad:
            return "fail", (f"{low.name} {100 * low.acc:.2f}% vs {high.name} {100 * high.acc:.2f}%: "
                            f"{_pp(diff)} lower (margin {_pp(margin)}, 2 SE {_pp(2 * se)})")
    return ("pass", f"{seen} comparison{'s' * (seen > 1)} within max(margin {_pp(margin)}, 2 SE)") if seen \
        else ("skip", "no pair of runs to compare")


@register("C01", "error", "results", "an adversarial input outside the eps-ball or [0, 1]")
def _c01(results: Results) -> tuple[str, str]:
    # Every attack output is checked before it is counted (attacks.base.check_valid): a run that
    # failed never produced a card, so a stored card records a pass.
    bad = [c["attack"]["id"] for c in results.cards if c.get("checks", {}).get("C01") != "pass"]
    if not results.cards:
        return "skip", "no stored run"
    return ("fail", f"runs without a C01 pass: {', '.join(bad)}") if bad else \
        ("pass", f"all {len(results.cards)} stored runs stayed in the eps-ball and in [0, 1]")


@register("C09", "unreliable", "results", "robust accuracy rises with eps")
def _c09(results: Results) -> tuple[str, str]:
    by: dict[tuple, list[Column]] = defaultdict(list)
    for col in columns(results):
        by[(col.id, col.norm, col.steps, col.eot, col.grad, col.group[:3])].append(col)
    pairs = []
    for runs in by.values():
        runs.sort(key=lambda c: c.eps)
        pairs += [(small, large) for small, large in itertools.pairwise(runs)]
    return _compare_all(pairs, 0.01)


@register("C11", "unreliable", "results", "twice the iterations is much stronger (not converged)")
def _c11(results: Results) -> tuple[str, str]:
    # A family's longest run against the longest with at most half its iterations (the spec's
    # APGD 200 vs 100). Sweep runs are left out: a steps sweep is weak at few steps by design.
    pairs = []
    for group in _groups(c for c in columns(results) if SWEEP not in c.card["attack"].get("params", {})):
        families: dict[tuple, list[Column]] = defaultdict(list)
        for col in group:
            families[(_family(col), col.eot, col.grad)].append(col)
        for runs in families.values():
            longest = max(runs, key=lambda c: c.steps)
            halves = [c for c in runs if 2 * c.steps <= longest.steps]
            if halves:
                pairs.append((longest, max(halves, key=lambda c: c.steps)))
    if not pairs:
        return _cascade_gain(results, lambda m: m == "apgd-ce:200", 0.01)
    return _compare_all(pairs, 0.01)


@register("C12", "unreliable", "results", "five restarts are much stronger than one")
def _c12(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for many in group:
            for one in group:
                r_many = many.card["attack"].get("params", {}).get("restarts", 1)
                r_one = one.card["attack"].get("params", {}).get("restarts", 1)
                if many.id == one.id and many.steps == one.steps and r_many >= 5 and r_one == 1:
                    pairs.append((many, one))
    return _compare_all(pairs, 0.01)


@register("C13", "unreliable", "results", "EoT 2K is much stronger than EoT K (K too small)")
def _c13(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for double in group:
            for single in group:
                if (double.id == single.id and double.steps == single.steps and
                        double.grad == single.grad and single.eot > 1 and double.eot == 2 * single.eot):
                    pairs.append((double, single))
    if not pairs:      # the cascade: the EoT-2K member must add little to what came before
        return _cascade_gain(results, lambda m: m.endswith("@eot=2k"), 0.01)
    return _compare_all(pairs, 0.01)


def _best_white(group: list[Column]) -> list[Column]:
    return [c for c in group if _white(c) and c.grad == "bptt"]


@register("C14", "unreliable", "results", "Square (black-box) beats the best white-box attack")
def _c14(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        white = _best_white(group)
        if white:
            best = min(white, key=lambda c: c.acc)
            pairs += [(c, best) for c in group if c.id == "square"]
    if not pairs:
        return _cascade_gain(results, lambda m: m.startswith("square"), 0.005)
    return _compare_all(pairs, 0.005)


@register("C15", "unreliable", "results", "a transfer attack beats the best white-box attack")
def _c15(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        white = _best_white(group)
        if white:
            best = min(white, key=lambda c: c.acc)
            pairs += [(c, best) for c in group if c.id.startswith("transfer-")]
    if not pairs:
        return _cascade_gain(results, lambda m: m.startswith("transfer-"), 0.01)
    return _compare_all(pairs, 0.01)


@register("C16", "unreliable", "results", "random noise beats PGD-10")
def _c16(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        pgd = [c for c in group if c.id == "pgd10" and c.grad == "bptt"]
        pairs += [(noise, p) for noise in group if noise.id.startswith("noise") for p in pgd
                  if p.eot == max(x.eot for x in pgd)]
    return _compare_all(pairs, 0.0)


@register("C17", "unreliable", "results", "attack strength order broken (classic masking sign)")
def _c17(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        own = [c for c in group if c.grad == "bptt"]
        for eot in sorted({c.eot for c in own}):
            same = [c for c in own if c.eot == eot]
            fgsm = [c for c in same if c.id == "fgsm"]
            pgds = sorted((c for c in same if re.fullmatch(r"pgd\d+", c.id)), key=lambda c: c.steps)
            pgd10 = [c for c in same if c.id == "pgd10"]
            if pgds and fgsm:
                pairs.append((fgsm[0], pgds[-1]))           # longest PGD above FGSM?
            pairs += [(short, long) for short, long in itertools.pairwise(pgds)]   # PGD rising with n?
            strong = [c for c in same if c.id.startswith(("apgd", "autoattack")) and not c.id.endswith("-rh")]
            pairs += [(p, s) for s in strong for p in pgd10]    # APGD/AutoAttack above PGD-10?
    return _compare_all(pairs, 0.01)


@register("C18", "warn", "results", "another surrogate or BPTR is stronger than the model's own")
def _c18(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for other in group:
            if other.grad != "bptt":
                pairs += [(other, own) for own in group if own.grad == "bptt"
                          and own.id == other.id and own.eot == other.eot and own.steps == other.steps]
    if not pairs:
        return _cascade_gain(results, lambda m: "@surrogate=" in m, 0.02)
    return _compare_all(pairs, 0.02)


@register("C19", "warn", "results", "APGD-DLR or APGD-T much stronger than APGD-CE (CE saturation)")
def _c19(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        ce = [c for c in group if c.id == "apgd-ce" and c.grad == "bptt"]
        pairs += [(other, base) for other in group if other.id in ("apgd-dlr", "apgd-t")
                  for base in ce if base.eot == other.eot]
    return _compare_all(pairs, 0.05)


@register("C20", "error", "results", "bookkeeping: worst case above MRA, or AutoAttack above a part")
def _c20(results: Results) -> tuple[str, str]:
    row = results.row or {}
    top = row.get("headline") or {}
    worst, least = top.get("acc"), row.get("mra")
    # Deterministic rows: the worst case can never exceed MRA. Stochastic rows: the headline
    # reports fresh draws of the candidates chosen on selection draws, so it may sit above
    # the minimum column by noise; beyond 2 SE (its bootstrap interval / 3.92 * 2) is a bug.
    slack = 0.0 if row.get("k_eval", 1) == 1 else (top["ci95"][1] - top["ci95"][0]) / 1.96
    if worst is not None and least is not None and worst > least + slack + 1e-9:
        return "fail", f"worst case {100 * worst:.2f}% above MRA {100 * least:.2f}%"
    parts = ("apgd-ce", "apgd-t", "fab-t", "square", "apgd-dlr")
    pairs = []
    for group in _groups(columns(results)):
        for aa in (c for c in group if c.id.startswith("autoattack-")):
            pairs += [(part, aa) for part in group if part.id in parts and part.eot >= aa.eot]
    status, detail = _compare_all(pairs, 0.0)
    if status == "skip" and worst is not None and least is not None:
        return "pass", f"worst case {100 * worst:.2f}% <= MRA {100 * least:.2f}%"
    return status, detail


@register("C21", "unreliable", "results", "an EoT drop on a deterministic model (hidden randomness)")
def _c21(results: Results) -> tuple[str, str]:
    if any(c["model"]["stochastic"] for c in results.cards):
        return "skip", "stochastic model: a drop is expected"
    pairs = []
    for group in _groups(columns(results)):
        for a in group:
            pairs += [(a, b) for b in group if b.id == a.id and b.steps == a.steps
                      and b.grad == a.grad and b.eot != a.eot]
    return _compare_all(pairs, 0.0)


def _cascade_gain(results: Results, member: Callable[[str], bool], margin: float) -> tuple[str, str]:
    """In a cascade a member's column is min(earlier, own): its gain over the member before it
    is what it found that every earlier attack missed."""
    steps = sorted((c for c in results.cards if "cascade" in c["eval"]),
                   key=lambda c: c["eval"]["cascade"]["position"])
    by_position = {c["eval"]["cascade"]["position"]: c for c in steps}
    pairs = []
    for card in steps:
        position = card["eval"]["cascade"]["position"]
        name = card["eval"]["cascade"].get("member") or card["attack"]["id"]
        if member(name) and position - 1 in by_position:
            now, before = columns(Results([card]), True)[0], \
                columns(Results([by_position[position - 1]]), True)[0]
            # named by its member (``square``, ``apgd-ce@eot=2k``) in the message
            pairs.append((dataclasses.replace(now, id=f"cascade→{name}", eot=1, grad="bptt"), before))
    return _compare_all(pairs, margin)


# ---------------------------------------------------------------------------- running
def run_probe_checks(probe: Probe, ids: Iterable[str] | None = None) -> list[Outcome]:
    return _run(probe, "probe", ids)


def run_result_checks(results: Results, ids: Iterable[str] | None = None) -> list[Outcome]:
    return _run(results, "results", ids)


def _run(subject: Any, kind: str, ids: Iterable[str] | None) -> list[Outcome]:
    wanted = {CHECKS.canonical(i) for i in ids} if ids else None
    outcomes = []
    for entry in CHECKS.entries():
        spec = entry.obj
        if spec.kind != kind or (wanted is not None and entry.name not in wanted):
            continue
        status, detail = spec.fn(subject)
        outcomes.append(Outcome(spec.id, spec.level, status, detail))
    if kind == "probe":
        subject.model.eval()
    return outcomes


def flagged(outcomes: Iterable[Outcome | dict]) -> list[str]:
    """``"C07 <summary>"`` for every failed check that marks a model unreliable."""
    out = []
    for o in outcomes:
        o = o if isinstance(o, Outcome) else Outcome(o["id"], o["level"], o["status"], o.get("detail", ""))
        if o.flags:
            out.append(o.label())
    return out


def warnings(outcomes: Iterable[Outcome | dict]) -> list[str]:
    out = []
    for o in outcomes:
        o = o if isinstance(o, Outcome) else Outcome(o["id"], o["level"], o["status"], o.get("detail", ""))
        if o.status == "fail" and o.level == "warn":
            out.append(o.label())
    return out
