"""benchmarks/recipe_cost.py: step costs, the recipes' hours paragraph; train_step's refactor."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from snnbench.config import ModelConfig, TrainConfig
from snnbench.data import load_dataset
from snnbench.defenses import LossContext, create_defense
from snnbench.files import stable_seed
from snnbench.model import build, resolve
from snnbench.recipe import load_recipe, tomllib
from snnbench.runtime import batches
from snnbench.train import _optimizers, _train_epoch

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def _tool():
    spec = importlib.util.spec_from_file_location(
        "recipe_cost", ROOT / "benchmarks" / "recipe_cost.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("recipe_cost", module)
    spec.loader.exec_module(module)
    return module


TINY = """# A tiny recipe for the test.
# Expected GPU hours: not measured yet: an old line
# that continues here.
name = "tiny-cost"
dataset = "digits"
timesteps = 2

[train]
epochs = 3
batch_size = 16

[[models]]
defense = "vanilla"
arch = "tiny"
[[models]]
defense = "at"
arch = "tiny"
"""


def test_step_cost_is_positive_and_at_counts_its_pgd_steps():
    tool = _tool()
    train = TrainConfig(epochs=2, batch_size=16)
    vanilla = tool.step_cost(ModelConfig("vanilla", "tiny", "digits", 2), train, CPU, 1, 1)
    at = tool.step_cost(ModelConfig("at", "tiny", "digits", 2), train, CPU, 1, 1)
    assert vanilla.seconds > 0 and vanilla.flops > 0 and at.seconds > 0
    assert at.flops > 1.5 * vanilla.flops  # AT's 2 PGD steps: a forward + backward each
    # counted at batches 4 and 8, extrapolated to 16: exact, also for RAT's batch-independent
    # retraction (a per-step cost that proportional scaling would multiply)
    for expr in ("vanilla", "rat"):
        config = ModelConfig(expr, "tiny", "digits", 2)
        small = tool.step_cost(config, train, CPU, 1, 0, batch=4)
        whole = vanilla if expr == "vanilla" else tool.step_cost(config, train, CPU, 1, 0)
        assert small.counted_at == (4, 8) and small.measured_batch == 8
        assert small.flops == whole.flops, expr


def test_write_rewrites_only_the_hours_lines(tmp_path, capsys):
    tool = _tool()
    path = tmp_path / "tiny-cost.toml"
    path.write_bytes(TINY.encode())
    assert tool.main([str(path), "--steps", "1", "--write"]) == 0
    text = path.read_text()
    old, new = TINY.splitlines(), text.splitlines()
    rest = old[3:]  # everything after the old paragraph
    assert new[0] == old[0] and new[-len(rest) :] == rest
    paragraph = new[1 : -len(rest)]
    assert paragraph[0].startswith("# Expected GPU hours: no GPU was measured")
    assert all(line.startswith("#  ") for line in paragraph[1:])
    assert "ASSUMED" in text and "`python benchmarks/recipe_cost.py --write`" in text
    assert "an old line" not in text
    tomllib.loads(text)
    recipe = load_recipe(path)
    assert recipe.name == "tiny-cost" and len(recipe.models) == 2
    assert tool.main([str(path), "--steps", "1", "--write"]) == 0  # a rewrite replaces it
    assert path.read_text().count("# Expected GPU hours") == 1
    assert "tiny-cost: 2 models" in capsys.readouterr().out


def test_rewrite_of_a_paper_recipe_keeps_every_other_byte():
    tool = _tool()
    original = (ROOT / "zoo" / "cifar10-tgo.toml").read_bytes().decode()
    text = tool.rewrite(original, ["# Expected GPU hours: 12 (a test)", "#   second line"])
    kept = [line for line in original.splitlines() if not line.startswith("#")]
    assert [line for line in text.splitlines() if not line.startswith("#")] == kept
    assert tomllib.loads(text) == tomllib.loads(original)


def _old_epoch(model, defense, optimizer, own, x, y, train, epoch):
    """The body of ``_train_epoch`` before ``train_step`` was factored out (no augmentation)."""
    generator = torch.Generator().manual_seed(stable_seed(train.seed, "epoch", epoch))
    torch.manual_seed(stable_seed(train.seed, "draws", epoch))
    order = torch.randperm(len(x), generator=generator)
    losses = []
    for part in batches(len(x), train.batch_size):
        xb, yb = x[order[part]], y[order[part]]
        x_in = defense.training_inputs(model, xb, yb)
        model.train()
        logits = model(x_in)
        ctx = LossContext(model, xb, x_in, yb, logits, epoch, train.epochs)
        task = defense.task_loss(ctx)
        loss = F.cross_entropy(logits.float(), yb) if task is None else task
        extra = defense.extra_loss(ctx)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for member, own_optimizer in own:
            member.step_optimizer(own_optimizer, epoch, train.epochs)
        defense.after_step(model, epoch)
        losses.append(loss.item())
    return losses


def test_train_step_leaves_the_epoch_bit_identical():
    x, y = load_dataset("digits", "train")
    x, y = x[:96], y[:96]
    train = TrainConfig(epochs=2, batch_size=32)
    for expr in ("vanilla", "tgo+rat", "stog+at"):  # generator, extra loss, own optimiser
        runs = []
        for new in (True, False):
            spec = resolve(ModelConfig(expr, "tiny", "digits", 2))
            torch.manual_seed(0)
            model = build(spec)
            defense = create_defense(spec.defense, spec.settings, spec.track)
            defense.setup(model)
            optimizer, own = _optimizers(model, defense, train, 5e-4)
            if new:
                _train_epoch(model, defense, optimizer, own, x, y, train, False, 1, CPU)
            else:
                _old_epoch(model, defense, optimizer, own, x, y, train, 1)
            runs.append(model.state_dict())
        assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]), expr
