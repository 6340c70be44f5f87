"""NYU-Depth V2 (labeled set): shipped dataset facts and a lazy reader of the labeled file.

- :mod:`xmodal.data.nyu.facts`: splits, 894->40->13 class maps, 10 scene classes, camera.
- :mod:`xmodal.data.nyu.reader`: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3) frame by frame.

The reader (h5py) is not imported here, so configs and facts stay cheap to import.
"""

from xmodal.data.nyu.facts import NYUFacts, labels13, labels40, load_nyu_facts, scene10

__all__ = ["NYUFacts", "labels13", "labels40", "load_nyu_facts", "scene10"]
