"""Config defaults have one home, the schemas: settings objects built from an empty
mapping hold exactly what snakemake's own validation fills into an empty section."""
from __future__ import annotations

import copy
import dataclasses

import pytest
from snakemake.utils import validate

from conftest import REPO
from logit_lineage.common.errors import LineageError
from logit_lineage.common.schema import fill_defaults, load_schema, schema_defaults

SECTIONS = sorted(p.name.removesuffix(".schema.yaml") for p in (REPO / "workflow" / "schemas").glob("*.schema.yaml"))


def workflow_defaults(section: str, data: dict | None = None) -> dict:
    """What the workflow fills in (snakemake.utils.validate, set_default=True)."""
    data = {} if data is None else data
    validate(data, str(REPO / "workflow" / "schemas" / f"{section}.schema.yaml"))
    return data


@pytest.mark.parametrize("section", SECTIONS)
def test_fill_defaults_fills_what_snakemake_fills(section):
    assert schema_defaults(section) == workflow_defaults(section)


@pytest.mark.parametrize("section, partial", [
    ("experts", {"data": {"per_class": {"val": 4}, "n_classes": 10}, "rejection": {"mu_grid": {"steps": 3}}}),
    ("sortgrid", {"grid": {"seeds": [1, 2]}, "training": {"max_iters": 20}}),
    ("hub", {"repo_id": "a/b", "retries": 0}),
])
def test_nested_objects_are_filled_around_the_given_values(section, partial):
    before = copy.deepcopy(partial)
    assert fill_defaults(partial, section) == workflow_defaults(section, copy.deepcopy(partial))
    assert partial == before  # the input mapping is left as it was


def test_filling_never_alters_the_schema_it_reads():
    first = schema_defaults("experts")
    first["data"]["per_class"]["val"] = -1
    first["rejection"]["rates"].append(0.99)
    assert schema_defaults("experts") == workflow_defaults("experts")
    assert load_schema("experts")["properties"]["data"]["default"] == {}


def test_a_refused_value_is_one_line_naming_the_key():
    with pytest.raises(LineageError) as info:
        fill_defaults({"per_class": {"val": 0}}, "experts", "data", check=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("invalid config key 'experts.data.per_class.val': 0 is less than the minimum of 2")
    assert message.endswith("(schema: workflow/schemas/experts.schema.yaml)")
    assert fill_defaults({"per_class": {"val": 0}}, "experts", "data")["per_class"] == {"tunev": 20, "val": 0,
                                                                                        "test": 50}


# --- one test per settings object: built from an empty mapping, it holds the schema's defaults ---

def test_hub_settings():
    from logit_lineage.hub.settings import HubSettings

    assert dataclasses.asdict(HubSettings.from_mapping({})) == workflow_defaults("hub")
    assert HubSettings.from_json("{}") == HubSettings()


def test_hub_retry_policy():
    from logit_lineage.hub.retry import RetryPolicy
    from logit_lineage.hub.settings import HubSettings

    hub = workflow_defaults("hub")
    expected = (hub["retries"], hub["backoff_seconds"], hub["backoff_max_seconds"])
    for policy in (RetryPolicy(), RetryPolicy.from_settings(HubSettings.from_mapping({}))):
        assert (policy.retries, policy.backoff_seconds, policy.backoff_max_seconds) == expected


def test_expert_model_and_training_specs():
    from logit_lineage.experts.config import build
    from logit_lineage.experts.expert import ExpertSpec, TrainSpec

    experts = workflow_defaults("experts")
    model = build(ExpertSpec, {}, "experts.model", in_dim=3, n_classes=4)
    assert dataclasses.asdict(model) == {"in_dim": 3, "n_classes": 4, **experts["model"]}
    training = dict(experts["training"])
    training.pop("device")  # the scripts resolve the device apart (train_expert.py)
    assert dataclasses.asdict(build(TrainSpec, {}, "experts.training")) == training
    with pytest.raises(TypeError):
        ExpertSpec()  # sizes known only at run time have no default


def test_gating_specs():
    from logit_lineage.experts.config import build
    from logit_lineage.experts.gating import GatingSpec, GatingTrain

    gating = workflow_defaults("experts")["gating"]
    spec = GatingSpec(n_features=5, n_experts=3)
    train = build(GatingTrain, {}, "experts.gating")
    assert {**dataclasses.asdict(spec), **dataclasses.asdict(train)} == {"n_features": 5, "n_experts": 3, **gating}


def test_generator_spec():
    from logit_lineage.experts.data import GENERATED_KEYS, GeneratorSpec, generator_spec

    data = workflow_defaults("experts")["data"]
    for spec in (generator_spec({}), GeneratorSpec()):
        assert {k: getattr(spec, k) for k in GENERATED_KEYS} == {k: data[k] for k in GENERATED_KEYS}
        assert dict(spec.per_class) == data["per_class"]


def test_rejection_spec():
    from logit_lineage.experts.evaluate import RejectionSpec, rejection_spec

    rej = workflow_defaults("experts")["rejection"]
    expected = RejectionSpec(
        rates=tuple(rej["rates"]), mu_min=rej["mu_grid"]["min"], mu_max=rej["mu_grid"]["max"],
        mu_steps=rej["mu_grid"]["steps"], fixed_point_iters=rej["fixed_point_iters"],
        eg_iters=rej["worst_group"]["iters"], eg_step=rej["worst_group"]["step"], seed=7)
    assert rejection_spec({}, 7) == expected
    assert dataclasses.replace(RejectionSpec(), seed=7) == expected


def test_answer_generation_settings():
    from logit_lineage.distill.answers import GenerationSettings

    expected = workflow_defaults("distill")["generate"]
    expected.pop("prompts")  # a path, not a setting of the sampler
    settings = dataclasses.asdict(GenerationSettings(seed=1))
    assert settings.pop("seed") == 1 and settings == expected


def test_sort_grid_settings():
    from logit_lineage.sortgrid.model import SortModelConfig
    from logit_lineage.sortgrid.train import TrainSettings

    sortgrid = workflow_defaults("sortgrid")
    training = dict(sortgrid["training"])
    training.pop("checkpoint_iters")  # the caller names its intermediate checkpoints: none by default
    settings = dataclasses.asdict(TrainSettings())
    assert settings.pop("checkpoint_iters") == () and settings.pop("betas") == (0.9, 0.95)
    assert settings == training
    model = SortModelConfig()
    assert {k: getattr(model, k) for k in ("vocab_n", "n_embd", "n_heads", "without_pos")} == {
        k: sortgrid[k] for k in ("vocab_n", "n_embd", "n_heads", "without_pos")}
    assert model.max_seq_len == 2 * sortgrid["test_max_k"] + 1
