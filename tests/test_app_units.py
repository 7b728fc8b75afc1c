"""The app's settings parsing and checkpoint reloading, in-process (no server: these are plain classes).

The app's ``lib`` package is imported the way MONAI Label does (app folder first on ``sys.path``)
and unloaded afterwards, so the name ``lib`` does not leak into other tests.
"""

from __future__ import annotations

import os
import sys

import pytest
from servers import APP_DIR

from cineprop import methods
from cineprop.baselines import CopyPropagator
from cineprop.errors import CheckpointError
from cineprop.session_config import SessionConfig


@pytest.fixture
def app_lib():
    """Import helper for the app's ``lib`` modules; cleans ``sys.modules``/``sys.path`` afterwards."""
    def purge():
        for name in [n for n in sys.modules if n == "lib" or n.startswith("lib.")]:
            del sys.modules[name]

    purge()
    sys.path.insert(0, str(APP_DIR))
    try:
        import importlib

        yield importlib.import_module
    finally:
        sys.path.remove(str(APP_DIR))
        purge()


class CheckpointedCopy(CopyPropagator):
    """A real propagator that takes a checkpoint path, standing in for "model" until it is registered."""

    builds: list = []

    bundled = True  # whether "bundled weights" exist when no checkpoint is given

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        if checkpoint is None and not CheckpointedCopy.bundled:
            raise CheckpointError("bundled.pt: bundled checkpoint missing")
        self.checkpoint = checkpoint
        CheckpointedCopy.builds.append(checkpoint)


@pytest.fixture
def checkpointed_method():
    methods.register("test-checkpointed", f"{__name__}:CheckpointedCopy", "copy, with a checkpoint option",
                     options="cineprop.methods:CheckpointOptions")
    CheckpointedCopy.builds.clear()
    CheckpointedCopy.bundled = True
    try:
        yield "test-checkpointed"
    finally:
        methods.unregister("test-checkpointed")


def test_settings_defaults_and_fallback(app_lib):
    settings = app_lib("lib.configs.settings")
    s = settings.AppSettings.from_conf({}, ["copy", "flow"])
    assert s.method == settings.FALLBACK_METHOD and "not installed" in s.note
    assert s.support_tags == ("support", "final") and s.flag_threshold == 0.5 and s.checkpoint is None
    assert settings.AppSettings.from_conf({}, ["flow", "model"]).method == "model"
    assert s.preload is True and s.infer_threads == 1
    s = settings.AppSettings.from_conf({"method": "copy", "flag_threshold": "0.7", "labels": "RV, LV",
                                        "support_tags": "painted,final", "preload": "yes", "typo": "1"}, ["copy"])
    assert (s.method, s.flag_threshold, s.labels, s.support_tags, s.preload) == \
           ("copy", 0.7, ("RV", "LV"), ("painted", "final"), True)
    assert s.unknown_keys == ("typo",) and s.label_name(2) == "LV" and s.label_name(3) == "label 3"


@pytest.mark.parametrize("conf, key", [({"method": "model"}, "method"), ({"flag_threshold": "2"}, "flag_threshold"),
                                       ({"relearn_steps": "-1"}, "relearn_steps"), ({"preload": "maybe"}, "preload"),
                                       ({"flow_method": "farneback"}, "flow_method"),
                                       ({"flow_box": "maybe"}, "flow_box")])
def test_bad_conf_names_the_key(app_lib, conf, key):
    settings = app_lib("lib.configs.settings")
    with pytest.raises(settings.SettingsError, match=f"--conf {key}"):
        settings.AppSettings.from_conf(conf, ["flow"])


def test_infer_options(app_lib):
    settings = app_lib("lib.configs.settings")
    base = settings.AppSettings(flag_threshold=0.3)
    o = settings.InferOptions.from_request({}, base)
    assert (o.support_frames, o.slice_index, o.flag_threshold, o.save_support, o.result_extension) == \
           (None, None, 0.3, False, ".nii.gz")
    o = settings.InferOptions.from_request(
        {"support_frames": "5, 0 5", "slice_index": "2", "flag_threshold": "0.6", "save_support": "true",
         "result_extension": ".NRRD", "result_dtype": "uint8",
         "label_info": '[{"name": "LV", "id": "Segment_1"}, {"name": "background_scribbles", "id": "x"}]'}, base)
    assert (o.support_frames, o.slice_index, o.flag_threshold, o.save_support, o.result_extension) == \
           ((0, 5), 2, 0.6, True, ".nrrd")
    assert o.label_names == {1: "LV", 2: "background_scribbles"} and o.ignored_labels == {2}
    for bad in ({"support_frames": "a"}, {"result_extension": ".png"}, {"result_dtype": "int16"},
                {"slice_index": 1.5}, {"label_info": "{"}):
        with pytest.raises(settings.RequestError):
            settings.InferOptions.from_request(bad, base)


def test_checkpoint_is_reloaded_when_the_file_changes(app_lib, checkpointed_method, tmp_path):
    settings = app_lib("lib.configs.settings")
    service = app_lib("lib.service").PropagationService(settings.AppSettings(method=checkpointed_method), tmp_path)
    first = service.propagator()
    assert first.checkpoint is None and service.propagator() is first  # nothing published: bundled weights
    published = tmp_path / settings.PUBLISHED_CHECKPOINT
    published.write_bytes(b"v1")
    second = service.propagator()
    assert second is not first and second.checkpoint == str(published)
    assert service.propagator() is second  # unchanged file: no rebuild
    stat = published.stat()
    os.utime(published, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a newer checkpoint
    third = service.propagator()
    assert third is not second and CheckpointedCopy.builds == [None, str(published), str(published)]


def test_explicit_checkpoint_and_option_checks(app_lib, checkpointed_method, tmp_path):
    settings = app_lib("lib.configs.settings")
    service_module = app_lib("lib.service")
    missing = settings.AppSettings(method=checkpointed_method, checkpoint=tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        service_module.PropagationService(missing, tmp_path).propagator()
    with pytest.raises(settings.SettingsError, match="--conf checkpoint: method 'flow' takes no checkpoint"):
        service_module.PropagationService(settings.AppSettings(method="flow", checkpoint=tmp_path / "x.pt"), tmp_path)
    with pytest.raises(settings.SettingsError, match="--conf flow_method: method 'copy' takes no flow_method"):
        service_module.PropagationService(settings.AppSettings.from_conf(
            {"method": "copy", "flow_method": "dis_fine"}, ["copy"]), tmp_path)
    flow = service_module.PropagationService(settings.AppSettings(method="flow"), tmp_path)
    (tmp_path / settings.PUBLISHED_CHECKPOINT).write_bytes(b"ignored by flow")
    assert flow.checkpoint() is None and flow.describe() == {"method": "flow", "checkpoint": None, "note": None}


def test_conf_flow_method_and_box_reach_the_model_session(app_lib, tmp_path):
    """``--conf flow_method dis_fine`` (the accurate mode) and ``--conf flow_box true`` set the carrier of
    the served model's sessions; without them the session defaults."""
    settings = app_lib("lib.configs.settings")
    service_module = app_lib("lib.service")
    default = SessionConfig()
    for conf, carrier, box in (({"flow_method": "dis_fine", "flow_box": "true"}, "dis_fine", True),
                               ({}, default.flow_method, default.flow_box)):
        s = settings.AppSettings.from_conf({"method": "model", **conf}, ["model"])
        config = service_module.PropagationService(s, tmp_path).propagator().config
        assert (config.flow_method, config.flow_box) == (carrier, box)


def test_default_method_without_weights_falls_back_until_a_checkpoint_is_published(app_lib, checkpointed_method,
                                                                                   tmp_path):
    settings = app_lib("lib.configs.settings")
    service_module = app_lib("lib.service")
    CheckpointedCopy.bundled = False
    s = settings.AppSettings(method=checkpointed_method, fallback="flow")
    service = service_module.PropagationService(s, tmp_path)
    assert service.propagator().name == "flow"
    assert service.describe()["method"] == "flow" and "bundled checkpoint missing" in service.describe()["note"]
    (tmp_path / settings.PUBLISHED_CHECKPOINT).write_bytes(b"trained")
    assert isinstance(service.propagator(), CheckpointedCopy)
    assert service.describe() == {"method": checkpointed_method, "note": None,
                                  "checkpoint": str(tmp_path / settings.PUBLISHED_CHECKPOINT)}
    strict = service_module.PropagationService(settings.AppSettings(method=checkpointed_method), tmp_path / "empty")
    with pytest.raises(CheckpointError):  # method configured explicitly: no fallback, the client gets a 503
        strict.propagator()
    conf = settings.AppSettings.from_conf({}, ["flow", "model"])
    assert (conf.method, conf.fallback) == ("model", "flow")
    assert settings.AppSettings.from_conf({"checkpoint": "/x.pt"}, ["flow", "model"]).fallback is None
    assert settings.AppSettings.from_conf({"method": "model"}, ["flow", "model"]).fallback is None


def test_published_checkpoint_supersedes_conf_checkpoint_and_publish_keeps_the_previous(app_lib, checkpointed_method,
                                                                                         tmp_path):
    settings = app_lib("lib.configs.settings")
    service_module = app_lib("lib.service")
    common = app_lib("lib.trainers.common")
    configured = tmp_path / "configured.pt"
    configured.write_bytes(b"configured")
    service = service_module.PropagationService(
        settings.AppSettings(method=checkpointed_method, checkpoint=configured), tmp_path / "model")
    assert service.trains() and service.propagator().checkpoint == str(configured)
    staged = tmp_path / "staged-1.pt"
    staged.write_bytes(b"trained 1")
    first = common.publish(staged, tmp_path / "model")
    published = tmp_path / "model" / settings.PUBLISHED_CHECKPOINT
    assert first == {"checkpoint": str(published), "previous": None} and not staged.exists()
    assert service.propagator().checkpoint == str(published)          # training's output wins, no restart
    staged.write_bytes(b"trained 2")
    second = common.publish(staged, tmp_path / "model")
    assert published.read_bytes() == b"trained 2" and (tmp_path / "model" / common.PREVIOUS_CHECKPOINT).read_bytes() \
        == b"trained 1" and second["previous"] == str(tmp_path / "model" / common.PREVIOUS_CHECKPOINT)
    published.unlink()                                                # rollback to --conf checkpoint
    assert service.propagator().checkpoint == str(configured)
    assert not service_module.PropagationService(settings.AppSettings(method="flow"), tmp_path).trains()


def test_train_options_are_parsed_with_messages(app_lib):
    common = app_lib("lib.trainers.common")
    settings = app_lib("lib.configs.settings")
    assert common.read_option({"steps": "7"}, "steps", 3, "int", 1) == 7
    assert common.read_option({"steps": ""}, "steps", 3, "int", 1) == 3
    assert common.read_option({}, "lr", 0.1, "float", 0.0, 1.0) == 0.1
    for request, key, kind, message in (({"steps": 0}, "steps", "int", "steps: 0 is below 1"),
                                        ({"lr": "fast"}, "lr", "float", "lr: expected a number"),
                                        ({"val_fraction": 0.95}, "val_fraction", "float", "outside")):
        with pytest.raises(settings.RequestError, match=message):
            common.read_option(request, key, None, kind, 1 if kind == "int" else 0.0, 0.9)


def test_session_cache_memory_cap_and_methods_without_sessions(app_lib, tmp_path):
    from servers import tiny_checkpoint

    from cineprop.io import Cine
    from cineprop.methods import build_propagator
    from cineprop.support import SupportSet
    from cineprop.synthetic import moving_shapes

    cache_module = app_lib("lib.session_cache")
    frames, labels = moving_shapes(40, 48, 6, labels=1, seed=0)
    cine, support = Cine(frames), SupportSet.from_labels(labels, [0])
    model = build_propagator("model", checkpoint=str(tiny_checkpoint(tmp_path / "tiny.pt")))
    roomy = cache_module.SessionCache(max_sessions=4, max_bytes=1 << 30)
    for key in ("a", "b"):
        roomy.propagate(key, (1, 1), model, cine, support)
    one = roomy.stats()["mb"] / 2
    assert roomy.stats()["sessions"] == 2 and one > 0
    tight = cache_module.SessionCache(max_sessions=4, max_bytes=int(1.5 * one * 2**20))   # room for one
    for key in ("a", "b"):
        tight.propagate(key, (1, 1), model, cine, support)
    assert tight.stats()["sessions"] == 1 and tight.stats()["evicted"] == 1
    assert tight.propagate("b", (1, 1), model, cine, support).details["repropagation"]["reused_session"]
    assert not tight.propagate("b", (2, 1), model, cine, support).details["repropagation"]["reused_session"]
    flow = cache_module.SessionCache()
    flow.propagate("a", (1, 1), build_propagator("flow"), cine, support)
    assert flow.stats()["sessions"] == 0 and flow.stats()["misses"] == 0      # nothing kept for flow
