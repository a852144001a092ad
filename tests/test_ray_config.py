"""The config's `ray:` section and the deployment layout it gives: checked without starting Ray."""

from __future__ import annotations

import pytest

from rewardsvc.config import config_to_dict, parse_config
from rewardsvc.errors import ConfigError
from rewardsvc.rayserve.layout import deployment_order, fit_workers, peer_names
from rewardsvc.registry import scorer_infos
from rewardsvc.rayserve.options import RayConfig

SCORERS = {
    "math": {"type": "math", "workers": 0},
    "code_like": {"type": "math", "workers": 3},
    "mix": {"type": "composite", "components": [{"scorer": "math"}, {"scorer": "code_like", "weight": 0.5}]},
    "gate": {"type": "composite", "mode": "gated", "outcome": {"scorer": "math"}, "process": {"scorer": "mix"}},
}


def test_ray_section_maps_onto_serve_options() -> None:
    cfg = parse_config({
        "scorers": SCORERS,
        "ray": {
            "address": "auto",
            "ingress": {"num_replicas": 3},
            "scorers": {
                "math": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 4, "env_vars": {"HF_HOME": "/models"}}},
                "mix": {"autoscaling": {"min_replicas": 0, "max_replicas": 6, "target_ongoing_requests": 8},
                        "ray_actor_options": {"num_gpus": 0.5, "memory_mb": 2048, "accelerator_type": "H100"},
                        "max_ongoing_requests": 64},
            },
        },
    })
    rc = cfg.ray
    assert isinstance(rc, RayConfig) and rc.address == "auto"
    assert rc.ingress.to_serve()["num_replicas"] == 3
    math = rc.for_scorer("math").to_serve()
    assert math["num_replicas"] == 2
    assert math["ray_actor_options"] == {"num_cpus": 4.0, "num_gpus": 0.0, "runtime_env": {"env_vars": {"HF_HOME": "/models"}}}
    mix = rc.for_scorer("mix").to_serve()
    assert "num_replicas" not in mix and mix["max_ongoing_requests"] == 64
    assert mix["autoscaling_config"]["min_replicas"] == 0 and mix["autoscaling_config"]["max_replicas"] == 6
    assert "initial_replicas" not in mix["autoscaling_config"]  # null is left to Ray's default
    assert mix["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5, "memory": 2048 * 2**20,
                                        "accelerator_type": "H100"}
    assert rc.for_scorer("gate").to_serve()["num_replicas"] == 1  # unlisted: one replica, one CPU
    # The section survives the dict round trip (a checkpoint's rewardsvc.yaml).
    again = parse_config(config_to_dict(cfg))
    assert again.ray == rc


@pytest.mark.parametrize("ray, message", [
    ({"scorer": {}}, "unknown key"),
    ({"scorers": {"nope": {}}}, "not in `scorers:`"),
    ({"scorers": {"math": {"num_replicas": 2, "autoscaling": {}}}}, "not both"),
    ({"ingress": {"num_replicas": 0}}, "at least 1"),
    ({"scorers": {"math": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}}}, "min_replicas <= max_replicas"),
    ({"scorers": {"math": {"ray_actor_options": {"num_gpus": -1}}}}, ">= 0"),
    ({"scorers": {"math": {"ray_actor_options": {"gpus": 1}}}}, "accepted"),
    ({"proxy_location": "Everywhere"}, "EveryNode"),
])
def test_ray_section_mistakes_are_config_errors(ray: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"scorers": SCORERS, "ray": ray})


def test_without_a_ray_section_nothing_changes() -> None:
    cfg = parse_config({"scorers": {"math": {"type": "math"}}})
    assert cfg.ray is None and "ray" not in config_to_dict(cfg)


def test_deployments_come_after_the_scorers_they_call() -> None:
    cfg = parse_config({"scorers": SCORERS})
    order = deployment_order(cfg)
    assert sorted(order) == sorted(SCORERS)
    for spec in cfg.scorers:
        for peer in peer_names(spec):
            assert order.index(peer) < order.index(spec.name)
    assert peer_names(next(s for s in cfg.scorers if s.name == "gate")) == ["math", "mix"]


def test_composite_loops_and_missing_components_are_refused() -> None:
    loop = {
        "a": {"type": "composite", "components": [{"scorer": "b"}]},
        "b": {"type": "composite", "components": [{"scorer": "a"}]},
    }
    with pytest.raises(ConfigError, match="loop: a -> b -> a"):
        deployment_order(parse_config({"scorers": loop}))
    with pytest.raises(ConfigError, match="'ghost', which is not in"):
        deployment_order(parse_config({"scorers": {"a": {"type": "composite", "components": [{"scorer": "ghost"}]}}}))


def test_workers_zero_means_one_per_reserved_cpu() -> None:
    cfg = parse_config({"scorers": SCORERS})
    specs = {s.name: s for s in cfg.scorers}
    assert fit_workers(specs["math"], 4.0).config.workers == 4
    assert fit_workers(specs["math"], 0.5).config.workers == 1
    assert fit_workers(specs["code_like"], 8.0).config.workers == 3  # an explicit count stays
    assert fit_workers(specs["mix"], 2.0) is specs["mix"]  # no workers field: untouched
    assert specs["math"].config.workers == 0  # the original spec is not modified


def test_scorer_infos_match_listscorers_shape() -> None:
    infos = scorer_infos(parse_config({"scorers": SCORERS}).scorers)
    assert [i["name"] for i in infos] == list(SCORERS)
    math = infos[0]
    assert math["kind"] == "math" and {o["name"] for o in math["options"]} == {"extract", "timeout_s"}
