"""Scene layout and triangle geometry: floor, back wall and objects built from open3d primitives.

World frame (metres): ``x`` right, ``y`` forward (away from the camera), ``z`` up. The floor's top
surface is the plane ``z = 0``; the back wall's front face is the plane ``y = wall_distance``.
Objects stand on the floor between the camera and the wall.

Each category's primitive is built once at unit size (largest bounding-box side 1 m, centred in
``x, y``, bottom at ``z = 0``) and cached as numpy arrays; an object is a scaled, yawed, shifted
copy of those vertices. That keeps per-sample cost to a few small matrix products.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from xmodal.data.scenes.recipes import (
    CATEGORIES,
    FLOOR_ID,
    NUM_CATEGORIES,
    WALL_ID,
    sample_background_albedo,
    sample_object_albedo,
    sample_object_categories,
    semantic_id,
)

#: Object size range: largest bounding-box side, metres.
SIZE_RANGE: tuple[float, float] = (0.3, 0.55)
#: Distance of the wall's front face from the world origin (where the camera stands), metres.
WALL_DISTANCE_RANGE: tuple[float, float] = (3.2, 3.8)
#: Objects' forward distance ``y`` range, metres (between the camera and the wall).
OBJECT_DISTANCE_RANGE: tuple[float, float] = (1.6, 2.6)
#: Objects' bearings (angle of the centre from ``+y`` towards ``+x``) stay within this many
#: radians: inside the ~25 degree horizontal half field of view minus camera yaw jitter.
MAX_BEARING: float = float(np.radians(17.0))
#: Footprint radius per unit size, used to keep objects from intersecting (box diagonal / 2).
FOOTPRINT_RADIUS: float = 0.65
PLACEMENT_TRIES: int = 100
#: Half-range of the yaw per category (rad), centred on facing the camera: an upright torus seen
#: edge-on is a thin stick, so its yaw stays within 45 degrees; every other category is free.
YAW_HALF_RANGE: tuple[float, ...] = tuple(
    np.pi / 4 if name == "torus" else np.pi for name in CATEGORIES
)

#: Background extents, metres. Large enough that every camera ray ends on the floor or wall.
BACKGROUND_HALF_WIDTH: float = 12.0
WALL_HEIGHT: float = 6.0
BACKGROUND_THICKNESS: float = 0.1
FLOOR_BACK: float = -6.0


def triple(values: Iterable[float]) -> tuple[float, float, float]:
    """Three numbers (an RGB albedo, a direction) as the plain floats the specs hold."""
    x, y, z = (float(v) for v in values)
    return x, y, z


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene.

    Its category id, size (largest side, m), floor position ``x, y`` (m), yaw (rad) and
    diffuse albedo (RGB in [0, 1]).
    """

    category: int
    size: float
    x: float
    y: float
    yaw: float
    albedo: tuple[float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines one scene's geometry and materials (not camera or light)."""

    objects: tuple[ObjectSpec, ...]
    wall_distance: float
    floor_albedo: tuple[float, float, float] = (0.5, 0.5, 0.5)
    wall_albedo: tuple[float, float, float] = (0.6, 0.6, 0.6)


@dataclass
class SceneGeometry:
    """A scene ready for ray casting.

    ``scene`` holds one geometry per surface, in order floor, wall, objects; ``semantic`` (uint8
    ``[G]``) and ``albedo`` (float32 ``[G, 3]``) are indexed by open3d's geometry id.
    """

    scene: o3d.t.geometry.RaycastingScene
    semantic: np.ndarray
    albedo: np.ndarray


def _legacy_primitive(category: int) -> o3d.geometry.TriangleMesh:
    # Low resolutions on purpose: at 32x32 pixels finer tessellation is invisible and costs time.
    if not 0 <= category < NUM_CATEGORIES:
        raise ValueError(f"category must be in [0, {NUM_CATEGORIES}), got {category}")
    name = CATEGORIES[category]
    make = o3d.geometry.TriangleMesh
    if name == "box":  # not a cube, so its yaw is visible
        return make.create_box(width=1.0, height=0.8, depth=0.75)
    if name == "sphere":
        return make.create_sphere(radius=0.5, resolution=10)
    if name == "cylinder":
        return make.create_cylinder(radius=0.3, height=1.0, resolution=16, split=1)
    if name == "cone":
        return make.create_cone(radius=0.45, height=1.0, resolution=16, split=1)
    if name == "torus":  # upright like a ring facing the camera: lying flat it is nearly invisible
        mesh = make.create_torus(
            torus_radius=0.35, tube_radius=0.13, radial_resolution=16, tubular_resolution=8
        )
        mesh.rotate(mesh.get_rotation_matrix_from_xyz((np.pi / 2, 0.0, 0.0)), center=(0, 0, 0))
        return mesh
    if name == "pyramid":  # square pyramid = four-sided cone
        return make.create_cone(radius=0.6, height=0.9, resolution=4, split=1)
    raise ValueError(f"no primitive for category {name!r}")


@functools.cache
def unit_primitive(category: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-size mesh of ``category``: vertices float32 ``[V, 3]`` (m), triangles uint32 ``[F, 3]``.

    Largest bounding-box side is 1 m, centred in ``x, y``, bottom at ``z = 0``. Cached; treat the
    returned arrays as read-only.
    """
    mesh = o3d.t.geometry.TriangleMesh.from_legacy(_legacy_primitive(category))
    vertices = mesh.vertex.positions.numpy().astype(np.float64)
    triangles = mesh.triangle.indices.numpy().astype(np.uint32)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    vertices -= np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    vertices = (vertices / (high - low).max()).astype(np.float32)
    vertices.setflags(write=False)
    triangles.setflags(write=False)
    return vertices, triangles


def object_triangles(obj: ObjectSpec) -> tuple[np.ndarray, np.ndarray]:
    """World-frame mesh of one object.

    Returns vertices float32 ``[V, 3]`` (m) and triangles uint32 ``[F, 3]``.
    """
    vertices, triangles = unit_primitive(obj.category)
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    # Row-vector convention: v' = v @ (size * R_z(yaw))^T + t.
    transform = obj.size * np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    world = vertices @ transform.astype(np.float32) + np.array([obj.x, obj.y, 0.0], np.float32)
    return world.astype(np.float32), triangles


@functools.cache
def unit_box() -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box ``[0, 1]^3``: vertices float32 ``[8, 3]``, triangles uint32 ``[12, 3]``."""
    mesh = o3d.t.geometry.TriangleMesh.from_legacy(o3d.geometry.TriangleMesh.create_box())
    vertices = mesh.vertex.positions.numpy().astype(np.float32)
    triangles = mesh.triangle.indices.numpy().astype(np.uint32)
    vertices.setflags(write=False)
    triangles.setflags(write=False)
    return vertices, triangles


def _box_triangles(
    low: tuple[float, float, float], high: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    vertices, triangles = unit_box()
    extent = np.asarray(high, np.float32) - np.asarray(low, np.float32)
    return vertices * extent + np.asarray(low, np.float32), triangles


def background_triangles(wall_distance: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Floor and wall as thin boxes: ``[(vertices, triangles) floor, (vertices, triangles) wall]``.

    Floor top face at ``z = 0`` reaching the wall; wall front face at ``y = wall_distance``.
    """
    w, t = BACKGROUND_HALF_WIDTH, BACKGROUND_THICKNESS
    floor = _box_triangles((-w, FLOOR_BACK, -t), (w, wall_distance, 0.0))
    wall = _box_triangles((-w, wall_distance, -t), (w, wall_distance + t, WALL_HEIGHT))
    return [floor, wall]


def scene_meshes(spec: SceneSpec) -> list[o3d.t.geometry.TriangleMesh]:
    """The scene as open3d tensor meshes (floor, wall, objects), e.g. for visual inspection."""
    parts = background_triangles(spec.wall_distance) + [object_triangles(o) for o in spec.objects]
    meshes = []
    for vertices, triangles in parts:
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(vertices)  # type: ignore[call-overload]  # stubs: dtype and device required
        mesh.triangle.indices = o3d.core.Tensor(triangles.astype(np.int64))  # type: ignore[call-overload]  # as above
        meshes.append(mesh)
    return meshes


def build_scene_geometry(spec: SceneSpec) -> SceneGeometry:
    """Put the floor, wall and objects of ``spec`` into a :class:`SceneGeometry` for ray casting."""
    scene = o3d.t.geometry.RaycastingScene()
    parts = background_triangles(spec.wall_distance) + [object_triangles(o) for o in spec.objects]
    for vertices, triangles in parts:
        scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(triangles))  # type: ignore[call-overload]  # stubs: dtype and device required
    semantic = np.array(
        [FLOOR_ID, WALL_ID] + [semantic_id(o.category) for o in spec.objects], dtype=np.uint8
    )
    albedo = np.array(
        [spec.floor_albedo, spec.wall_albedo] + [o.albedo for o in spec.objects], dtype=np.float32
    )
    return SceneGeometry(scene=scene, semantic=semantic, albedo=albedo)


def sample_scene(class_index: int, rng: np.random.Generator) -> SceneSpec:
    """Random layout of one scene of class ``class_index``.

    The horizontal field of view is split into one bearing slot per object, so objects sit side
    by side and rarely hide each other (a hidden object would make the class unrecoverable).
    Within its slot each object gets a random bearing and distance in
    :data:`OBJECT_DISTANCE_RANGE`, a size in :data:`SIZE_RANGE` and a yaw (see
    :data:`YAW_HALF_RANGE`). The position is re-drawn (up to :data:`PLACEMENT_TRIES` times)
    until its footprint clears earlier objects; after that the last draw is kept, so rare scenes
    may have touching objects.
    """
    wall_distance = float(rng.uniform(*WALL_DISTANCE_RANGE))
    floor_albedo = sample_background_albedo(rng)
    wall_albedo = sample_background_albedo(rng)
    categories = sample_object_categories(class_index, rng)
    slot = 2 * MAX_BEARING / len(categories)
    objects: list[ObjectSpec] = []
    for i, category in enumerate(categories):
        size = float(rng.uniform(*SIZE_RANGE))
        radius = FOOTPRINT_RADIUS * size
        for _ in range(PLACEMENT_TRIES):
            # Keep a quarter slot of margin on each side so neighbours have a visible gap.
            bearing = -MAX_BEARING + slot * (i + float(rng.uniform(0.25, 0.75)))
            distance = float(rng.uniform(*OBJECT_DISTANCE_RANGE))
            x, y = distance * np.sin(bearing), distance * np.cos(bearing)
            if all(
                np.hypot(x - o.x, y - o.y) > radius + FOOTPRINT_RADIUS * o.size for o in objects
            ):
                break
        objects.append(
            ObjectSpec(
                category=category,
                size=size,
                x=float(x),
                y=float(y),
                yaw=float(rng.uniform(-1.0, 1.0) * YAW_HALF_RANGE[category]),
                albedo=triple(sample_object_albedo(category, rng)),
            )
        )
    return SceneSpec(
        objects=tuple(objects),
        wall_distance=wall_distance,
        floor_albedo=triple(floor_albedo),
        wall_albedo=triple(wall_albedo),
    )
