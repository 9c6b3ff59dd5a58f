"""``snnbench import --from``: the papers' key names, neuron constants and input normalisation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_bad_input import refused
from test_cli import invoke

import snnbench
from snnbench import api
from snnbench.config import ModelConfig
from snnbench.data import load_dataset
from snnbench.errors import SnnbenchError
from snnbench.import_maps import PRESETS, inverse, rename
from snnbench.importer import choose_norm
from snnbench.model import ModelSpec, build, resolve
from snnbench.runtime import place

X_TEST, _ = load_dataset("digits", "test")
BATCH = X_TEST[:16]


def perturbed_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s state with every BN scale, shift and statistic, bias and mixing weight
    redrawn (convs and linears keep their random init), so that two same-shaped tensors swapped
    by a wrong map change the logits; BN shifts lean positive so that every layer fires."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def draw(like: torch.Tensor, centre: float, spread: float) -> torch.Tensor:
        return centre + spread * torch.randn(like.shape, generator=gen)

    for key, value in state.items():
        module = key.rsplit(".", 1)[0]
        batchnorm = f"{module}.running_var" in state
        if key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=gen))
        elif key.endswith("running_mean"):
            value.copy_(draw(value, 0.0, 0.1))
        elif batchnorm and key.endswith("weight"):
            value.copy_(draw(value, 1.0, 0.2))
        elif key.endswith("bias"):
            value.copy_(draw(value, 0.5 if batchnorm else 0.0, 0.3))
        elif key.endswith("mix"):
            value.copy_(draw(value, 0.5, 0.2))
    model.load_state_dict(state)
    return state


def foreign_file(tmp_path, state, source, arch, extra=None):
    """``state`` under ``source``'s names (our names through the inverse map), saved as a
    training script would."""
    back = inverse(PRESETS[source].rules(arch))
    theirs = {rename(k, back): v for k, v in state.items()}
    assert not any(k.startswith("body.") for k in theirs)  # every key was renamed
    path = tmp_path / f"{source}-{arch}.pth"
    torch.save({"epoch": 3, "state_dict": {**theirs, **(extra or {})}}, path)
    return path


def braincog_nodes(model, values):
    """BrainCog's per-node parameters: one scalar per constant per spiking layer."""
    back = inverse(PRESETS["braincog"].rules("sew-resnet19"))
    nodes = [name for name, m in model.body.named_modules() if type(m).__name__.endswith("LIF")]
    return {
        f"{rename('body.' + n, back)}.{c}": torch.tensor(v)
        for n in nodes
        for c, v in values.items()
    }


def import_and_compare(path, config, reference, tmp_path, **options):
    """Import ``path``; its tensors must be ``reference``'s, bit for bit, and so its logits
    (both placed alike: the import places for the CPU, channels_last where the arch asks)."""
    outcome = api.import_checkpoint(path, config, home=tmp_path / "home", device="cpu", **options)
    imported = snnbench.load(outcome.folder)
    want = reference.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in imported.state_dict().items())
    reference = place(reference, "cpu").eval()
    with torch.no_grad():
        torch.manual_seed(1)
        theirs = imported(BATCH)
        torch.manual_seed(1)
        ours = reference(BATCH)
    assert torch.equal(theirs, ours)
    assert ours.std(0).sum() > 0  # logits differ between images: spikes reach the readout
    return outcome


@pytest.mark.parametrize(
    "arch,key", [("wrn16", "block2.0.convShortcut.weight"), ("vgg11", "classifier.3.weight")]
)
def test_snn_rat_imports_to_identical_logits(tmp_path, arch, key):
    config = ModelConfig("vanilla", arch, "digits", 1, "pku")
    model = build(resolve(config))
    path = foreign_file(tmp_path, perturbed_state(model), "snn-rat", arch)
    assert key in torch.load(path)["state_dict"]
    outcome = import_and_compare(path, config, model, tmp_path, source="snn-rat")
    assert outcome.card["imported_from"]["from"] == "snn-rat"
    assert "input_norm" not in outcome.card["spec"]  # SNN-RAT uses the data set's stats


def test_snn_rat_vgg11_map_covers_every_key_and_shape():
    """The 61M-parameter VGG-11 (at 32 px): every SNN-RAT key lands on one of ours, shapes kept;
    no forward (too slow for the suite)."""
    ours = build(resolve(ModelConfig("vanilla", "vgg11", "cifar10", 1, "pku"))).state_dict()
    assert (
        sum(v.numel() for k, v in ours.items() if "running" not in k and "num_b" not in k)
        == 61_377_034
    )
    rules = PRESETS["snn-rat"].rules("vgg11")
    theirs = {rename(k, inverse(rules)): k for k in ours}
    assert {rename(t, rules) for t in theirs} == set(ours)
    assert {
        "layer1.0.weight",
        "layer2.3.weight",
        "layer3.7.running_var",
        "layer4.4.bias",
        "classifier.1.weight",
        "classifier.5.bias",
    } <= set(theirs)


@pytest.mark.parametrize(
    "defense,constants",
    [
        ("vanilla", {"threshold": 0.5, "act_fun.alpha": 2.0}),  # LIFNode
        ("randhet", {"threshold": 0.5, "act_fun.alpha": 2.0, "sigma": 1.0, "w": 0.0}),  # RHLIFNode
    ],
    ids=["lif", "rhlif"],
)
def test_braincog_sew_resnet19_imports_with_its_constants_dropped(tmp_path, defense, constants):
    """The RHLIF file also holds BrainCog's ``normalize`` buffers: the card takes them."""
    config = ModelConfig(defense, "sew-resnet19", "digits", 2, "randhet")
    norm = {"mean": [0.125], "std": [0.75]} if defense == "randhet" else None
    model = build(dataclasses.replace(resolve(config), input_norm=norm))
    nodes = braincog_nodes(model, constants)
    assert len(nodes) == 19 * len(constants)  # 38 (LIF) or 76 (RHLIF)
    buffers = {f"normalize.{k}": torch.tensor(v) for k, v in (norm or {}).items()}
    path = foreign_file(
        tmp_path, perturbed_state(model), "braincog", "sew-resnet19", {**nodes, **buffers}
    )
    outcome = import_and_compare(path, config, model, tmp_path, source="braincog")
    assert outcome.card["imported_from"]["dropped"] == len(nodes)
    assert outcome.card["spec"].get("input_norm") == norm


def test_a_different_neuron_constant_is_refused_naming_key_and_values(tmp_path):
    config = ModelConfig("vanilla", "sew-resnet19", "digits", 2, "randhet")
    model = build(resolve(config))
    nodes = braincog_nodes(model, {"threshold": 0.5, "act_fun.alpha": 2.0})
    nodes["layer2.0.node2.threshold"] = torch.tensor(1.0)
    path = foreign_file(tmp_path, model.state_dict(), "braincog", "sew-resnet19", nodes)
    line = refused(
        invoke(
            "import",
            path,
            "--arch",
            "sew-resnet19",
            "--defense",
            "vanilla",
            "--track",
            "randhet",
            "--timesteps",
            "2",
            "--from",
            "braincog",
            "--home",
            tmp_path / "home",
        ),
        "layer2.0.node2.threshold = 1 in the file",
    )
    assert "neuron.theta is 0.5" in line
    # random decays in the file, none in the model: sigma 1 against 0
    nodes = braincog_nodes(model, {"threshold": 0.5, "sigma": 1.0})
    path = foreign_file(tmp_path, model.state_dict(), "braincog", "sew-resnet19", nodes)
    with pytest.raises(
        SnnbenchError,
        match=r"sigma = 1 in the file, but this model's "
        r"randhet.sigma is 0",
    ):
        api.import_checkpoint(path, config, home=tmp_path / "home", source="braincog")


def test_braincog_norm_on_cifar_and_the_files_buffers_win():
    spec = resolve(ModelConfig("vanilla", "sew-resnet19", "cifar100", None, "randhet"))
    norm = choose_norm(spec, "braincog", None, None, None)
    assert norm == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}  # Q5
    assert choose_norm(spec, "snn-rat", None, None, None) is None
    buffers = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert choose_norm(spec, "braincog", buffers, None, None)["std"] == buffers[1]
    with pytest.raises(SnnbenchError, match="differs from the file's normalize.std"):
        choose_norm(spec, "braincog", buffers, None, [0.2, 0.2, 0.2])
    with pytest.raises(SnnbenchError, match="must hold 3 finite numbers"):
        choose_norm(spec, None, None, [0.5], None)


def test_mean_and_std_go_into_the_card_and_loading_honours_them(tmp_path):
    config = ModelConfig("vanilla", "tiny", "digits", 2)
    spec = dataclasses.replace(resolve(config), input_norm={"mean": [0.25], "std": [0.5]})
    model = build(spec)
    assert model.normalize.std.flatten().tolist() == [0.5]
    path = tmp_path / "tiny.pth"
    torch.save(perturbed_state(model), path)
    result = invoke(
        "import",
        path,
        "--arch",
        "tiny",
        "--defense",
        "vanilla",
        "--timesteps",
        "2",
        "--mean",
        "0.25",
        "--std",
        "0.5",
        "--home",
        tmp_path / "home",
    )
    assert result.exit_code == 0, result.output
    card = snnbench.load_card("vanilla-tiny-digits", tmp_path / "home")
    assert card["spec"]["input_norm"] == {"mean": [0.25], "std": [0.5]}
    assert card["input"]["std"] == [0.5]
    loaded = snnbench.load("vanilla-tiny-digits", tmp_path / "home")
    assert loaded.normalize.mean.flatten().tolist() == [0.25]
    with torch.no_grad():
        assert torch.equal(loaded(BATCH), place(model, "cpu").eval()(BATCH))
    again = invoke(
        "import",
        path,
        "--arch",
        "tiny",
        "--defense",
        "vanilla",
        "--timesteps",
        "2",
        "--mean",
        "0.25",
        "--std",
        "0.5",
        "--home",
        tmp_path / "home",
    )
    assert "up to date" in again.stdout


def test_cards_without_input_norm_keep_the_data_sets():
    spec = resolve(ModelConfig("vanilla", "tiny", "cifar10", 2))
    old = spec.to_dict()
    assert "input_norm" not in old  # trained cards are unchanged
    assert ModelSpec.from_dict(old) == spec
    assert build(spec).normalize.std.flatten().tolist() == pytest.approx([0.2023, 0.1994, 0.2010])


def test_map_and_drop_handle_other_names(tmp_path):
    config = ModelConfig("vanilla", "tiny", "digits", 2)
    model = build(resolve(config))
    state = {k.replace("body.", "net.features."): v for k, v in perturbed_state(model).items()}
    state["net.aux.weight"] = torch.zeros(3)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    home = tmp_path / "home"
    refused(
        invoke("import", path, "--arch", "tiny", "--defense", "vanilla", "--home", home),
        "unexpected keys net.features.0.weight",
    )
    refused(
        invoke(
            "import",
            path,
            "--arch",
            "tiny",
            "--defense",
            "vanilla",
            "--home",
            home,
            "--drop",
            "nothing.*",
        ),
        "--drop 'nothing.*' matches no key",
    )
    import_and_compare(
        path, config, model, tmp_path, maps=["net.features=body"], drops=["net.aux.*"]
    )


def spikingjelly_tiny(timesteps: int, init_tau: float = 2.0):
    """Our ``tiny`` layout (tgo track: u = v/2 + I, theta 1, hard reset) in SpikingJelly's
    layers, grouped by ``layer.SeqToANNContainer`` (so its names are not ours); the second
    neuron is a PLIF whose ``w`` (decay 1 - sigmoid(w)) is saved in the state dict."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional, layer, neuron
    from torch import nn

    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)),
        neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m"),
        layer.SeqToANNContainer(
            nn.AvgPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        ),
        neuron.ParametricLIFNode(
            init_tau=init_tau, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m"
        ),
        layer.SeqToANNContainer(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32 * 2 * 2, 10)),
    )

    def logits(x):
        functional.reset_net(net)
        return net(x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)).mean(0)

    return net, logits


def test_a_spikingjelly_net_gives_our_logits_on_the_digits_test_set(tmp_path):
    net, logits = spikingjelly_tiny(4)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if key.endswith(("running_mean", "bias")):
                value.copy_(0.3 * torch.randn(value.shape, generator=gen))
    net.eval()
    path = tmp_path / "sj.pth"
    torch.save(net.state_dict(), path)
    assert "1.v_threshold" not in net.state_dict() and "3.w" in net.state_dict()
    outcome = api.import_checkpoint(
        path,
        ModelConfig("vanilla", "tiny", "digits", 4),
        home=tmp_path / "home",
        device="cpu",
        source="spikingjelly",
    )
    model = snnbench.load(outcome.folder)
    with torch.no_grad():
        theirs, ours = logits(X_TEST), model(X_TEST)
    assert ours.std(0).sum() > 0  # logits differ between images: spikes reach the readout
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # measured: 0.0 on CPU
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_a_spikingjelly_plif_with_another_decay_is_refused(tmp_path):
    net, _ = spikingjelly_tiny(4, init_tau=4.0)  # decay 0.75, ours 0.5
    path = tmp_path / "sj.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(
        SnnbenchError,
        match=r"3.w = 0.75 in the file, but this model's "
        r"neuron.decay is 0.5",
    ):
        api.import_checkpoint(
            path,
            ModelConfig("vanilla", "tiny", "digits", 4),
            home=tmp_path / "home",
            source="spikingjelly",
        )


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (
            ("--from", "keras"),
            "unknown --from 'keras'; choose one of snn-rat, braincog, spikingjelly",
        ),
        (("--from", "snn-rat"), "--from snn-rat maps vgg11, wrn16, not tiny"),
        (("--mean", "half"), "--mean takes comma-separated numbers"),
        (("--std", "0.5,0.5"), "std [0.5, 0.5] must hold 1 finite numbers"),
        (("--map", "body"), "--map 'body' is not OLD=NEW"),
    ],
    ids=["source", "arch", "mean", "channels", "map"],
)
def test_bad_import_options_are_one_line(tmp_path, extra, fragment):
    path = tmp_path / "tiny.pth"
    torch.save(build(resolve(ModelConfig("vanilla", "tiny", "digits", 2))).state_dict(), path)
    refused(
        invoke(
            "import",
            path,
            "--arch",
            "tiny",
            "--defense",
            "vanilla",
            "--home",
            tmp_path / "home",
            *extra,
        ),
        fragment,
    )
    assert not (tmp_path / "home").exists()


def test_a_safetensors_file_imports_too(tmp_path):
    from safetensors.torch import save_file

    config = ModelConfig("vanilla", "tiny", "digits", 2)
    model = build(resolve(config))
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in perturbed_state(model).items()}, str(path))
    import_and_compare(path, config, model, tmp_path)
