"""Named attack suites (docs/protocol.md): which attacks, in which order, with
which overrides and EoT, and whether they run as a cascade.

A member is ``ID[:STEPS][@surrogate=MODE][@eot=2k][@targets=N]``: ``apgd-ce:25`` overrides the
steps (iterations or queries); ``@surrogate=`` picks the attacker's spike backward for that
member (``bptr``, ``SHAPE:WIDTH``); ``@eot=2k`` doubles the suite's EoT K (the convergence check
C13); ``@targets=N`` sets a targeted attack's number of target classes (APGD-T, FAB-T). A
recipe's ``headline`` list uses the same grammar.
``eot_variants`` lists the EoT settings each member runs with on a stochastic model
(deterministic models run each once, without EoT; duplicates are dropped).

A *cascade* suite (``full``) runs its members cheapest first, each on the samples that survived
every earlier member; its last column is the per-sample worst case over all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from snnbench.attacks.base import Attack
from snnbench.attacks.registry import attack_factory
from snnbench.errors import SnnbenchError
from snnbench.neurons import parse_grad_mode
from snnbench.registry import Registry

PAPER_EOT = 10  # K of the full suite and of Drop pairs unless --eot (RH Fig. 3 flattens)


@dataclass(frozen=True)
class Suite:
    name: str
    members: tuple[str, ...]
    eot_variants: tuple[int, ...] = (1,)
    summary: str = ""
    cascade: bool = False
    drop_pairs: tuple[str, ...] = ()  # run with and without EoT on every sample: EoT Drop
    event_members: tuple[str, ...] = ()  # added for models on event data (TGO Table 5)

    def attacks(
        self,
        eps: float,
        norm: str = "Linf",
        stochastic: bool = False,
        eot: int | None = None,
        steps: int | None = None,
        events: bool = False,
    ) -> list[Attack]:
        """The suite's attacks for one model; ``eot`` (``--eot``) replaces the suite's K,
        ``steps`` (``--steps``) every member's steps; ``events``: also the event members."""
        variants = (
            (1,)
            if not stochastic
            else tuple(sorted({1 if k == 1 else (eot or k) for k in self.eot_variants}))
        )
        attacks, keys = [], set()
        for member in self.members + (self.event_members if events else ()):
            for k in variants:
                attack = build_member(member, eps, norm, k if stochastic else 1, steps)
                if attack.key() not in keys:
                    keys.add(attack.key())
                    attacks.append(attack)
        return attacks

    def drop_attacks(
        self,
        eps: float,
        norm: str = "Linf",
        stochastic: bool = False,
        eot: int | None = None,
        steps: int | None = None,
    ) -> list[Attack]:
        """Each Drop pair without and with EoT K (stochastic models; K = ``--eot``, else 10);
        these always run on every clean-correct sample, never in a cascade."""
        if not stochastic:
            return []
        k = eot or PAPER_EOT
        return [
            build_member(m, eps, norm, draws, steps)
            for m in self.drop_pairs
            for draws in (1, k)
            if k > 1
        ]


def build_member(
    member: str, eps: float, norm: str, eot: int, steps_override: int | None = None
) -> Attack:
    """One suite member as an attack (see the module docstring for the grammar)."""
    head, *modifiers = member.split("@")
    attack_id, _, steps = head.partition(":")
    if steps_override is not None:
        steps = str(steps_override)
    surrogate, targets = None, None
    for modifier in modifiers:
        key, _, value = modifier.partition("=")
        if key == "surrogate":
            surrogate = value
        elif key == "eot" and value == "2k":
            eot = 2 * eot if eot > 1 else 1
        elif key == "targets" and value.isdigit() and int(value) >= 1:
            targets = int(value)
        else:
            raise SnnbenchError(
                f"cannot read suite member {member!r}: unknown modifier {modifier!r}"
            )
    if steps and not (steps.isdigit() and int(steps) >= 1):
        raise SnnbenchError(f"cannot read suite member {member!r}: steps must be a count >= 1")
    attack = attack_factory(attack_id)(
        eps=eps, norm=norm, steps=int(steps) if steps else None, eot=eot
    )
    if targets is not None:
        if "targets" not in attack.params:
            raise SnnbenchError(f"cannot read suite member {member!r}: {attack_id} has no targets")
        attack = dataclasses.replace(attack, params={**attack.params, "targets": targets})
    if surrogate is not None:
        token, _ = parse_grad_mode(surrogate)
        attack = dataclasses.replace(attack, grad=token)
    return dataclasses.replace(attack, label=member)


SUITES: Registry[Suite] = Registry("suite")


def _add(suite: Suite) -> None:
    SUITES.add(suite.name, suite, summary=suite.summary)


_add(
    Suite(
        "quick",
        ("fgsm", "pgd10", "apgd-ce:25", "square:300", "noise-uniform"),
        (2,),
        "CI: FGSM, PGD-10, APGD-CE (25 it.), Square (300 queries), uniform noise; EoT K=2",
    )
)
_add(
    Suite(
        "paper-tgo",
        (
            "fgsm",
            "rfgsm",
            "rfgsm-ta32",
            "pgd7",
            "pgd10",
            "pgd20",
            "pgd40",
            "apgd7",
            "apgd10",
            "apgd20",
            "apgd40",
            "mtpgd7",
            "mtpgd10",
            "mtpgd20",
            "mtpgd40",
        ),
        (1, 10),
        "TGO Tables 1-5: FGSM, RFGSM, PGD 7-40 (+30/50 on event data), APGD 7-40, MTPGD "
        "7-40; stochastic models without and with EoT K=10",
        event_members=("pgd30", "pgd50"),
    )
)
_add(
    Suite(
        "paper-randhet",
        (
            "fgsm",
            "pgd10-rh",
            "apgd10-rh",
            "mifgsm",
            "autoattack-standard",
            "pgd50-eot10",
            "apgd50-eot10",
        ),
        (1,),
        "RandHet Tables 1-4: FGSM, PGD-10, APGD-10, MIFGSM, AutoAttack, PGD/APGD-50 with EoT 10; "
        "stochastic models: PGD-10 with and without EoT 10 for the Drop (Table 3)",
        drop_pairs=("pgd10-rh",),
    )
)
# Cheapest first (docs/protocol.md); the surrogate sweep favours wide shapes, where a
# model that keeps potentials away from threshold (TGO) still passes gradient; then BPTR.
_add(
    Suite(
        "full",
        (
            "fgsm",
            "pgd10",
            "apgd-ce",
            "mtpgd40",
            "apgd-t",
            "fab-t",
            "transfer-ann-twin-apgd-ce",
            "transfer-mean-twin-apgd-ce",
            "square",
            "apgd-ce@surrogate=triangle:4",
            "apgd-ce@surrogate=rect:2",
            "apgd-ce@surrogate=atan:0.5",
            "apgd-ce@surrogate=bptr",
            "apgd-ce@eot=2k",
            "apgd-dlr",
            "apgd-ce:200",
        ),
        (PAPER_EOT,),
        "Cascade over the still-robust samples, cheapest first: FGSM, PGD-10, APGD-CE, "
        "MTPGD-40, APGD-T, FAB-T, transfer from the ANN and mean twins, Square, APGD-CE "
        "through 3 other surrogates and BPTR, APGD-CE with EoT 2K, APGD-DLR, APGD-CE with 200 "
        "iterations (the convergence checks C11, C13); EoT K=10 "
        "(--eot) on stochastic models; the last column is the per-sample worst case; "
        "PGD-10 with and without EoT on all samples for the Drop",
        cascade=True,
        drop_pairs=("pgd10",),
    )
)
