"""Every bad input gives exit code 2, one clear line on stderr, no traceback, and writes nothing."""

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import main
from conftest import CLASSES, ROOT, make_texts, tiny_config, write_config, write_hf_csv, write_original_csv

CONFIG_CASES = {
    # case: (change to the raw config, expected fragment of the message)
    "unknown top-level key": (lambda r: r.update(epochs=3), "unknown key 'epochs'"),
    "unknown nested key": (lambda r: r["tasks"]["C"]["lora"].update(rank=4), "unknown key 'tasks.C.lora.rank'"),
    "wrong type": (lambda r: r["training"].update(batch_size="eight"), "training.batch_size: 'eight' is invalid"),
    "zero learning rate": (lambda r: r["training"].update(learning_rate=0), "training.learning_rate: 0 is invalid"),
    "negative learning rate": (lambda r: r["variants"]["v1"].update(learning_rate=-1e-5),
                               "variants.v1.learning_rate: -1e-05 is invalid"),
    "zero epochs": (lambda r: r["tasks"]["B"].update(training={"epochs": 0}), "tasks.B.training.epochs: 0 is invalid"),
    "negative batch size": (lambda r: r["training"].update(batch_size=-4), "training.batch_size: -4 is invalid"),
    "LoRA r of 0": (lambda r: r["lora"].update(r=0), "lora.r: 0 is invalid"),
    "unknown method": (lambda r: r["tasks"]["B"].update(method="qlora"), "tasks.B.method: unknown method 'qlora'"),
    "unknown variant": (lambda r: r["tasks"]["B"].update(variants=["v7"]), "unknown variant 'v7'"),
    "models is not a list": (lambda r: r.update(models="bert"), "models: 'bert' is invalid"),
    "unknown LoRA target": (lambda r: r["tasks"]["C"]["lora"].update(target_modules=["q_proj"]),
                            "tasks.C.lora.target_modules: 'q_proj' is not a module of model type 'bert'"),
    "validation as large as train": (lambda r: r["dataset"].update(validation_size=120),
                                     "validation_size: 120 leaves no training rows"),
    "missing model folder": (lambda r: r.update(models=["/nonexistent/model"]),
                             "models[0]: local folder /nonexistent/model does not exist"),
    "hub id offline": (lambda r: r.update(models=["no-such-org/no-such-model"]),
                       "'no-such-org/no-such-model' is not a local folder and not in the Hugging Face cache"),
    "missing data folder": (lambda r: r["dataset"].update(source="/nonexistent/data"),
                            "dataset.source: folder /nonexistent/data does not exist"),
    "seed below numpy's range": (lambda r: r.update(seed=-1), "seed: -1 is invalid"),
    "split seed past numpy's range": (lambda r: r["dataset"].update(split_seed=2**32),
                                      "dataset.split_seed: 4294967296 is invalid"),
    "infinite search bound": (lambda r: r["tasks"]["C"].update(search={"n_trials": 2, "space": {
        "training.learning_rate": {"low": 1e-4, "high": float("inf")}}}),
        "tasks.C.search.space.training.learning_rate.high: inf is invalid"),
    "unknown scheduler": (lambda r: r["training"].update(lr_scheduler="cosin"), "training.lr_scheduler: 'cosin' is"),
    # 2 layers x query (32 x r + r x 32) + the meta skeleton's 2-class head (32 x 2 + 2)
    "LoRA rank past the model's size": (lambda r: r["lora"].update(r=100_000),
                                        "tasks.C.lora: the adapter trains 12,800,066 parameters, more than the"),
    "more class names than max_classes": (lambda r: r["dataset"].update(class_names=CLASSES, max_classes=3),
                                          "dataset.class_names: 4 classes, more than dataset.max_classes (3)"),
}

DATA_CASES = {
    # file content of train.csv: expected fragment
    "wrong columns": ("title,body\nhello,world\n", "no column 'text' (dataset.text_column); its columns are title, body"),
    "label outside the classes": ("text,label\nhello,4\n", "row 2: label 4 is outside 0-3"),
    "empty text": ("text,label\nhello,1\n   ,2\n", "row 3: the text is empty"),
    "not UTF-8": (b"text,label\nna\xefve,1\n", "line 2 is not UTF-8"),
    "only a header": ("text,label\n", "has a header but no rows"),
    "empty file": ("", "the file is empty"),
    "label past int64": ("text,label\nhello,0\nworld,99999999999999999999\n",
                         "row 3: label 99999999999999999999 is outside 0-3"),
    "class only in test": ("text,label\nhello,0\nworld,1\n", "test.csv: row 3: label 'Business' has no row in"),
}


@pytest.fixture
def setup(tmp_path, tiny_data, tiny_models):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    return tmp_path, raw


def assert_refused(tmp_path, argv, fragment, capsys):
    code = main.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists(), "something was written"
    return err


DRY_RUN = pytest.mark.parametrize("mode", [[], ["--dry-run"]], ids=["run", "dry-run"])  # the same preflight


@DRY_RUN
@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config(case, mode, setup, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tmp_path, raw = setup
    change, fragment = CONFIG_CASES[case]
    change(raw)
    path = write_config(tmp_path / "config.yaml", raw)
    assert_refused(tmp_path, ["--config", str(path), "--quiet", *mode], fragment, capsys)


@DRY_RUN
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_file(case, mode, setup, capsys):
    tmp_path, raw = setup
    content, fragment = DATA_CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
    write_original_csv(data / "test.csv", make_texts(8))
    raw["dataset"]["source"] = str(data)
    raw["dataset"]["class_names"] = CLASSES  # labels outside them are refused (without: the labels found are the classes)
    path = write_config(tmp_path / "config.yaml", raw)
    err = assert_refused(tmp_path, ["--config", str(path), "--only", "A0", *mode], fragment, capsys)
    assert str(data / "train.csv") in err  # the message names the file


HUGE = "z" * 200_000


@pytest.mark.parametrize("change", [
    lambda r: r["tasks"].update(P={"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORA", "r": HUGE}}),
    lambda r: r["tasks"].update(P={"method": "peft", "variants": ["v1"], "adapter": {"peft_type": HUGE}}),
    lambda r: r["tasks"].update(P={"method": "peft", "variants": ["v1"], "adapter": {"peft_type": "LORA", HUGE: 1}}),
    lambda r: r["tasks"].update(P={"method": "peft", "variants": ["v1"], "adapter": {
        "peft_type": "LORA", "target_modules": HUGE}}),
    lambda r: r.update(reference_run=HUGE),
    lambda r: r["dataset"].update(label_column=HUGE),
    lambda r: r["tasks"]["C"].update(search={"n_trials": 1, "space": {HUGE: [1]}}),
], ids=["adapter value", "peft type", "adapter key", "target pattern", "reference run", "label column", "search key"])
def test_a_message_shows_a_bounded_part_of_a_huge_value(setup, change, capsys):
    tmp_path, raw = setup
    change(raw)
    path = write_config(tmp_path / "config.yaml", raw)
    err = assert_refused(tmp_path, ["--config", str(path)], "zzz", capsys)
    assert len(err) < 2000, err[:600]  # the value is 200,000 characters; the fixed text lists valid keys


@DRY_RUN
def test_missing_test_file(mode, setup, capsys):
    tmp_path, raw = setup
    data = tmp_path / "data"
    data.mkdir()
    write_hf_csv(data / "train.csv", make_texts(40))
    raw["dataset"]["source"] = str(data)
    path = write_config(tmp_path / "config.yaml", raw)
    assert_refused(tmp_path, ["--config", str(path), "--only", "A0", *mode], "test.csv: file not found", capsys)


@pytest.mark.parametrize("override, message", [
    ("dataset.source=mine.csv", "dataset.source: file {cwd}/mine.csv does not exist"),
    ("dataset.source=data/ag/news", "dataset.source: folder {cwd}/data/ag/news does not exist"),
    ("models=[models/bert/tiny]", "models[0]: local folder {cwd}/models/bert/tiny does not exist"),
    ("models=[{model}, ../m]", "models[1]: local folder {parent}/m does not exist"),
])
def test_paths_on_the_command_line_resolve_against_the_current_folder_and_never_reach_the_hub(
        setup, override, message, capsys, monkeypatch):
    """The config lives in another folder; the path typed after it means what it means in the shell. Written as a
    path (an extension, two slashes, ./), it is reported missing with its resolved path, not tried on the Hub."""
    tmp_path, raw = setup
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs" / "config.yaml", raw)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    override = override.format(model=raw["models"][0])
    for mode in ([], ["--dry-run"]):
        err = assert_refused(tmp_path, ["--config", "../configs/config.yaml", override, *mode],
                             message.format(cwd=cwd, parent=tmp_path), capsys)
        assert "Hub" not in err


def test_report_on_a_folder_without_runs(setup, capsys):
    tmp_path, raw = setup
    output = tmp_path / "empty"
    (output / "B1_v1").mkdir(parents=True)  # a run folder that never got its metrics.json
    raw["output_dir"] = str(output)
    path = write_config(tmp_path / "config.yaml", raw)
    assert main.main(["report", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: output_dir: {output} holds no runs (no <RUN_ID>/metrics.json); run python main.py first,"
                   f" or name the folder that holds them with --set output_dir=DIR\n")
    assert sorted(p.name for p in output.rglob("*")) == ["B1_v1"]  # no summary.csv, report.md or plots/


@pytest.mark.parametrize("text, fragment", [
    ("models: [a\n", "malformed YAML"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("models: [a]\ntasks: {A0: {method: tfidf_nb}}\n\tbad: tab\n", "malformed YAML"),
    ("models: [a]\ntasks: {A0: {method: tfidf_nb}}\nmodels: [b]\n", "models is given twice (lines 1 and 3)"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in
                                                    zip("abcdefgh", "bcdefghi")) + "models: *i\n",
     "e (line 5) holds more than 10,000 values"),  # 9^5 values: the first anchor past the bound
])
def test_malformed_yaml(tmp_path, text, fragment, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert_refused(tmp_path, ["--config", str(path)], fragment, capsys)


def test_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"models: [caf\xe9]\n")
    assert_refused(tmp_path, ["--config", str(path)], "not UTF-8", capsys)


def test_missing_config_file(tmp_path, capsys):
    assert_refused(tmp_path, ["--config", str(tmp_path / "nope.yaml")], "config file not found", capsys)


@pytest.mark.parametrize("argv, fragment", [
    (["--only", "B9_v1"], "--only: B9_v1 is not a run of this config"),
    (["training.epochs"], "override 'training.epochs': expected KEY=VALUE"),
    (["training.nope=1"], "unknown key 'training.nope'"),
    (["training.learning_rate=[1"], "the value is not valid YAML"),
    (["--epochs", "3"], "unrecognized arguments: --epochs"),
    (["--executor", "dask"], "--executor: invalid choice: 'dask'"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "ray.gpus_per_run: -1 is invalid"),
    (["--executor", "ray", "--cpus-per-run", "0"], "ray.cpus_per_run: 0 is invalid"),
])
def test_bad_command_line(setup, argv, fragment, capsys):
    tmp_path, raw = setup
    path = write_config(tmp_path / "config.yaml", raw)
    assert_refused(tmp_path, ["--config", str(path)] + argv, fragment, capsys)


def test_output_dir_that_cannot_be_written(setup, capsys):
    tmp_path, raw = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    raw["output_dir"] = str(blocker / "results")
    path = write_config(tmp_path / "config.yaml", raw)
    code = main.main(["--config", str(path), "--only", "A0"])
    err = capsys.readouterr().err
    assert code == 2 and "output_dir:" in err and "cannot be written" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# Property: random mutations of a valid config never produce a traceback.

def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=6), st.integers(), max_size=2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_config_mutations_never_raise_a_traceback(data, tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("mutation")
    raw = tiny_config(tiny_data, [root / "no-model-here"], root / "out")
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(raw) if p]
        path = data.draw(st.sampled_from(paths))
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(VALUES)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    result = subprocess_free_main(["--config", str(config), "--dry-run"])
    assert result in (0, 2)


def subprocess_free_main(argv):
    """main.main in-process; any exception escaping it is the traceback a user would see."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main.main(argv)
    assert "Traceback" not in err.getvalue()
    return code


# ----------------------------------------------------------------------------------------------
# Folders and files the command writes or reads, found unusable before any work (issue 19 part 5): a file where
# a folder belongs, a folder where a file belongs, read-only folders, unreadable files.

def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_one_line(code, err, fragment):
    assert code == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


FOLDERS_IN_THE_WAY = {
    # case: (what to make under output_dir `out`, override, expected fragment)
    "lock folder is a file": (lambda out: (out / ".locks").write_text(""), [],
                              "output_dir: lock file {out}/.locks/active.lock cannot be written: {out}/.locks is a file,"
                              " not a folder"),
    "run lock is a folder": (lambda out: (out / ".locks" / "B1_v1.lock").mkdir(parents=True), [],
                             "output_dir: lock file {out}/.locks/B1_v1.lock cannot be written: {out}/.locks/B1_v1.lock"
                             " is a folder, not a file"),
    "run folder is a file": (lambda out: (out / "B1_v1").write_text(""), [],
                             "output_dir: run folder {out}/B1_v1 cannot be written: {out}/B1_v1 is a file"),
    "cache under a file": (lambda out: (out / "notes.txt").write_text(""), ["dataset.cache_dir={out}/notes.txt/tok"],
                           "dataset.cache_dir: tokenised-text cache {out}/notes.txt/tok cannot be written:"
                           " {out}/notes.txt is a file"),
}


@pytest.mark.parametrize("case", FOLDERS_IN_THE_WAY)
def test_a_file_in_the_way_is_refused_before_any_work(case, setup, capsys):
    tmp_path, raw = setup
    out = tmp_path / "out"
    out.mkdir()
    make, overrides, fragment = FOLDERS_IN_THE_WAY[case]
    make(out)
    path = write_config(tmp_path / "config.yaml", raw)
    before = snapshot(tmp_path)
    code = main.main(["--config", str(path), "--only", "B1_v1", "--quiet"] + [o.format(out=out) for o in overrides])
    assert_one_line(code, capsys.readouterr().err, fragment.format(out=out))
    assert snapshot(tmp_path) == before, "something was written"


def test_a_model_folder_with_only_pickled_weights_is_refused_before_any_work(setup, tiny_models, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file

    tmp_path, raw = setup
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_models["bert"], pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    raw["models"] = [str(pickled)]
    path = write_config(tmp_path / "config.yaml", raw)
    err = assert_refused(tmp_path, ["--config", str(path), "--only", "A0", "B1_v1"],
                         f"model {pickled}: the folder holds only pickled weights (pytorch_model.bin), and models"
                         " load from safetensors only", capsys)
    assert "safe_serialization=True" in err  # the fix


@pytest.mark.parametrize("option, value", [("--cpus-per-run", "2"), ("--gpus-per-run", "0.5"),
                                           ("--ray-address", "auto")])
def test_ray_options_without_the_ray_executor_are_refused(option, value, setup, capsys):
    tmp_path, raw = setup
    path = write_config(tmp_path / "config.yaml", raw)
    for executor in ([], ["--executor", "sequential"]):
        assert_refused(tmp_path, ["--config", str(path), option, value, *executor],
                       f"{option} applies to --executor ray only, and the executor is sequential;"
                       f" add --executor ray, or leave {option} out", capsys)
    raw["executor"] = "ray"  # the config chose Ray: the option applies (the dry run needs no cluster)
    path = write_config(tmp_path / "config.yaml", raw)
    assert main.main(["--config", str(path), option, value, "--dry-run"]) == 0


@pytest.mark.parametrize("option, value, key", [("--cpus-per-run", "inf", "ray.cpus_per_run"),
                                                ("--cpus-per-run", "nan", "ray.cpus_per_run"),
                                                ("--gpus-per-run", "1e400", "ray.gpus_per_run")])
def test_ray_resources_must_be_finite(option, value, key, setup, capsys):
    tmp_path, raw = setup
    path = write_config(tmp_path / "config.yaml", raw)
    assert_refused(tmp_path, ["--config", str(path), "--executor", "ray", option, value],
                   f"{key}: '{value}' is invalid: Input should be a finite number", capsys)


# predict and export: the target is checked before the run's model is loaded.

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data, tiny_models):
    root = tmp_path_factory.mktemp("trained")
    raw = tiny_config(tiny_data, [tiny_models["bert"]], root / "out")
    raw["training"]["epochs"] = 1
    raw["tasks"] = {"B": raw["tasks"]["B"]}
    path = write_config(root / "config.yaml", raw)
    assert main.main(["--config", str(path), "--quiet"]) == 0
    (root / "texts.csv").write_text("text\nstocks fell\nthe team won\n")
    (root / "a-file").write_text("")
    (root / "a-folder").mkdir()
    return root


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Fails the test if the run's model is loaded: the check must come first."""
    import pipeline.trained

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the target was checked")

    monkeypatch.setattr(pipeline.trained, "load", load)


@pytest.mark.parametrize("argv, fragment", [
    (["predict", "B1_v1", "--file", "{root}/texts.csv", "--out", "{root}/a-folder"],
     "predict: --out {root}/a-folder cannot be written: {root}/a-folder is a folder, not a file"),
    (["predict", "B1_v1", "--file", "{root}/texts.csv", "--out", "{root}/a-file/p.csv"],
     "predict: --out {root}/a-file/p.csv cannot be written: {root}/a-file is a file, not a folder"),
    (["predict", "B1_v1", "--file", "{root}/texts.csv", "--out", ""], "predict: --out . cannot be written"),
    (["export", "B1_v1", "{root}/a-file/model"],
     "export: {root}/a-file/model cannot be written: {root}/a-file is a file"),
    (["export", "B1_v1", "{root}/a-file"], "export: {root}/a-file already exists and is not an empty folder"),
    (["predict", "B1_v1", "stocks fell", ""], "predict: TEXT 2 is empty"),
])
def test_predict_and_export_targets_are_checked_before_the_model_loads(argv, fragment, trained_run, no_model_loaded,
                                                                       capsys):
    root = trained_run
    before = snapshot(root)
    code = main.main([a.format(root=root) for a in argv] + ["--config", str(root / "config.yaml")])
    assert_one_line(code, capsys.readouterr().err, fragment.format(root=root))
    assert snapshot(root) == before


# Permissions: root ignores them, so as root the command runs under setpriv without the capabilities that override
# them; any other user gets them as they are.

def unprivileged() -> list[str]:
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to bind")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


READ_ONLY = {
    # case: (path made read-only (or unreadable: mode), command, expected fragment)
    "lock folder": ("out/.locks", 0o555, ["--only", "B1_v1"],
                    "output_dir: lock file {root}/out/.locks/active.lock cannot be written: {root}/out/.locks is not"
                    " writable"),
    "run folder": ("out/B1_v1", 0o555, ["--only", "B1_v1", "--force"],
                   "output_dir: run folder {root}/out/B1_v1 cannot be written: {root}/out/B1_v1 is not writable"),
    "cache folder": ("out/.cache", 0o555, ["--only", "B1_v1", "--force"],
                     "dataset.cache_dir: tokenised-text cache {root}/out/.cache cannot be written"),
    "report": ("out", 0o555, ["report"], "output_dir: {root}/out cannot be rewritten ({root}/out is not writable)"),
    "predict --out": ("a-folder", 0o555,
                      ["predict", "B1_v1", "--file", "{root}/texts.csv", "--out", "{root}/a-folder/p.csv"],
                      "predict: --out {root}/a-folder/p.csv cannot be written: {root}/a-folder is not writable"),
    "predict --file": ("texts.csv", 0o000, ["predict", "B1_v1", "--file", "{root}/texts.csv", "--out", "{root}/p.csv"],
                       "--file: {root}/texts.csv cannot be read (Permission denied)"),
    "config": ("config.yaml", 0o000, ["--dry-run"],
               "{root}/config.yaml: config file cannot be read (Permission denied)"),
}


@pytest.mark.parametrize("case", READ_ONLY)
def test_unwritable_folders_and_unreadable_files_are_refused_before_any_work(case, trained_run, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    root = tmp_path / "copy"
    shutil.copytree(trained_run, root)
    (root / "config.yaml").write_text((root / "config.yaml").read_text().replace(str(trained_run), str(root)))
    (root / "out" / ".locks").mkdir(exist_ok=True)
    target, mode, argv, fragment = READ_ONLY[case]
    before = snapshot(root)
    os.chmod(root / target, mode)
    try:
        result = subprocess.run([*unprivileged(), sys.executable, str(ROOT / "main.py"),
                                 *(a.format(root=root) for a in argv), "--config", str(root / "config.yaml")],
                                capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        os.chmod(root / target, 0o755)
    assert_one_line(result.returncode, result.stderr, fragment.format(root=root))
    assert snapshot(root) == before
