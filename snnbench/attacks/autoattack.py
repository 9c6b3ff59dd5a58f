"""AutoAttack and its parts through the original code (PyPI ``pyautoattack`` 0.2.0), never
torchattacks' re-implementations, which differ from it (docs/protocol.md).

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", arXiv 2003.01690 (APGD-CE, APGD-DLR, APGD-T, AutoAttack); FAB: Croce &
Hein, arXiv 1907.02044; Square: Andriushchenko et al., arXiv 1912.00049.

- ``apgd-ce``, ``apgd{7,10,20,40}``: ``APGDAttack``, n iterations (100 for apgd-ce), 1 restart,
  CE, rho 0.75, ``eot_iter`` K. n*K GE.
- ``apgd10-rh``: RandHet's APGD-10 (it ran torchattacks ``APGD``): 10 iterations, CE, EoT 1
  whatever ``--eot``. ``apgd50-eot10``: 50 iterations, EoT 10 fixed by the id. 500 GE.
- ``apgd-dlr``: 100 iterations on the DLR loss (>= 3 classes), ``eot_iter`` K.
- ``apgd-t``: ``APGDAttack_targeted``, 100 iterations per target, 9 targets (#classes - 1 when
  fewer), targeted DLR, ``eot_iter`` K. 900*K GE.
- ``fab-t``: ``FABAttack_PT`` targeted, 100 iterations, 9 targets, alpha_max 0.1, eta 1.05,
  beta 0.9. No EoT in FAB: with K > 1 it still runs, one draw per step, and records ``eot=n/a``.
- ``square``: ``SquareAttack``, 5,000 queries (``steps`` overrides), p_init 0.8, 1 restart,
  margin loss, no rescaled schedule (as AutoAttack runs it); K > 1 queries
  ``LogitMeanEoT(model, K)``. 0 GE.
- ``autoattack-standard``: ``AutoAttack(version='standard')`` = APGD-CE -> APGD-T -> FAB-T ->
  Square on survivors; with K > 1 its APGD parts get ``eot_iter`` K and Square the logit mean.
  ``autoattack-rand``: ``version='rand'`` = APGD-CE + APGD-DLR with its own EoT 20.

Every call passes eps, norm, device and seed 0 (the library reseeds torch's *global* RNG with it
on every call). pyautoattack never changes the model's mode; the caller puts the model in eval
mode. Its messages go to the ``snnbench.pyautoattack`` logger (silent unless configured), and
the tracer its dynamic-defence check clears (``sys.settrace(None)``) is put back afterwards.
"""
from __future__ import annotations

import logging
import sys

import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.eot import LogitMeanEoT
from snnbench.attacks.registry import ATTACKS
from snnbench.errors import SnnbenchError

LOG = logging.getLogger("snnbench.pyautoattack")
LOG.addHandler(logging.NullHandler())
CROCE = "Croce & Hein 2020, arXiv 2003.01690"
RHO = 0.75                      # APGD's step-size decrease threshold (library default, passed)


def n_targets(model: nn.Module, x: torch.Tensor, wanted: int) -> int:
    """``wanted`` target classes, or #classes - 1 when the model has fewer."""
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    return max(1, min(wanted, n_classes - 1))


class APGD(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = APGDAttack(model, n_iter=p["steps"], norm=self.norm, n_restarts=p["restarts"],
                            eps=self.eps, seed=p["seed"], loss=p["loss"], eot_iter=self.eot,
                            rho=p["rho"], topk=None, verbose=False, device=x.device,
                            use_largereps=False, is_tf_model=False, logger=LOG)
        return attack.perturb(x, y)


class APGDT(Attack):
    def grad_evals(self) -> int:
        p = self.params
        return int(p["steps"]) * int(p["targets"]) * int(p["restarts"]) * self.eot

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = APGDAttack_targeted(
            model, n_iter=p["steps"], norm=self.norm, n_restarts=p["restarts"], eps=self.eps,
            seed=p["seed"], eot_iter=self.eot, rho=p["rho"], topk=None,
            n_target_classes=n_targets(model, x, p["targets"]), verbose=False, device=x.device,
            use_largereps=False, is_tf_model=False, logger=LOG)
        return attack.perturb(x, y)


class FAB(Attack):
    def grad_evals(self) -> int:       # no EoT: one draw per step whatever was asked
        return int(self.params["steps"]) * int(self.params["targets"])

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = FABAttack_PT(model, norm=self.norm, n_restarts=p["restarts"], n_iter=p["steps"],
                              eps=self.eps, alpha_max=p["alpha_max"], eta=p["eta"],
                              beta=p["beta"], loss_fn=None, verbose=False, seed=p["seed"],
                              targeted=True, device=x.device,
                              n_target_classes=n_targets(model, x, p["targets"]))
        return attack.perturb(x, y)


class Square(Attack):
    def grad_evals(self) -> int:       # gradient-free: queries are in params
        return 0

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        if x.dim() not in (4, 5):
            raise SnnbenchError(f"attack {self.id} needs images [B, C, H, W] or event frames "
                                f"[B, T, C, H, W], got a {x.dim()}-d input")
        p = self.params
        predict = model if self.eot == 1 else LogitMeanEoT(model, self.eot)
        shape = x.shape
        if x.dim() == 5:     # event frames: Square sees one image of T*C channels
            frames_model = predict
            predict = lambda z: frames_model(z.view(-1, *shape[1:]))  # noqa: E731
            x = x.flatten(1, 2)
        attack = SquareAttack(predict, norm=self.norm, n_queries=p["queries"], eps=self.eps,
                              p_init=p["p_init"], n_restarts=p["restarts"], seed=p["seed"],
                              verbose=False, targeted=False, loss=p["loss"],
                              resc_schedule=p["resc_schedule"], device=x.device)
        return attack.perturb(x, y).view(shape)


class AutoAttackRun(Attack):
    def grad_evals(self) -> int:
        """Upper bound: every part on every sample (the cascade attacks survivors only)."""
        p = self.params
        if p["version"] == "rand":
            return 2 * int(p["n_iter"]) * self.eot
        return int(p["n_iter"]) * (1 + int(p["targets"])) * self.eot \
            + int(p["n_iter"]) * int(p["targets"])

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        attack = self._configure(model, x)
        tracer = sys.gettrace()
        try:
            x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=len(x))
        finally:
            sys.settrace(tracer)
        return x_adv

    def _configure(self, model: nn.Module, x: torch.Tensor) -> AutoAttack:
        p = self.params
        attack = AutoAttack(model, attacks=None, device=x.device, eps=self.eps, norm=self.norm,
                            seed=p["seed"], version=p["version"])
        attack.verbose = False
        attack.logger = attack.apgd.logger = attack.apgd_targeted.logger = LOG
        parts = (attack.apgd, attack.apgd_targeted, attack.fab)
        if any(part.n_iter != p["n_iter"] for part in parts):
            raise SnnbenchError(f"pyautoattack changed its iterations; {self.id} expects "
                                f"{p['n_iter']}")
        if p["version"] == "rand":
            if attack.apgd.eot_iter != self.eot or attack.apgd.n_restarts != 1:
                raise SnnbenchError("pyautoattack's version='rand' changed its EoT or restarts")
            return attack
        if attack.square.n_queries != p["queries"] or attack.square.rescale_schedule:
            raise SnnbenchError("pyautoattack's Square settings changed")
        targets = n_targets(model, x, p["targets"])
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = targets
        attack.apgd.eot_iter = attack.apgd_targeted.eot_iter = self.eot
        if self.eot > 1:
            attack.square.predict = LogitMeanEoT(model, self.eot)
        return attack


# --- registry --------------------------------------------------------------------------------

def _apgd(attack_id: str, default_steps: int, loss: str = "ce", fixed_eot: int | None = None):
    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        params = {"steps": steps or default_steps, "restarts": 1, "loss": loss, "seed": 0,
                  "rho": RHO}
        if fixed_eot:
            params["eot_iter"] = fixed_eot
        return APGD(attack_id, eps, parse_norm(norm), params, "pyautoattack.APGDAttack",
                    eot=fixed_eot or eot)
    make.__name__ = make.__qualname__ = attack_id.replace("-", "_")
    eot_doc = f"eot_iter {fixed_eot} fixed by the id" if fixed_eot else "eot_iter K"
    make.__doc__ = (f"APGD (Croce & Hein, arXiv 2003.01690) via pyautoattack APGDAttack: "
                    f"{default_steps} iterations, 1 restart, {loss.upper()} loss, rho 0.75, "
                    f"seed 0, {eot_doc}; Linf or L2.")
    return make


for _id, _n, _loss, _eot, _summary in (
        ("apgd-ce", 100, "ce", None, "AutoAttack's APGD on CE, 100 iterations, 1 restart"),
        ("apgd7", 7, "ce", None, "APGD-CE, 7 iterations, 1 restart, EoT K (7 GE)"),
        ("apgd10", 10, "ce", None, "APGD-CE, 10 iterations, 1 restart, EoT K (10 GE)"),
        ("apgd20", 20, "ce", None, "APGD-CE, 20 iterations, 1 restart, EoT K (20 GE)"),
        ("apgd40", 40, "ce", None, "APGD-CE, 40 iterations, 1 restart, EoT K (40 GE)"),
        ("apgd10-rh", 10, "ce", 1, "APGD-CE, 10 iterations, no EoT (RandHet Table 1; 10 GE)"),
        ("apgd50-eot10", 50, "ce", 10, "APGD-CE, 50 iterations, EoT 10 whatever --eot (500 GE)"),
        ("apgd-dlr", 100, "dlr", None, "APGD on the DLR loss, 100 iterations, 1 restart")):
    ATTACKS.add(_id, _apgd(_id, _n, _loss, _eot), summary=_summary, paper=CROCE)


@ATTACKS.register("apgd-t", summary="APGD-T: targeted DLR, 100 iterations x 9 targets (900 GE)",
                  paper=CROCE)
def apgd_t(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """APGD-T (Croce & Hein, arXiv 2003.01690) via pyautoattack APGDAttack_targeted: 100
    iterations per target, 9 targets (#classes - 1 when fewer), 1 restart, targeted DLR, rho
    0.75, seed 0, eot_iter K. 900*K GE."""
    return APGDT("apgd-t", eps, parse_norm(norm),
                 {"steps": steps or 100, "restarts": 1, "targets": 9, "seed": 0, "rho": RHO,
                  "loss": "dlr-targeted"}, "pyautoattack.APGDAttack_targeted", eot=eot)


@ATTACKS.register("fab-t", summary="FAB-T: targeted FAB, 100 iterations x 9 targets, no EoT",
                  paper="Croce & Hein 2020, arXiv 1907.02044")
def fab_t(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """FAB-T (Croce & Hein, arXiv 1907.02044; as in AutoAttack, arXiv 2003.01690) via
    pyautoattack FABAttack_PT(targeted=True): 100 iterations, 9 targets, 1 restart, alpha_max
    0.1, eta 1.05, beta 0.9, seed 0. FAB has no EoT: with K > 1 it runs once per step and
    records ``eot=n/a``. 900 GE."""
    params = {"steps": steps or 100, "restarts": 1, "targets": 9, "alpha_max": 0.1,
              "eta": 1.05, "beta": 0.9, "seed": 0}
    if eot > 1:
        params["eot"] = "n/a"
    return FAB("fab-t", eps, parse_norm(norm), params, "pyautoattack.FABAttack_PT", eot=1)


@ATTACKS.register("square", summary="Square Attack: 5,000 queries, p_init 0.8, gradient-free",
                  paper="Andriushchenko et al. 2020, arXiv 1912.00049")
def square(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """Square Attack (Andriushchenko et al., arXiv 1912.00049) via pyautoattack SquareAttack:
    5,000 queries (``steps`` overrides), p_init 0.8, 1 restart, margin loss, no rescaled
    schedule, seed 0; K > 1 queries LogitMeanEoT(model, K) (K forwards per query). 0 GE."""
    params = {"queries": steps or 5000, "p_init": 0.8, "restarts": 1, "loss": "margin",
              "resc_schedule": False, "seed": 0}
    if eot > 1:
        params["eot_mode"] = "logit-mean"
    return Square("square", eps, parse_norm(norm), params, "pyautoattack.SquareAttack", eot=eot)


def _fixed_protocol(attack_id: str, steps: int | None) -> None:
    if steps is not None:
        raise SnnbenchError(f"attack {attack_id} is a fixed protocol: --steps does not apply "
                            f"(run its parts, e.g. apgd-ce or square, to change iterations)")


@ATTACKS.register("autoattack-standard", summary="AutoAttack standard: APGD-CE, APGD-T, FAB-T, "
                  "Square (pyautoattack)", paper=CROCE)
def autoattack_standard(eps: float, norm: str = "Linf", steps: int | None = None,
                        eot: int = 1) -> Attack:
    """AutoAttack (Croce & Hein, arXiv 2003.01690) via pyautoattack AutoAttack(version=
    'standard'): APGD-CE (100 it., 1 restart) -> APGD-T (100 it., 9 targets) -> FAB-T (100 it.,
    9 targets) -> Square (5,000 queries) on the survivors, seed 0. K > 1: APGD parts eot_iter
    K, Square on LogitMeanEoT, FAB one draw. At most 1,000*K + 900 GE and 5,000*K queries."""
    _fixed_protocol("autoattack-standard", steps)
    params = {"version": "standard", "seed": 0, "n_iter": 100, "targets": 9, "queries": 5000}
    if eot > 1:
        params["fab_eot"] = "n/a"
    return AutoAttackRun("autoattack-standard", eps, parse_norm(norm), params,
                         "pyautoattack.AutoAttack", eot=eot)


@ATTACKS.register("autoattack-rand", summary="AutoAttack rand: APGD-CE + APGD-DLR with EoT 20 "
                  "(pyautoattack)", paper=CROCE)
def autoattack_rand(eps: float, norm: str = "Linf", steps: int | None = None,
                    eot: int = 1) -> Attack:
    """AutoAttack for randomized defences (Croce & Hein, arXiv 2003.01690) via pyautoattack
    AutoAttack(version='rand'): APGD-CE then APGD-DLR, 100 iterations, 1 restart, eot_iter 20
    fixed by the library (--eot ignored), seed 0. At most 4,000 GE."""
    _fixed_protocol("autoattack-rand", steps)
    return AutoAttackRun("autoattack-rand", eps, parse_norm(norm),
                         {"version": "rand", "seed": 0, "n_iter": 100, "eot_iter": 20},
                         "pyautoattack.AutoAttack", eot=20)
