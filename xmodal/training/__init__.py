"""Layer 4: training through Accelerate (task module, loop, optimiser, checkpoints)."""

from xmodal.training.loop import TrainingDiverged, fit
from xmodal.training.optim import OptimConfig
from xmodal.training.task import DistillationTask
from xmodal.training.train import (
    TeacherOutputs,
    TrainJob,
    TrainOutputs,
    TrainResult,
    TrainSetup,
    train_encoder,
)

__all__ = [
    "DistillationTask",
    "OptimConfig",
    "TeacherOutputs",
    "TrainJob",
    "TrainOutputs",
    "TrainResult",
    "TrainSetup",
    "TrainingDiverged",
    "fit",
    "train_encoder",
]
