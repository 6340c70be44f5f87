"""Tests of the procedural ``scenes`` dataset: file contract, determinism, geometry, audio."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from xmodal.core.errors import DataError
from xmodal.data.scenes import (
    CATEGORIES,
    CLASSES,
    FLOOR_ID,
    SCENE_CLASSES,
    SPLITS,
    WALL_ID,
    CameraPose,
    ObjectSpec,
    ScenesOptions,
    SceneSpec,
    camera_intrinsics,
    fundamental_frequency,
    generate_scenes,
    read_scenes_info,
    render_scene,
    synthesize_audio,
)
from xmodal.data.scenes.geometry import sample_scene
from xmodal.data.scenes.recipes import semantic_id
from xmodal.data.scenes.render import sample_camera, sample_lighting

KEYS = ("rgb", "depth", "semantic", "audio", "label", "num_objects")
SMALL = dict(
    image_size=24, num_train=6, num_val=3, num_test=3, sample_rate=4000, audio_seconds=0.25
)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {f"{s}/{k}": f[s][k][()] for s in SPLITS for k in KEYS}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return generate_scenes(tmp_path_factory.mktemp("scenes") / "scenes.h5", ScenesOptions(**SMALL))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", 0),
        ("num_val", -1),
        ("noise", -0.1),
        ("sample_rate", 1000),
        ("audio_seconds", 0.0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ScenesOptions(**{field: value})


# ---------------------------------------------------------------- file contract


def test_layout_dtypes_and_ranges(small_file):
    cfg = ScenesOptions(**SMALL)
    s, t = cfg.image_size, cfg.num_audio_samples
    with h5py.File(small_file, "r") as f:
        assert f.attrs["format"] == "xmodal-scenes" and int(f.attrs["version"]) == 1
        assert json.loads(f.attrs["config"])["image_size"] == s
        assert json.loads(f.attrs["categories"]) == list(CATEGORIES)
        assert json.loads(f.attrs["classes"]) == list(CLASSES)
        assert int(f.attrs["sample_rate"]) == cfg.sample_rate
        intr = json.loads(f.attrs["intrinsics"])
        assert tuple(intr[k] for k in ("fx", "fy", "cx", "cy")) == pytest.approx(
            camera_intrinsics(s)
        )
        for split in SPLITS:
            g, n = f[split], cfg.split_size(split)
            assert g["rgb"].shape == (n, s, s, 3) and g["rgb"].dtype == np.uint8
            assert g["depth"].shape == (n, s, s) and g["depth"].dtype == np.float32
            assert g["semantic"].shape == (n, s, s) and g["semantic"].dtype == np.uint8
            assert g["audio"].shape == (n, t) and g["audio"].dtype == np.float32
            assert g["label"].shape == (n,) and g["label"].dtype == np.int64
            assert g["num_objects"].dtype == np.int64
            depth, sem, audio = g["depth"][()], g["semantic"][()], g["audio"][()]
            assert np.isfinite(depth).all() and depth.min() > 0.3 and depth.max() < 10.0
            assert sem.max() <= 1 + len(CATEGORIES)
            assert np.abs(audio).max() <= 1.0
            assert np.abs(audio).max(axis=1) == pytest.approx(1.0)  # peak-normalised
            labels = g["label"][()]
            assert labels.min() >= 0 and labels.max() < len(CLASSES)
            assert set(g["num_objects"][()]) <= {3, 4}
            # Every sample shows floor, wall and at least one object.
            for i in range(n):
                ids = set(np.unique(sem[i]))
                assert {FLOOR_ID, WALL_ID} <= ids and max(ids) >= 2


def test_generation_is_deterministic_and_per_sample(small_file, tmp_path):
    first = _arrays(small_file)
    again = _arrays(generate_scenes(tmp_path / "again.h5", ScenesOptions(**SMALL)))
    for key in first:
        assert first[key].tobytes() == again[key].tobytes(), key

    other_seed = _arrays(generate_scenes(tmp_path / "seed.h5", ScenesOptions(**SMALL, seed=1)))
    assert not np.array_equal(first["train/rgb"], other_seed["train/rgb"])
    assert not np.array_equal(first["test/audio"], other_seed["test/audio"])

    # A sample depends on (seed, split, index) only, not on how many samples the splits hold.
    bigger = _arrays(
        generate_scenes(
            tmp_path / "big.h5", ScenesOptions(**{**SMALL, "num_train": 9, "num_val": 2})
        )
    )
    for key in KEYS:
        assert np.array_equal(bigger[f"train/{key}"][:6], first[f"train/{key}"]), key
        assert np.array_equal(bigger[f"val/{key}"], first[f"val/{key}"][:2]), key
        assert np.array_equal(bigger[f"test/{key}"], first[f"test/{key}"]), key


def test_progress_reports_up_to_total(tmp_path):
    calls = []
    cfg = ScenesOptions(**{**SMALL, "num_train": 20})
    generate_scenes(tmp_path / "p.h5", cfg, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (26, 26)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_interrupted_generation_leaves_no_file(tmp_path, small_file):
    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    target = tmp_path / "scenes.h5"
    with pytest.raises(RuntimeError, match="stop"):
        generate_scenes(target, ScenesOptions(**{**SMALL, "num_train": 40}), progress=boom)
    assert list(tmp_path.iterdir()) == []

    # An existing good file survives a failed regeneration untouched.
    shutil.copy(small_file, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        generate_scenes(target, ScenesOptions(**{**SMALL, "num_train": 40}), progress=boom)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scenes.h5"]


# ---------------------------------------------------------------- read_scenes_info


def test_read_scenes_info_accepts_a_good_file(small_file):
    info = read_scenes_info(small_file)
    assert info["splits"] == {"train": 6, "val": 3, "test": 3}
    assert info["image_size"] == 24 and info["audio_length"] == 1000
    assert info["classes"] == list(CLASSES) and info["sample_rate"] == 4000


def test_read_scenes_info_rejects_missing_and_non_hdf5(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_scenes_info(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DataError, match="junk.h5.*delete it and rerun preprocessing"):
        read_scenes_info(junk)


@pytest.mark.parametrize("key", ["val/audio", "test", "format"])
def test_read_scenes_info_names_the_missing_key(small_file, tmp_path, key):
    broken = tmp_path / "broken.h5"
    shutil.copy(small_file, broken)
    with h5py.File(broken, "a") as f:
        if key in f.attrs:
            del f.attrs[key]
        else:
            del f[key]
    with pytest.raises(DataError, match=rf"broken\.h5.*{key}.*delete it and rerun preprocessing"):
        read_scenes_info(broken)


def test_read_scenes_info_rejects_inconsistent_shapes(small_file, tmp_path):
    broken = tmp_path / "short.h5"
    shutil.copy(small_file, broken)
    with h5py.File(broken, "a") as f:
        del f["train/depth"]
        f["train"].create_dataset("depth", data=np.ones((5, 24, 24), np.float32))
    with pytest.raises(DataError, match="train/depth"):
        read_scenes_info(broken)


# ---------------------------------------------------------------- camera and geometry


def test_intrinsics_are_cropped_and_scaled_nyu():
    fx, fy, cx, cy = camera_intrinsics(480)
    assert (fx, fy, cx, cy) == pytest.approx((518.8579, 519.4696, 245.5824, 253.7362))
    assert camera_intrinsics(32) == pytest.approx(tuple(v * 32 / 480 for v in (fx, fy, cx, cy)))


@pytest.mark.parametrize("pitch", [0.0, 0.35])
def test_empty_scene_depth_matches_analytic_planes(pitch):
    size, wall, height = 40, 3.5, 1.2
    camera = CameraPose(x=0.0, y=0.0, height=height, yaw=0.0, pitch=pitch)
    view = render_scene(SceneSpec(objects=(), wall_distance=wall), camera, size)
    fx, fy, cx, cy = camera_intrinsics(size)
    # Camera-frame ray (a, b, 1) with pitch p has world forward component cos p - b sin p and
    # world downward component sin p + b cos p, so the planes y = wall and z = 0 sit at these
    # z-depths (derived by hand, independently of the renderer's rotation matrix).
    b = ((np.arange(size) - cy) / fy)[:, None] * np.ones((1, size))
    wall_depth = wall / (np.cos(pitch) - b * np.sin(pitch))
    down = np.sin(pitch) + b * np.cos(pitch)
    floor_depth = np.where(down > 0, height / np.where(down > 0, down, 1.0), np.inf)
    expected = np.minimum(wall_depth, floor_depth)
    assert np.allclose(view.depth, expected, rtol=1e-4)
    is_floor = floor_depth < wall_depth
    assert is_floor.any() and (~is_floor).any()
    assert np.array_equal(view.semantic, np.where(is_floor, FLOOR_ID, WALL_ID))
    if pitch == 0.0:
        # Looking straight at the wall, every wall pixel has z-depth = wall distance exactly.
        assert np.allclose(view.depth[view.semantic == WALL_ID], wall, atol=1e-4)


def test_box_front_face_depth_and_label():
    size = 64
    box = ObjectSpec(
        category=CATEGORIES.index("box"), size=0.5, x=0.0, y=2.0, yaw=0.0, albedo=(0.8, 0.1, 0.1)
    )
    camera = CameraPose(x=0.0, y=0.0, height=0.3, yaw=0.0, pitch=0.0)
    view = render_scene(SceneSpec(objects=(box,), wall_distance=3.5), camera, size)
    fx, fy, cx, cy = camera_intrinsics(size)
    front = 2.0 - 0.4 * 0.5  # unit box is 0.8 deep in y, so its front face is 0.2 m before y
    u = round(cx + fx * 0.0 / front)
    v = round(cy + fy * (0.3 - 0.15) / front)  # a point 0.15 m above the floor on the face
    assert view.semantic[v, u] == semantic_id(box.category)
    assert view.depth[v, u] == pytest.approx(front, abs=1e-4)
    box_pixels = view.semantic == semantic_id(box.category)
    assert view.depth[box_pixels].min() == pytest.approx(front, abs=1e-4)
    # Lit red albedo: red dominates on the box.
    assert (view.rgb[box_pixels, 0] > view.rgb[box_pixels, 1]).all()


@pytest.mark.parametrize("seed", range(5))
def test_object_pixels_are_in_front_of_the_background(seed):
    rng = np.random.default_rng(seed)
    spec = sample_scene(seed % len(CLASSES), rng)
    camera, light = sample_camera(rng), sample_lighting(rng)
    view = render_scene(spec, camera, 32, light)
    empty = render_scene(SceneSpec((), spec.wall_distance), camera, 32, light)
    objects = view.semantic >= 2
    assert objects.any()
    assert (view.depth[objects] < empty.depth[objects]).all()
    assert np.array_equal(view.depth[~objects], empty.depth[~objects])
    assert np.array_equal(view.semantic[~objects], empty.semantic[~objects])
    # Every object category present in the scene is the one labelled (and nothing else).
    present = {semantic_id(o.category) for o in spec.objects}
    assert set(np.unique(view.semantic[objects])) <= present


# ---------------------------------------------------------------- audio


def _peak_hz(clip: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(clip * np.hanning(len(clip))))
    return float(np.fft.rfftfreq(len(clip), 1 / sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize("category", range(len(CATEGORIES)))
def test_single_object_peak_is_its_fundamental(category):
    rate, n = 8000, 8000  # 1 s: 1 Hz bins
    rng = np.random.default_rng(category)
    clip = synthesize_audio([category], [0.4], rate, n, 0.0, rng)
    assert clip.dtype == np.float32 and np.abs(clip).max() == pytest.approx(1.0)
    assert _peak_hz(clip, rate) == pytest.approx(fundamental_frequency(category, 0.4), abs=2.0)


def test_bigger_object_sounds_lower():
    rate, n = 8000, 8000
    small = synthesize_audio([2], [0.3], rate, n, 0.05, np.random.default_rng(0))
    big = synthesize_audio([2], [0.55], rate, n, 0.05, np.random.default_rng(0))
    assert _peak_hz(big, rate) < _peak_hz(small, rate) - 20
    assert fundamental_frequency(2, 0.55) < fundamental_frequency(2, 0.3)


def test_categories_have_distinct_fundamentals():
    f0 = [fundamental_frequency(c, 0.4) for c in range(len(CATEGORIES))]
    assert len(set(f0)) == len(f0) and min(f0) >= 150 and max(f0) <= 1500


# ---------------------------------------------------------------- recipes


def test_recipes_keep_the_class_recoverable_but_not_from_one_category():
    recipes = [Counter(k.recipe) for k in SCENE_CLASSES]
    assert len({len(k.recipe) for k in SCENE_CLASSES}) == 1  # object count says nothing
    for c in range(len(CATEGORIES)):
        assert sum(c in r for r in recipes) >= 2, CATEGORIES[c]
    # Sharing at most one object means recipe + 1 distractor never equals another's.
    for i, a in enumerate(recipes):
        for b in recipes[i + 1 :]:
            assert sum((a & b).values()) <= 1
    assert [k.name for k in SCENE_CLASSES] == list(CLASSES)


def test_semantic_ids_become_probe_labels_with_no_hit_unlabeled():
    import torch

    from xmodal.data.scenes.recipes import NUM_SEMANTIC_IDS
    from xmodal.data.scenes.render import NO_HIT_ID
    from xmodal.data.scenes_source import dense_semantic

    ids = torch.tensor([[0, 1, NUM_SEMANTIC_IDS - 1, NO_HIT_ID]], dtype=torch.uint8)
    assert dense_semantic(ids).tolist() == [[1, 2, NUM_SEMANTIC_IDS, 0]]


def test_dominant_object_matches_a_pixel_count():
    from xmodal.data.scenes.render import NO_HIT_ID
    from xmodal.data.scenes_source import dominant_object

    rng = np.random.default_rng(3)
    ids = np.array(
        [FLOOR_ID, WALL_ID, NO_HIT_ID] + [semantic_id(c) for c in range(len(CATEGORIES))]
    )
    maps = rng.choice(ids, size=(40, 8, 8)).astype(np.uint8)
    maps[0] = FLOOR_ID  # no object at all: category 0
    maps[1, :] = semantic_id(4)
    maps[1, 0, :3] = semantic_id(2)  # a smaller second object
    got = dominant_object(__import__("torch").from_numpy(maps), np.arange(40)).numpy()
    for i, m in enumerate(maps):
        counts = [int((m == semantic_id(c)).sum()) for c in range(len(CATEGORIES))]
        assert got[i] == int(np.argmax(counts)), (i, counts)
    assert got[0] == 0 and got[1] == 4


def test_teacher_task_is_new_scenes_labelled_by_their_dominant_object(small_file, tmp_path):
    """teacher.task=transfer: another seed (no shared sample), object-category labels."""
    from xmodal.data.scenes_source import ScenesSource

    source = ScenesSource()
    options = ScenesOptions(**SMALL)
    task_options = source.teacher_task_options(options)
    assert task_options.seed != options.seed
    assert {k: v for k, v in vars(task_options).items() if k != "seed"} == {
        k: v for k, v in vars(options).items() if k != "seed"
    }
    path = generate_scenes(tmp_path / "task.h5", task_options)
    task = source.load_teacher_task(path)
    assert task.num_classes == len(CATEGORIES) and task.class_names == list(CATEGORIES)
    train = task.splits["train"]
    batch = train.__getitems__(list(range(len(train))))
    with h5py.File(path, "r") as f, h5py.File(small_file, "r") as g:
        semantic = f["train/semantic"][:]
        assert not np.array_equal(f["train/rgb"][:], g["train/rgb"][:])
    want = [
        int(np.argmax([(m == semantic_id(c)).sum() for c in range(len(CATEGORIES))]))
        for m in semantic
    ]
    assert batch["label"].tolist() == want and batch["rgb"].shape[0] == len(train)
