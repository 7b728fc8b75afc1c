"""Train tasks ``cineprop_relearn`` and ``cineprop_image``: thin adapters over the cineprop core.

Both are plain ``monailabel.interfaces.tasks.train.TrainTask`` subclasses (:mod:`.common`),
returned by ``CinepropConfig.trainer()`` (``lib/configs/cineprop.py``) for methods that load a
checkpoint (``model``, ``relearn``). ``POST /train/<name>`` runs one in a MONAI Label subprocess
that rebuilds the app (construction stays cheap; torch code is imported inside ``__call__``);
``GET /train/`` shows its status and last log lines, progress goes to the server log.

``cineprop_relearn`` (:mod:`.cineprop_relearn`; label-free, issue "Video phase")
    Studies with a saved support or final label (``lib.study_records.saved_support``, the tags of
    ``--conf support_tags``) → ``cineprop.relearn.collection.relearn_pairs`` with ``steps``,
    ``lr``, ``steps_per_cine`` from the request (``config()`` shows the defaults) → a ``relearn``
    checkpoint published as ``model/cineprop.pt``.

``cineprop_image`` (:mod:`.cineprop_image`; the users' corrections)
    ``datastore.datalist()`` (the ``final`` labels, at least 2 studies) →
    ``cineprop.training.finetune.finetune_image_model`` with ``steps``, ``lr``, ``val_fraction``,
    ``batch`` → published as ``model/cineprop.pt`` only if the held-back studies' Dice improves.

Both start from the checkpoint being served, publish atomically (the replaced file is kept as
``model/cineprop.prev.pt``), write ``model/train_stats_<name>.json`` (``/info`` → ``train_stats``)
and answer user errors with an ``HTTPException`` (422 nothing to train on, 400 a bad option, 503 no
model to start from); run asynchronously, that ends the task with status ERROR and the message in
its log. :class:`lib.service.PropagationService` reloads ``model/cineprop.pt`` by modification
time, so the next inference uses the new weights without a restart.
"""
