"""CinePropLib: everything the CineProp Slicer module does that does not need Slicer.

* :mod:`CinePropLib.client` — REST client for the cineprop MONAI Label server (standard library).
* :mod:`CinePropLib.conversions` — Slicer arrays (``K×J×I``) ⇄ cines (``I×J×T``), geometry.
* :mod:`CinePropLib.segments` — segment names/colours ⇄ label values.
* :mod:`CinePropLib.support` — which frames are support, next flagged frame.
* :mod:`CinePropLib.results` — a propagation's labels, confidence and flagged frames.
* :mod:`CinePropLib.volumefiles` — cine/label files with geometry (SimpleITK).
* :mod:`CinePropLib.logic` — the annotation loop on arrays (:class:`CineWorkflow`).
* :mod:`CinePropLib.nodes` — MRML nodes ⇄ arrays; the only module that needs Slicer itself.

Imports stay cheap and free of Slicer so pytest can import this package on any machine.
"""
