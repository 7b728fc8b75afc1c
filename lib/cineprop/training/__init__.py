"""Episodic training of the image-phase model (imports the model; the model never imports this)."""
