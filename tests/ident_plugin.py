"""A small third-party package for the identity and option tests, laid out as installed.

``install(site)`` writes the package's modules and its ``.dist-info`` (``METADATA`` and
``entry_points.txt``) into ``site``, a folder for ``PYTHONPATH``: what ``importlib.metadata``
reads of an installed package, without a build. Its source stays editable in place, as under
``pip install -e``. One module per component, so that an edit to one leaves the others' source
digests alone: a ``glow`` front end (options from its typed signature), a ``tinyconv`` image
backbone and a ``nearest`` probe (options dataclasses with ``require`` rules).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "xmodal_ident_demo"
DISTRIBUTION = "xmodal-ident-demo"

FRONTEND = '''
"""A glow front end: [B, H, W] -> [B, 1, H, W], its options typed by its signature alone."""

from typing import Literal

import torch
from torch import Tensor, nn


class GlowFrontend(nn.Module):
    """Brightness [B, H, W] -> [B, 1, H, W], scaled."""

    out_channels = 1
    image_aligned = True

    def __init__(self, gain: float = 1.0, curve: Literal["linear", "log"] = "linear") -> None:
        super().__init__()
        self.gain, self.curve = gain, curve

    def example_input(self, batch: int = 2) -> Tensor:
        return torch.rand(batch, 16, 16)

    def forward(self, x: Tensor) -> Tensor:
        y = x.float() * self.gain
        return (torch.log1p(y) if self.curve == "log" else y).unsqueeze(1)
'''

BACKBONE = '''
"""A one-layer image backbone with ranged options."""

from dataclasses import dataclass

from torch import Tensor, nn

from xmodal.core.checks import at_least, require


@dataclass
class TinyOptions:
    width: int = 8

    def __post_init__(self) -> None:
        require(self, {"width": at_least(1)})


class TinyConv(nn.Module):
    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.out_dim = width
        self.stage_channels = [width]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return [nn.functional.relu(self.conv(x))]


def build_tinyconv(in_channels: int, width: int = 8) -> TinyConv:
    """A 3x3 convolution and a ReLU."""
    return TinyConv(in_channels, width)


build_tinyconv.options = TinyOptions
'''

PROBE = '''
"""Nearest neighbour in the train split, with a ranged option."""

from dataclasses import dataclass

import torch

from xmodal.core.checks import at_least, require


@dataclass
class NearestOptions:
    k: int = 1

    def __post_init__(self) -> None:
        require(self, {"k": at_least(1)})


class NearestProbe:
    """Majority label of the k nearest train features."""

    options = NearestOptions
    metrics = ("accuracy",)

    def __init__(self, config: NearestOptions | None = None) -> None:
        self.config = config or NearestOptions()

    def evaluate(self, train, val, test, num_classes):
        nearest = torch.cdist(test[0], train[0]).topk(self.config.k, largest=False).indices
        votes = train[1][nearest].mode(dim=1).values
        return {"accuracy": float((votes == test[1]).float().mean())}
'''

ENTRY_POINTS = {
    "xmodal.frontends": {"glow": f"{PACKAGE}.frontend:GlowFrontend"},
    "xmodal.backbones": {"tinyconv": f"{PACKAGE}.backbone:build_tinyconv"},
    "xmodal.probes": {"nearest": f"{PACKAGE}.probe:NearestProbe"},
}


def install(site: Path, version: str = "0.1") -> Path:
    """Write the package and its metadata (``version``) into ``site``; returns ``site``."""
    package = site / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""xmodal-ident-demo."""\n')
    for name, source in (("frontend", FRONTEND), ("backbone", BACKBONE), ("probe", PROBE)):
        (package / f"{name}.py").write_text(source)
    set_version(site, version)
    return site


def set_version(site: Path, version: str) -> None:
    """(Re)write the package's ``.dist-info`` as version ``version`` (an upgrade, say)."""
    for old in site.glob(f"{PACKAGE}-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    info = site / f"{PACKAGE}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items())
            for group, entries in ENTRY_POINTS.items()
        )
    )


def edit(site: Path, module: str, line: str = "# edited\n") -> None:
    """Append ``line`` to the package's ``module`` (``backbone``, ``probe``): its source changes."""
    path = site / PACKAGE / f"{module}.py"
    path.write_text(path.read_text() + line)
