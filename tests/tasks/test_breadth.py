"""Breadth per family: every zoo architecture passes `comprehensive` on the CPU runtimes, or is refused at resolve.

The zoo (tests/tiny_zoo.py) holds, beside tests/tiny_models.py's eight, architectures chosen for how
differently they are driven. By default each one runs on one CPU runtime, the runtimes rotated
within each family so every runtime sees every family; ACCEL_FULL_ZOO=1 runs every architecture on
every runtime. Architectures accel cannot drive today are refused when they resolve, with the reason.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from accel.tasks.errors import UnsupportedModelError
from accel.tasks.families import FAMILIES
from accel.tasks.resolve import UndrivableModelError, resolve_model
from tests.tiny_models import TINY_MODELS
from tests.tiny_zoo import ZOO_MODELS, build_zoo_model

RUNTIMES = ("torch", "onnxruntime", "openvino")
FULL_ZOO = os.environ.get("ACCEL_FULL_ZOO") == "1"

# Architectures refused at resolve, with what the reason must say.
REFUSED = {
    "resnet": "config states no image_size",
    "speech-to-text": "this model takes neither",
    "ast": "this model takes neither",
    "wav2vec2-bert": "this model takes neither",
    "siglip": "without attention_mask",
    "siglip2": "vision config states no image_size",
}
# (architecture, runtime) pairs that do not pass today, each for a reason outside the resolver's reach:
# only the full matrix runs them, as strict expected failures (so a fix shows up as an XPASS to adopt).
BROKEN = {
    ("align", "openvino"): "OpenVINO cannot convert ALIGN's pooler (an AvgPool kernel larger than its input)",
}
DRIVEN = [name for name in ZOO_MODELS if name not in REFUSED]


def rotation() -> list[tuple[str, str]]:
    """(architecture, runtime) pairs: the j-th driven architecture of a family on runtime j mod 3."""
    pairs = []
    for family in FAMILIES:
        names = [n for n in DRIVEN if ZOO_MODELS[n].family == family]
        for j, name in enumerate(names):
            choices = RUNTIMES[j % 3 :] + RUNTIMES[: j % 3]
            pairs.append((name, next(r for r in choices if (name, r) not in BROKEN)))
    return pairs


def matrix() -> list:
    if not FULL_ZOO:
        return [pytest.param(name, runtime, id=f"{name}-{runtime}") for name, runtime in rotation()]
    return [
        pytest.param(
            name,
            runtime,
            id=f"{name}-{runtime}",
            marks=[pytest.mark.xfail(strict=True, reason=BROKEN[name, runtime])] if (name, runtime) in BROKEN else [],
        )
        for name in DRIVEN
        for runtime in RUNTIMES
    ]


@pytest.fixture(scope="session")
def zoo_model(tmp_path_factory):
    """`zoo_model(name)`: the directory of a zoo model, built the first time it is asked for."""
    root = tmp_path_factory.mktemp("tiny-zoo")
    return lambda name: build_zoo_model(root, name)


def test_the_zoo_has_four_architectures_per_family_each_built_offline():
    for family in FAMILIES:
        driven = [
            m for m in (*TINY_MODELS.values(), *ZOO_MODELS.values()) if m.family == family and m.name not in REFUSED
        ]
        assert len(driven) >= 4, (family, [m.name for m in driven])


def test_every_runtime_sees_every_family_in_the_rotation():
    seen = {(ZOO_MODELS[name].family, runtime) for name, runtime in rotation()}
    assert seen == {(family, runtime) for family in FAMILIES for runtime in RUNTIMES}
    assert not set(rotation()) & set(BROKEN)


@pytest.mark.parametrize("name", DRIVEN)
def test_zoo_models_resolve_to_their_family_and_task(name, zoo_model):
    spec = ZOO_MODELS[name]
    model = resolve_model(str(zoo_model(name)))
    assert (model.family, model.task, model.architecture) == (spec.family, spec.task, spec.architecture)
    assert model.parameters_source == "safetensors" and 1_000 < model.parameters < 500_000


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_accel_cannot_drive_is_refused_at_resolve_with_the_reason(name, zoo_model):
    spec = ZOO_MODELS[name]
    with pytest.raises(UndrivableModelError) as err:
        resolve_model(str(zoo_model(name)))
    message = str(err.value)
    assert REFUSED[name] in message and spec.architecture in message and spec.family in message
    assert isinstance(err.value, UnsupportedModelError)  # the CLI's exit 2, the API's 4xx


@pytest.fixture(scope="module")
def zoo_reports(zoo_model, skills_dir):
    """Every matrix case generated and tested at the comprehensive level, two at a time (each generation
    and each test stage in an isolated process of its own, so the two use both cores)."""
    from accel.tasks.generate_stage import generate_isolated
    from accel.tasks.validate import validate

    cases = [tuple(p.values) for p in matrix()]
    models = {name: str(zoo_model(name)) for name, _ in cases}  # built here, one after the other

    def run(case: tuple[str, str]):
        name, runtime = case
        try:
            skill = generate_isolated(models[name], f"cpu/{runtime}", out_dir=str(skills_dir))
            return skill, validate(skill.path, "comprehensive", record=False)
        except Exception as err:  # that case's test raises it (an expected failure under ACCEL_FULL_ZOO)
            return err, None

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cases, pool.map(run, cases), strict=True))


@pytest.mark.parametrize(("name", "runtime"), matrix())
def test_zoo_architecture_passes_comprehensive(name, runtime, zoo_reports):
    skill, report = zoo_reports[name, runtime]
    if isinstance(skill, Exception):
        raise skill
    wrong = [(c.check, c.status, c.message[:300]) for c in report.checks if c.status in ("failed", "error")]
    assert report.status == "passed" and not wrong, wrong
    ran = {c.check for c in report.checks if c.status == "passed"}
    assert {"loads", "forward_shapes", "finite", "parity", "batch_invariance", "real_input"} <= ran
    if skill.manifest["generation"] is not None:
        assert "generation_parity" in ran
    if ZOO_MODELS[name].family in ("text-encoder", "text-generation", "text2text"):
        assert "padding_invariance" in ran
