"""Train tasks (not registered yet): ``cineprop_relearn`` and ``cineprop_image``.

They wait for two core APIs that do not exist yet; the app must not contain model training code.
When the core has them, each task is a thin ``monailabel.interfaces.tasks.train.TrainTask``
subclass in this package, returned from ``CinepropConfig.trainer()`` (``lib/configs/cineprop.py``):

``cineprop_relearn`` (label-free relearning, issue "Video phase")
    ``__call__(request, datastore)``: collect the studies with a saved support or final label
    (``lib.datastore.saved_support``), call the core's relearning entry point with
    ``steps = request.get("steps", settings.relearn_steps)``, write the new checkpoint to
    ``model/cineprop.pt`` with ``cineprop.io.atomic_path`` and return its stats.
    ``stats()`` reads ``model/train_stats_relearn.json``.

``cineprop_image`` (fine-tune the image model on corrected frames)
    ``datastore.datalist()`` gives the ``final`` labels; hold back a validation share of studies,
    call the core's fine-tuning entry point with tiny defaults exposed through ``config()``
    (epochs, lr, validation split), and publish ``model/cineprop.pt`` atomically only when the
    validation score beats the current checkpoint's.

Both publish to the path :class:`lib.service.PropagationService` watches, so the infer task picks
the new weights up on its next request without a restart. Training runs in a MONAI Label
subprocess that rebuilds the app: keep ``__init__`` cheap and import torch code inside ``__call__``.
"""
