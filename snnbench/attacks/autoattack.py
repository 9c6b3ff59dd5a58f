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
  beta 0.9. FAB has no EoT of its own: with K > 1 it attacks ``LogitMeanEoT(model, K)`` (the
  mean logits of K draws: its linearisation, every step and every success decision on the
  mean; ``eot_mode=logit-mean``). 900*K GE.
- ``square``: ``SquareAttack``, 5,000 queries (``steps`` overrides), p_init 0.8, 1 restart,
  margin loss, no rescaled schedule (as AutoAttack runs it); K > 1 queries
  ``LogitMeanEoT(model, K)``. 0 GE.
- ``autoattack-standard``: ``AutoAttack(version='standard')`` = APGD-CE -> APGD-T -> FAB-T ->
  Square on survivors; with K > 1 its APGD parts get ``eot_iter`` K, FAB-T and Square the
  logit mean.
  ``autoattack-rand``: ``version='rand'`` = APGD-CE + APGD-DLR with its own EoT 20.

Stochastic models (docs/protocol.md, "Stochastic models and EoT"). The library judges success on one draw: APGD
calls a sample broken as soon as the last of its K draws at some iterate misclassified it, and
hands back the *clean input* for every sample it did not break (on tgo-tiny-digits, 19 of 100
samples whose mean p(correct) at x was 0.85). Our APGD parts (``JudgedAPGD``,
``JudgedAPGDTargeted``) keep the library's iterations (its own ``attack_single_run``) and
replace only ``perturb``'s decision: the model they see is an ``IterateLog``, which judges each
iterate on the mean softmax of the K draws APGD already takes there (``mean_prediction``) and
on their mean loss, and per sample hands back the last iterate so judged misclassified, else
the iterate of highest mean loss. On a stochastic model every sample is attacked (one clean
draw says little; the scorer keeps x as a candidate anyway). On a deterministic model the
draws agree, so the decision, the clean-correct filter and every successful output are the
library's bit for bit; a sample it did not break gets its highest-loss point (correctly
classified, so the robust accuracy cannot change) instead of x. The AutoAttack wrappers swap
these parts in, judge the cascade on ``EoTPrediction`` (the same mean over K draws), and give
every survivor APGD-CE's highest-loss point instead of x. What stays the library's: inside
``attack_single_run`` the step-size halving and the jumps back to the best point read the last
draw's loss (``eot_iter`` only averages the gradient); FAB-T and Square decide on the logit mean
(above) before the cascade re-judges them; FAB-T hands back x where it found nothing in the
ball (a minimum-norm attack has no loss to keep).

Every call passes eps, norm, device and seed 0 (the library reseeds torch's *global* RNG with it
on every call). pyautoattack never changes the model's mode; the caller puts the model in eval
mode. Its messages go to the ``snnbench.pyautoattack`` logger (silent unless configured), and
the tracer its dynamic-defence check clears (``sys.settrace(None)``) is put back afterwards.
"""

from __future__ import annotations

import logging
import sys

import torch
import torch.nn.functional as F
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.eot import EoTPrediction, LogitMeanEoT, eot_predict, mean_prediction
from snnbench.attacks.registry import ATTACKS
from snnbench.errors import SnnbenchError

LOG = logging.getLogger("snnbench.pyautoattack")
LOG.addHandler(logging.NullHandler())
CROCE = "Croce & Hein 2020, arXiv 2003.01690"
RHO = 0.75  # APGD's step-size decrease threshold (library default, passed)


def n_targets(model: nn.Module, x: torch.Tensor, wanted: int) -> int:
    """``wanted`` target classes, or #classes - 1 when the model has fewer."""
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    return max(1, min(wanted, n_classes - 1))


def is_stochastic(model: nn.Module) -> bool:
    return bool(getattr(model, "stochastic", False))


class IterateLog(nn.Module):
    """The model as ``APGDAttack.attack_single_run`` sees it. Every call passes through; while
    a run is recorded, each group of K calls at one point (APGD's EoT draws: the library calls
    the model K times on the same tensor per iterate) is judged on its mean prediction and its
    mean loss. Per sample it keeps the last iterate judged misclassified (the library's
    ``x_best_adv`` rule, on one draw) and the iterate of highest mean loss (``x_best``, on the
    last draw's loss, with the library's strict ``>``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.criterion = None

    def start(self, y: torch.Tensor, criterion, k: int) -> None:
        self.y, self.criterion, self.k = y, criterion, k
        self.draws, self.point = [], None
        self.adv = self.best = self.best_loss = self.broken = None

    def stop(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: (the point to hand back, judged broken, its mean loss)."""
        self.criterion = None
        if self.adv is None or self.draws:
            raise SnnbenchError(
                "pyautoattack changed how APGD calls the model (an iterate "
                f"without its {self.k} EoT draws); update snnbench's APGD wrapper"
            )
        shape = (-1,) + (1,) * (self.adv.dim() - 1)
        points = torch.where(self.broken.view(shape), self.adv, self.best)
        return points, self.broken, self.best_loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.criterion is not None:
            if self.draws and x is not self.point:
                raise SnnbenchError(
                    "pyautoattack changed how APGD calls the model (fewer than "
                    f"{self.k} EoT draws at one point); update snnbench's wrapper"
                )
            self.point = x
            self.draws.append(logits.detach())
            if len(self.draws) == self.k:
                self._judge()
        return logits

    def _judge(self) -> None:
        draws, point = self.draws, self.point.detach().clone()
        self.draws = []
        with torch.no_grad():
            wrong = mean_prediction(draws).max(1)[1] != self.y
            same = all(torch.equal(draws[0], d) for d in draws[1:])
            loss = torch.stack(
                [self.criterion(d, self.y) for d in draws[: 1 if same else None]]
            ).mean(0)
        if self.adv is None:  # the starting point
            self.adv, self.best, self.best_loss, self.broken = point, point.clone(), loss, wrong
            return
        self.adv[wrong] = point[wrong]
        self.broken |= wrong
        better = loss > self.best_loss
        self.best[better] = point[better]
        self.best_loss[better] = loss[better]


class JudgedAPGD(APGDAttack):
    """``APGDAttack`` whose ``perturb`` judges success on the EoT-averaged prediction and hands
    back the highest-mean-loss iterate of every sample it did not break (module docstring).
    The iterations are the library's ``attack_single_run``, untouched."""

    def __init__(self, model: nn.Module, **settings) -> None:
        super().__init__(IterateLog(model), **settings)
        self.stochastic = is_stochastic(model)
        self.record: dict[bytes, torch.Tensor] | None = None  # APGD-CE's outputs, by input

    def criterion(self):
        """The library's per-sample loss for ``self.loss`` (the targeted one reads ``y_target``)."""
        if self.loss == "ce":
            return lambda z, y: F.cross_entropy(z, y, reduction="none")
        if self.loss in ("dlr", "dlr-targeted"):
            return self.dlr_loss if self.loss == "dlr" else self.dlr_loss_targeted
        raise SnnbenchError(f"APGD loss {self.loss!r} is not supported by snnbench")

    def prepare(self, x: torch.Tensor, y: torch.Tensor):
        """Inputs as the library takes them, and which samples to attack: all on a stochastic
        model, the clean-correct ones (the library's one pass) on a deterministic one."""
        self.init_hyperparam(x)
        x = x.detach().clone().float().to(self.device)
        y = y.detach().clone().long().to(self.device)
        if self.stochastic:
            todo = torch.ones(len(y), dtype=torch.bool, device=y.device)
        else:
            with torch.no_grad():
                todo = self.model(x).max(1)[1] == y
        torch.random.manual_seed(self.seed)
        torch.cuda.random.manual_seed(self.seed)
        return x, y, todo, x.clone(), torch.full((len(y),), -float("inf"), device=y.device)

    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        result: torch.Tensor,
        best_loss: torch.Tensor,
        broken: torch.Tensor,
    ) -> None:
        """One ``attack_single_run`` on samples ``idx``; keeps a success, or a higher loss."""
        self.model.start(y[idx], self.criterion(), self.eot_iter)
        try:
            self.attack_single_run(x[idx], y[idx])
        finally:
            points, hit, loss = self.model.stop()
        take = hit | (loss > best_loss[idx])
        result[idx[take]] = points[take]
        best_loss[idx[take]] = loss[take]
        broken[idx[hit]] = True

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y, todo, result, best_loss = self.prepare(x, y)
        broken = torch.zeros_like(todo)
        for _ in range(self.n_restarts):
            idx = (todo & ~broken).nonzero().squeeze(1)
            if len(idx):
                self.run(x, y, idx, result, best_loss, broken)
        if self.record is not None and self.loss == "ce":
            self.record.update({row_key(x[i]): result[i] for i in todo.nonzero().squeeze(1)})
        return result


class JudgedAPGDTargeted(JudgedAPGD, APGDAttack_targeted):
    """``APGDAttack_targeted`` judged the same way. The targets are the clean ranking of the
    EoT-averaged prediction, taken once (the library re-ranks on one draw before each target,
    so a stochastic model could get the same target twice); on a deterministic model it is the
    library's ranking."""

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y, todo, result, best_loss = self.prepare(x, y)
        broken = torch.zeros_like(todo)
        order = torch.zeros(len(y), 1, dtype=torch.long, device=y.device)
        attacked = todo.nonzero().squeeze(1)
        if len(attacked):
            ranking = eot_predict(self.model.model, x[attacked], self.eot_iter)
            order = order.expand(-1, ranking.shape[1]).clone()
            order[attacked] = ranking.sort(dim=1)[1]
        for target_class in range(2, self.n_target_classes + 2):
            for _ in range(self.n_restarts):
                idx = (todo & ~broken).nonzero().squeeze(1)
                if len(idx):
                    self.y_target = order[idx, -target_class]
                    self.run(x, y, idx, result, best_loss, broken)
        return result


def row_key(row: torch.Tensor) -> bytes:
    return row.detach().cpu().numpy().tobytes()


class APGD(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = JudgedAPGD(
            model,
            n_iter=p["steps"],
            norm=self.norm,
            n_restarts=p["restarts"],
            eps=self.eps,
            seed=p["seed"],
            loss=p["loss"],
            eot_iter=self.eot,
            rho=p["rho"],
            topk=None,
            verbose=False,
            device=x.device,
            use_largereps=False,
            is_tf_model=False,
            logger=LOG,
        )
        return attack.perturb(x, y)


class APGDT(Attack):
    def grad_evals(self) -> int:
        p = self.params
        return int(p["steps"]) * int(p["targets"]) * int(p["restarts"]) * self.eot

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = JudgedAPGDTargeted(
            model,
            n_iter=p["steps"],
            norm=self.norm,
            n_restarts=p["restarts"],
            eps=self.eps,
            seed=p["seed"],
            eot_iter=self.eot,
            rho=p["rho"],
            topk=None,
            n_target_classes=n_targets(model, x, p["targets"]),
            verbose=False,
            device=x.device,
            use_largereps=False,
            is_tf_model=False,
            logger=LOG,
        )
        return attack.perturb(x, y)


class FAB(Attack):
    def grad_evals(self) -> int:
        return int(self.params["steps"]) * int(self.params["targets"]) * self.eot

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        predict = model if self.eot == 1 else LogitMeanEoT(model, self.eot)
        attack = FABAttack_PT(
            predict,
            norm=self.norm,
            n_restarts=p["restarts"],
            n_iter=p["steps"],
            eps=self.eps,
            alpha_max=p["alpha_max"],
            eta=p["eta"],
            beta=p["beta"],
            loss_fn=None,
            verbose=False,
            seed=p["seed"],
            targeted=True,
            device=x.device,
            n_target_classes=n_targets(model, x, p["targets"]),
        )
        return attack.perturb(x, y)


class Square(Attack):
    def grad_evals(self) -> int:  # gradient-free: queries are in params
        return 0

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        if x.dim() not in (4, 5):
            raise SnnbenchError(
                f"attack {self.id} needs images [B, C, H, W] or event frames "
                f"[B, T, C, H, W], got a {x.dim()}-d input"
            )
        p = self.params
        predict = model if self.eot == 1 else LogitMeanEoT(model, self.eot)
        shape = x.shape
        if x.dim() == 5:  # event frames: Square sees one image of T*C channels
            frames_model = predict
            predict = lambda z: frames_model(z.view(-1, *shape[1:]))  # noqa: E731
            x = x.flatten(1, 2)
        attack = SquareAttack(
            predict,
            norm=self.norm,
            n_queries=p["queries"],
            eps=self.eps,
            p_init=p["p_init"],
            n_restarts=p["restarts"],
            seed=p["seed"],
            verbose=False,
            targeted=False,
            loss=p["loss"],
            resc_schedule=p["resc_schedule"],
            device=x.device,
        )
        return attack.perturb(x, y).view(shape)


class AutoAttackRun(Attack):
    def grad_evals(self) -> int:
        """Upper bound: every part on every sample (the cascade attacks survivors only)."""
        p = self.params
        if p["version"] == "rand":
            return 2 * int(p["n_iter"]) * self.eot
        return int(p["n_iter"]) * (1 + 2 * int(p["targets"])) * self.eot

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        attack = self._configure(model, x)
        attack.apgd.record = {}
        tracer = sys.gettrace()
        try:
            x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=len(x))
        finally:
            sys.settrace(tracer)
        return with_survivors(x_adv, x, attack.apgd.record)

    def _configure(self, model: nn.Module, x: torch.Tensor) -> AutoAttack:
        p = self.params
        attack = AutoAttack(
            model,
            attacks=None,
            device=x.device,
            eps=self.eps,
            norm=self.norm,
            seed=p["seed"],
            version=p["version"],
        )
        attack.verbose = False
        attack.logger = LOG
        attack.apgd = judged(JudgedAPGD, model, attack.apgd)
        attack.apgd_targeted = judged(JudgedAPGDTargeted, model, attack.apgd_targeted)
        parts = (attack.apgd, attack.apgd_targeted, attack.fab)
        if any(part.n_iter != p["n_iter"] for part in parts):
            raise SnnbenchError(
                f"pyautoattack changed its iterations; {self.id} expects {p['n_iter']}"
            )
        if p["version"] == "rand":
            if attack.apgd.eot_iter != self.eot or attack.apgd.n_restarts != 1:
                raise SnnbenchError("pyautoattack's version='rand' changed its EoT or restarts")
            attack.get_logits = EoTPrediction(model, self.eot)
            return attack
        if attack.square.n_queries != p["queries"] or attack.square.rescale_schedule:
            raise SnnbenchError("pyautoattack's Square settings changed")
        targets = n_targets(model, x, p["targets"])
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = targets
        attack.apgd.eot_iter = attack.apgd_targeted.eot_iter = self.eot
        if self.eot > 1:
            attack.square.predict = attack.fab.predict = LogitMeanEoT(model, self.eot)
        attack.get_logits = EoTPrediction(model, self.eot)  # the cascade's decisions
        return attack


def judged(kind: type, model: nn.Module, part: APGDAttack) -> JudgedAPGD:
    """``part`` (one of AutoAttack's APGD objects) rebuilt as ``kind`` with its settings."""
    settings = dict(
        n_iter=part.n_iter,
        norm=part.norm,
        n_restarts=part.n_restarts,
        eps=part.eps,
        seed=part.seed,
        eot_iter=part.eot_iter,
        rho=part.thr_decr,
        topk=part.topk,
        verbose=False,
        device=part.device,
        use_largereps=part.use_largereps,
        is_tf_model=False,
        logger=LOG,
    )
    if kind is JudgedAPGDTargeted:
        settings["n_target_classes"] = part.n_target_classes
    else:
        settings["loss"] = part.loss
    return kind(model, **settings)


def with_survivors(
    x_adv: torch.Tensor, x: torch.Tensor, record: dict[bytes, torch.Tensor]
) -> torch.Tensor:
    """AutoAttack hands back x for every sample no part broke; give those APGD-CE's
    highest-loss point instead (found by the sample's input: AutoAttack does not say which
    rows it attacked; equal inputs share a ball, so either's point is valid)."""
    x_adv = x_adv.clone()
    for i in (x_adv == x).flatten(1).all(1).nonzero().squeeze(1).tolist():
        point = record.get(row_key(x[i]))
        if point is not None:
            x_adv[i] = point.to(x_adv.device)
    return x_adv


# --- registry --------------------------------------------------------------------------------


def _apgd(attack_id: str, default_steps: int, loss: str = "ce", fixed_eot: int | None = None):
    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        params = {
            "steps": steps or default_steps,
            "restarts": 1,
            "loss": loss,
            "seed": 0,
            "rho": RHO,
        }
        if fixed_eot:
            params["eot_iter"] = fixed_eot
        return APGD(
            attack_id,
            eps,
            parse_norm(norm),
            params,
            "pyautoattack.APGDAttack",
            eot=fixed_eot or eot,
        )

    make.__name__ = make.__qualname__ = attack_id.replace("-", "_")
    eot_doc = f"eot_iter {fixed_eot} fixed by the id" if fixed_eot else "eot_iter K"
    make.__doc__ = (
        f"APGD (Croce & Hein, arXiv 2003.01690) via pyautoattack APGDAttack: "
        f"{default_steps} iterations, 1 restart, {loss.upper()} loss, rho 0.75, "
        f"seed 0, {eot_doc}; Linf or L2."
    )
    return make


for _id, _n, _loss, _eot, _summary in (
    ("apgd-ce", 100, "ce", None, "AutoAttack's APGD on CE, 100 iterations, 1 restart"),
    ("apgd7", 7, "ce", None, "APGD-CE, 7 iterations, 1 restart, EoT K (7 GE)"),
    ("apgd10", 10, "ce", None, "APGD-CE, 10 iterations, 1 restart, EoT K (10 GE)"),
    ("apgd20", 20, "ce", None, "APGD-CE, 20 iterations, 1 restart, EoT K (20 GE)"),
    ("apgd40", 40, "ce", None, "APGD-CE, 40 iterations, 1 restart, EoT K (40 GE)"),
    ("apgd10-rh", 10, "ce", 1, "APGD-CE, 10 iterations, no EoT (RandHet Table 1; 10 GE)"),
    ("apgd50-eot10", 50, "ce", 10, "APGD-CE, 50 iterations, EoT 10 whatever --eot (500 GE)"),
    ("apgd-dlr", 100, "dlr", None, "APGD on the DLR loss, 100 iterations, 1 restart"),
):
    ATTACKS.add(_id, _apgd(_id, _n, _loss, _eot), summary=_summary, paper=CROCE)


@ATTACKS.register(
    "apgd-t", summary="APGD-T: targeted DLR, 100 iterations x 9 targets (900 GE)", paper=CROCE
)
def apgd_t(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """APGD-T (Croce & Hein, arXiv 2003.01690) via pyautoattack APGDAttack_targeted: 100
    iterations per target, 9 targets (#classes - 1 when fewer), 1 restart, targeted DLR, rho
    0.75, seed 0, eot_iter K. 900*K GE."""
    return APGDT(
        "apgd-t",
        eps,
        parse_norm(norm),
        {
            "steps": steps or 100,
            "restarts": 1,
            "targets": 9,
            "seed": 0,
            "rho": RHO,
            "loss": "dlr-targeted",
        },
        "pyautoattack.APGDAttack_targeted",
        eot=eot,
    )


@ATTACKS.register(
    "fab-t",
    summary="FAB-T: targeted FAB, 100 iterations x 9 targets, EoT on the logit mean",
    paper="Croce & Hein 2020, arXiv 1907.02044",
)
def fab_t(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """FAB-T (Croce & Hein, arXiv 1907.02044; as in AutoAttack, arXiv 2003.01690) via
    pyautoattack FABAttack_PT(targeted=True): 100 iterations, 9 targets, 1 restart, alpha_max
    0.1, eta 1.05, beta 0.9, seed 0; K > 1 attacks LogitMeanEoT(model, K) (its steps and its
    success decisions on the mean logits of K draws). 900*K GE."""
    params = {
        "steps": steps or 100,
        "restarts": 1,
        "targets": 9,
        "alpha_max": 0.1,
        "eta": 1.05,
        "beta": 0.9,
        "seed": 0,
    }
    if eot > 1:
        params["eot_mode"] = "logit-mean"
    return FAB("fab-t", eps, parse_norm(norm), params, "pyautoattack.FABAttack_PT", eot=eot)


@ATTACKS.register(
    "square",
    summary="Square Attack: 5,000 queries, p_init 0.8, gradient-free",
    paper="Andriushchenko et al. 2020, arXiv 1912.00049",
)
def square(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """Square Attack (Andriushchenko et al., arXiv 1912.00049) via pyautoattack SquareAttack:
    5,000 queries (``steps`` overrides), p_init 0.8, 1 restart, margin loss, no rescaled
    schedule, seed 0; K > 1 queries LogitMeanEoT(model, K) (K forwards per query). 0 GE."""
    params = {
        "queries": steps or 5000,
        "p_init": 0.8,
        "restarts": 1,
        "loss": "margin",
        "resc_schedule": False,
        "seed": 0,
    }
    if eot > 1:
        params["eot_mode"] = "logit-mean"
    return Square("square", eps, parse_norm(norm), params, "pyautoattack.SquareAttack", eot=eot)


def _fixed_protocol(attack_id: str, steps: int | None) -> None:
    if steps is not None:
        raise SnnbenchError(
            f"attack {attack_id} is a fixed protocol: --steps does not apply "
            f"(run its parts, e.g. apgd-ce or square, to change iterations)"
        )


@ATTACKS.register(
    "autoattack-standard",
    summary="AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (pyautoattack)",
    paper=CROCE,
)
def autoattack_standard(
    eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1
) -> Attack:
    """AutoAttack (Croce & Hein, arXiv 2003.01690) via pyautoattack AutoAttack(version=
    'standard'): APGD-CE (100 it., 1 restart) -> APGD-T (100 it., 9 targets) -> FAB-T (100 it.,
    9 targets) -> Square (5,000 queries) on the survivors, seed 0. K > 1: APGD parts eot_iter
    K, Square on LogitMeanEoT, FAB one draw. At most 1,000*K + 900 GE and 5,000*K queries."""
    _fixed_protocol("autoattack-standard", steps)
    params = {"version": "standard", "seed": 0, "n_iter": 100, "targets": 9, "queries": 5000}
    if eot > 1:
        params["fab_eot"] = "n/a"
    return AutoAttackRun(
        "autoattack-standard", eps, parse_norm(norm), params, "pyautoattack.AutoAttack", eot=eot
    )


@ATTACKS.register(
    "autoattack-rand",
    summary="AutoAttack rand: APGD-CE + APGD-DLR with EoT 20 (pyautoattack)",
    paper=CROCE,
)
def autoattack_rand(
    eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1
) -> Attack:
    """AutoAttack for randomized defences (Croce & Hein, arXiv 2003.01690) via pyautoattack
    AutoAttack(version='rand'): APGD-CE then APGD-DLR, 100 iterations, 1 restart, eot_iter 20
    fixed by the library (--eot ignored), seed 0. At most 4,000 GE."""
    _fixed_protocol("autoattack-rand", steps)
    return AutoAttackRun(
        "autoattack-rand",
        eps,
        parse_norm(norm),
        {"version": "rand", "seed": 0, "n_iter": 100, "eot_iter": 20},
        "pyautoattack.AutoAttack",
        eot=20,
    )
