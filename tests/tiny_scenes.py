"""The ``scenes`` pipeline cut to seconds, as ``--set`` overrides, for tests that run it end to end.

Later overrides win, so a test adds or replaces settings after these
(``[*TINY_SCENES, "distill.students=[depth]"]``).
"""

from __future__ import annotations

#: 16x16 scenes, 48 train / 24 val / 24 test samples
TINY_DATA = [
    "data.scenes.image_size=16",
    "data.scenes.num_train=48",
    "data.scenes.num_val=24",
    "data.scenes.num_test=24",
]
#: one epoch at batch 16, for the teacher and the students
TINY_TRAINING = [
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
]
#: the usual tiny run: data, training, and a bank and a linear probe sized to them
TINY_SCENES = [
    *TINY_DATA,
    *TINY_TRAINING,
    "distill.wcord.num_negatives=32",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]
