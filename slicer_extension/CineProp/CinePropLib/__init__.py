"""CinePropLib: the CineProp module's library; most of it runs without Slicer (listed first).

* :mod:`CinePropLib.client` — REST client for the cineprop MONAI Label server (standard library).
* :mod:`CinePropLib.conversions` — Slicer arrays (``K×J×I``) ⇄ cines (``I×J×T``), geometry.
* :mod:`CinePropLib.segments` — segment names/colours ⇄ label values.
* :mod:`CinePropLib.support` — which frames are support, next flagged frame.
* :mod:`CinePropLib.results` — a propagation's labels, confidence and flagged frames.
* :mod:`CinePropLib.volumefiles` — cine/label files with geometry (SimpleITK).
* :mod:`CinePropLib.workflow` — the annotation loop on arrays (:class:`CineWorkflow`).
* :mod:`CinePropLib.tasks` — long calls in a worker thread: progress, Cancel, outcome on poll.
* :mod:`CinePropLib.panel` — fills the panel's widgets (any Qt binding).

Need Slicer itself (MRML, Qt through PythonQt):

* :mod:`CinePropLib.nodes` — MRML nodes ⇄ arrays, both routes (a frames volume, a Sequence).
* :mod:`CinePropLib.sequences` — the Sequence route: proxy, recorded segmentation sequence, browser.
* :mod:`CinePropLib.slicerlogic` — the module logic (nodes ⇄ workflow, split for the GUI thread).
* :mod:`CinePropLib.runner` — the widget's side of :mod:`CinePropLib.tasks`.

Imports stay cheap; the Slicer-free modules import without Slicer or Qt so pytest can import them.
"""
