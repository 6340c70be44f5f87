"""Pinhole ray casting of a scene: z-depth, semantic labels and Lambertian-shaded RGB.

Camera frame follows OpenCV: ``x`` right, ``y`` down, ``z`` forward (optical axis). Pixel
``(u, v)`` (column, row, 0-based) has its centre at image coordinates ``(u, v)``, so a pixel with
z-depth ``Z`` back-projects to camera point ``((u - cx) Z / fx, (v - cy) Z / fy, Z)``.

Rays are built with a camera-frame direction ``((u - cx) / fx, (v - cy) / fy, 1)``, deliberately
not normalised: the hit parameter ``t_hit`` of open3d is then the distance along the optical
axis, i.e. exactly the z-depth, with no per-pixel cosine correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from xmodal.data.scenes.geometry import SceneSpec, build_scene_geometry, triple

# NYU-Depth-V2 RGB camera, pixels, for its 640x480 images.
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.4696, 325.5824, 253.7362
NYU_WIDTH, NYU_HEIGHT = 640, 480

#: Semantic id and depth of a pixel whose ray hits nothing (never happens for generated scenes).
NO_HIT_ID: int = 255

#: Camera placement, metres and radians: nominal pose and uniform jitter half-ranges.
CAMERA_HEIGHT: float = 1.4
CAMERA_PITCH: float = math.radians(30.0)  # looking down at the objects
CAMERA_POSITION_JITTER: float = 0.1
CAMERA_HEIGHT_JITTER: float = 0.05
CAMERA_YAW_JITTER: float = math.radians(4.0)
CAMERA_PITCH_JITTER: float = math.radians(3.0)

AMBIENT_RANGE: tuple[float, float] = (0.25, 0.45)


def camera_intrinsics(image_size: int) -> tuple[float, float, float, float]:
    """Pinhole intrinsics ``(fx, fy, cx, cy)`` in pixels for a square ``image_size`` image.

    NYU-Depth-V2's 640x480 intrinsics, centre-cropped to 480x480 (``cx - 80``) and scaled by
    ``image_size / 480``.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    scale = image_size / NYU_HEIGHT
    crop = (NYU_WIDTH - NYU_HEIGHT) / 2
    return NYU_FX * scale, NYU_FY * scale, (NYU_CX - crop) * scale, NYU_CY * scale


@dataclass(frozen=True)
class CameraPose:
    """Camera position (m, world frame) and orientation (rad).

    With ``yaw = pitch = 0`` the camera looks along world ``+y``, its image ``x`` along world
    ``+x``. Positive ``yaw`` turns the view towards ``+x`` (right); positive ``pitch`` tilts it
    down.
    """

    x: float = 0.0
    y: float = 0.0
    height: float = CAMERA_HEIGHT
    yaw: float = 0.0
    pitch: float = CAMERA_PITCH

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation, float64 ``[3, 3]``.

        Its columns are the camera's x (right), y (down) and z (forward) axes in world
        coordinates.
        """
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([sy * cp, cy * cp, -sp])
        right = np.array([cy, -sy, 0.0])
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    def position(self) -> np.ndarray:
        """Camera centre in world coordinates, float64 ``[3]`` (m)."""
        return np.array([self.x, self.y, self.height])


def sample_camera(rng: np.random.Generator) -> CameraPose:
    """The nominal camera with uniform jitter of position, height, yaw and pitch."""
    j = CAMERA_POSITION_JITTER
    return CameraPose(
        x=float(rng.uniform(-j, j)),
        y=float(rng.uniform(-j, j)),
        height=CAMERA_HEIGHT + float(rng.uniform(-CAMERA_HEIGHT_JITTER, CAMERA_HEIGHT_JITTER)),
        yaw=float(rng.uniform(-CAMERA_YAW_JITTER, CAMERA_YAW_JITTER)),
        pitch=CAMERA_PITCH + float(rng.uniform(-CAMERA_PITCH_JITTER, CAMERA_PITCH_JITTER)),
    )


@dataclass(frozen=True)
class Lighting:
    """A directional light and the ambient share of the illumination.

    ``direction``: unit vector (world, pointing from surfaces towards the light); ``ambient``:
    the fraction in [0, 1] of the total illumination.
    """

    direction: tuple[float, float, float] = (0.0, -0.6, 0.8)
    ambient: float = 0.35


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A random light from above and behind the camera (so the wall and object fronts are lit)."""
    d = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-1.0, -0.3), rng.uniform(0.4, 1.0)])
    d /= np.linalg.norm(d)
    ambient = float(rng.uniform(*AMBIENT_RANGE))
    return Lighting(direction=triple(d), ambient=ambient)


def camera_rays(camera: CameraPose, image_size: int) -> np.ndarray:
    """World-frame rays for every pixel: float32 ``[H, W, 6]`` = origin (m) and direction.

    Directions have unit component along the optical axis (not unit length), so a hit at
    parameter ``t`` lies at z-depth ``t`` metres.
    """
    fx, fy, cx, cy = camera_intrinsics(image_size)
    pixels = np.arange(image_size, dtype=np.float64)
    u, v = np.meshgrid(pixels, pixels)  # u: column, v: row; both [H, W]
    directions_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    directions = directions_cam @ camera.rotation().T
    origins = np.broadcast_to(camera.position(), directions.shape)
    return np.concatenate([origins, directions], axis=-1).astype(np.float32)


@dataclass
class Render:
    """One rendered view, all ``[H, W]`` images.

    ``rgb``: float32 ``[H, W, 3]`` noise-free shading in [0, 1]; ``depth``: float32 z-depth (m),
    ``inf`` where nothing is hit; ``semantic``: uint8 ids (see :mod:`recipes`), ``NO_HIT_ID``
    where nothing is hit.
    """

    rgb: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray


def render_scene(
    spec: SceneSpec,
    camera: CameraPose,
    image_size: int,
    lighting: Lighting = Lighting(),
) -> Render:
    """Ray-cast ``spec`` through the pinhole ``camera`` at ``image_size`` x ``image_size`` pixels.

    RGB is Lambertian: ``albedo * (ambient + (1 - ambient) * max(0, n . l))`` with ``n`` the
    hit triangle's normal (turned to face the camera) and ``l`` the light direction.
    """
    geometry = build_scene_geometry(spec)
    rays = camera_rays(camera, image_size)
    hits = geometry.scene.cast_rays(o3d.core.Tensor(rays))  # type: ignore[call-overload]  # stubs: dtype and device required
    t_hit = hits["t_hit"].numpy()
    geometry_ids = hits["geometry_ids"].numpy()
    normals = hits["primitive_normals"].numpy()

    hit = np.isfinite(t_hit)
    ids = np.where(hit, geometry_ids, 0).astype(np.int64)
    # Face normals of the far side of thin geometry could point away from the camera.
    facing_away = np.sum(normals * rays[..., 3:], axis=-1, keepdims=True) > 0
    normals = np.where(facing_away, -normals, normals)
    diffuse = np.clip(normals @ np.asarray(lighting.direction, np.float32), 0.0, None)
    shade = lighting.ambient + (1.0 - lighting.ambient) * diffuse
    rgb = geometry.albedo[ids] * shade[..., None]

    return Render(
        rgb=np.where(hit[..., None], rgb, 0.0).astype(np.float32),
        depth=np.where(hit, t_hit, np.inf).astype(np.float32),
        semantic=np.where(hit, geometry.semantic[ids], NO_HIT_ID).astype(np.uint8),
    )


def quantize_rgb(rgb: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Add per-pixel Gaussian noise (std ``noise`` in units of full scale), clip, to uint8.

    ``rgb``: float ``[..., 3]`` in [0, 1]. Returns uint8 of the same shape.
    """
    noisy = rgb + noise * rng.standard_normal(rgb.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
