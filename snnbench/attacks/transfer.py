"""Transfer attacks: adversarial examples crafted on a source model, scored on the target.

``transfer-{source}-{attack}`` (docs/protocol.md): the attack runs on the source
only, so no gradient of the target is ever taken. This catches masking that no gradient variant
of the target fixes (Athalye et al., arXiv 1802.00420). Sources:

- ``ann-twin``: the target's weights with ReLU in place of its spiking neurons;
- ``mean-twin``: the target with its randomness at the mean (noise off, decays 0.5, gates p);
- ``model:NAME``: another model of the home, e.g. the vanilla model of the same arch. The
  command line loads it and binds it (``bind_source``); its weights' sha256 joins the key.

The inner attack (default ``apgd-ce``) keeps its own settings, budget, EoT and gradient mode;
all are in the key through the inner attack's key. The twins reach SpikingJelly's and
snntorch's neurons too and refuse a neuron they do not know (``snnbench.neurons.foreign``);
``check_reaches`` asks that of a whole plan before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from snnbench.attacks.base import Attack
from snnbench.attacks.registry import ATTACKS, PATTERNS, AttackFactory
from snnbench.errors import SnnbenchError
from snnbench.neurons.foreign import check_reachable
from snnbench.neurons.twins import TWINS

PREFIX = "transfer-"
MODEL_SOURCE = "model:"
PAPER = "Papernot et al. 2016, arXiv 1605.07277; SNN-RAT activation attack (Ding et al. 2022)"


@dataclass(frozen=True)
class TransferAttack(Attack):
    inner: Attack | None = field(default=None, compare=False)
    source_model: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        return self.params["source"]

    def grad_evals(self) -> int:
        return self.inner.grad_evals() if self.inner else 0

    def source_for(self, target: nn.Module) -> nn.Module:
        if self.source in TWINS:
            return TWINS[self.source](target)
        if self.source_model is None:
            raise SnnbenchError(
                f"transfer source {self.source!r} is not loaded; attack through "
                "`snnbench attack` with a home that holds that model"
            )
        return self.source_model.eval()

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inner = self.inner
        if inner.grad != self.grad:  # --surrogate reaches the source's spikes
            inner = dataclasses.replace(inner, grad=self.grad)
        return inner(self.source_for(model), x, y)


def parse_transfer(name: str) -> tuple[str, str] | None:
    """``(source, inner attack id)`` of ``transfer-SOURCE-ATTACK``, or None if not a transfer id."""
    if not name.lower().startswith(PREFIX):
        return None
    rest = name[len(PREFIX) :]
    for inner in sorted(ATTACKS.names(), key=len, reverse=True):
        if rest.lower().endswith("-" + inner) and not inner.startswith(PREFIX):
            source = rest[: -len(inner) - 1]
            if source.lower() in TWINS:
                return source.lower(), inner
            if source.lower().startswith(MODEL_SOURCE) and len(source) > len(MODEL_SOURCE):
                return MODEL_SOURCE + source[len(MODEL_SOURCE) :], inner
            break
    raise SnnbenchError(
        f"cannot read transfer attack {name!r}; write transfer-SOURCE-ATTACK with "
        f"SOURCE one of {', '.join(TWINS)} or model:NAME, e.g. "
        "transfer-ann-twin-apgd-ce"
    )


def transfer_factory(name: str) -> AttackFactory | None:
    parsed = parse_transfer(name)
    if parsed is None:
        return None
    source, inner_id = parsed

    def make(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
        # The twins are deterministic: EoT on them would only repeat the same gradient.
        draws = 1 if source in TWINS else eot
        inner = ATTACKS.get(inner_id)(eps=eps, norm=norm, steps=steps, eot=draws)
        attack_id = f"{PREFIX}{source}-{inner_id}"
        params = {"source": source, "via": inner.key()}
        return TransferAttack(
            attack_id,
            inner.eps,
            inner.norm,
            params,
            f"snnbench.transfer({inner.impl})",
            inner.grad,
            inner.eot,
            inner=inner,
        )

    make.__doc__ = (
        f"{inner_id} crafted on the {source} source, scored on the target "
        "(transfer attack: Papernot et al. 2016, arXiv 1605.07277)."
    )
    return make


def bind_source(attack: Attack, model: nn.Module, sha256: str) -> Attack:
    """Attach a loaded ``model:NAME`` source; its weights' sha256 joins the attack key."""
    if not isinstance(attack, TransferAttack) or not attack.source.startswith(MODEL_SOURCE):
        return attack
    return dataclasses.replace(
        attack, params={**attack.params, "source_sha256": sha256}, source_model=model
    )


def check_reaches(model: nn.Module, attacks: list[Attack]) -> None:
    """Refuse up front any attack whose gradient mode or twin cannot reach ``model``'s neurons
    (the attack itself would refuse when its turn came, after the others ran)."""
    for attack in attacks:
        name = attack.label or attack.id
        if attack.grad != "bptt":  # Attack.__call__ sets it on the target, transfers too
            check_reachable(model, f"{name}: gradient mode {attack.grad}")
        if isinstance(attack, TransferAttack) and attack.source in TWINS:
            check_reachable(model, f"{name}: the {attack.source}")


PATTERNS.append(transfer_factory)
for _source in TWINS:
    ATTACKS.add(
        f"{PREFIX}{_source}-apgd-ce",
        transfer_factory(f"{PREFIX}{_source}-apgd-ce"),
        summary=f"APGD-CE crafted on the {_source} (any transfer-SOURCE-ATTACK works, "
        "SOURCE ann-twin, mean-twin or model:NAME)",
        paper=PAPER,
    )
