"""The README's Python example, run as written, on a tiny paired manifest.

The test works in a temporary folder holding what the example expects: ``manifest.csv`` (RGB
and 16-bit depth PNGs, a label per row) and ``weights/resnet50.a1_in1k``, a timm folder of the
named architecture with random weights. It executes the ``## From Python`` code block of
README.md verbatim; only ``run_pipeline`` is wrapped, to append overrides that make the run
tiny (image size, epochs, batch), after the README's own. Then the code block of
docs/run-directory.md, which loads the student that the example exported, runs on its result.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("kitchen", "office", "bedroom")
TINY = [
    "data.paired.image_size=[16,16]",
    "teacher.encoder.timm.resize=false",
    "distill.optim.epochs=1",
    "distill.optim.batch_size=8",
    "distill.wcord.num_negatives=8",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
    "runtime.threads=1",
]


def _python_block(page: Path, heading: str | None = None) -> str:
    """The first ``python`` code block of ``page`` (under ``## heading`` when given)."""
    text = page.read_text()
    if heading is not None:
        text = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, f"{page.name}: no python code block"
    return block.group(1)


def _manifest(folder: Path, n: int = 24) -> Path:
    """A manifest of ``n`` rows in ``folder``; returns its path.

    Each row: a 16x16 RGB PNG (a class colour plus noise), a 16-bit depth PNG in millimetres (a
    depth per class) and the class name.
    """
    rng = np.random.default_rng(0)
    lines = ["rgb,depth,label"]
    for i in range(n):
        cls = i % len(CLASSES)
        image = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        image[..., cls] += 180
        Image.fromarray(image).save(folder / f"{i}.png")
        depth = np.full((16, 16), 1000 + 500 * cls, np.uint16)
        Image.fromarray(depth).save(folder / f"{i}-depth.png")  # mode I;16
        lines.append(f"{i}.png,{i}-depth.png,{CLASSES[cls]}")
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_readme_python_example_runs_and_its_student_loads(tmp_path, monkeypatch, capsys):
    timm = pytest.importorskip("timm")
    import xmodal.pipelines

    monkeypatch.chdir(tmp_path)
    _manifest(tmp_path)
    model = timm.create_model("resnet50.a1_in1k")  # random weights, the named architecture
    timm.models.save_for_hf(model, "weights/resnet50.a1_in1k", safe_serialization=True)

    calls = []
    real = xmodal.pipelines.run_pipeline

    def tiny_run(*args, overrides=(), **kwargs):
        calls.append(list(overrides))
        return real(*args, overrides=[*overrides, *TINY], **kwargs)

    monkeypatch.setattr(xmodal.pipelines, "run_pipeline", tiny_run)
    namespace: dict = {}
    exec(_python_block(ROOT / "README.md", "From Python"), namespace)

    assert len(calls) == 1 and "distill.students=[depth]" in calls[0]
    result = namespace["result"]
    models = {(r["modality"], r["method"], r["probe"]) for r in result.summary}
    for method in ("none", "fitnet", "wcord"):
        assert {("depth", method, "linear"), ("depth", method, "knn")} <= models
    assert ("rgb", "teacher", "linear") in models
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("depth ")]
    assert len(printed) == sum(r["modality"] == "depth" for r in result.summary)

    config = yaml.safe_load((tmp_path / "runs" / "depth" / "config.yaml").read_text())
    assert config["teacher"]["encoder"]["name"] == "timm"
    assert config["teacher"]["encoder"]["timm"]["model"] == "resnet50.a1_in1k"
    assert config["teacher"]["optim"]["epochs"] == 0

    student = namespace["student"]
    assert not student.training
    doc: dict = {}
    exec(_python_block(ROOT / "docs" / "run-directory.md", "Exported encoders"), doc)
    assert doc["embeddings"].shape == (8, 64)
    assert torch.isfinite(doc["embeddings"]).all()
