"""Gradient-masking sanity checks (docs/protocol.md), registered by id.

Two kinds. *Probe* checks run the model on a small class-balanced test subset (C02-C08, C10,
C22, C23): determinism, mode side effects, NaN, zero gradients, a PGD loss path, a huge-eps
APGD, batch-size independence, gradient agreement. *Result* checks read the stored result
cards of the model (C09, C11-C21): strength order of the attacks, black-box or transfer beating
white-box, EoT and iteration convergence, bookkeeping. The comparing result checks return
pairs of runs; every pair of every result check of one model forms one family, decided at once
(:func:`decide`): an exact paired sign test per pair, Holm's correction over the family at
``FAMILY_ALPHA`` = 1%, and a pair fails only when it is significant and beyond its check's
margin. So a model whose attacks are all equally strong is flagged with probability <= 1%
whatever the number of checks (measured: docs/protocol.md).

Levels: ``error`` voids the run, ``unreliable`` flags the model in every leaderboard,
``warn`` is a footnote. Each check also says what its failure means (``FINDINGS``): gradient
masking suspected, an attack not converged (the number is an upper bound), an invalid
evaluation, or misdeclared randomness. ``check`` stores every outcome in the results store.
"""

from __future__ import annotations

import dataclasses
import functools
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

    @property
    def finding(self) -> str:
        """What a failure means: a key of ``FINDINGS``."""
        return CHECKS.entry(self.id).obj.finding

    def label(self) -> str:
        """``"C11 attack not converged: <what failed>; <what it means>"``: the id first."""
        spec = CHECKS.entry(self.id)
        return f"{self.id} {FINDINGS[spec.obj.finding]}: {spec.summary}; {spec.obj.meaning}"

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
    eot: int = 1  # gradient draws per step on a stochastic model
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
    row: dict[str, Any] | None = None  # its leaderboard row, when one is built


CheckFn = Callable[[Any], Any]  # -> (status, detail), or a result check's Pairs
CHECKS: Registry[CheckSpec] = Registry("check")


# What a failed check found, by kind: the leaderboard names it with the flag.
FINDINGS = {
    "masking": "gradient masking suspected",
    "convergence": "attack not converged",
    "invalid": "evaluation invalid",
    "randomness": "randomness misdeclared",
}
SHORT_FINDINGS = {
    "masking": "masking suspected",
    "convergence": "not converged",
    "invalid": "invalid",
    "randomness": "randomness misdeclared",
}


@dataclass(frozen=True)
class CheckSpec:
    id: str
    level: str
    kind: str  # "probe" or "results"
    fn: CheckFn
    finding: str = "masking"  # a key of FINDINGS
    meaning: str = ""  # what the failure implies for the number, and what to do


def register(
    check_id: str, level: str, kind: str, summary: str, finding: str, meaning: str
) -> Callable[[CheckFn], CheckFn]:
    if finding not in FINDINGS:
        raise ValueError(f"{check_id}: unknown finding {finding!r}")

    def decorator(fn: CheckFn) -> CheckFn:
        CHECKS.add(
            check_id.lower(),
            CheckSpec(check_id, level, kind, fn, finding, meaning),
            summary=summary,
            paper="docs/protocol.md",
        )
        return fn

    return decorator


def list_checks() -> list[str]:
    return [e.obj.id for e in CHECKS.entries()]


# ---------------------------------------------------------------------------- statistics
FAMILY_ALPHA = 0.01  # per model: the chance that equally strong attacks flag it at all


@functools.lru_cache(maxsize=65536)
def binomial_tail(successes: int, trials: int, rate: float) -> float:
    """``P(Binomial(trials, rate) >= successes)``, summed exactly in log space."""
    if successes <= 0:
        return 1.0
    if successes > trials or rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0
    head = math.lgamma(trials + 1)
    logs = [
        head
        - math.lgamma(j + 1)
        - math.lgamma(trials - j + 1)
        + j * math.log(rate)
        + (trials - j) * math.log1p(-rate)
        for j in range(successes, trials + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def sign_test(
    low: np.ndarray, high: np.ndarray, margin: float = 0.0, nested: bool = False
) -> tuple[int, int, float]:
    """One-sided exact paired test that run ``low`` is below run ``high`` on the same samples.

    Per sample, the sign of ``high - low`` (0/1 outcomes, or correct-draw counts of independent
    report draws): under the null both runs are exchangeable, so each non-tied sample is below
    with probability 1/2 (the exact McNemar / sign test). ``nested`` (a cascade, where ``low``
    is ``min(high, member)`` and can only be lower): the null is that the member lowers at most
    a share ``margin`` of the samples. Returns ``(lower, higher, p)``: samples where ``low`` is
    below, above, and the p-value.
    """
    diff = np.asarray(high, np.int64) - np.asarray(low, np.int64)
    lower, higher = int((diff > 0).sum()), int((diff < 0).sum())
    if nested:
        p = binomial_tail(lower, len(diff), margin) if margin > 0 else float(lower == 0)
        return lower, higher, p
    return lower, higher, binomial_tail(lower, lower + higher, 0.5)


def significantly_lower(
    low: np.ndarray, high: np.ndarray, k_eval: int, margin: float, alpha: float = FAMILY_ALPHA
) -> tuple[bool, float, float]:
    """One comparison on its own: ``low`` below ``high`` with the exact sign test at ``alpha``
    and by more than ``margin`` in accuracy. Returns ``(verdict, high - low, p)``."""
    diff = (
        float((np.asarray(high, np.float64) - np.asarray(low, np.float64)).mean() / k_eval)
        if len(low)
        else 0.0
    )
    _, _, p = sign_test(low, high)
    return p <= alpha and diff > margin, diff, p


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections: the family-wise false-alarm rate stays <= ``alpha`` under
    any dependence between the tests."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def _pp(value: float) -> str:
    return f"{100 * value:.2f} pp"


# ---------------------------------------------------------------------------- probe checks
def _pgd_path(
    probe: Probe, batch: int | None = None, steps: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A PGD without random start (so the path is a function of the model alone), EoT over
    ``probe.eot`` draws: per-sample losses at the start and at the end, and final predictions."""
    size = batch or len(probe.y)
    alpha = probe.eps / 4
    first, last, preds = [], [], []
    for start in range(0, len(probe.y), size):
        x0 = probe.x[start : start + size].to(probe.device)
        y = probe.y[start : start + size].to(probe.device)
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


@register(
    "C02",
    "error",
    "probe",
    "clean predictions change after an attack (state leak)",
    "invalid",
    "the numbers are void: the model carries state between calls",
)
def _c02(probe: Probe) -> tuple[str, str]:
    before = probe.logits(seed=probe.seed + 1).argmax(1)
    create_attack("pgd10", probe.eps, probe.norm)(
        probe.model, probe.x.to(probe.device), probe.y.to(probe.device)
    )
    after = probe.logits(seed=probe.seed + 1).argmax(1)
    changed = float((before != after).float().mean())
    acc = (before == probe.y).float(), (after == probe.y).float()
    lower, _, _ = significantly_lower(acc[1].numpy(), acc[0].numpy(), 1, 0.0)
    # Same seeds before and after: any change of a prediction is state carried over, but a
    # change on <= 1% is left to float noise on GPUs.
    bad = changed > 0.01 or lower
    return (
        "fail" if bad else "pass",
        (
            f"{100 * changed:.1f}% of predictions changed across a PGD-10 run (same seeds); "
            f"accuracy {100 * float(acc[0].mean()):.1f}% then {100 * float(acc[1].mean()):.1f}%"
        ),
    )


@register(
    "C03",
    "unreliable",
    "probe",
    "randomness does not match the model's declaration",
    "randomness",
    "the evaluation draws and EoT do not fit the model; declare its randomness",
)
def _c03(probe: Probe) -> tuple[str, str]:
    a, b = probe.logits(seed=probe.seed), probe.logits(seed=probe.seed + 7)
    gap = float((a - b).abs().max())
    if probe.stochastic:
        return (
            "fail" if gap == 0 else "pass",
            f"declared stochastic; two draws differ by up to {gap:.3g} in the logits"
            + (" (noise is off)" if gap == 0 else ""),
        )
    return (
        "fail" if gap > 1e-5 else "pass",
        f"declared deterministic; two passes with other seeds differ by up to {gap:.3g}",
    )


@register(
    "C04",
    "error",
    "probe",
    "logits depend on the batch or on earlier passes",
    "invalid",
    "the numbers are void: outputs depend on the batch or on earlier passes",
)
def _c04(probe: Probe) -> tuple[str, str]:
    a, b = probe.logits(), probe.logits()
    repeat = float((a - b).abs().max())
    if probe.stochastic:  # with the same seed a stochastic model must repeat itself too
        return (
            "fail" if repeat > 1e-5 else "pass",
            f"the same batch twice under one seed differs by {repeat:.3g}",
        )
    alone = torch.cat([probe.logits(probe.x[i : i + 1]) for i in range(min(8, len(probe.y)))])
    single = float((alone - a[: len(alone)]).abs().max())
    scale = float(a.abs().max()) or 1.0
    bad = repeat > 1e-5 or single > 1e-4 * max(1.0, scale)
    return (
        "fail" if bad else "pass",
        f"same batch twice: {repeat:.3g}; sample alone vs in the batch: {single:.3g}",
    )


@register(
    "C05",
    "error",
    "probe",
    "the model is in training mode during or after an attack",
    "invalid",
    "the numbers are void: the model ran in training mode",
)
def _c05(probe: Probe) -> tuple[str, str]:
    seen: list[bool] = []
    hook = probe.model.register_forward_pre_hook(
        lambda module, args: seen.append(any(m.training for m in module.modules()))
    )
    try:
        probe.model.eval()
        create_attack("pgd10", probe.eps, probe.norm)(
            probe.model, probe.x.to(probe.device), probe.y.to(probe.device)
        )
    finally:
        hook.remove()
    during = sum(seen)
    after = any(m.training for m in probe.model.modules())
    probe.model.eval()
    return (
        "fail" if during or after else "pass",
        (
            f"{during} of {len(seen)} forward passes in training mode; after: "
            f"{'training' if after else 'eval'}"
        ),
    )


@register(
    "C06",
    "unreliable",
    "probe",
    "NaN or Inf in the logits or input gradients",
    "masking",
    "non-finite gradients stop gradient attacks; the number is an upper bound",
)
def _c06(probe: Probe) -> tuple[str, str]:
    logits = probe.logits()
    grad, _ = probe.gradients()
    bad_logits = int((~torch.isfinite(logits)).any(1).sum())
    bad_grads = int((~torch.isfinite(grad.flatten(1))).any(1).sum())
    return (
        "fail" if bad_logits or bad_grads else "pass",
        f"{bad_logits} samples with non-finite logits, {bad_grads} with non-finite gradients",
    )


@register(
    "C07",
    "unreliable",
    "probe",
    "more than 1% of samples have a zero input gradient",
    "masking",
    "gradient attacks get no signal; the number is an upper bound",
)
def _c07(probe: Probe) -> tuple[str, str]:
    grad, _ = probe.gradients()
    zero = float((grad.flatten(1).abs().sum(1) == 0).float().mean())
    return (
        "fail" if zero > 0.01 else "pass",
        f"{100 * zero:.1f}% of samples with ||grad_x L||_1 = 0",
    )


@register(
    "C08",
    "unreliable",
    "probe",
    "PGD does not raise the loss",
    "masking",
    "the gradient does not lead uphill; the number is an upper bound",
)
def _c08(probe: Probe) -> tuple[str, str]:
    correct = _clean_correct(probe)
    if not bool(correct.any()):
        return "skip", "no clean-correct sample to attack"
    start, path, _ = _pgd_path(probe)
    start, path = start[correct], path[correct]
    gain = float((path[:, -1] - start).median())
    never = float((path[:, 1:].amax(1) <= start).float().mean())
    bad = gain <= 0 or never > 0.05
    return (
        "fail" if bad else "pass",
        (
            f"median loss gain {gain:.3g} over 10 PGD steps; {100 * never:.1f}% of samples "
            "never above their start"
        ),
    )


@register(
    "C10",
    "unreliable",
    "probe",
    "APGD-CE at eps 64/255 leaves accuracy above chance",
    "masking",
    "an unbounded attack must reach chance; the number is an upper bound",
)
def _c10(probe: Probe) -> tuple[str, str]:
    eps = 64 / 255 if probe.norm == "Linf" else 8.0
    attack = create_attack("apgd-ce", eps, probe.norm, eot=probe.eot if probe.stochastic else 1)
    torch.manual_seed(probe.seed)
    x_adv = attack(probe.model, probe.x.to(probe.device), probe.y.to(probe.device))
    robust = float(
        ((probe.logits(x_adv).argmax(1) == probe.y) & _clean_correct(probe)).float().mean()
    )
    chance = 1 / probe.num_classes
    return (
        "fail" if robust > chance + 0.02 else "pass",
        (
            f"robust accuracy {100 * robust:.1f}% at eps {64 if probe.norm == 'Linf' else 8}"
            f"{'/255' if probe.norm == 'Linf' else ''} (chance {100 * chance:.1f}%)"
        ),
    )


@register(
    "C22",
    "error",
    "probe",
    "results depend on the batch size",
    "invalid",
    "the numbers are void: samples leak into each other",
)
def _c22(probe: Probe) -> tuple[str, str]:
    if probe.stochastic:
        return "skip", "stochastic model: draws depend on the batch shape"
    size = max(2, len(probe.y) // 2)
    _, _, full = _pgd_path(probe, size, steps=5)
    _, _, half = _pgd_path(probe, max(1, size // 2), steps=5)
    a, b = (full == probe.y).numpy(), (half == probe.y).numpy()
    lower_a, diff, p_a = significantly_lower(a, b, 1, 0.0)
    lower_b, _, p_b = significantly_lower(b, a, 1, 0.0)
    flipped = int((full != half).sum())
    return (
        "fail" if lower_a or lower_b else "pass",
        (
            f"PGD-5 at batch {size} vs {max(1, size // 2)}: accuracy differs by {_pp(abs(diff))} "
            f"(exact sign test p {min(p_a, p_b):.2g}), {flipped} predictions differ"
        ),
    )


@register(
    "C23",
    "warn",
    "probe",
    "a deterministic model's gradients differ between passes",
    "randomness",
    "a nondeterministic backward; gradient attacks are noisy",
)
def _c23(probe: Probe) -> tuple[str, str]:
    if probe.stochastic:
        return "skip", "stochastic model: AGCS is a diagnostic (snnbench diagnose)"
    from snnbench.diagnostics import agcs_value

    value, excluded = agcs_value(probe)
    return (
        "fail" if value < 0.999 else "pass",
        f"AGCS {value:.4f} ({excluded} zero-gradient pairs left out)",
    )


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
    group: tuple  # samples and budget: runs compare only within a group
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
        out.append(
            Column(
                attack["id"],
                attack["eps"],
                attack["norm"],
                int(attack.get("params", {}).get("steps", 1)),
                int(attack.get("eot", 1)),
                attack.get("grad", "bptt"),
                decode_counts(card["per_sample"]["adv"]),
                ev["k_eval"],
                group,
                card,
            )
        )
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


@dataclass(frozen=True)
class Pairs:
    """What a comparing result check returns: pairs ``(low, high)`` of runs on the same samples,
    each a failure when ``low`` lies significantly below ``high`` by more than ``margin``
    (accuracy, 0-1). ``nested``: cascade columns (``low`` can only be lower than ``high``).
    ``empty``: the outcome when there is no pair."""

    pairs: list[tuple[Column, Column]]
    margin: float
    nested: bool = False
    empty: tuple[str, str] = ("skip", "no pair of runs to compare")


@dataclass(frozen=True)
class Comparison:
    """One decided pair: the accuracy gap ``high - low``, the samples where ``low`` is below
    and above ``high``, the exact p-value, and whether the pair fails (significant after Holm
    over the model's family, and beyond the margin)."""

    check: str
    low: Column
    high: Column
    margin: float
    gap: float
    lower: int
    higher: int
    p: float
    nested: bool = False
    fails: bool = False

    def describe(self, family: int) -> str:
        test = (
            (
                f"lowered {self.lower} of {len(self.low.counts)} samples, exact binomial p "
                f"{self.p:.2g} against a share of {_pp(self.margin)}"
            )
            if self.nested
            else f"below on {self.lower} samples, above on {self.higher}, exact sign test p {self.p:.2g}"
        )
        return (
            f"{self.low.name} {100 * self.low.acc:.2f}% vs {self.high.name} "
            f"{100 * self.high.acc:.2f}%: {_pp(self.gap)} lower (margin {_pp(self.margin)}; "
            f"{test}; Holm over the model's {family} comparison{'s' * (family != 1)} at "
            f"{100 * FAMILY_ALPHA:g}%)"
        )


def compare(check: str, pairs: Pairs) -> list[Comparison]:
    """Each pair of ``pairs`` with its gap and exact p-value (undecided)."""
    out = []
    for low, high in pairs.pairs:
        gap = (
            float((high.counts.astype(np.float64) - low.counts).mean() / low.k_eval)
            if len(low.counts)
            else 0.0
        )
        lower, higher, p = sign_test(low.counts, high.counts, pairs.margin, pairs.nested)
        out.append(Comparison(check, low, high, pairs.margin, gap, lower, higher, p, pairs.nested))
    return out


def decide(comparisons: list[Comparison], alpha: float = FAMILY_ALPHA) -> list[Comparison]:
    """Decide every comparison of one model at once: Holm over the family of distinct pairs
    (a pair two checks share counts once), then a pair fails when significant and its gap
    exceeds its margin."""
    keys = [_pair_key(c) for c in comparisons]
    distinct: dict[tuple, float] = {}
    for key, c in zip(keys, comparisons):
        distinct[key] = min(distinct.get(key, 1.0), c.p)
    rejected = dict(zip(distinct, holm(list(distinct.values()), alpha)))
    return [
        dataclasses.replace(c, fails=rejected[key] and c.gap > c.margin)
        for key, c in zip(keys, comparisons)
    ]


def _pair_key(c: Comparison) -> tuple:
    return id(c.low.card), id(c.high.card), c.nested


def family_size(comparisons: list[Comparison]) -> int:
    return len({_pair_key(c) for c in comparisons})


def _verdict(pairs: Pairs, decided: list[Comparison], family: int) -> tuple[str, str]:
    if not decided:
        return pairs.empty
    failed = [c for c in decided if c.fails]
    if failed:
        worst = min(failed, key=lambda c: (c.p, -c.gap))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return "fail", worst.describe(family) + more
    return "pass", (
        f"{len(decided)} comparison{'s' * (len(decided) > 1)}, none significantly "
        f"lower by more than {_pp(pairs.margin)} (Holm over the model's {family} "
        f"at {100 * FAMILY_ALPHA:g}%)"
    )


@register(
    "C01",
    "error",
    "results",
    "an adversarial input outside the eps-ball or [0, 1]",
    "invalid",
    "the run is void; report the attack as a bug",
)
def _c01(results: Results) -> tuple[str, str]:
    # Every attack output is checked before it is counted (attacks.base.check_valid), and each
    # card records the largest perturbation it measured on what was counted (evaluate.
    # validity_check): a card's C01 is that measurement, not a constant.
    bad = [c["attack"]["id"] for c in results.cards if c.get("checks", {}).get("C01") != "pass"]
    if not results.cards:
        return "skip", "no stored run"
    return (
        ("fail", f"runs without a C01 pass: {', '.join(bad)}")
        if bad
        else ("pass", f"all {len(results.cards)} stored runs stayed in the eps-ball and in [0, 1]")
    )


@register(
    "C09",
    "unreliable",
    "results",
    "robust accuracy rises with eps",
    "masking",
    "a larger budget cannot help the defender: the attack failed at the larger eps",
)
def _c09(results: Results) -> tuple[str, str]:
    by: dict[tuple, list[Column]] = defaultdict(list)
    for col in columns(results):
        by[(col.id, col.norm, col.steps, col.eot, col.grad, col.group[:3])].append(col)
    pairs = []
    for runs in by.values():
        runs.sort(key=lambda c: c.eps)
        pairs += [(small, large) for small, large in itertools.pairwise(runs)]
    return Pairs(pairs, 0.01)


@register(
    "C11",
    "unreliable",
    "results",
    "twice the iterations is much stronger (not converged)",
    "convergence",
    "the number is an upper bound; run more iterations",
)
def _c11(results: Results) -> tuple[str, str]:
    # A family's longest run against the longest with at most half its iterations (the spec's
    # APGD 200 vs 100). Sweep runs are left out: a steps sweep is weak at few steps by design.
    pairs = []
    for group in _groups(
        c for c in columns(results) if SWEEP not in c.card["attack"].get("params", {})
    ):
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
    return Pairs(pairs, 0.01)


@register(
    "C12",
    "unreliable",
    "results",
    "five restarts are much stronger than one",
    "convergence",
    "the number is an upper bound; run more restarts",
)
def _c12(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for many in group:
            for one in group:
                r_many = many.card["attack"].get("params", {}).get("restarts", 1)
                r_one = one.card["attack"].get("params", {}).get("restarts", 1)
                if many.id == one.id and many.steps == one.steps and r_many >= 5 and r_one == 1:
                    pairs.append((many, one))
    return Pairs(pairs, 0.01)


@register(
    "C13",
    "unreliable",
    "results",
    "EoT 2K is much stronger than EoT K (K too small)",
    "convergence",
    "the number is an upper bound; run more EoT draws (--eot)",
)
def _c13(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for double in group:
            for single in group:
                if (
                    double.id == single.id
                    and double.steps == single.steps
                    and double.grad == single.grad
                    and single.eot > 1
                    and double.eot == 2 * single.eot
                ):
                    pairs.append((double, single))
    if not pairs:  # the cascade: the EoT-2K member must add little to what came before
        return _cascade_gain(results, lambda m: m.endswith("@eot=2k"), 0.01)
    return Pairs(pairs, 0.01)


def _best_white(group: list[Column]) -> list[Column]:
    return [c for c in group if _white(c) and c.grad == "bptt"]


@register(
    "C14",
    "unreliable",
    "results",
    "Square (black-box) beats the best white-box attack",
    "masking",
    "a black-box attack found what the gradient missed; an upper bound",
)
def _c14(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        white = _best_white(group)
        if white:
            best = min(white, key=lambda c: c.acc)
            pairs += [(c, best) for c in group if c.id == "square"]
    if not pairs:
        return _cascade_gain(results, lambda m: m.startswith("square"), 0.005)
    return Pairs(pairs, 0.005)


@register(
    "C15",
    "unreliable",
    "results",
    "a transfer attack beats the best white-box attack",
    "masking",
    "a transfer attack found what the own gradient missed; an upper bound",
)
def _c15(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        white = _best_white(group)
        if white:
            best = min(white, key=lambda c: c.acc)
            pairs += [(c, best) for c in group if c.id.startswith("transfer-")]
    if not pairs:
        return _cascade_gain(results, lambda m: m.startswith("transfer-"), 0.01)
    return Pairs(pairs, 0.01)


@register(
    "C16",
    "unreliable",
    "results",
    "random noise beats PGD-10",
    "masking",
    "the gradient attack is worse than random; the number is an upper bound",
)
def _c16(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        pgd = [c for c in group if c.id == "pgd10" and c.grad == "bptt"]
        pairs += [
            (noise, p)
            for noise in group
            if noise.id.startswith("noise")
            for p in pgd
            if p.eot == max(x.eot for x in pgd)
        ]
    return Pairs(pairs, 0.0)


@register(
    "C17",
    "unreliable",
    "results",
    "attack strength order broken (classic masking sign)",
    "masking",
    "weaker attacks beat stronger ones; the number is an upper bound",
)
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
                pairs.append((fgsm[0], pgds[-1]))  # longest PGD above FGSM?
            pairs += [
                (short, long) for short, long in itertools.pairwise(pgds)
            ]  # PGD rising with n?
            strong = [
                c
                for c in same
                if c.id.startswith(("apgd", "autoattack")) and not c.id.endswith("-rh")
            ]
            pairs += [(p, s) for s in strong for p in pgd10]  # APGD/AutoAttack above PGD-10?
    return Pairs(pairs, 0.01)


@register(
    "C18",
    "warn",
    "results",
    "another surrogate or BPTR is stronger than the model's own",
    "masking",
    "the own surrogate overestimates robustness; report the minimum",
)
def _c18(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        for other in group:
            if other.grad != "bptt":
                pairs += [
                    (other, own)
                    for own in group
                    if own.grad == "bptt"
                    and own.id == other.id
                    and own.eot == other.eot
                    and own.steps == other.steps
                ]
    if not pairs:
        return _cascade_gain(results, lambda m: "@surrogate=" in m, 0.02)
    return Pairs(pairs, 0.02)


@register(
    "C19",
    "warn",
    "results",
    "APGD-DLR or APGD-T much stronger than APGD-CE (CE saturation)",
    "masking",
    "cross-entropy saturates; the number is an upper bound, use a margin loss",
)
def _c19(results: Results) -> tuple[str, str]:
    pairs = []
    for group in _groups(columns(results)):
        ce = [c for c in group if c.id == "apgd-ce" and c.grad == "bptt"]
        pairs += [
            (other, base)
            for other in group
            if other.id in ("apgd-dlr", "apgd-t")
            for base in ce
            if base.eot == other.eot
        ]
    return Pairs(pairs, 0.05)


@register(
    "C20",
    "error",
    "results",
    "bookkeeping: worst case above MRA, or AutoAttack above a part",
    "invalid",
    "a bookkeeping bug; the numbers are void",
)
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
    if worst is not None and least is not None:
        bounded = f"worst case {100 * worst:.2f}% <= MRA {100 * least:.2f}%"
        return Pairs(pairs, 0.0, empty=("pass", bounded))
    return Pairs(pairs, 0.0)


@register(
    "C21",
    "unreliable",
    "results",
    "an EoT drop on a deterministic model (hidden randomness)",
    "randomness",
    "a deterministic model should not gain from EoT: hidden randomness",
)
def _c21(results: Results) -> tuple[str, str]:
    if any(c["model"]["stochastic"] for c in results.cards):
        return "skip", "stochastic model: a drop is expected"
    pairs = []
    for group in _groups(columns(results)):
        for a in group:
            pairs += [
                (a, b)
                for b in group
                if b.id == a.id and b.steps == a.steps and b.grad == a.grad and b.eot != a.eot
            ]
    return Pairs(pairs, 0.0)


def _cascade_gain(
    results: Results, member: Callable[[str], bool], margin: float
) -> tuple[str, str]:
    """In a cascade a member's column is min(earlier, own): its gain over the member before it
    is what it found that every earlier attack missed."""
    steps = sorted(
        (c for c in results.cards if "cascade" in c["eval"]),
        key=lambda c: c["eval"]["cascade"]["position"],
    )
    by_position = {c["eval"]["cascade"]["position"]: c for c in steps}
    pairs = []
    for card in steps:
        position = card["eval"]["cascade"]["position"]
        name = card["eval"]["cascade"].get("member") or card["attack"]["id"]
        if member(name) and position - 1 in by_position:
            now, before = (
                columns(Results([card]), True)[0],
                columns(Results([by_position[position - 1]]), True)[0],
            )
            # named by its member (``square``, ``apgd-ce@eot=2k``) in the message
            pairs.append(
                (dataclasses.replace(now, id=f"cascade→{name}", eot=1, grad="bptt"), before)
            )
    return Pairs(pairs, margin, nested=True)


# ---------------------------------------------------------------------------- running
def run_probe_checks(
    probe: Probe, ids: Iterable[str] | None = None, on_check: Callable[[str], None] | None = None
) -> list[Outcome]:
    """The probe checks ``ids`` (all when None); ``on_check(id)`` before each one runs."""
    outcomes = []
    for entry in probe_checks(ids):
        spec = entry.obj
        if on_check:
            on_check(spec.id)
        status, detail = spec.fn(probe)
        outcomes.append(Outcome(spec.id, spec.level, status, detail))
    probe.model.eval()
    return outcomes


def probe_checks(ids: Iterable[str] | None = None) -> list[Any]:
    """The registry entries of the probe checks ``ids`` (all when None), in order."""
    wanted = {CHECKS.canonical(i) for i in ids} if ids else None
    return [
        e
        for e in CHECKS.entries()
        if e.obj.kind == "probe" and (wanted is None or e.name in wanted)
    ]


def run_result_checks(
    results: Results, ids: Iterable[str] | None = None, alpha: float = FAMILY_ALPHA
) -> list[Outcome]:
    """The result checks ``ids`` (all when None). Every result check contributes its pairs to
    the model's family whichever are asked for, so an outcome does not depend on ``ids``."""
    wanted = {CHECKS.canonical(i) for i in ids} if ids else None
    specs = [e for e in CHECKS.entries() if e.obj.kind == "results"]
    answers = {e.name: e.obj.fn(results) for e in specs}
    decided = decide(
        [c for name, a in answers.items() if isinstance(a, Pairs) for c in compare(name, a)], alpha
    )
    family = family_size(decided)
    outcomes = []
    for entry in specs:
        if wanted is not None and entry.name not in wanted:
            continue
        answer = answers[entry.name]
        status, detail = (
            _verdict(answer, [c for c in decided if c.check == entry.name], family)
            if isinstance(answer, Pairs)
            else answer
        )
        outcomes.append(Outcome(entry.obj.id, entry.obj.level, status, detail))
    return outcomes


def flagged(outcomes: Iterable[Outcome | dict]) -> list[str]:
    """``"C07 gradient masking suspected: <summary>; <meaning>"`` (``Outcome.label``) for every
    failed check that marks a model unreliable."""
    out = []
    for o in outcomes:
        o = (
            o
            if isinstance(o, Outcome)
            else Outcome(o["id"], o["level"], o["status"], o.get("detail", ""))
        )
        if o.flags:
            out.append(o.label())
    return out


def warnings(outcomes: Iterable[Outcome | dict]) -> list[str]:
    out = []
    for o in outcomes:
        o = (
            o
            if isinstance(o, Outcome)
            else Outcome(o["id"], o["level"], o["status"], o.get("detail", ""))
        )
        if o.status == "fail" and o.level == "warn":
            out.append(o.label())
    return out


def flag_summary(labels: Iterable[str]) -> str:
    """Flag labels grouped by what they found, for a table cell: ``masking suspected (C07,
    C08); not converged (C11)``."""
    by: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        check_id = label.split()[0]
        finding = CHECKS.entry(check_id).obj.finding if check_id.lower() in CHECKS else "masking"
        by[SHORT_FINDINGS[finding]].append(check_id)
    return "; ".join(f"{kind} ({', '.join(ids)})" for kind, ids in by.items())
