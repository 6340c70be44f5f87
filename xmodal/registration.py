"""Import every layer so that its built-in entries are in the registries."""

import xmodal.data  # noqa: F401
import xmodal.encoders  # noqa: F401
import xmodal.evaluation  # noqa: F401
import xmodal.objectives.baselines  # noqa: F401
import xmodal.objectives.methods  # noqa: F401
import xmodal.pipelines  # noqa: F401
