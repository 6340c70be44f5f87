"""Depth encodings against independent geometry.

Depth maps are rendered analytically from planes (ray-plane intersection per pixel), so every
expected value comes from the scene, not from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.data.depth_encodings import (
    Intrinsics,
    backproject,
    encode_depth,
    estimate_gravity,
    height_above_ground,
    hha,
    surface_normals,
    valid_depth,
)

K_SMALL = Intrinsics(fx=62.0, fy=60.0, cx=39.3, cy=29.6)  # 60 x 80, about 65 degrees wide
METHODS = ["gradient", "open3d"]


def rays(K: Intrinsics, h: int, w: int) -> np.ndarray:
    """``[H, W, 3]`` ray through each pixel centre, scaled to z = 1."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1)


def render(planes: list[tuple[np.ndarray, float]], K: Intrinsics, h: int, w: int) -> np.ndarray:
    """Depth of the nearest plane ``n . X = d`` hit by each pixel's ray (0 where none is).

    For a camera inside a convex room, the nearest hit is the visible face.
    """
    r = rays(K, h, w)
    depth = np.full((h, w), np.inf)
    for n, d in planes:
        with np.errstate(divide="ignore"):
            t = d / (r @ np.asarray(n, np.float64))
        depth = np.where((t > 0) & (t < depth), t, depth)
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)


def rotation(roll_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera-from-level-camera rotation: pitch about x, then roll about z."""
    a, b = np.radians(pitch_deg), np.radians(roll_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    roll = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return roll @ pitch


def room(R: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """A room around a camera 1.4 m above the floor, in the rotated camera's frame.

    Level frame: x right, y down, z forward. Floor y = 1.4, ceiling y = -1.2, walls at
    z = 4 (front), x = 1.5 (right), x = -2 (left), z = -1 (behind).
    """
    level = [
        ((0, 1, 0), 1.4),
        ((0, -1, 0), 1.2),
        ((0, 0, 1), 4.0),
        ((1, 0, 0), 1.5),
        ((-1, 0, 0), 2.0),
        ((0, 0, -1), 1.0),
    ]
    return [(R @ np.asarray(n, np.float64), d) for n, d in level]


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose whole ``(2r+1)^2`` window is inside ``mask`` (away from creases)."""
    padded = np.pad(mask, r)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= padded[dy : dy + h, dx : dx + w]
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(a * b, axis=-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


# ---- intrinsics and backprojection ----------------------------------------------------------


def test_backproject_planted_point():
    K = Intrinsics(fx=500.0, fy=480.0, cx=320.5, cy=240.25)
    depth = np.zeros((480, 640), np.float32)
    depth[50, 100] = 2.5  # row v = 50, column u = 100
    points = backproject(depth, K)
    assert points.shape == (480, 640, 3) and points.dtype == np.float32
    # by hand: x = (100 - 320.5) * 2.5 / 500, y = (50 - 240.25) * 2.5 / 480
    np.testing.assert_allclose(points[50, 100], [-1.1025, -0.990885417, 2.5], rtol=1e-6)
    assert np.isnan(points[0, 0]).all() and np.isnan(points[50, 101]).all()


def test_valid_depth_masks_zero_negative_and_non_finite():
    depth = np.array([[1.0, 0.0, -1.0], [np.nan, np.inf, 0.3]], np.float32)
    np.testing.assert_array_equal(valid_depth(depth), [[True, False, False], [False, False, True]])


def test_backproject_reprojects_onto_its_pixel():
    rng = np.random.default_rng(0)
    K = Intrinsics(fx=300.0, fy=310.0, cx=40.2, cy=29.7)
    depth = rng.uniform(0.3, 8.0, (60, 80)).astype(np.float32)
    points = backproject(depth, K).astype(np.float64)
    projected = points @ K.matrix().T
    v, u = np.mgrid[0:60, 0:80]
    np.testing.assert_allclose(projected[..., 0] / projected[..., 2], u, atol=1e-4)
    np.testing.assert_allclose(projected[..., 1] / projected[..., 2], v, atol=1e-4)
    np.testing.assert_allclose(points[..., 2], depth)


def test_cropped_intrinsics_see_the_cropped_image():
    K, plane = Intrinsics(70.0, 65.0, 41.0, 28.5), [(np.array([0.2, -0.3, 1.0]), 3.0)]
    full = render(plane, K, 60, 80)
    crop = render(plane, K.cropped(top=7, left=11), 60 - 7, 80 - 11)
    np.testing.assert_allclose(crop, full[7:, 11:], rtol=1e-6)


@pytest.mark.parametrize("fy, fx", [(2, 2), (2, 3)])
def test_scaled_intrinsics_see_the_area_resized_image(fy, fx):
    # On a plane, inverse depth is affine in the pixel coordinates, so the area mean of
    # inverse depth over a block equals the inverse depth at the block's centre.
    K, plane = Intrinsics(70.0, 65.0, 41.0, 28.5), [(np.array([0.2, -0.3, 1.0]), 3.0)]
    h, w = 60, 78
    inverse = 1.0 / render(plane, K, h, w).astype(np.float64)
    area = inverse.reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))
    small = render(plane, K.scaled(1 / fy, 1 / fx), h // fy, w // fx)
    np.testing.assert_allclose(1.0 / small, area, rtol=1e-5)


def test_intrinsics_reject_bad_focal_length():
    with pytest.raises(ValueError, match="focal"):
        Intrinsics(0.0, 500.0, 10.0, 10.0)
    with pytest.raises(ValueError, match="scale"):
        K_SMALL.scaled(0.0, 1.0)


# ---- normals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_normals_of_a_tilted_plane(method):
    n = np.array([0.3, -0.4, 1.0])
    n /= np.linalg.norm(n)
    depth = render([(n, 2.0)], K_SMALL, 60, 80)  # n . X = 2 > 0: the camera sees the -n side
    assert (depth > 0).all()
    normals = surface_normals(depth, K_SMALL, method=method)
    assert normals.shape == (60, 80, 3) and normals.dtype == np.float32
    interior = normals[5:-5, 5:-5]
    assert angle_deg(interior, -n).max() < 2.0
    np.testing.assert_allclose(np.linalg.norm(interior, axis=-1), 1.0, atol=1e-5)
    points = backproject(depth, K_SMALL)
    assert (np.sum(normals * points, axis=-1) < 0).all()  # towards the camera, borders too


@pytest.mark.parametrize("method", METHODS)
def test_normals_are_nan_only_near_holes(method):
    n = np.array([-0.2, 0.1, 1.0])
    depth = render([(n / np.linalg.norm(n), 2.5)], K_SMALL, 60, 80)
    hole = np.zeros(depth.shape, bool)
    hole[20:26, 30:38] = True
    depth[hole] = 0.0
    depth[40, 10] = np.nan
    hole[40, 10] = True
    normals = surface_normals(depth, K_SMALL, method=method)
    missing = np.isnan(normals).any(-1)
    np.testing.assert_array_equal(missing, hole)
    assert angle_deg(normals[~hole], -n).max() < 2.0


@pytest.mark.parametrize("method", METHODS)
def test_all_invalid_depth_does_not_crash(method):
    depth = np.zeros((20, 30), np.float32)
    depth[0, 0] = np.nan
    enc = encode_depth(depth, K_SMALL, normals_method=method)
    assert np.isnan(enc.normals).all() and np.isnan(enc.height).all()
    np.testing.assert_allclose(enc.up, [0, -1, 0])
    assert enc.hha.dtype == np.uint8 and not enc.hha.any()


# ---- gravity and height ----------------------------------------------------------------------


@pytest.mark.parametrize("roll, pitch", [(0.0, 0.0), (8.0, -15.0), (-12.0, 20.0)])
def test_gravity_of_a_rolled_and_pitched_room(roll, pitch):
    R = rotation(roll, pitch)
    depth = render(room(R), K_SMALL, 60, 80)
    rng = np.random.default_rng(1)
    depth *= 1 + rng.normal(0, 0.002, depth.shape).astype(np.float32)  # 2 mm per metre
    up = estimate_gravity(surface_normals(depth, K_SMALL))
    true_up = R @ np.array([0.0, -1.0, 0.0])
    assert up.shape == (3,) and abs(np.linalg.norm(up) - 1) < 1e-9
    assert angle_deg(up, true_up) < 2.0


def test_gravity_falls_back_to_initial_up_without_normals():
    up = estimate_gravity(np.full((5, 5, 3), np.nan), initial_up=(0.0, -2.0, 0.0))
    np.testing.assert_allclose(up, [0, -1, 0])


def test_height_of_floor_and_table():
    R = rotation(10.0, 25.0)  # looking down at the floor
    h, w = 60, 80
    floor_room = room(R)
    depth = render(floor_room, K_SMALL, h, w)
    # a table top 0.73 m above the floor over a block of pixels looking down at it
    table = render([(R @ np.array([0.0, 1.0, 0.0]), 1.4 - 0.73)], K_SMALL, h, w)
    block = np.zeros((h, w), bool)
    block[40:55, 20:50] = True
    assert (table[block] > 0).all() and (table[block] < depth[block]).all()
    depth[block] = table[block]
    up = R @ np.array([0.0, -1.0, 0.0])
    points = backproject(depth, K_SMALL)
    height = height_above_ground(points, up)
    floor = ~block & (np.abs(points.astype(np.float64) @ R @ [0, 1, 0] - 1.4) < 1e-3)
    assert floor.sum() > 200
    assert np.abs(height[floor]).max() < 0.01
    assert np.abs(height[block] - 0.73).max() < 0.01


# ---- HHA -------------------------------------------------------------------------------------


def test_hha_of_a_fronto_parallel_wall():
    depth = np.full((30, 40), 2.0, np.float32)
    out = hha(depth, K_SMALL, up=np.array([0.0, -1.0, 0.0]))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 64).all()  # 255 * 0.5 m / 2 m = 63.75
    assert np.isin(out[..., 2], [127, 128]).all()  # 90 degrees -> 127.5
    # heights above the wall's lowest 1%, 1 level per cm: y = (v - cy) * z / fy, up = -y
    y = (np.arange(30) - K_SMALL.cy) * 2.0 / K_SMALL.fy
    expected = 100 * (np.percentile(np.repeat(y, 40), 99) - y)
    assert np.abs(out[..., 1].astype(float) - np.clip(expected, 0, 255)[:, None]).max() <= 1


def test_hha_channels_of_a_room():
    R = rotation(4.0, 25.0)  # looking down at the floor
    depth = render(room(R), K_SMALL, 60, 80)
    level = backproject(depth, K_SMALL).astype(np.float64) @ R  # rows: R^T p
    enc = encode_depth(depth, K_SMALL)
    out = enc.hha
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert angle_deg(enc.up, R @ np.array([0.0, -1.0, 0.0])) < 1.0
    assert np.abs(out[..., 0] - np.clip(127.5 / depth, 1, 255)).max() <= 0.5 + 1e-3
    # Normals blend across the creases between faces, so look a few pixels away from them.
    floor = erode(np.abs(level[..., 1] - 1.4) < 1e-3, 5)
    wall = erode(np.abs(level[..., 2] - 4.0) < 1e-3, 5)
    assert floor.sum() > 100 and wall.sum() > 100
    # height: 1 level per cm above the floor (1.4 m below the camera)
    assert out[floor][:, 1].max() <= 1
    wall_height = 100 * (1.4 - level[..., 1][wall])
    assert np.abs(out[wall][:, 1] - np.clip(wall_height, 0, 255)).max() <= 2
    # angle: floor 0 degrees -> 0; wall 90 degrees -> 127.5; 2 degrees = 2.8 levels
    assert out[floor][:, 2].max() <= 3
    assert np.abs(out[wall][:, 2].astype(float) - 127.5).max() <= 3


@pytest.mark.parametrize("method", METHODS)
def test_hha_is_zero_exactly_where_depth_is_missing(method):
    depth = render(room(rotation(5.0, -10.0)), K_SMALL, 60, 80)
    missing = np.zeros(depth.shape, bool)
    depth[10:15, 10:20] = 0.0
    depth[30, 5:40] = np.nan
    depth[50, 60] = -1.0
    depth[0, :] = np.inf
    missing[10:15, 10:20] = missing[30, 5:40] = missing[50, 60] = missing[0, :] = True
    enc = encode_depth(depth, K_SMALL, normals_method=method)
    assert not enc.hha[missing].any()
    assert (enc.hha[~missing][:, 0] >= 1).all()  # channel 0 marks every measured pixel
    assert np.isnan(enc.height[missing]).all() and np.isfinite(enc.height[~missing]).all()
    far = np.full((4, 4), 1e4, np.float32)  # very far but valid: still not "missing"
    assert (hha(far, K_SMALL, up=np.array([0.0, -1.0, 0.0]))[..., 0] == 1).all()


def test_hha_at_nyu_size():
    K = Intrinsics(518.86, 519.47, 325.58, 253.74).cropped(44, 40)
    depth = render(room(rotation(3.0, -12.0)), K, 427, 561)
    depth[200:230, 300:340] = 0.0
    out = hha(depth, K)
    assert out.shape == (427, 561, 3) and out.dtype == np.uint8
    assert not out[200:230, 300:340].any() and (out[..., 0] > 0).sum() == 427 * 561 - 30 * 40


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"2-D \[H, W\]"):
        hha(np.ones((4, 4, 1), np.float32), K_SMALL)
    with pytest.raises(ValueError, match="float"):
        hha(np.ones((4, 4), np.uint16), K_SMALL)
    with pytest.raises(ValueError, match="unknown normals method 'pca'.*gradient, open3d"):
        hha(np.ones((4, 4), np.float32), K_SMALL, normals_method="pca")
    with pytest.raises(ValueError, match="up"):
        hha(np.ones((4, 4), np.float32), K_SMALL, up=np.zeros(3))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        height_above_ground(np.ones((4, 4)), np.array([0.0, -1.0, 0.0]))


def test_backprojection_with_the_shipped_nyu_intrinsics_matches_the_toolbox():
    # Constants of the NYU toolbox's camera_params.m (MATLAB, 1-based principal point): an
    # independent statement of the camera that datasets/nyu-depth-v2/camera.json encodes.
    from xmodal.data.nyu.facts import load_nyu_facts

    fx, fy, cx1, cy1 = (
        5.1885790117450188e02,
        5.1946961112127485e02,
        3.2558244941119034e02,
        2.5373616633400465e02,
    )
    facts = load_nyu_facts()
    K = Intrinsics(*facts.intrinsics)
    row, col, z = 300, 100, 2.5  # 0-based pixel, metres
    depth = np.zeros(facts.image_size, np.float32)
    depth[row, col] = z
    # MATLAB: x = (u1 - cx) z / fx with the 1-based column u1 = col + 1.
    expected = ((col + 1 - cx1) * z / fx, (row + 1 - cy1) * z / fy, z)
    np.testing.assert_allclose(backproject(depth, K)[row, col], expected, rtol=1e-6)
    top, _, left, _ = facts.valid_crop
    cropped = depth[top:, left:]
    np.testing.assert_allclose(
        backproject(cropped, K.cropped(top, left))[row - top, col - left], expected, rtol=1e-6
    )


@pytest.mark.parametrize("method", ["gradient", "open3d"])
def test_encodings_of_a_ray_cast_room_match_its_known_geometry(method):
    """An open3d ray-cast room seen by a pitched, yawed camera of known pose.

    The room comes from the scenes generator (floor z = 0, a wall, objects); gravity, heights
    and HHA angles follow the world.
    """
    from xmodal.data.scenes.geometry import sample_scene
    from xmodal.data.scenes.render import camera_intrinsics, render_scene, sample_camera

    rng = np.random.default_rng(3)
    spec, camera = sample_scene(2, rng), sample_camera(rng)
    size = 160
    view = render_scene(spec, camera, size)
    depth = np.where(np.isfinite(view.depth), view.depth, 0).astype(np.float32)
    enc = encode_depth(depth, Intrinsics(*camera_intrinsics(size)), normals_method=method)

    rotation = camera.rotation()  # camera -> world
    true_up = rotation.T @ np.array([0.0, 0.0, 1.0])
    assert np.degrees(np.arccos(np.clip(enc.up @ true_up, -1, 1))) < 2.0
    points = backproject(depth, Intrinsics(*camera_intrinsics(size)))
    valid = depth > 0
    world_z = camera.height + points[valid].astype(np.float64) @ rotation[2]
    assert np.median(np.abs(enc.height[valid] - world_z)) < 0.02  # metres
    angle = enc.hha[..., 2].astype(np.float64) * 180 / 255  # degrees from up
    floor, wall = view.semantic == 0, view.semantic == 1  # semantic ids of the scenes recipes
    assert floor.sum() > 500 and wall.sum() > 500
    assert np.median(angle[floor]) < 3 and np.median(np.abs(angle[wall] - 90)) < 3
