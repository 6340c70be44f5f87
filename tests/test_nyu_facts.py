"""The shipped NYU-Depth V2 facts: counts, maps, scene classes, camera.

Also their agreement with the public metadata files when ``../shared/nyu-meta`` sits beside the
repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xmodal.core.errors import DataError
from xmodal.data.nyu import facts as facts_module
from xmodal.data.nyu.facts import labels13, labels40, load_nyu_facts, scene10

META = Path(__file__).resolve().parents[2] / "shared" / "nyu-meta"
KEPT = (
    "bedroom",
    "kitchen",
    "living_room",
    "bathroom",
    "dining_room",
    "office",
    "home_office",
    "classroom",
    "bookstore",
)


@pytest.fixture(scope="module")
def facts():
    return load_nyu_facts()


def test_official_split_counts_partition_all_frames(facts):
    train, test = facts.train_indices, facts.test_indices
    assert len(train) == 795 and len(test) == 654
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1449))


def test_every_nyu_class_maps_into_40_and_unlabeled_stays_0(facts):
    lut = facts.map894to40
    assert lut.shape == (895,) and lut[0] == 0
    assert lut[1:].min() >= 1 and lut[1:].max() <= 40
    assert set(lut[1:].tolist()) == set(range(1, 41))  # every 40-class is used
    assert len(facts.names40) == 40 and facts.names40[:3] == ("wall", "floor", "cabinet")


def test_every_40_class_maps_into_13_and_unlabeled_stays_0(facts):
    lut = facts.map40to13
    assert lut.shape == (41,) and lut[0] == 0
    assert lut[1:].min() >= 1 and lut[1:].max() <= 13
    assert len(facts.names13) == 13


def test_scene_types_and_ten_scene_classes(facts):
    assert len(facts.scene_types) == 27 == len(set(facts.scene_types))
    assert "excercise_room" in facts.scene_types  # spelt as in the data, so lookups match
    assert facts.scene10_names == (*KEPT, "others")
    assert set(facts.scene_to_10) == set(facts.scene_types)
    others = [t for t, k in facts.scene_to_10.items() if facts.scene10_names[k] == "others"]
    assert len(others) == 18
    for k, name in enumerate(KEPT):
        assert scene10(name) == k
    assert scene10("excercise_room") == scene10("cafe") == 9


def test_unknown_scene_type_names_it():
    with pytest.raises(DataError, match="'exercise_room'"):
        scene10("exercise_room")


def test_planted_labels_map_894_to_40_to_13_like_a_hand_lookup(facts):
    # Hand lookups in classMapping40.mat / class13Mapping.mat: 894-class 1 'book' -> 40-class
    # 40 'otherprop' -> 13-class 7 'objects'; 3 'cabinet' -> 3 'cabinet' -> 6 'furniture';
    # 4 'ceiling' -> 22 'ceiling' -> 3 'ceiling'; 5 'chair' -> 5 'chair' -> 4 'chair'.
    label894 = np.array([[0, 1, 3], [4, 5, 0]], dtype=np.uint16)
    expected40 = np.array([[0, 40, 3], [22, 5, 0]])
    expected13 = np.array([[0, 7, 6], [3, 4, 0]])
    got40 = labels40(label894)
    assert got40.shape == label894.shape and got40.dtype == np.uint8
    assert np.array_equal(got40, expected40)
    assert np.array_equal(labels13(got40), expected13)
    assert facts.names40[40 - 1] == "otherprop" and facts.names13[7 - 1] == "objects"
    assert facts.names40[3 - 1] == "cabinet" and facts.names13[6 - 1] == "furniture"
    assert facts.names40[22 - 1] == "ceiling" and facts.names13[3 - 1] == "ceiling"
    assert facts.names40[5 - 1] == "chair" and facts.names13[4 - 1] == "chair"


def test_out_of_range_labels_raise_data_error():
    with pytest.raises(DataError, match="0..894"):
        labels40(np.array([895]))
    with pytest.raises(DataError, match="0..40"):
        labels13(np.array([-1, 3]))


def test_camera_facts(facts):
    fx, fy, cx, cy = facts.intrinsics
    assert (fx, fy) == pytest.approx((518.8579, 519.4696))
    assert (cx, cy) == pytest.approx((325.5824 - 1, 253.7362 - 1))  # 1-based -> 0-based grid
    assert facts.valid_crop == (44, 470, 40, 600)
    assert facts.image_size == (480, 640)


def test_facts_are_read_only(facts):
    with pytest.raises(ValueError):
        facts.map894to40[1] = 0
    assert load_nyu_facts() is facts  # cached: one read per process


def test_facts_come_from_the_shipped_folder_not_the_metadata():
    path = facts_module.resource_path("datasets", "nyu-depth-v2/splits.json")
    assert path.parent.name == "nyu-depth-v2" and "nyu-meta" not in str(path)


@pytest.mark.skipif(not META.is_dir(), reason=f"public metadata not found at {META}")
def test_json_agrees_with_the_metadata_mat_files(facts):
    import scipy.io

    splits = scipy.io.loadmat(META / "splits.mat")
    assert np.array_equal(facts.train_indices, splits["trainNdxs"].ravel().astype(np.int64) - 1)
    assert np.array_equal(facts.test_indices, splits["testNdxs"].ravel().astype(np.int64) - 1)
    c40 = scipy.io.loadmat(META / "classMapping40.mat")
    assert np.array_equal(facts.map894to40[1:], c40["mapClass"].ravel().astype(np.int64))
    assert facts.names40 == tuple(str(c[0]) for c in c40["className"].ravel())
    c13 = scipy.io.loadmat(META / "class13Mapping.mat")["classMapping13"][0, 0]
    assert np.array_equal(facts.map40to13[1:], np.asarray(c13["labels13"]).ravel())
    assert facts.names13 == tuple(str(c[0]) for c in np.asarray(c13["classNames"]).ravel())
