"""The video phase: spatiotemporal consistency relearning (its own component).

The model it trains is :class:`cineprop.model.VideoSegmenter` (the image model plus its Temporal
Attention Unit, :mod:`cineprop.model.temporal_attention`).

* :mod:`.video`, :mod:`.clip` — the two-stage ("parallel") inference relearning trains;
* :mod:`.losses`, :mod:`.config`, :mod:`.relearner` — the objective and the optimisation;
* :mod:`.propagator` — the ``relearn`` method and two-stage inference for relearned checkpoints;
* :mod:`.collection`, :mod:`.sources` — relearning over a collection of cines (``cineprop relearn``) and
  the cines it learns from; :mod:`.distributed` — the same loop on data-parallel Ray Train workers.

Importing this package imports torch.
"""

from cineprop.relearn.config import GROUPS, RelearnConfig
from cineprop.relearn.relearner import ConsistencyRelearner, RelearnResult

__all__ = ["GROUPS", "ConsistencyRelearner", "RelearnConfig", "RelearnResult"]
