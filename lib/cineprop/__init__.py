"""cineprop: few-shot segmentation of medical cines from a few painted frames.

The main entry points:

* :func:`cineprop.methods.build_propagator` — the one builder every front end uses;
* :class:`cineprop.io.Cine`, :func:`cineprop.io.load_cines` — cines with their geometry;
* :class:`cineprop.support.SupportSet` — the painted frames;
* :class:`cineprop.propagation.Propagation` — labels, probabilities and per-frame confidence.

Importing the package does not import torch; the learned methods load it on first use.
"""

from cineprop.io import Cine, load_cines
from cineprop.methods import build_propagator
from cineprop.propagation import Propagation
from cineprop.support import SupportSet

__version__ = "0.1.0"

__all__ = ["Cine", "Propagation", "SupportSet", "build_propagator", "load_cines", "__version__"]
