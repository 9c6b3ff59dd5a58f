"""Attacks through torchattacks 3.5.1, every parameter passed (defaults drift between releases).

- ``fgsm``: one eps sign step (Goodfellow et al., arXiv 1412.6572); L2: one eps step along the
  normalised gradient. 1 GE.
- ``pgd{n}``, n in 7, 10, 20, 30, 40, 50: Madry et al., arXiv 1706.06083; uniform random start,
  cross-entropy, one restart; n GE. Step 0.01 at eps = 8/255 (2.55/255, TGO; docs/protocol.md
  section 2), scaled in proportion to eps elsewhere: a fixed 0.01 cannot cross the ball at
  digits' 32/255 in 10 steps (PGD-10 then lost to FGSM), so the step is ``0.31875 * eps`` and
  recorded in the attack key.
- ``pgd10-rh``: RandHet's PGD-10, step 2 eps / n (1.6/255 at 8/255), random start.
- ``pgd50-eot10``: RandHet's EoT column, ``EOTPGD`` with 50 steps of 2 eps / n and 10 draws
  per step, whatever ``--eot`` says (the id fixes the draws); 500 GE.
- ``rfgsm``: R+FGSM (Tramer et al., arXiv 1705.07204): a random sign step of eps/2, then one
  eps/2 gradient-sign step = ``RFGSM(alpha=eps/2, steps=1)``. ``rfgsm-ta32``: what
  ``RFGSM(model, eps)`` did up to torchattacks 3.2.6 = ``RFGSM(alpha=eps, steps=1)``.
- ``mifgsm``: Dong et al., arXiv 1710.06081; 5 steps of eps/4 (2/255 at 8/255), decay 0.1
  (RandHet's text); ``mifgsm-d1``: decay 1.0 (RandHet's script, torchattacks' default).

EoT (docs/protocol.md): PGD-family ids with K > 1 run ``EOTPGD(eot_iter=K)``. RFGSM,
MIFGSM and PGD-L2 have no EoT in torchattacks: with K > 1 they run a native copy of the library's
step loop on ``eot_gradient`` that equals the library at K = 1 (tested). MIFGSM always runs the
native copy: the library freezes a sample after a zero gradient (see ``mifgsm_loop``). Linf only
for rfgsm and mifgsm (torchattacks has no L2 variant); L2 PGD uses ``PGDL2``.

torchattacks switches the model to eval mode for the call and restores train mode afterwards;
snnbench models keep their randomness on a flag, so eval mode silences nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.eot import eot_gradient
from snnbench.attacks.registry import ATTACKS
from snnbench.errors import SnnbenchError

PGD_STEP_PER_EPS = 0.01 / (8 / 255)  # = 0.31875: the papers' 0.01 at eps = 8/255
L2_DIVISION_EPS = 1e-10  # PGDL2's eps_for_division (its default, passed explicitly)
MADRY = "Madry et al. 2018, arXiv 1706.06083"


# --- native step loops: the library's arithmetic on the EoT gradient ------------------------


def project_linf(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    delta = torch.clamp(adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1).detach()


def rfgsm_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, k: int
) -> torch.Tensor:
    """torchattacks ``RFGSM.forward`` with the gradient replaced by the mean of ``k`` draws."""
    x = x.clone().detach()
    adv = torch.clamp(x + alpha * torch.randn_like(x).sign(), min=0, max=1).detach()
    for _ in range(steps):
        grad = eot_gradient(model, adv, y, F.cross_entropy, k)
        adv = project_linf(adv.detach() + alpha * grad.sign(), x, eps)
    return adv


def mifgsm_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    decay: float,
    k: int,
) -> torch.Tensor:
    """torchattacks ``MIFGSM.forward`` on the mean of ``k`` draws. Two departures that leave
    4-d inputs with non-zero gradients bit-identical: the L1 normalisation runs over every
    non-batch axis (the library's ``dim=(1, 2, 3)`` mis-normalises event frames), and a zero
    gradient adds nothing to the momentum (the library's 0/0 makes the momentum NaN, and as
    ``torch.sign(nan) == 0`` the sample then never moves again)."""
    x = x.clone().detach()
    dims = tuple(range(1, x.dim()))
    momentum = torch.zeros_like(x)
    adv = x.clone()
    for _ in range(steps):
        grad = eot_gradient(model, adv, y, F.cross_entropy, k)
        scale = torch.mean(torch.abs(grad), dim=dims, keepdim=True)
        grad = grad / scale.clamp_min(torch.finfo(grad.dtype).tiny)
        grad = grad + momentum * decay
        momentum = grad
        adv = project_linf(adv.detach() + alpha * grad.sign(), x, eps)
    return adv


def _l2_step(
    adv: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float
) -> torch.Tensor:
    shape = (-1,) + (1,) * (x.dim() - 1)
    grad_norms = torch.norm(grad.flatten(1), p=2, dim=1) + L2_DIVISION_EPS
    adv = adv.detach() + alpha * (grad / grad_norms.view(shape))
    delta = adv - x
    factor = torch.min(
        eps / torch.norm(delta.flatten(1), p=2, dim=1), torch.ones(len(x), device=x.device)
    )
    return torch.clamp(x + delta * factor.view(shape), min=0, max=1).detach()


def pgdl2_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    k: int,
) -> torch.Tensor:
    """torchattacks ``PGDL2.forward`` on the mean of ``k`` draws (eps > 0)."""
    x = x.clone().detach()
    adv = x.clone()
    if random_start:
        delta = torch.empty_like(adv).normal_()
        n = torch.norm(delta.flatten(1), p=2, dim=1).view((-1,) + (1,) * (x.dim() - 1))
        r = torch.zeros_like(n).uniform_(0, 1)
        delta *= r / n * eps
        adv = torch.clamp(adv + delta, min=0, max=1).detach()
    for _ in range(steps):
        adv = _l2_step(adv, x, eot_gradient(model, adv, y, F.cross_entropy, k), eps, alpha)
    return adv


# --- attacks ---------------------------------------------------------------------------------


class FGSM(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        if self.norm == "L2":
            if self.eot > 1:
                return pgdl2_loop(model, x, y, self.eps, self.eps, 1, False, self.eot)
            return torchattacks.PGDL2(
                model,
                eps=self.eps,
                alpha=self.eps,
                steps=1,
                random_start=False,
                eps_for_division=L2_DIVISION_EPS,
            )(x, y)
        if self.eot > 1:  # EOTPGD with one eps step = FGSM on EoT
            return torchattacks.EOTPGD(
                model, eps=self.eps, alpha=self.eps, steps=1, eot_iter=self.eot, random_start=False
            )(x, y)
        return torchattacks.FGSM(model, eps=self.eps)(x, y)


class PGD(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        if self.norm == "L2":
            if self.eot > 1:
                return pgdl2_loop(
                    model, x, y, self.eps, p["alpha"], p["steps"], p["random_start"], self.eot
                )
            return torchattacks.PGDL2(
                model,
                eps=self.eps,
                alpha=p["alpha"],
                steps=p["steps"],
                random_start=p["random_start"],
                eps_for_division=L2_DIVISION_EPS,
            )(x, y)
        if self.eot > 1:
            return torchattacks.EOTPGD(
                model,
                eps=self.eps,
                alpha=p["alpha"],
                steps=p["steps"],
                eot_iter=self.eot,
                random_start=p["random_start"],
            )(x, y)
        return torchattacks.PGD(
            model, eps=self.eps, alpha=p["alpha"], steps=p["steps"], random_start=p["random_start"]
        )(x, y)


class RFGSM(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        if self.eot > 1:
            return rfgsm_loop(model, x, y, self.eps, p["alpha"], p["steps"], self.eot)
        return torchattacks.RFGSM(model, eps=self.eps, alpha=p["alpha"], steps=p["steps"])(x, y)


class MIFGSM(Attack):
    """Always the native copy of ``MIFGSM.forward``: the library turns a zero gradient into
    NaN momentum, and ``torch.sign(nan) = 0`` then freezes that sample for every later step
    (silently: the output stays finite). SNNs have zero-gradient draws (check C07)."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        return mifgsm_loop(model, x, y, self.eps, p["alpha"], p["steps"], p["decay"], self.eot)


def linf_only(attack_id: str, norm: str) -> str:
    norm = parse_norm(norm)
    if norm != "Linf":
        raise SnnbenchError(f"attack {attack_id} has no L2 variant; use --norm Linf")
    return norm


def _pgd_impl(norm: str, eot: int) -> str:
    if norm == "L2":
        return "torchattacks.PGDL2" if eot == 1 else "snnbench.pgdl2_loop(torchattacks.PGDL2)"
    return "torchattacks.PGD" if eot == 1 else "torchattacks.EOTPGD"


# --- registry --------------------------------------------------------------------------------


@ATTACKS.register(
    "fgsm",
    summary="FGSM: one eps-sized gradient-sign step (1 GE)",
    paper="Goodfellow et al. 2015, arXiv 1412.6572",
)
def fgsm(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """FGSM (Goodfellow et al., arXiv 1412.6572): one eps sign step, 1 GE (L2: one PGDL2 step)."""
    return FGSM("fgsm", eps, parse_norm(norm), {"steps": 1}, "torchattacks.FGSM", eot=eot)


StepRule = Callable[[float, int], float]


def _pgd_factory(
    attack_id: str, default_steps: int, step_rule: StepRule, doc: str, fixed_eot: int | None = None
):
    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        n = steps or default_steps
        k = fixed_eot or eot
        norm = parse_norm(norm)
        params = {"steps": n, "alpha": step_rule(eps, n), "random_start": True}
        if fixed_eot:
            params["eot_iter"] = fixed_eot
        return PGD(attack_id, eps, norm, params, _pgd_impl(norm, k), eot=k)

    make.__name__ = make.__qualname__ = attack_id.replace("-", "_")
    make.__doc__ = doc
    return make


def _madry_step(eps: float, n: int) -> float:
    return PGD_STEP_PER_EPS * eps


def _rh_step(eps: float, n: int) -> float:
    return 2 * eps / n


for _n in (7, 10, 20, 30, 40, 50):
    ATTACKS.add(
        f"pgd{_n}",
        _pgd_factory(
            f"pgd{_n}",
            _n,
            _madry_step,
            f"PGD-{_n} (Madry et al., arXiv 1706.06083): torchattacks PGD, {_n} steps of 0.31875 eps "
            f"(0.01 at 8/255), uniform random start, CE, 1 restart; EoT K: EOTPGD(eot_iter=K); "
            f"L2: PGDL2. {_n}*K GE.",
        ),
        summary=f"PGD, {_n} steps of 0.32 eps (0.01 at 8/255), random start, CE ({_n} GE)",
        paper=MADRY,
    )

ATTACKS.add(
    "pgd10-rh",
    _pgd_factory(
        "pgd10-rh",
        10,
        _rh_step,
        "RandHet's PGD-10 (Madry et al., arXiv 1706.06083): torchattacks PGD, 10 steps of 2 eps/n "
        "(1.6/255 at 8/255), uniform random start, CE; EoT K: EOTPGD(eot_iter=K). 10*K GE.",
    ),
    summary="PGD-10 as RandHet ran it: step 2 eps/n (1.6/255 at 8/255), random start (10 GE)",
    paper=MADRY,
)

ATTACKS.add(
    "pgd50-eot10",
    _pgd_factory(
        "pgd50-eot10",
        50,
        _rh_step,
        "RandHet's EoT column (BrainCog RHSNN evaluate.py; EoT: Athalye et al., arXiv 1802.00420): "
        "torchattacks EOTPGD, 50 steps of 2 eps/n, random start, eot_iter 10 fixed by the id "
        "(--eot ignored). 500 GE.",
        fixed_eot=10,
    ),
    summary="EOTPGD, 50 steps of 2 eps/n, 10 draws per step whatever --eot (500 GE)",
    paper="Athalye et al. 2018, arXiv 1802.00420; Madry et al. 2018, arXiv 1706.06083",
)


def _rfgsm(attack_id: str, alpha_per_eps: float, doc: str):
    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        norm = linf_only(attack_id, norm)
        impl = "torchattacks.RFGSM" if eot == 1 else "snnbench.rfgsm_loop(torchattacks.RFGSM)"
        return RFGSM(
            attack_id, eps, norm, {"steps": steps or 1, "alpha": alpha_per_eps * eps}, impl, eot=eot
        )

    make.__name__ = make.__qualname__ = attack_id.replace("-", "_")
    make.__doc__ = doc
    return make


ATTACKS.add(
    "rfgsm",
    _rfgsm(
        "rfgsm",
        0.5,
        "R+FGSM (Tramer et al., arXiv 1705.07204): torchattacks RFGSM(eps, alpha=eps/2, steps=1): a "
        "random sign step of eps/2, one eps/2 gradient-sign step, projection. K GE.",
    ),
    summary="R+FGSM: random eps/2 sign step, then one eps/2 gradient-sign step (1 GE)",
    paper="Tramer et al. 2018, arXiv 1705.07204",
)

ATTACKS.add(
    "rfgsm-ta32",
    _rfgsm(
        "rfgsm-ta32",
        1.0,
        "torchattacks <= 3.2.6 RFGSM(model, eps) (SR's script; Tramer et al., arXiv 1705.07204): "
        "RFGSM(eps, alpha=eps, steps=1): random eps sign step, one eps step, projection. K GE.",
    ),
    summary="RFGSM as torchattacks 3.2.6 ran it: random eps sign step, one eps step (1 GE)",
    paper="Tramer et al. 2018, arXiv 1705.07204",
)


def _mifgsm(attack_id: str, decay: float, doc: str):
    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        norm = linf_only(attack_id, norm)
        impl = "snnbench.mifgsm_loop(torchattacks.MIFGSM)"
        return MIFGSM(
            attack_id,
            eps,
            norm,
            {"steps": steps or 5, "alpha": eps / 4, "decay": decay},
            impl,
            eot=eot,
        )

    make.__name__ = make.__qualname__ = attack_id.replace("-", "_")
    make.__doc__ = doc
    return make


ATTACKS.add(
    "mifgsm",
    _mifgsm(
        "mifgsm",
        0.1,
        "MI-FGSM (Dong et al., arXiv 1710.06081) as RandHet's text states it: torchattacks "
        "MIFGSM(eps, alpha=eps/4 (2/255 at 8/255), steps=5, decay=0.1). 5*K GE.",
    ),
    summary="MI-FGSM: 5 steps of eps/4, momentum decay 0.1 (RandHet text; 5 GE)",
    paper="Dong et al. 2018, arXiv 1710.06081",
)

ATTACKS.add(
    "mifgsm-d1",
    _mifgsm(
        "mifgsm-d1",
        1.0,
        "MI-FGSM (Dong et al., arXiv 1710.06081) as RandHet's script runs it: torchattacks "
        "MIFGSM(eps, alpha=eps/4, steps=5, decay=1.0). 5*K GE.",
    ),
    summary="MI-FGSM: 5 steps of eps/4, momentum decay 1.0 (RandHet script; 5 GE)",
    paper="Dong et al. 2018, arXiv 1710.06081",
)
