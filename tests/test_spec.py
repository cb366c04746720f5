"""RunSpec validation: every bad input gets a clear error naming the field."""

from __future__ import annotations

import math

import pytest

from explodebook.spec import CHOICES, RunSpec, SpecError


def test_defaults_are_the_classic_set_up() -> None:
    spec = RunSpec()
    assert (spec.model, spec.depth, spec.width, spec.activation, spec.init) == (
        "mlp", 1, 25, "relu", "he",
    )
    assert (spec.optimizer, spec.learning_rate, spec.momentum) == ("sgd", 0.01, 0.9)
    assert (spec.batch_size, spec.steps, spec.task) == (32, 1600, "regression")


def test_model_dependent_defaults_are_resolved() -> None:
    rnn = RunSpec(model="rnn")
    assert rnn.activation == "tanh" and rnn.task == "adding"
    # Resolved specs compare equal to the explicit ones (cache keys rely on it).
    assert rnn == RunSpec(model="rnn", activation="tanh", task="adding")
    assert hash(rnn) == hash(RunSpec(model="rnn", activation="tanh", task="adding"))


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"depth": 0}, "depth", "integer between 1"),
        ({"depth": 2.5}, "depth", "integer"),
        ({"width": -3}, "width", "integer between 1"),
        ({"learning_rate": -0.1}, "learning_rate", "(0.0"),
        ({"learning_rate": 0.0}, "learning_rate", "(0.0"),
        ({"learning_rate": math.nan}, "learning_rate", "finite"),
        ({"init_scale": math.inf}, "init_scale", "finite"),
        ({"momentum": 1.0}, "momentum", "[0.0, 1.0)"),
        ({"activation": "softplus"}, "activation", "'relu'"),
        ({"init": "glorot"}, "init", "'xavier'"),
        ({"optimizer": "rmsprop"}, "optimizer", "'sgd'"),
        ({"model": "cnn"}, "model", "'mlp'"),
        ({"model": "rnn", "seq_len": 0}, "seq_len", "integer between 1"),
        ({"model": "rnn", "seq_len": 10, "truncation": 11}, "truncation", "between 1 and 10"),
        ({"truncation": 5}, "truncation", "model='rnn'"),
        ({"model": "rnn", "cell": "lstm", "activation": "relu"}, "activation", "'lstm'"),
        ({"model": "rnn", "activation": "sigmoid"}, "activation", "'tanh' or 'relu'"),
        ({"task": "adding"}, "task", "model='mlp'"),
        ({"clipnorm": 0.0}, "clipnorm", "(0.0"),
        ({"clipvalue": math.nan}, "clipvalue", "finite"),
        ({"l2": -1e-3}, "l2", "[0.0"),
        ({"batch_size": 501}, "batch_size", "500"),
        ({"steps": 0}, "steps", "integer between 1"),
        ({"seed": -1}, "seed", "integer between 0"),
        ({"stop_on_nonfinite": "yes"}, "stop_on_nonfinite", "True or False"),
    ],
)
def test_bad_input_names_field_value_and_what_is_allowed(
    changes: dict, field: str, allowed: str
) -> None:
    with pytest.raises(SpecError) as error:
        RunSpec(**changes)
    message = str(error.value)
    assert f"RunSpec.{field}=" in message
    assert repr(changes[field]) in message
    assert allowed in message


def test_two_clipping_modes_at_once_are_refused() -> None:
    with pytest.raises(SpecError, match="at most one of clipnorm, clipvalue, global_clipnorm"):
        RunSpec(clipnorm=1.0, clipvalue=0.5)


def test_spec_error_is_a_value_error() -> None:
    # Callers that catch ValueError (ipywidgets handlers, argparse-style
    # code) also catch spec errors.
    assert issubclass(SpecError, ValueError)


def test_replace_validates() -> None:
    with pytest.raises(SpecError):
        RunSpec().replace(depth=0)
    assert RunSpec().replace(depth=3).depth == 3


def test_dict_round_trip_and_unknown_keys() -> None:
    spec = RunSpec(model="rnn", cell="gru", truncation=5, clipvalue=0.5, l2=1e-4)
    assert RunSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="unknown RunSpec field"):
        RunSpec.from_dict({"depht": 3})


def test_clipping_property() -> None:
    assert RunSpec().clipping is None
    assert RunSpec(global_clipnorm=2).clipping == ("global_clipnorm", 2.0)


def test_every_choice_is_accepted_somewhere() -> None:
    for field, allowed in CHOICES.items():
        for value in allowed:
            base = {"model": "rnn"} if field == "cell" or value == "adding" else {}
            if field == "activation" and value in ("sigmoid", "linear"):
                base = {"model": "mlp"}
            if field == "model" and value == "rnn":
                base = {}
            assert getattr(RunSpec(**{**base, field: value}), field) == value


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"normalization": "group"}, "normalization", "choose one of"),
        ({"model": "rnn", "normalization": "batch"}, "normalization", "model='mlp' only"),
        ({"residual": 1}, "residual", "True or False"),
        ({"residual": True}, "residual", "depth >= 2"),
        ({"model": "rnn", "depth": 2, "residual": True}, "residual", "model='mlp'"),
        ({"warmup_steps": -1}, "warmup_steps", "integer between 0"),
        ({"warmup_steps": 2.5}, "warmup_steps", "integer between 0"),
    ],
)
def test_new_options_are_validated(changes, field, hint) -> None:
    with pytest.raises(SpecError, match=f"RunSpec.{field}=.*{hint}"):
        RunSpec(**changes)


def test_new_options_default_to_the_old_behaviour_and_round_trip() -> None:
    spec = RunSpec()
    assert (spec.normalization, spec.residual, spec.warmup_steps) == ("none", False, 0)
    deep = RunSpec(depth=3, normalization="layer", residual=True, warmup_steps=10)
    assert RunSpec.from_dict(deep.to_dict()) == deep
    assert deep.to_dict()["normalization"] == "layer"
