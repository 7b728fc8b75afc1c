"""Method options: settings by name (strings from a command line or ``--conf``) → each method's options dataclass.

One conversion rule (``cineprop.options``) serves the session, the relearning recipe and every
method; bad keys and values are a ``CinepropError`` naming the key.
"""

from __future__ import annotations

import argparse

import pytest

from cineprop.cli.common import build_methods
from cineprop.errors import CinepropError
from cineprop.methods import (CheckpointOptions, ModelOptions, NoOptions, accepted_options, build_propagator,
                              method_options)
from cineprop.options import convert
from cineprop.relearn.config import RelearnConfig
from cineprop.session_config import SessionConfig


def test_strings_become_the_methods_options():
    opts = method_options("model", {"checkpoint": "m.pt", "flow_weight": "0", "memory": "no", "max_shots": "2",
                                    "device": None})
    assert opts == ModelOptions(checkpoint="m.pt", session=SessionConfig(flow_weight=0.0, memory=False, max_shots=2))
    relearn = method_options("relearn", {"steps": "7", "train": "tau, head", "flow_weight": "0.25", "progress": "on"})
    assert relearn.relearn == RelearnConfig(steps=7, train=("tau", "head")) and relearn.progress is True
    assert relearn.session == SessionConfig(flow_weight=0.25) and relearn.checkpoint is None
    assert method_options("copy", {}) == NoOptions() and method_options("copy", {"checkpoint": None}) == NoOptions()
    assert method_options("model", {"max_shots": 4, "use_roi": False}).session == SessionConfig(max_shots=4,
                                                                                                use_roi=False)


def test_names_each_method_accepts():
    assert accepted_options("copy") == frozenset()
    assert {"checkpoint", "device", "flow_weight", "flag_threshold"} <= accepted_options("model")
    assert {"steps", "lambda_w", "train", "progress", "flow_weight"} <= accepted_options("relearn")
    assert "steps" not in accepted_options("model")


@pytest.mark.parametrize("name, settings, message", [
    ("copy", {"checkpoint": "x.pt"}, r"unknown copy option\(s\) checkpoint: .* it takes none"),
    ("flow", {"checkpoint": "x.pt"},
     r"unknown flow option\(s\) checkpoint: .* it takes absent_above, absent_below_match, absent_outward, anchor, box, match_weight"),
    ("model", {"lambda_w": "0"}, r"unknown model option\(s\) lambda_w: method 'model' does not take options by "
                                 r"these names; it takes .*flow_weight"),
    ("model", {"max_shots": "2.5"}, r"model option max_shots='2.5': expected int"),
    ("model", {"memory": "maybe"}, r"model option memory='maybe': expected bool"),
    ("model", {"flow_weight": "heavy"}, r"model option flow_weight='heavy': expected float"),
    ("model", {"flow_weight": "nan"}, r"model option flow_weight='nan': expected float"),
    ("relearn", {"steps": "many"}, r"relearn option steps='many': expected int"),
    ("relearn", {"train": "tau,decoder"}, r"train must be a non-empty subset"),   # the config's own check
    ("magic", {}, r"unknown method 'magic'"),
])
def test_bad_keys_and_values_are_clear_errors(name, settings, message):
    with pytest.raises(CinepropError, match=message):
        method_options(name, settings)


def test_one_rule_for_every_settings_dataclass():
    for on, off in (("yes", "no"), ("TRUE", "false"), ("1", "0"), ("on", "off")):
        assert SessionConfig().with_options({"memory": off, "use_roi": on}) == SessionConfig(memory=False)
    assert RelearnConfig().with_options({"steps": "3", "lr": "1e-4"}) == RelearnConfig(steps=3, lr=1e-4)
    with pytest.raises(CinepropError, match="unknown session option"):
        SessionConfig().with_options({"lambda_w": "0"})
    assert convert("3.0", int) == 3 and convert(None, str | None) is None and convert(["a", " b"], tuple[str, ...]) \
        == ("a", "b")
    for value, kind in (("3.5", int), (True, int), ("x", float), ("2", bool)):
        with pytest.raises(ValueError):
            convert(value, kind)


def test_build_from_an_options_object_or_by_name():
    assert type(build_propagator("copy", method_options("copy"))).__name__ == "CopyPropagator"
    with pytest.raises(CinepropError, match="not both"):
        build_propagator("copy", NoOptions(), checkpoint="x.pt")
    assert CheckpointOptions() == CheckpointOptions(checkpoint=None, device=None)


def test_several_methods_share_settings_but_none_may_go_unused():
    args = argparse.Namespace(method=["copy", "flow"], checkpoint=None, device=None, steps=None,
                              option=["flow_weight=0"])
    with pytest.raises(CinepropError, match=r"no method of copy, flow takes option\(s\) flow_weight"):
        list(build_methods(args))
    args.option = []
    assert [name for name, _ in build_methods(args)] == ["copy", "flow"]
