"""Named attack suites (evaluation.md section 2): which attacks, with which overrides and EoT.

A member is an attack id, optionally with ``:N`` overriding its steps (iterations or queries):
``apgd-ce:25``. ``eot_variants`` lists the EoT settings each member runs with on a stochastic
model (deterministic models run each once, without EoT).
"""
from __future__ import annotations

from dataclasses import dataclass

from snnbench.attacks.base import Attack
from snnbench.attacks.registry import ATTACKS
from snnbench.errors import SnnbenchError
from snnbench.registry import Registry


@dataclass(frozen=True)
class Suite:
    name: str
    members: tuple[str, ...]
    eot_variants: tuple[int, ...] = (1,)
    summary: str = ""

    def attacks(self, eps: float, norm: str = "Linf", stochastic: bool = False,
                eot: int | None = None) -> list[Attack]:
        """The suite's attacks for one model; ``eot`` (``--eot``) replaces the suite's K."""
        variants = (1,) if not stochastic else \
            tuple(sorted({1 if k == 1 else (eot or k) for k in self.eot_variants}))
        attacks = []
        for member in self.members:
            attack_id, _, steps = member.partition(":")
            for k in variants:
                attacks.append(ATTACKS.get(attack_id)(eps=eps, norm=norm,
                                                      steps=int(steps) if steps else None, eot=k))
        return attacks


SUITES: Registry[Suite] = Registry("suite")


def _add(suite: Suite) -> None:
    SUITES.add(suite.name, suite, summary=suite.summary)


_add(Suite("quick", ("fgsm", "pgd10", "apgd-ce:25", "square:300", "noise-uniform"), (2,),
           "CI: FGSM, PGD-10, APGD-CE (25 it.), Square (300 queries), uniform noise; EoT K=2"))
_add(Suite("paper-tgo", ("fgsm", "rfgsm", "rfgsm-ta32", "pgd7", "pgd10", "pgd20", "pgd40",
                         "apgd7", "apgd10", "apgd20", "apgd40", "mtpgd7", "mtpgd10", "mtpgd20",
                         "mtpgd40"), (1, 10),
           "TGO Tables 1-4: FGSM, RFGSM, PGD 7-40, APGD 7-40, MTPGD 7-40; stochastic models "
           "without and with EoT K=10"))
_add(Suite("paper-randhet", ("fgsm", "pgd10-rh", "apgd10-rh", "mifgsm", "autoattack-standard",
                             "pgd50-eot10", "apgd50-eot10"), (1,),
           "RandHet Tables 1-4: FGSM, PGD-10, APGD-10, MIFGSM, AutoAttack, PGD/APGD-50 with EoT 10"))


def suite_attacks(name: str, eps: float, norm: str = "Linf", stochastic: bool = False,
                  eot: int | None = None) -> list[Attack]:
    suite = SUITES.get(name)
    missing = [m.partition(":")[0] for m in suite.members if m.partition(":")[0] not in ATTACKS]
    if missing:
        raise SnnbenchError(f"suite {name!r} needs attacks this build lacks: {', '.join(missing)}")
    return suite.attacks(eps, norm, stochastic, eot)
