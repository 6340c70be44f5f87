"""Training-time mirroring: what flips, what does not, and where it is refused."""

from __future__ import annotations

import pytest
import torch

from xmodal.core.errors import ConfigError
from xmodal.data.augment import random_crop, random_hflip
from xmodal.encoders import create_encoder
from xmodal.training.task import DistillationTask


def test_each_sample_is_either_mirrored_or_untouched():
    images = torch.arange(64 * 3 * 5 * 2, dtype=torch.float32).view(64, 3, 5, 2)
    out = random_hflip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(o, x.flip(1)) for o, x in zip(out, images, strict=True)]
    kept = [torch.equal(o, x) for o, x in zip(out, images, strict=True)]
    # exactly one of the two, per sample
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48  # p = 0.5 over 64 samples
    again = random_hflip(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator decides


def test_mirrored_normals_flip_their_x_component_only():
    normals = torch.nn.functional.normalize(torch.randn(32, 4, 6, 3), dim=-1)
    out = random_hflip(normals, torch.Generator().manual_seed(1), p=1.0, negate_channel=0)
    expected = normals.flip(2)
    expected[..., 0] *= -1
    assert torch.equal(out, expected)
    depth = torch.rand(4, 3, 5)
    assert torch.equal(random_hflip(depth, torch.Generator(), p=0.0), depth)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        random_hflip(torch.rand(4, 5), torch.Generator())


class _Features(torch.nn.Module):
    def forward(self, student, teacher, labels, indices):
        return {"loss": student.sum(), "features": student}


def test_task_mirrors_only_while_training_and_refuses_audio():
    torch.manual_seed(0)
    encoder = create_encoder("resnet8", "depth")
    task = DistillationTask(encoder, _Features(), hflip=True)
    depth = torch.rand(8, 16, 16) * 3 + 0.5
    batch = {"depth": depth, "label": torch.zeros(8, dtype=torch.long), "index": torch.arange(8)}
    task.eval()
    with torch.no_grad():
        plain = encoder(depth)
        assert torch.equal(task(batch)["features"], plain)
    task.train()
    encoder.eval()  # BatchNorm in eval so that only the inputs differ
    with torch.no_grad():
        trained = task(batch)["features"]
    assert not torch.allclose(trained, plain)
    with pytest.raises(ConfigError, match="optim.hflip"):
        DistillationTask(create_encoder("resnet8", "audio"), _Features(), hflip=True)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 8, 8, 3), dtype=torch.uint8)
    out = random_crop(images, g, padding=2)
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2))
    shifts = set()
    for i in range(64):  # exactly one of the 25 windows matches each output
        hits = [
            (y, x)
            for y in range(5)
            for x in range(5)
            if torch.equal(padded[i, y : y + 8, x : x + 8], out[i])
        ]
        assert len(hits) == 1
        shifts.add(hits[0])
    assert len(shifts) > 10  # offsets vary per sample
    assert torch.equal(random_crop(images, g, padding=0), images)


def test_task_refuses_crops_for_audio():
    with pytest.raises(ConfigError, match="crop_padding"):
        DistillationTask(create_encoder("resnet8", "audio"), torch.nn.Identity(), crop_padding=4)
