"""report.md and plots/, rebuilt from run folders (constructed here, nothing trained)."""
from __future__ import annotations

import io
import json
import re

import numpy as np

import pytest
import yaml

from conftest import tiny_config
from evaluation.report import rebuild_outputs
from fake_runs import epoch_rows, labels, predictions_with_errors, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def study(tmp_path):
    """A0 (no epochs), B1_v1 and C1_v1 (3 epochs each; B has the higher validation accuracy, so it is the
    reference; C differs from B on 6 texts: not distinguishable), a failed D1_v1."""
    true = labels(400)
    write_run(tmp_path, "A0", true, predictions_with_errors(true, range(0, 100)), method="tfidf_nb",
              trainable=5000, total=5000, seconds_per_epoch=None)
    write_run(tmp_path, "B1_v1", true, predictions_with_errors(true, range(0, 40)), epochs=epoch_rows([0.8, 0.88, 0.9]),
              trainable=27_620, total=27_620, seconds_per_epoch=3.5)
    write_run(tmp_path, "C1_v1", true, predictions_with_errors(true, range(2, 44)), method="lora",
              epochs=epoch_rows([0.7, 0.85, 0.89]), trainable=644, total=28_264, seconds_per_epoch=1.25)
    folder = write_run(tmp_path, "D1_v1", true, true, method="lora", status="failed")
    record = json.loads((folder / "metrics.json").read_text())
    record["error"] = f"OSError: no file named '{tmp_path}/models/tiny/config.json' in the model folder"
    (folder / "metrics.json").write_text(json.dumps(record))
    return tmp_path


def test_every_plot_is_written_and_not_empty(study):
    rebuild_outputs(study)
    plots = study / "plots"
    expected = {"compare-test-accuracy.png", "compare-f1-macro.png", "compare-seconds-per-epoch.png",
                "compare-trainable-parameters.png", "A0-confusion.png", "B1_v1-curves.png", "B1_v1-confusion.png",
                "C1_v1-curves.png", "C1_v1-confusion.png", "frontier.png"}
    # no curves for A0 (no epochs) nor D1_v1 (failed); the frontier by trainable parameters: B and C (A0's
    # vocabulary is no trainable parameters), none by training seconds (no run records them)
    assert {p.name for p in plots.glob("*.png")} == expected
    for path in plots.glob("*.png"):
        width, height = _png_size(path)
        assert width >= 400 and height >= 200 and path.stat().st_size > 10_000, path.name


def test_comparison_charts_grow_with_the_number_of_runs(study):
    rebuild_outputs(study)
    three_runs = _png_size(study / "plots" / "compare-test-accuracy.png")[1]
    true = labels(400)
    for number in range(2, 10):
        write_run(study, f"E{number}_v1", true, predictions_with_errors(true, range(number * 5)), method="lora")
    rebuild_outputs(study)
    assert _png_size(study / "plots" / "compare-test-accuracy.png")[1] > three_runs + 200  # run ids do not overlap


def _runs_table(report: str) -> dict[str, str]:
    rows = {}
    for line in report.split("## Runs")[1].splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("| *"), line)
    return rows


def test_report_table_statistics_data_and_image_links(study):
    true = labels(400)  # E: right on 6 texts B gets wrong, never the reverse: McNemar p 0.031, Holm 0.062
    write_run(study, "E1_v1", true, predictions_with_errors(true, range(6, 40)), method="lora")
    rebuild_outputs(study)
    report = (study / "report.md").read_text()
    rows = _runs_table(report)
    header = rows["run"]
    for column in ("task", "method", "model", "variant", "precision", "s/epoch", "val. accuracy",
                   "test accuracy [95% CI]", "macro-F1 [95% CI]", "trainable %", "Δ test accuracy vs B1_v1 [95% CI]",
                   "McNemar p", "Holm p"):
        assert column in header
    assert "tied" not in report.lower() and "best run" not in report.lower()
    assert "| **B1_v1** | B | full | tiny-bert | v1 | fp32 | 3.5 | 0.9000 | 0.9000 [" in rows["B1_v1"]
    assert rows["B1_v1"].endswith("| **reference** | - | - |")
    # C: right on 2 texts B gets wrong (0, 1), wrong on 4 B gets right (40-43): -0.005, exact p = 0.6875
    c = re.search(r"\| -0\.0050 \[(-0\.\d+), \+(0\.\d+)\] not distinguishable at 0\.05 \(Holm\) \| 0\.688 \| (\S+) \|$",
                  rows["C1_v1"])
    assert c and float(c[1]) < -0.005 < float(c[2]) and float(c[3]) >= 0.688
    e = r"\| \+0\.0150 \[\+0\.\d+, \+0\.\d+\] not distinguishable at 0\.05 \(Holm\) \| 0\.031 \| 0\.062 \|$"
    assert re.search(e, rows["E1_v1"])
    a0 = re.search(r"\| -0\.1500 \[(-0\.\d+), (-0\.\d+)\] \| <0\.001 \| <0\.001 \|$", rows["A0"])  # 60 texts, one way
    assert a0 and float(a0[1]) < -0.15 < float(a0[2])
    interval = re.search(r"0\.7500 \[(0\.\d+), (0\.\d+)\]", rows["A0"])
    assert float(interval[1]) < 0.75 < float(interval[2])
    assert "- **Reference run**: `B1_v1`, the run with the highest validation accuracy" in report
    assert "over the whole family of 3 comparisons" in report
    # The data source by its folder's name, the run folders as "beside this report": no absolute path anywhere
    assert "| `ag_news` | 100 | 20 | 400 | World, Sports, Business, Sci/Tech | all |" in report
    assert "Rebuilt from the run folders beside this report (5 runs: 4 complete, 1 failed)." in report
    assert "/data/ag_news" not in report and str(study) not in report and "](/" not in report
    assert "| D1_v1 | OSError: no file named 'config.json' in the model folder |" in report
    assert "Means over seeds" not in report  # one seed each
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 11 and all((study / link).is_file() for link in links)  # 10 before, and the frontier (B, C)
    assert "plots/B1_v1-curves.png" in links and not any(link.startswith("/") for link in links)


def test_report_compares_with_the_configured_reference_run(study):
    rebuild_outputs(study, reference_run="A0")
    report = (study / "report.md").read_text()
    rows = _runs_table(report)
    assert "Δ test accuracy vs A0 [95% CI]" in rows["run"]
    assert rows["A0"].startswith("| **A0** |") and "| **reference** |" in rows["A0"]
    assert re.search(r"\| \+0\.1500 \[\+0\.\d+, \+0\.\d+\] \| <0\.001 \| <0\.001 \|$", rows["B1_v1"])
    assert "- **Reference run**: `A0`, named by the config's `reference_run`." in report


def test_report_without_a_reference_says_so(tmp_path):
    true = labels(400)
    write_run(tmp_path, "A0", true, predictions_with_errors(true, range(40)), method="tfidf_nb")
    rebuild_outputs(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "- **Reference run**: none." in report and "| A0 |" in report
    assert _runs_table(report)["A0"].endswith("| - | - | - |")


def test_report_compares_means_when_runs_have_seeds(tmp_path):
    true = labels(400)
    for seed, (b_wrong, c_wrong) in {1: (40, 60), 2: (48, 54), 3: (44, 50)}.items():
        write_run(tmp_path, f"B1_v1_s{seed}", true, predictions_with_errors(true, range(b_wrong)), seed=seed,
                  base_run_id="B1_v1", epochs=epoch_rows([0.9]))
        write_run(tmp_path, f"C1_v1_s{seed}", true, predictions_with_errors(true, range(c_wrong)), seed=seed,
                  base_run_id="C1_v1", method="lora", epochs=epoch_rows([0.8]))
    write_run(tmp_path, "C1_v1_s4", true, true, seed=4, base_run_id="C1_v1", method="lora", status="failed")
    rebuild_outputs(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "Reference: **B1_v1**." in report
    means = [line for line in report.split("## Means over seeds")[1].split("## Runs")[0].splitlines()
             if line.startswith("| B1_v1") or line.startswith("| C1_v1")]
    assert means[0].startswith("| B1_v1") and "| 0.8900 ± 0.0100 |" in means[0] and "| **reference** |" in means[0]
    # B's mean over seeds 0.89, sd 0.01: t(0.975, 2 df) x 0.01 / sqrt(3) = 0.024841 either side
    assert "| 0.8900 ± 0.0100 [0.8652, 0.9148] |" in means[0]
    # C - B per seed: -20/400, -6/400, -6/400: mean -0.026667, sample sd 0.020207, se 0.011667,
    # t(0.975, 2 df) = 4.302653 -> half-width 0.050198; seed 4 failed on C's side: 1 unpaired
    assert "| 0.8633 ± 0.0126 |" in means[1]
    assert "| -0.0267 [-0.0769, +0.0235] | -0.0500, -0.0150, -0.0150 | 1 |" in means[1]
    # McNemar per seed: 20, 6 and 6 discordant texts, all one way: p = 2 x 0.5^20, 0.03125, 0.03125;
    # Holm over the 3: 6 x 0.5^20, 0.0625, 0.0625: distinguishable in 1 seed of 3 (2 of 3 before correction)
    assert means[1].endswith("| 1/3 |")
    assert "B1_v1_s1" in report and "B1_v1_s2" in report  # the per-run table is still there
    assert "Δ test accuracy vs B1_v1 (same seed) [95% CI]" in report


def test_stale_plots_are_removed(study):
    (study / "plots").mkdir()
    (study / "plots" / "Z9_v1-curves.png").write_bytes(PNG_SIGNATURE)
    rebuild_outputs(study)
    assert not (study / "plots" / "Z9_v1-curves.png").exists()


def test_report_command_rebuilds_an_existing_results_folder(study, tmp_path_factory, capsys):
    from main import main

    folder = tmp_path_factory.mktemp("config")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(folder, [folder], study, reference_run="A0")))
    assert main(["report", "--config", str(config)]) == 0
    assert "report.md" in capsys.readouterr().out
    assert (study / "report.md").stat().st_size > 1000 and (study / "summary.csv").is_file()
    assert "Δ test accuracy vs A0 [95% CI]" in (study / "report.md").read_text()
    assert main(["report", "--config", str(config), f"output_dir={study / 'nowhere'}"]) == 2
    assert "does not exist; nothing to report on" in capsys.readouterr().err


def test_empty_folder_gives_a_report_without_tables(tmp_path):
    rebuild_outputs(tmp_path)
    assert "No run has completed yet." in (tmp_path / "report.md").read_text()
    assert list((tmp_path / "plots").glob("*.png")) == []


def test_pareto_optimal_beyond_noise_by_hand():
    from evaluation.plots import pareto_within_noise

    # cost, accuracy; every pair distinguishable (p 0.01) except 1-2 (p 0.5) and 3-5 (not tested: other texts).
    # 0 (1, 0.80) cheapest; 1 (2, 0.85) distinguishably better; 2 (3, 0.86) within noise of 1 and dearer:
    # dominated by 1 (a plain Pareto front would keep it); 3 (4, 0.90) best; 4 (4, 0.88) distinguishably worse
    # at equal cost: dominated; 5 (5, 0.89) has no test against 3, and every run cheaper than it is
    # distinguishably less accurate: optimal.
    p = np.full((6, 6), 0.01)
    np.fill_diagonal(p, 1.0)
    p[1, 2] = p[2, 1] = 0.5
    p[3, 5] = p[5, 3] = np.nan
    front = pareto_within_noise([1, 2, 3, 4, 4, 5], [0.80, 0.85, 0.86, 0.90, 0.88, 0.89], p)
    assert front.tolist() == [True, True, False, True, False, True]
    within = np.array([[1.0, 0.3], [0.3, 1.0]])
    assert pareto_within_noise([1, 1], [0.5, 0.6], within).tolist() == [True, True]  # same cost, within noise
    assert pareto_within_noise([1, 2], [0.5, 0.6], within).tolist() == [True, False]  # within noise, dearer
    assert pareto_within_noise([1, 2], [0.5, 0.6], np.array([[1.0, 0.01], [0.01, 1.0]])).tolist() == [True, True]
    # A chain: 1 is within noise of 0 and of 2, but 2 is distinguishably better than 0. 1 is off the front (0 is
    # as accurate within noise and cheaper); 1 does not take 2 off with it: 2 is better than everything on it.
    chain = np.array([[1.0, 0.5, 0.01], [0.5, 1.0, 0.5], [0.01, 0.5, 1.0]])
    assert pareto_within_noise([1, 2, 3], [0.80, 0.81, 0.82], chain).tolist() == [True, False, True]


def test_frontier_and_rank_sweep_plots_need_what_they_show(tmp_path):
    import json

    true = labels(200)
    runs = {"FT1_v1": ("full", None, 20_000, 30.0, 10), "HD1_v1": ("head", None, 1_000, 5.0, 40),
            "LR1_r4": ("lora", (4, False), 2_000, 10.0, 30), "LR1_r16": ("lora", (16, False), 8_000, 11.0, 26),
            "RS1_r4": ("lora", (4, True), 2_000, 10.0, 28), "RS1_r16": ("lora", (16, True), 8_000, 11.0, 20)}
    for base, (method, lora, trainable, seconds, wrong) in runs.items():
        for seed in (1, 2):
            folder = write_run(tmp_path, f"{base}_s{seed}", true, predictions_with_errors(true, range(wrong + seed)),
                               method=method, seed=seed, base_run_id=base, trainable=trainable, total=30_000,
                               epochs=epoch_rows([0.8]))
            record = json.loads((folder / "metrics.json").read_text())
            record["timing"]["train_seconds"] = seconds
            if lora:
                record["config"]["lora"] = {"r": lora[0], "lora_alpha": 16, "target_modules": ["query", "value"],
                                            "use_rslora": lora[1]}
            (folder / "metrics.json").write_text(json.dumps(record))
    rebuild_outputs(tmp_path)
    plots = tmp_path / "plots"
    for name in ("frontier.png", "rank-sweep.png"):
        width, height = _png_size(plots / name)
        assert width >= 800 and height >= 400 and (plots / name).stat().st_size > 20_000, name
    assert "plots/frontier.png" in (tmp_path / "report.md").read_text()

    # One LoRA rank per family: no sweep to draw; one run that trains: no frontier.
    for seed in (1, 2):
        for base in ("LR1_r16", "RS1_r16", "RS1_r4", "LR1_r4", "HD1_v1"):
            for path in (tmp_path / f"{base}_s{seed}").iterdir():
                path.unlink()
            (tmp_path / f"{base}_s{seed}").rmdir()
    rebuild_outputs(tmp_path)
    assert not (plots / "rank-sweep.png").exists() and not (plots / "frontier.png").exists()


@pytest.mark.parametrize("best, flagged", [(0.008, "the highest of 0.002, 0.004, 0.008"), (0.004, None),
                                           (0.002, "the lowest of 0.002, 0.004, 0.008")])
def test_a_search_whose_best_is_at_the_edge_of_its_grid_says_so(tmp_path, best, flagged):
    import json

    true = labels(40)
    folder = write_run(tmp_path, "C1_v1", true, true, method="lora", epochs=epoch_rows([0.9]))
    record = json.loads((folder / "metrics.json").read_text())
    grid = [0.002, 0.004, 0.008]
    record["search"] = {"best_trial": grid.index(best), "validation_accuracy": 0.9, "folder": "search/C1_v1",
                        "params": {"training.learning_rate": best, "training.batch_size": 8},
                        "space": {"training.learning_rate": {"kind": "categorical", "choices": grid},
                                  "training.batch_size": {"kind": "categorical", "choices": [8, 16]}},
                        "trials": {"COMPLETE": 3}}
    (folder / "metrics.json").write_text(json.dumps(record))
    (folder / "search.csv").write_text("trial,training.learning_rate,training.batch_size,validation_accuracy,state\n"
                                       + "".join(f"{i},{lr},8,0.9,COMPLETE\n" for i, lr in enumerate(grid)))
    rebuild_outputs(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "### C1_v1" in report
    assert "Trials: `C1_v1/search.csv`." in report  # search/C1_v1/ is not in this folder: the run's own copy
    if flagged:
        assert f"**At the edge of its choices**: training.learning_rate={best:g} ({flagged})" in report
        assert "batch_size=8 (" not in report  # two choices: no edge to speak of
    else:
        assert "At the edge" not in report


def test_frontier_labels_go_to_the_pareto_points_first_and_never_crowd():
    from evaluation.plots import uncrowded

    x = np.array([0.0, 0.01, 0.5, 1.0, 1.0])
    y = np.array([0.0, 0.01, 0.5, 1.0, 0.2])
    front = np.array([False, True, False, False, False])
    placed = uncrowded(x, y, first=front)
    assert placed[0] == 1 and 0 not in placed  # the Pareto point is named; its near twin is not
    assert sorted(placed) == [1, 2, 3, 4]  # everything apart from it is named
    assert sorted(uncrowded(x, y, first=~front)) == [0, 2, 3, 4]  # the order decides which twin
    assert uncrowded(np.ones(3), np.ones(3), first=np.zeros(3, bool)) == [0]  # no span: one label


MADE_UP_MEANS = ("label,base_run,method,seeds,validation_accuracy_mean,test_accuracy_mean,test_accuracy_mean_low,"
                 "test_accuracy_mean_high,compared_to,accuracy_diff,p_holm,within_noise_of_best,trainable_parameters,"
                 "optimizer_steps,train_seconds,peak_rss_increase_mb\n") + """\
TF-IDF + Naive Bayes,A0,tfidf_nb,3 (identical predictions),,0.861,,,R1,-0.020,0.0004,False,,,0.05,1
LoRA all-linear r 8,R1,lora,3,0.884,0.883,0.876,0.890,R1,,,True,339460,250,52.7,390
IA3,IA1,peft,3,0.874,0.879,0.876,0.882,R1,-0.004,0.41,True,15364,250,31.4,224
LayerNorm tuning,LN1,peft,3,0.870,0.873,0.865,0.881,R1,-0.010,0.09,True,11524,250,27.9,250
full fine-tuning,FT1,full,3,0.873,0.877,0.868,0.886,R1,-0.006,0.20,True,22714756,63,29.1,93
linear probe (head only),HD1,head,3,0.818,0.819,0.814,0.823,R1,-0.064,0.0004,False,1540,63,16.7,20
"""


def test_recommendation_names_the_right_runs_on_a_made_up_means_csv(tmp_path):
    import pandas as pd

    from evaluation.report import recommendation

    (tmp_path / "means.csv").write_text(MADE_UP_MEANS)
    lines = recommendation(pd.read_csv(tmp_path / "means.csv"))
    assert lines[0] == "## Recommendation"
    text = "\n".join(lines)
    # Best by validation: R1 (0.884); within noise of it: IA1, FT1, LN1 (Holm p >= 0.05), in test-accuracy order;
    # the head (HD1) and TF-IDF are distinguishable, so never named as cheaper, though they are the cheapest.
    assert ("- **Best by validation**: LoRA all-linear r 8 (`R1`), mean validation accuracy 0.8840 over 3 seeds;"
            " its mean test accuracy is 0.8830 [0.8760, 0.8900].") in lines
    within = next(line for line in lines if line.startswith("- **Not distinguishable from it on test**"))
    assert within.endswith(": IA3 (`IA1`), Δ -0.0040, Holm p 0.410; full fine-tuning (`FT1`), Δ -0.0060, Holm p"
                           " 0.200; LayerNorm tuning (`LN1`), Δ -0.0100, Holm p 0.090.")
    assert "HD1" not in text and "A0" not in text
    assert ("- **Fewest trainable parameters** among these: LayerNorm tuning (`LN1`), 11,524 trainable parameters"
            " (the reference: 339,460).") in lines
    assert ("- **Fastest to train** among these: LayerNorm tuning (`LN1`), 27.9 s of training, mean over seeds"
            " (the reference: 52.7 s).") in lines
    assert ("- **Least memory** among these: full fine-tuning (`FT1`), +93 MB of peak resident memory over the"
            " process's size at the run's start, highest of its seeds (the reference: +390 MB).") in lines


def test_recommendation_when_every_other_run_is_distinguishable_and_the_reference_is_configured(tmp_path):
    import pandas as pd

    from evaluation.report import recommendation

    frame = pd.read_csv(io.StringIO(MADE_UP_MEANS))
    frame["compared_to"] = "FT1"  # the config's reference_run, not the best by validation
    frame["within_noise_of_best"] = frame["base_run"] == "FT1"
    lines = recommendation(frame)
    assert any(line.startswith("- **Best by validation**: LoRA all-linear r 8 (`R1`)") for line in lines)
    assert any(line.startswith("- **Reference**: full fine-tuning (`FT1`), named by the config's `reference_run`")
               for line in lines)
    assert any(line.startswith("- **Not distinguishable from it on test**: none;") for line in lines)
    assert "- **Fewest trainable parameters** among these: full fine-tuning (`FT1`), 22,714,756 trainable" \
           " parameters." in lines


def test_report_opens_with_the_recommendation_then_the_means_sorted_by_test_accuracy(tmp_path):
    true = labels(400)
    for seed in (1, 2):
        write_run(tmp_path, f"B1_v1_s{seed}", true, predictions_with_errors(true, range(40 + seed)), seed=seed,
                  base_run_id="B1_v1", epochs=epoch_rows([0.9]), trainable=20_000)
        write_run(tmp_path, f"C1_v1_s{seed}", true, predictions_with_errors(true, range(30 + seed)), seed=seed,
                  base_run_id="C1_v1", method="lora", epochs=epoch_rows([0.8]), trainable=500)
        write_run(tmp_path, f"A0_s{seed}", true, predictions_with_errors(true, range(100)), seed=seed,
                  base_run_id="A0", method="tfidf_nb", trainable=5000, total=5000)
    rebuild_outputs(tmp_path)
    report = (tmp_path / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## Recommendation", "## Base runs, seeds pooled", "## Budget and tuning", "## Data"]
    assert headings.index("## Means over seeds") > 2 and headings.index("## Runs") > 2  # per-seed detail below
    table = [line for line in report.split("## Base runs, seeds pooled")[1].split("## Budget and tuning")[0].splitlines()
             if line.startswith("| ")]
    assert table[0].startswith("| label | base run | seeds |")
    assert [row.split(" | ")[1] for row in table[1:]] == ["C1_v1", "B1_v1", "A0"]  # 0.92375, 0.89625, 0.75
    assert table[1].startswith("| LoRA | C1_v1 | 2 |") and table[3].startswith("| TF-IDF + Naive Bayes | A0 |"
                                                                            " 2 (identical predictions) | - | 0.7500 |")
    assert "| full fine-tuning | B1_v1 | 2 | 0.9000 | 0.8962 [" in table[2]
    assert "| **reference** | - | yes |" in table[2]
    assert "- **Best by validation**: full fine-tuning (`B1_v1`)" in report
    assert str(tmp_path) not in report


def test_labels_name_the_method_and_its_settings():
    from core.record import RunRecord
    from evaluation.means import method_type, run_label

    def record(method, config=None, **fields):
        return RunRecord.model_validate({"run_id": "X1_v1_s1", "status": "complete", "method": method,
                                         "config": config or {}, **fields})

    adapter = lambda **settings: record("peft", {"adapter": settings})  # noqa: E731
    lora = {"r": 8, "lora_alpha": 32, "target_modules": ["query", "value"], "use_rslora": False, "use_dora": False}
    assert run_label(record("lora", {"lora": lora})) == "LoRA q+v r 8"
    assert run_label(record("lora", {"lora": {**lora, "use_rslora": True, "r": 16}})) == "rsLoRA q+v r 16"
    assert run_label(record("lora", {"lora": {**lora, "use_dora": True, "target_modules": ["all-linear"]}})) \
        == "DoRA all-linear r 8"
    assert run_label(adapter(peft_type="VERA", r=128, target_modules=["query", "value"])) == "VeRA q+v r 128"
    assert run_label(adapter(peft_type="IA3", target_modules=["key", "value", "output"])) == "IA3"
    assert run_label(adapter(peft_type="LN_TUNING", target_modules=["layer_norm"])) == "LayerNorm tuning"
    assert run_label(adapter(peft_type="PROMPT_TUNING", num_virtual_tokens=20)) == "prompt tuning 20 tokens"
    assert run_label(adapter(peft_type="LORA", r=8, target_modules=["query", "value"], loraplus_lr_ratio=16)) \
        == "LoRA+ q+v r 8"
    assert run_label(adapter(peft_type="LORA", r=8, target_modules=["query"], init_lora_weights="pissa_niter_4")) \
        == "PiSSA q r 8"
    assert run_label(adapter(peft_type="ADALORA", init_r=12, target_r=8, target_modules=["query", "value"])) \
        == "AdaLoRA q+v r 12->8"
    assert run_label(record("full")) == "full fine-tuning" and run_label(record("tfidf_nb")) == "TF-IDF + Naive Bayes"
    assert run_label(record("peft", {"adapter": {"peft_type": "VERA", "r": 4}}, label="my VeRA")) == "my VeRA"
    assert run_label(record("full", label="  ")) == "full fine-tuning"  # a blank label is no label
    assert method_type(adapter(peft_type="VERA")) == "vera" and method_type(adapter(peft_type="ADALORA")) == "lora"
    assert method_type(record("bitfit")) == "bitfit"


@pytest.mark.parametrize("training, recorded, steps", [
    ({"epochs": 2.0, "batch_size": 8}, None, 26),  # 100 texts: ceil(100 / 8) = 13 batches a epoch
    ({"epochs": 1.5, "batch_size": 8}, None, 20),  # ceil(1.5 x 13) = ceil(19.5)
    ({"epochs": 2.0, "batch_size": 8, "gradient_accumulation_steps": 2}, None, 14),  # ceil(13 / 2) = 7 a epoch
    ({"epochs": 2.0, "batch_size": 8, "early_stopping_patience": 2}, None, None),  # it may stop sooner
    ({"epochs": 2.0, "batch_size": 8}, 77, 77),  # the record's own count wins
])
def test_optimizer_steps_from_the_record_or_its_settings(tmp_path, training, recorded, steps):
    import pandas as pd

    true = labels(40)
    folder = write_run(tmp_path, "B1_v1", true, true, epochs=epoch_rows([0.9]))
    record = json.loads((folder / "metrics.json").read_text())
    record["config"]["training"] = training
    if recorded is not None:
        record["optimizer_steps"] = recorded
    (folder / "metrics.json").write_text(json.dumps(record))
    write_run(tmp_path, "A0", true, true, method="tfidf_nb")
    rebuild_outputs(tmp_path)
    means = pd.read_csv(tmp_path / "means.csv").set_index("base_run")
    assert (means.loc["B1_v1", "optimizer_steps"] == steps) if steps else pd.isna(means.loc["B1_v1", "optimizer_steps"])
    assert pd.isna(means.loc["A0", "optimizer_steps"])  # it does not train
