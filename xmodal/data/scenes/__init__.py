"""The embedded procedural tri-modal dataset ``scenes``.

RGB, metric depth and audio of small synthetic rooms (floor, back wall, a few primitive
objects), labelled with a scene class.

``generate_scenes`` writes all splits to one HDF5 file (layout in :mod:`.generate`);
``read_scenes_info`` validates such a file. The vocabulary lives in :mod:`.recipes`.
"""

from xmodal.core.deprecation import former_names
from xmodal.data.scenes.audio import fundamental_frequency, synthesize_audio
from xmodal.data.scenes.generate import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SPLITS,
    ScenesOptions,
    generate_sample,
    generate_scenes,
    read_scenes_info,
)
from xmodal.data.scenes.geometry import (
    ObjectSpec,
    SceneSpec,
    sample_scene,
    scene_meshes,
)
from xmodal.data.scenes.recipes import (
    CATEGORIES,
    CLASSES,
    FLOOR_ID,
    OBJECT_ID_OFFSET,
    SCENE_CLASSES,
    WALL_ID,
    SceneClass,
)
from xmodal.data.scenes.render import (
    CameraPose,
    Lighting,
    Render,
    camera_intrinsics,
    render_scene,
)

__all__ = [
    "CATEGORIES",
    "CLASSES",
    "FLOOR_ID",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OBJECT_ID_OFFSET",
    "SCENE_CLASSES",
    "SPLITS",
    "WALL_ID",
    "CameraPose",
    "Lighting",
    "ObjectSpec",
    "Render",
    "SceneClass",
    "SceneSpec",
    "ScenesOptions",
    "camera_intrinsics",
    "fundamental_frequency",
    "generate_sample",
    "generate_scenes",
    "read_scenes_info",
    "render_scene",
    "sample_scene",
    "scene_meshes",
    "synthesize_audio",
]

#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"ScenesConfig": "ScenesOptions"}, globals())
