"""The helpers that replaced copies in several modules (issue 22, "one of each")."""

import argparse

import pytest
import torch
from torch import nn

from xmodal.cli.data_commands import add_overrides
from xmodal.core.checks import require_ints
from xmodal.encoders.base import chain_stages
from xmodal.encoders.library_backbone import adapt_conv
from xmodal.evaluation.linear_probe import require_finite
from xmodal.objectives.memory_bank import is_integer
from xmodal.objectives.task_terms import LabelTerms


def test_require_ints_names_the_first_bad_value():
    require_ints("Thing", ("a", 1, 1), ("b", 0, 0))
    for bad in (0, 1.0, True, "2"):
        with pytest.raises(ValueError, match=rf"^Thing: b must be an int >= 1, got {bad!r}$"):
            require_ints("Thing", ("a", 5, 1), ("b", bad, 1), ("c", -1, 0))


def test_is_integer_accepts_only_integer_dtypes():
    assert is_integer(torch.zeros(2, dtype=torch.long)) and is_integer(torch.zeros(2).int())
    for dtype in (torch.float32, torch.bfloat16, torch.complex64, torch.bool):
        assert not is_integer(torch.zeros(2, dtype=dtype))


def test_label_terms_added_to_sums_the_losses_and_needs_labels():
    terms = LabelTerms(4, 3, alpha=0.5, beta=0.0, seed=0)
    student, labels, indices = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]), torch.arange(5)
    out = terms.added_to({"loss": torch.tensor(2.0)}, student, labels, indices, missing="no")
    alone = terms(student, labels, indices)
    assert torch.equal(out["loss"], 2.0 + alone["loss"]) and torch.equal(out["ce"], alone["ce"])
    with pytest.raises(ValueError, match="^Owner: needs labels$"):
        terms.added_to(
            {"loss": torch.tensor(0.0)}, student, None, indices, missing="Owner: needs labels"
        )


def test_require_finite_names_probe_and_split():
    require_finite("p", {"train": torch.zeros(2, 2)})
    bad = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="^p: val features contain NaN or inf$"):
        require_finite("p", {"train": torch.zeros(1, 2), "val": bad, "test": bad})


def test_chain_stages_returns_every_stage_output():
    stages = nn.ModuleList([nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)])
    x = torch.randn(4, 3)
    maps = chain_stages(stages, x)
    assert [m.shape for m in maps] == [(4, 3), (4, 3), (4, 2)]
    assert torch.equal(maps[-1], stages[2](stages[1](stages[0](x))))


@pytest.mark.parametrize("bias", [False, True])
def test_adapt_conv_averages_rgb_filters_and_keeps_magnitude(bias):
    conv = nn.Conv2d(3, 8, 3, 2, 1, bias=bias)
    new = adapt_conv(conv, 1)
    assert (new.in_channels, new.out_channels, new.stride, new.padding) == (1, 8, (2, 2), (1, 1))
    assert torch.allclose(new.weight, conv.weight.mean(1, keepdim=True) * 3.0)
    assert (new.bias is None) == (not bias)
    if bias:
        assert torch.equal(new.bias, conv.bias)
    grey = torch.randn(2, 1, 9, 9)
    assert torch.allclose(new(grey), conv(grey.repeat(1, 3, 1, 1)), atol=1e-5)


def test_add_overrides_collects_repeated_sets():
    parser = argparse.ArgumentParser()
    add_overrides(parser, "help")
    assert parser.parse_args([]).overrides == []
    assert parser.parse_args(["--set", "a=1", "--set", "b=2"]).overrides == ["a=1", "b=2"]
