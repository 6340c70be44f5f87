"""The vocabulary of the procedural scenes dataset: object categories, scene classes, colours.

Everything here is plain data plus the two random choices that only depend on it (which
objects a scene of a given class contains, and what colour an object gets). Geometry, rendering
and audio read these tables; changing them changes the dataset, so bump the file ``version`` in
:mod:`xmodal.data.scenes.generate` when you do.

Semantic ids in the rendered label maps: ``0`` floor, ``1`` wall, ``2 + c`` object category ``c``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

#: Object categories, indexed by category id ``c``. Each maps to one open3d primitive.
CATEGORIES: tuple[str, ...] = ("box", "sphere", "cylinder", "cone", "torus", "pyramid")
NUM_CATEGORIES: int = len(CATEGORIES)

#: Semantic ids of the two background surfaces; objects use ``OBJECT_ID_OFFSET + c``.
FLOOR_ID: int = 0
WALL_ID: int = 1
OBJECT_ID_OFFSET: int = 2
NUM_SEMANTIC_IDS: int = OBJECT_ID_OFFSET + NUM_CATEGORIES

#: Base hue per category in [0, 1) (HSV). Evenly spread so colour alone is a strong but noisy
#: cue: per-object jitter (``HUE_JITTER``) keeps neighbouring hues from overlapping.
CATEGORY_HUES: tuple[float, ...] = tuple(c / NUM_CATEGORIES for c in range(NUM_CATEGORIES))
HUE_JITTER: float = 0.03
SATURATION_RANGE: tuple[float, float] = (0.55, 0.9)
VALUE_RANGE: tuple[float, float] = (0.6, 0.95)

#: Floor and wall are greyish: a grey level plus a small per-channel tint.
BACKGROUND_GREY_RANGE: tuple[float, float] = (0.35, 0.75)
BACKGROUND_TINT: float = 0.05


@dataclass(frozen=True)
class SceneClass:
    """A scene class: a name and the multiset of object categories every instance contains."""

    name: str
    recipe: tuple[int, ...]


# Recipes are multisets of three categories chosen so that
#   * every category appears in exactly four classes: no single category identifies a class;
#   * every class has exactly three recipe objects: the object count says nothing about the class;
#   * two recipes share at most one object, so recipe + one distractor can never equal another
#     recipe + one distractor: the class stays recoverable from the full set of objects.
# The names are flavour only.
SCENE_CLASSES: tuple[SceneClass, ...] = (
    SceneClass("storage", (0, 0, 1)),  # box, box, sphere
    SceneClass("playroom", (1, 1, 2)),  # sphere, sphere, cylinder
    SceneClass("workshop", (0, 2, 3)),  # box, cylinder, cone
    SceneClass("gym", (0, 4, 4)),  # box, torus, torus
    SceneClass("garden", (1, 3, 5)),  # sphere, cone, pyramid
    SceneClass("kitchen", (2, 2, 5)),  # cylinder, cylinder, pyramid
    SceneClass("gallery", (3, 3, 4)),  # cone, cone, torus
    SceneClass("temple", (4, 5, 5)),  # torus, pyramid, pyramid
)
CLASSES: tuple[str, ...] = tuple(k.name for k in SCENE_CLASSES)
NUM_CLASSES: int = len(SCENE_CLASSES)

#: Probability that a scene gets one extra object of a uniformly random category (a distractor).
#: At most one, so a scene holds 3 or 4 objects whatever its class.
DISTRACTOR_PROBABILITY: float = 0.5


def semantic_id(category: int) -> int:
    """Semantic label-map id of object category ``category``."""
    return OBJECT_ID_OFFSET + int(category)


def sample_object_categories(class_index: int, rng: np.random.Generator) -> list[int]:
    """Categories of the objects in one scene of class ``class_index``, in random order.

    The class recipe plus, with probability :data:`DISTRACTOR_PROBABILITY`, one distractor
    drawn uniformly from all categories. Returns a list of 3 or 4 category ids.
    """
    if not 0 <= class_index < NUM_CLASSES:
        raise ValueError(f"class_index must be in [0, {NUM_CLASSES}), got {class_index}")
    categories = list(SCENE_CLASSES[class_index].recipe)
    if rng.random() < DISTRACTOR_PROBABILITY:
        categories.append(int(rng.integers(NUM_CATEGORIES)))
    # Shuffle so the left-to-right placement order carries no class information.
    order = rng.permutation(len(categories))
    return [categories[i] for i in order]


def sample_object_albedo(category: int, rng: np.random.Generator) -> np.ndarray:
    """Diffuse albedo of one object of ``category``: float64 ``[3]`` RGB in [0, 1].

    The category's base hue, jittered by up to ``HUE_JITTER``, with random saturation and value.
    """
    hue = (CATEGORY_HUES[category] + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    saturation = rng.uniform(*SATURATION_RANGE)
    value = rng.uniform(*VALUE_RANGE)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value))


def sample_background_albedo(rng: np.random.Generator) -> np.ndarray:
    """Greyish diffuse albedo for the floor or the wall: float64 ``[3]`` RGB in [0, 1]."""
    grey = rng.uniform(*BACKGROUND_GREY_RANGE)
    return np.clip(grey + rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3), 0.0, 1.0)
