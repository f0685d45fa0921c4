"""The report's budget and tuning checks, on made-up run records."""
from __future__ import annotations

from core.record import RunRecord
from evaluation import fairness


def record(run_id, steps=None, samples=None, flops=None, search=None, method="lora", status="complete"):
    base = run_id.rsplit("_s", 1)[0]
    fields = {"run_id": run_id, "base_run_id": base, "method": method, "status": status}
    if steps is not None:
        fields["budget"] = {"optimizer_steps": steps, "samples_seen": samples, "train_flops": flops}
    if search is not None:
        fields["search"] = {"best_trial": 0, "validation_accuracy": 0.9, "params": {}, "folder": "search", **search}
    return RunRecord.model_validate(fields)


def test_budgets_are_means_over_seeds_and_skip_runs_without_one():
    records = [record("B1_v1_s42", 100, 800, 2e12), record("B1_v1_s43", 110, 880, 2.2e12),
               record("A0_s42", method="tfidf_nb"), record("C1_v1_s42", 5, 40, 1e9, status="failed")]
    assert fairness.budgets(records) == {"B1_v1": {"optimizer_steps": 105, "samples_seen": 840,
                                                   "train_flops": 2.1e12}}


def test_a_run_more_than_5_percent_from_the_median_is_flagged():
    spent = {"B": {"optimizer_steps": 63, "samples_seen": 2000}, "C": {"optimizer_steps": 250, "samples_seen": 2000},
             "D": {"optimizer_steps": 250, "samples_seen": 2000}, "E": {"optimizer_steps": 262, "samples_seen": 2000}}
    assert fairness.unequal_budgets(spent) == ["B"]  # 262 is 4.8% above 250: within
    spent["E"]["optimizer_steps"] = 263  # 5.2% above
    assert fairness.unequal_budgets(spent) == ["B", "E"]
    assert fairness.unequal_budgets({"C": {"optimizer_steps": 250, "samples_seen": 2000}}) == []


def test_tuning_differences_are_flagged():
    grid = {"trials": {"COMPLETE": 4}, "space": {"training.learning_rate": {}}}
    records = [record("C1_v1_s42", search=grid), record("D1_v1_s42", search=grid),
               record("E1_v1_s42", search={"trials": {"COMPLETE": 3, "PRUNED": 3}, "space": {"training.learning_rate": {}}}),
               record("F1_v1_s42", search={"trials": {"COMPLETE": 4}, "space": {"training.learning_rate": {}, "lora.r": {}}}),
               record("B1_v1_s42"), record("A0_s42", method="tfidf_nb")]
    tuned = fairness.tuning(records)
    assert tuned["E1_v1"] == {"trials": 6, "space": ["training.learning_rate"]} and tuned["B1_v1"] == {}
    assert "A0" not in tuned
    assert fairness.unequal_tuning(tuned) == ["B1_v1", "E1_v1", "F1_v1"]
    assert fairness.unequal_tuning({"B1_v1": {}, "C1_v1": {}}) == []  # nothing searched: nothing uneven


def test_the_section_states_the_budget_and_names_the_unequal_runs():
    text = "\n".join(fairness.section([record("B1_v1_s42", 63, 2016, 1e12), record("C1_v1_s42", 250, 2000, 5e11),
                                       record("D1_v1_s42", 250, 2000, 5e11)]))
    assert "| B1_v1 | 63 | 2,016 | 1e+12 |" in text
    assert "**Unequal budgets:** B1_v1 trained more than 5% more or fewer" in text
    even = "\n".join(fairness.section([record("C1_v1_s42", 250, 2000, 5e11), record("D1_v1_s42", 250, 2000, 5e11)]))
    assert "Every training run had the same budget (within 5%)." in even
