"""A top-level `search:` block gives every training task the same trials over the same space; a task's own
block only adds settings to it."""
from __future__ import annotations

import pytest

from core.config import ConfigError, validate

SEARCH = {"n_trials": 4, "sampler": "grid", "space": {"training.learning_rate": [1e-4, 1e-3, 1e-2, 1e-1]}}


def _config(tasks, search=SEARCH):
    return validate({"models": ["m"], "search": search, "tasks": tasks})


def test_every_training_task_gets_the_top_level_search_and_adds_its_own_settings():
    config = _config({"A0": {"method": "tfidf_nb"}, "B": {"method": "full", "variants": ["v1"]},
                      "C": {"method": "lora", "variants": ["v1"], "search": {"space": {"lora.r": [4, 8]}}}})
    full, lora = config.task_search("B", "v1"), config.task_search("C", "v1")
    assert full.n_trials == lora.n_trials == 4 and full.sampler == lora.sampler == "grid"
    assert list(full.space) == ["training.learning_rate"]
    assert list(lora.space) == ["training.learning_rate", "lora.r"]
    assert config.tasks["A0"].search is None  # methods that do not train are not searched


def test_without_a_top_level_search_a_task_block_stands_alone_and_needs_n_trials():
    config = validate({"models": ["m"], "tasks": {"C": {"method": "lora", "variants": ["v1"],
                                                        "search": {"n_trials": 2, "space": {"lora.r": [4, 8]}}}}})
    assert config.task_search("C", "v1").space == {"lora.r": [4, 8]}
    with pytest.raises(ConfigError, match=r"tasks\.C\.search\.n_trials: missing; say how many trials"):
        validate({"models": ["m"], "tasks": {"C": {"method": "lora", "variants": ["v1"],
                                                   "search": {"space": {"lora.r": [4, 8]}}}}})


@pytest.mark.parametrize("task_search, message", [
    ({"n_trials": 8, "space": {"lora.r": [4, 8]}},
     "tasks.C.search.n_trials: the top-level search sets it for every method (4); remove it here"),
    ({"sampler": "tpe", "space": {"lora.r": [4, 8]}}, "tasks.C.search.sampler: the top-level search sets it"),
    ({"space": {"training.learning_rate": [1e-3, 1e-2]}},
     "tasks.C.search.space.training.learning_rate: the top-level search already searches it for every method"),
])
def test_a_task_block_cannot_change_what_every_method_shares(task_search, message):
    with pytest.raises(ConfigError) as error:
        _config({"C": {"method": "lora", "variants": ["v1"], "search": task_search}})
    assert message in str(error.value)


def test_the_top_level_block_needs_n_trials_and_valid_keys_for_every_method():
    with pytest.raises(ConfigError, match="search.n_trials: missing; say how many trials every training task runs"):
        _config({"B": {"method": "full", "variants": ["v1"]}}, {"space": {"training.learning_rate": [1e-3]}})
    with pytest.raises(ConfigError, match=r"lora\.r: not a setting of a 'full' run"):
        _config({"B": {"method": "full", "variants": ["v1"]}}, {"n_trials": 2, "space": {"lora.r": [4, 8]}})
