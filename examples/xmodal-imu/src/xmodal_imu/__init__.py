"""IMU windows for xmodal, as a plugin package: one component of each kind, each with an option.

- ``imu`` front end (:mod:`xmodal_imu.frontend`): raw accelerometer + gyroscope ``[B, 6, T]``.
- ``imu-cnn`` backbone (:mod:`xmodal_imu.backbone`): two strided 1-D convolutions.
- ``sp`` method (:mod:`xmodal_imu.method`): similarity-preserving distillation.
- ``nearest-centroid`` probe (:mod:`xmodal_imu.probe`).
- ``imu-synth`` dataset (:mod:`xmodal_imu.dataset`): tiny synthetic RGB + IMU pairs.

xmodal finds them through the entry points in ``pyproject.toml``; nothing imports this package
by hand.
"""

__version__ = "0.1.0"
