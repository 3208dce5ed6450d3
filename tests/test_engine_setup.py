"""The engine's set-up pieces: flags, derived settings, precision, the optimizer's groups, the
DataLoader per epoch, and the one-line messages of expected errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine import flags
from engine.flags import HARMLESS_ON_RESUME, IMAGEBIND_ENV, build_parser, derive_settings
from engine.data_source import epoch_loader
from engine.errors import SetupError, user_message
from engine.optimizer import ADAMW_BETAS, build_optimizer, weight_decay_groups
from engine.precision import check_precision, default_precision, grad_scaler
from support.engine_doubles import BatchDataset, ListSampler, toy_batch, unwrap_single
from util.distributed import DistributedContext

CPU = torch.device("cpu")

# The published reference's flags (main_pretrain.py / main_finetune.py) and defaults we keep.
REFERENCE_DEFAULTS = {
    "batch_size": 64, "epochs": 400, "accum_iter": 1, "weight_decay": 0.05, "lr": None, "blr": 1e-3,
    "min_lr": 0.0, "warmup_epochs": 40, "num_workers": 10, "pin_mem": True, "output_dir": "./output",
    "seed": 0, "start_epoch": 0, "world_size": 1, "local_rank": -1, "dist_url": "env://",
}


def parse(phase: str, *flags: str):
    required = ["--llama_path", "L", "--data_config", "D"] + (["--pretrained_path", "P"] if phase == "finetune" else [])
    return build_parser(phase).parse_args(required + list(flags))


@pytest.mark.parametrize("phase, max_words", [("pretrain", 96), ("finetune", 512)])
def test_both_phases_take_the_reference_flags_with_its_defaults(phase, max_words):
    args = vars(parse(phase))
    for name, default in REFERENCE_DEFAULTS.items():
        assert args[name] == default, name
    assert args["max_words"] == max_words
    assert args["llama_type"] is None and args["device"] is None and args["precision"] is None
    assert ("split_epoch" in args) == (phase == "pretrain")
    assert ("pretrained_path" in args) == (phase == "finetune")
    assert HARMLESS_ON_RESUME <= set(args) | {"split_epoch"}


def test_a_missing_required_flag_names_it(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser("finetune").parse_args(["--llama_path", "L", "--data_config", "D"])
    assert exited.value.code == 2
    assert "--pretrained_path" in capsys.readouterr().err


def test_weight_decay_spares_biases_and_one_dimensional_tensors():
    named = [("proj.weight", nn.Parameter(torch.zeros(4, 3))), ("proj.bias", nn.Parameter(torch.zeros(4))),
             ("norm.weight", nn.Parameter(torch.zeros(4))), ("gate", nn.Parameter(torch.zeros(2))),
             ("prefix_query.weight", nn.Parameter(torch.zeros(5, 4)))]
    no_decay, decay = weight_decay_groups(named, 0.05)
    by_id = {id(param): name for name, param in named}
    assert [by_id[id(p)] for p in no_decay["params"]] == ["proj.bias", "norm.weight", "gate"]
    assert [by_id[id(p)] for p in decay["params"]] == ["proj.weight", "prefix_query.weight"]
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.05)
    optimizer = build_optimizer(named, 0.1, 0.05, CPU)
    assert all(group["betas"] == ADAMW_BETAS and not group["fused"] for group in optimizer.param_groups)


def test_precision_defaults_and_refusals_on_the_cpu():
    assert default_precision(CPU) == "fp32"
    assert check_precision("bf16", CPU) == "bf16"
    with pytest.raises(SetupError, match="fp16 needs a GPU"):
        check_precision("fp16", CPU)
    assert not grad_scaler(CPU, "fp32").is_enabled()


# -- settings --------------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    llama = tmp_path / "llama"
    llama.mkdir()
    (tmp_path / "data.yaml").write_text("META: [a.tsv]\n")
    (tmp_path / "imagebind.pth").write_bytes(b"w")
    return tmp_path


def settings_for(files, *flags, phase="pretrain", world_size=1):
    args = build_parser(phase).parse_args(["--llama_path", str(files / "llama"), "--data_config",
                                           str(files / "data.yaml"), "--output_dir", str(files / "out"), *flags])
    return derive_settings(args, phase, DistributedContext(world_size=world_size))


def test_settings_resolve_the_learning_rate_and_the_folders(files):
    settings = settings_for(files, "--imagebind_path", str(files / "imagebind.pth"), "--batch_size", "4",
                            "--accum_iter", "2", "--blr", "1e-3", world_size=4)
    assert settings.effective_batch_size == 32
    assert settings.lr == pytest.approx(1e-3 * 32 / 256)
    assert settings.log_dir == settings.output_dir == files / "out"
    assert settings.precision == "fp32" and settings.imagebind_args is None
    explicit = settings_for(files, "--imagebind_path", str(files / "imagebind.pth"), "--lr", "0.5", "--log_dir", "tb")
    assert explicit.lr == 0.5 and str(explicit.log_dir) == "tb"


def test_imagebind_weights_come_from_the_flag_the_environment_or_the_default(files, monkeypatch):
    monkeypatch.setenv(IMAGEBIND_ENV, str(files / "imagebind.pth"))
    assert settings_for(files).imagebind_path == files / "imagebind.pth"
    monkeypatch.delenv(IMAGEBIND_ENV)
    # The default path, pointed into the test's folder so that what this machine holds does not matter.
    default = files / "ckpts" / "imagebind_huge.pth"
    monkeypatch.setattr(flags, "DEFAULT_IMAGEBIND_PATH", default)
    with pytest.raises(SetupError) as missing:
        settings_for(files)
    message = str(missing.value)
    assert str(default) in message and "imagebind_huge.pth" in message
    assert "--imagebind_path" in message and IMAGEBIND_ENV in message
    default.parent.mkdir()
    default.write_bytes(b"weights")
    assert settings_for(files).imagebind_path == default


def test_an_imagebind_config_is_read_as_yaml_or_json(files):
    (files / "ib.yaml").write_text("out_embed_dim: 32\nkernel_size: [2, 14, 14]\n")
    (files / "ib.json").write_text('{"out_embed_dim": 16}')
    (files / "bad.yaml").write_text("- just\n- a list\n")
    weights = ("--imagebind_path", str(files / "imagebind.pth"))
    assert settings_for(files, *weights, "--imagebind_config", str(files / "ib.yaml")).imagebind_args == {
        "out_embed_dim": 32, "kernel_size": [2, 14, 14]}
    assert settings_for(files, *weights, "--imagebind_config", str(files / "ib.json")).imagebind_args == {"out_embed_dim": 16}
    with pytest.raises(SetupError, match="expected a mapping"):
        settings_for(files, *weights, "--imagebind_config", str(files / "bad.yaml"))


@pytest.mark.parametrize("flags, message", [
    (("--llama_path", "/nowhere"), "--llama_path /nowhere: no such folder"),
    (("--data_config", "/nowhere.yaml"), "--data_config /nowhere.yaml: no such file"),
    (("--batch_size", "0"), "--batch_size 0 must be at least 1"),
    (("--start_epoch", "5", "--epochs", "5"), r"--start_epoch 5 must lie in \[0, --epochs 5\)"),
    (("--min_lr", "1", "--lr", "0.1"), "--min_lr 1.0 is above the base rate"),
    (("--clip_grad", "0"), "--clip_grad 0.0 must be positive"),
])
def test_bad_flags_fail_before_anything_loads_naming_the_flag(files, flags, message):
    with pytest.raises(SetupError, match=message):
        settings_for(files, "--imagebind_path", str(files / "imagebind.pth"), *flags)


# -- the DataLoader of an epoch; errors raised in its workers --------------------------------------------

class EpochDataset(BatchDataset):
    def __init__(self, batches):
        super().__init__(batches)
        self.epochs = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_the_epoch_loader_tells_sampler_and_dataset_the_epoch_and_leaves_the_global_generator_alone():
    dataset = EpochDataset([toy_batch(i) for i in range(3)])
    sampler = ListSampler([[[0], [1]], [[2]]])
    state = torch.get_rng_state()
    loader = epoch_loader(dataset, sampler, unwrap_single, 1, num_workers=0, pin_memory=False, seed=0)
    batches = list(loader)
    assert torch.equal(torch.get_rng_state(), state)
    assert dataset.epochs == [1] and sampler.epoch == 1
    assert len(batches) == 1 and torch.equal(batches[0]["tokens"], dataset.batches[2]["tokens"])


class FailingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise ValueError(f"/data/meta.tsv row {index}: missing_image: /img/{index}.jpg does not exist")


def test_an_error_from_a_dataloader_worker_is_shown_as_its_own_message():
    loader = torch.utils.data.DataLoader(FailingDataset(), batch_size=None, num_workers=1)
    with pytest.raises(ValueError) as raised:
        next(iter(loader))
    assert "Traceback" in str(raised.value)  # what torch's re-raise carries
    assert user_message(raised.value) == "/data/meta.tsv row 0: missing_image: /img/0.jpg does not exist"
    assert user_message(SetupError("plain message")) == "plain message"


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_help_gives_every_flag_a_text_and_its_default_once(phase, capsys):
    parser = build_parser(phase)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines (also at hyphens): compare without spaces
    assert "(default:None)" not in text and "(default:False)" not in text
    formatter = parser.formatter_class(prog="x")
    for action in parser._actions:
        if action.dest == "help":
            continue
        described = formatter._get_help_string(action) % vars(action)
        flag = action.option_strings[0]
        assert len(described) > 20, f"{flag} has no text"
        said_by_help = "default" in (action.help or "")
        assert described.count("(default: ") <= 1 and (not said_by_help or described == action.help), flag
        if action.default not in (None, False, True) and not action.required:  # a value worth showing
            assert said_by_help or f"(default: {action.default})" in described, f"{flag}: {described}"
        assert ("(required)" in described) == action.required, f"{flag}: {described}"
        assert "".join(described.split()) in text, flag
    for kept_for_old_command_lines in ("--world_size", "--local_rank", "--pin_mem"):
        action = next(a for a in parser._actions if kept_for_old_command_lines in a.option_strings)
        assert action.help.startswith("accepted, ignored")
