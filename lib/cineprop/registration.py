"""Frame-to-frame deformable registration: the peers a Slicer user would pick today.

* :class:`DemonsField`: SimpleITK fast symmetric-forces demons (core dependency).
* :class:`SynField`: ANTs SyN (``antspyx``; SlicerANTs' method), affine then symmetric diffeomorphic.
* :class:`ElastixField`: elastix B-spline (``itk-elastix``; SlicerElastix' method).

The last two need the optional ``peers`` extra. Each offers the same ``step(t, s)`` as
:class:`cineprop.flow.FlowField`: an ``H×W×2`` float32 displacement (dx, dy) in pixels such that
``frame_t(x) ≈ frame_s(x + d(x))``, so one propagator carries masks with any of them.
"""

from __future__ import annotations

import importlib
import os
import tempfile

import numpy as np
import SimpleITK as sitk

from cineprop.errors import CinepropError
from cineprop.flow import Field
from cineprop.transforms import normalise_intensity


def require(module: str, package: str, method: str):
    """Import an optional dependency or raise an error naming the ``peers`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CinepropError(f"method {method!r} needs the Python package {package!r} (optional extra 'peers'): "
                            f"pip install -e '.[peers]' (or pip install {package})") from None


def require_ants(method: str = "syn"):
    """Import ``antspyx`` with ANTs/ITK on one thread unless ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``
    says otherwise (read once, when ANTs is first imported): with a fixed seed (:data:`ANTS_SEED`) a
    single-threaded registration repeats exactly (antspyx's advice); elastix runs on one thread for the
    same reason."""
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    return require("ants", "antspyx", method)


class PairField(Field):
    """Registration fields between frames of one cine (``frames``: ``H×W×T``), cached (:class:`cineprop.flow.Field`).

    Subclasses implement :meth:`register` for one ``(fixed, moving)`` pair of ``H×W`` float32 images
    in [0, 1].
    """

    def __init__(self, frames: np.ndarray):
        super().__init__()
        self.frames = normalise_intensity(frames)

    def frame(self, i: int) -> np.ndarray:
        return np.ascontiguousarray(self.frames[:, :, i], np.float32)

    def pair(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.register(np.ascontiguousarray(fixed, np.float32),
                                                  np.ascontiguousarray(moving, np.float32)), np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes held: the normalised frames and the fields computed so far (as ``FlowField.nbytes``)."""
        return self.frames.nbytes + self.cached_bytes

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class DemonsField(PairField):
    """SimpleITK demons. ``iterations`` per pair; ``smoothing``: field smoothing std (pixels)."""

    def __init__(self, frames: np.ndarray, iterations: int = 50, smoothing: float = 1.5):
        super().__init__(frames)
        self.iterations = iterations
        self.smoothing = smoothing

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(self.iterations)
        demons.SetStandardDeviations(self.smoothing)
        fixed_image, moving_image = sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moving)
        moving_image = sitk.HistogramMatching(moving_image, fixed_image, 256, 7)
        return sitk.GetArrayFromImage(demons.Execute(fixed_image, moving_image))     # H×W×2, (dx, dy)


#: ANTs' random seed for the metric's sampling. Not 0: ANTs takes ``--random-seed 0`` as "seed from the
#: clock", and unseeded SyN converged to a wrong optimum (a 10–30 px displacement) on a plain 3-pixel
#: translation in 1 of 20 calls; seeded, every call returns the same field.
ANTS_SEED = 1


class SynField(PairField):
    """ANTs ``SyN`` (antspyx defaults: affine, then SyN with Mattes MI at 40/20/0 iterations; seeded
    with :data:`ANTS_SEED`)."""

    def __init__(self, frames: np.ndarray, transform: str = "SyN"):
        self.ants = require_ants("syn")
        super().__init__(frames)
        self.transform = transform

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        ants = self.ants
        # antspyx maps numpy axis 0 to its first physical axis, so components come back (d_row, d_col).
        f, m = ants.from_numpy(fixed), ants.from_numpy(moving)
        reg = ants.registration(f, m, type_of_transform=self.transform, random_seed=ANTS_SEED)
        with tempfile.TemporaryDirectory(prefix="cineprop_syn_") as folder:
            path = ants.apply_transforms(f, m, reg["fwdtransforms"], compose=os.path.join(folder, "field"))
            field = ants.image_read(path).numpy()
        for path in set(reg["fwdtransforms"] + reg["invtransforms"]):   # antspyx leaves them in /tmp
            if os.path.exists(path):
                os.remove(path)
        return field[..., ::-1]                                            # (dx, dy)


class ElastixField(PairField):
    """elastix B-spline: ``resolutions`` pyramid levels, ``iterations`` per level, control points every
    ``grid_spacing`` pixels (advanced Mattes MI, random-coordinate sampler with a fixed seed). One thread:
    as fast as two on a 200² pair, and it leaves the other core to the rest of the machine."""

    def __init__(self, frames: np.ndarray, iterations: int = 128, grid_spacing: float = 16.0, resolutions: int = 3):
        self.itk = require("itk", "itk-elastix", "elastix")
        if not hasattr(self.itk, "elastix_registration_method"):
            raise CinepropError("method 'elastix' needs the Python package 'itk-elastix' (optional extra 'peers')")
        super().__init__(frames)
        self.iterations, self.grid_spacing, self.resolutions = iterations, grid_spacing, resolutions

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        itk = self.itk
        parameters = itk.ParameterObject.New()
        bspline = parameters.GetDefaultParameterMap("bspline", self.resolutions)
        bspline["FinalGridSpacingInPhysicalUnits"] = [str(self.grid_spacing)]
        bspline["MaximumNumberOfIterations"] = [str(self.iterations)]
        bspline["RandomSeed"] = ["121212"]
        parameters.AddParameterMap(bspline)
        f, m = itk.image_view_from_array(fixed), itk.image_view_from_array(moving)
        _, transform = itk.elastix_registration_method(f, m, parameter_object=parameters,
                                                       log_to_console=False, number_of_threads=1)
        with tempfile.TemporaryDirectory(prefix="cineprop_elastix_") as folder:   # transformix writes a file
            field = itk.transformix_deformation_field(m, transform, output_directory=folder)
            return np.array(itk.array_from_image(field))                            # H×W×2, (dx, dy)
