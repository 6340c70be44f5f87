"""The zero-shot probe: class prompts through a CLIP teacher's text tower and the heads.

They are the objective's heads, checked against a hand computation on a tiny random open_clip
model built offline; also its refusal at load, skipping for methods without heads, and one
tiny scenes run writing zero-shot rows.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from xmodal.core.errors import ConfigError
from xmodal.evaluation.zero_shot_probe import (
    ZeroShotProbe,
    ZeroShotProbeOptions,
    class_text_embeddings,
    prompts,
    zero_shot_similarities,
)
from xmodal.objectives.baselines.fitnet import FitNetObjective
from xmodal.objectives.shared_heads import SharedHeads, heads_state
from xmodal.objectives.wcord import WCoRDLoss
from xmodal.pipelines.runner import resolve_config
from xmodal.pipelines.stages.text_teacher import student_heads
from xmodal.pipelines.state import ModelRecord

pytestmark = pytest.mark.usefixtures("single_thread")

# open_clip's tokenizer gives ids up to 49407: the tiny model needs the full vocabulary
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
NAMES = ["kitchen", "living room", "bathroom"]
TEMPLATES = ["a photo of a {name}.", "a blurry photo of the {name}."]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random open_clip model saved as open_clip saves one (config + safetensors)."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", **TINY_CLIP).eval()
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
        )
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    return folder


def _trained_like_wcord(teacher_dim: int, student_dim: int) -> WCoRDLoss:
    """WCoRD heads (spectral, onto the ball) moved away from their init by a few steps."""
    loss = WCoRDLoss(student_dim, teacher_dim, 64, embed_dim=8, num_negatives=16, seed=3)
    opt = torch.optim.SGD([p for n, p in loss.named_parameters() if "head" in n], lr=0.5)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        idx = torch.randperm(64, generator=g)[:8]
        out = loss(
            torch.randn(8, student_dim, generator=g),
            torch.randn(8, teacher_dim, generator=g),
            indices=idx,
        )
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss.update_memory(idx, out["teacher_embed"], out["student_embed"])
    return loss


def test_prompts_and_class_vectors_average_normalised_prompts():
    assert prompts(["cat", "dog"], ["a {name}.", "the {name}"]) == [
        "a cat.",
        "the cat",
        "a dog.",
        "the dog",
    ]
    table = {
        "a cat.": [3.0, 0.0],
        "the cat": [0.0, 1.0],
        "a dog.": [-2.0, 0.0],
        "the dog": [-1.0, 0.0],
    }
    classes = class_text_embeddings(
        lambda texts: torch.tensor([table[t] for t in texts]),
        ["cat", "dog"],
        ["a {name}.", "the {name}"],
    )
    assert classes.shape == (2, 2)
    torch.testing.assert_close(classes, torch.tensor([[2**-0.5, 2**-0.5], [-1.0, 0.0]]))


def test_similarities_shapes_and_checks():
    heads = SharedHeads(
        torch.randn(4, 6),
        torch.randn(4),
        torch.randn(4, 5),
        torch.randn(4),
        torch.zeros(6),
        torch.ones(6),
        2.0,
    )
    sims = zero_shot_similarities(torch.randn(7, 5), torch.randn(3, 6), heads)
    assert sims.shape == (7, 3) and sims.abs().max() <= 1 + 1e-9
    assert zero_shot_similarities(torch.randn(7, 6), torch.randn(3, 6), None).shape == (7, 3)
    with pytest.raises(ValueError, match="heads take 5-dim student and 6-dim teacher"):
        zero_shot_similarities(torch.randn(7, 6), torch.randn(3, 6), heads)
    with pytest.raises(ValueError, match="each with one {name}"):
        ZeroShotProbeOptions(templates=["a photo"])
    with pytest.raises(ValueError, match="names 2 classes, the labels have 3"):
        ZeroShotProbe(ZeroShotProbeOptions(class_names=["a", "b"])).class_names(NAMES, 3)
    assert ZeroShotProbe().class_names(["living_room"], 1) == ["living room"]


def test_zero_shot_matches_hand_computation_on_tiny_open_clip(clip_folder, tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from xmodal.core.cache import load_checkpoint
    from xmodal.encoders.open_clip_backbone import build_open_clip_text

    model_name = f"local-dir:{clip_folder}"
    g = torch.Generator().manual_seed(0)
    teacher_train = torch.randn(50, 16, generator=g) * 3 + 1  # raw teacher image embeddings
    objective = _trained_like_wcord(16, 12)
    mean, std = teacher_train.mean(0), teacher_train.std(0).clamp_min(1e-6)
    norm = float(teacher_train.norm(dim=1).mean())
    torch.save(heads_state(objective, "wcord", mean, std, norm), tmp_path / "heads.pt")
    heads = SharedHeads.from_state(load_checkpoint(tmp_path / "heads.pt"))  # weights_only
    students = torch.randn(20, 12, generator=g)
    labels = torch.arange(20) % 3

    # the probe: xmodal's text tower, class vectors, heads
    tower = build_open_clip_text(model=model_name)
    classes = class_text_embeddings(tower.encode, NAMES, TEMPLATES)
    sims = zero_shot_similarities(students, classes, heads)
    result = ZeroShotProbe(ZeroShotProbeOptions(templates=TEMPLATES)).evaluate_zero_shot(
        students, labels, classes, heads, NAMES
    )

    # by hand: open_clip's tokenizer + encode_text, CLIP's averaging, the objective's own heads
    reference = open_clip.create_model(model_name).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    with torch.no_grad():
        per_class = []
        for name in NAMES:
            text = reference.encode_text(tokenizer([t.format(name=name) for t in TEMPLATES]))
            per_class.append(torch.nn.functional.normalize(text, dim=1).mean(0))
        c = torch.nn.functional.normalize(torch.stack(per_class), dim=1)
        objective.eval()
        u = objective.teacher_head((c * norm - mean) / std)  # [C, d], onto the ball
        v = objective.student_head(students)  # [N, d]
        expected = (
            torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(u, dim=1).T
        )
    assert sims.shape == (20, 3)
    torch.testing.assert_close(sims.float(), expected, rtol=0, atol=1e-5)
    assert torch.equal(sims.argmax(1), expected.argmax(1))
    assert result.accuracy == pytest.approx(float((expected.argmax(1) == labels).double().mean()))
    assert result.through_heads and result.templates == 2

    # the teacher itself (no heads): CLIP's own zero-shot, cosine to the class vectors
    images = torch.randn(5, 16, generator=g)
    own = zero_shot_similarities(images, classes, None)
    torch.testing.assert_close(
        own.float(), torch.nn.functional.normalize(images, dim=1) @ c.T, rtol=0, atol=1e-5
    )


def test_heads_are_kept_only_for_objectives_with_heads(tmp_path):
    fitnet = FitNetObjective(12, 16)
    assert heads_state(fitnet, "fitnet", torch.zeros(16), torch.ones(16), 1.0) is None
    state = heads_state(_trained_like_wcord(16, 12), "wcord", torch.zeros(16), torch.ones(16), 1.0)
    assert state["teacher_weight"].shape == (8, 16) and state["student_weight"].shape == (8, 12)
    folder = tmp_path / "unit"
    folder.mkdir()
    record = ModelRecord(
        seed=0,
        modality="depth",
        method="none",
        role="student",
        directory=str(folder),
        encoder="resnet8",
        checkpoint=str(folder / "encoder.pt"),
        digest="0" * 16,
        key="0" * 16,
        hparams={},
    )
    assert "method 'none' has no teacher/student projection" in student_heads(record)
    assert "method 'fitnet' has no" in student_heads(replace(record, method="fitnet"))
    assert "trained before xmodal saved the heads" in student_heads(replace(record, method="crd"))
    torch.save(state, folder / "heads.pt")
    heads, digest = student_heads(replace(record, method="wcord"))
    assert heads.student_dim == 12 and len(digest) == 16


def test_a_config_asking_for_zero_shot_without_a_clip_teacher_is_refused_at_load(clip_folder):
    def refused(*overrides):
        with pytest.raises(ConfigError) as info:
            resolve_config("scenes", overrides=["probe.probes=[linear,zero-shot]", *overrides])
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "backbone 'resnet8' has no text tower" in refused()
    clip = [
        "teacher.encoder.name=open_clip",
        f"teacher.encoder.open_clip.model=local-dir:{clip_folder}",
    ]
    assert "teacher.optim.epochs=15 fine-tunes the teacher" in refused(*clip)
    assert "reads 'depth'" in refused(*clip, "teacher.optim.epochs=0", "teacher.modality=depth")
    resolve_config(
        "scenes", overrides=["probe.probes=[zero-shot]", *clip, "teacher.optim.epochs=0"]
    )


def test_tiny_scenes_run_writes_zero_shot_rows_for_heads_methods_and_the_teacher(
    clip_folder, tmp_path
):
    pytest.importorskip("open_clip")
    from xmodal.cli.main import main

    out = tmp_path / "run"
    sets = [
        "data.scenes.image_size=16",
        "data.scenes.num_train=48",
        "data.scenes.num_val=16",
        "data.scenes.num_test=24",
        "teacher.task=probe-labels",
        "teacher.optim.epochs=0",
        "teacher.encoder.name=open_clip",
        f"teacher.encoder.open_clip.model=local-dir:{clip_folder}",
        "distill.students=[depth]",
        "distill.methods=[none,wcord]",
        "distill.optim.epochs=1",
        "distill.optim.batch_size=16",
        "distill.wcord.num_negatives=16",
        "probe.probes=[zero-shot]",
        "probe.zero_shot.templates=['a photo of a {name}.']",
    ]
    argv = ["run", "scenes", "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["probe"], r["metric"]) for r in rows} == {
        (m, "zero-shot", k)
        for m in ("teacher", "wcord")
        for k in ("accuracy", "mean_class_accuracy")
    }
    unit = out / "distill" / "seed0" / "depth" / "wcord"
    assert "heads.pt" in json.loads((unit / "done.json").read_text())["record"]["files"]
    assert not (out / "distill" / "seed0" / "depth" / "none" / "heads.pt").exists()


def test_hf_clip_folder_gives_its_text_tower_and_a_vision_only_one_is_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from xmodal.pipelines.stages.text_teacher import text_tower_problem

    words = ["<pad>", "<eos>", "<unk>", "a", "photo", "of", "the", "kitchen", "living", "room", "."]
    vocab = {w: i for i, w in enumerate(words)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", 1)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=7,
    )
    text = dict(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=16,
        max_position_embeddings=12,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(
        transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
    ).eval()
    folder = tmp_path / "clip"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.CLIPImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
    ).save_pretrained(folder)

    assert text_tower_problem("hf", {"model": str(folder)}, "rgb") is None
    from xmodal.core.registry import BACKBONES

    texts = prompts(NAMES[:2], ["a photo of the {name} ."])
    got = BACKBONES.get("hf").text_tower(model=str(folder)).encode(texts)
    with torch.no_grad():
        expected = model.get_text_features(**tokenizer(texts, padding=True, return_tensors="pt"))
    expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
    assert got.shape == (2, 12)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    vision_only = tmp_path / "vision"
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision)).save_pretrained(
        vision_only
    )
    assert "vision-only" in text_tower_problem("hf", {"model": str(vision_only)}, "rgb")
    assert "random" in text_tower_problem("hf", {"model": "clip_vision_model"}, "rgb")
