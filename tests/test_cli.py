"""The command line as a user meets it: the usage names every command, --version, an unknown command named as
one, and the project installed with `pip install -e .` giving the `ftcompare` command in a fresh virtualenv."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv

import pytest

import main
from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
COMMANDS = ["run", "predict", "export", "report"]  # written out: what the usage must show


def test_the_usage_shows_every_command_and_run_as_the_default(capsys):
    with pytest.raises(SystemExit) as exit:
        main.main(["--help"])
    assert exit.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert usage[0].startswith("usage: python main.py [run] [--config PATH] [--only NAME ...]")
    assert [line.split()[2] for line in usage[1:4]] == ["predict", "export", "report"]  # python main.py NAME ...
    assert usage[4].strip() == "python main.py --version"


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as exit:
        main.main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"ftcompare {PYPROJECT['project']['version']}\n"


@pytest.mark.parametrize("argv, message", [
    (["train"], "unknown command 'train'; commands: run, predict, export, report (a config override is KEY=VALUE)"),
    (["predct", "B1_v1"], "unknown command 'predct' (did you mean 'predict'?); commands: run, predict, export, report"),
    (["--dry-run", "repot"], "unknown command 'repot' (did you mean 'report'?); commands:"),
    (["w" * 5000], f"unknown command '{'w' * 37}...'; commands:"),  # a pasted blob is cut, not repeated
])
def test_an_unknown_command_is_named_before_the_config_is_read(tmp_path, capsys, argv, message):
    assert main.main(["--config", str(tmp_path / "missing.yaml"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1


def test_a_dotted_key_without_its_value_is_still_a_bad_override(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("models: [m]\ntasks: {A0: {method: tfidf_nb}}\n")
    assert main.main(["--config", str(config), "training.epochs"]) == 2
    assert capsys.readouterr().err.startswith("error: override 'training.epochs': expected KEY=VALUE")


def requirements(name: str) -> list[str]:
    """A requirements file's requirements, comments and blank lines dropped."""
    lines = (line.split("#")[0].strip() for line in (ROOT / name).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def test_pyproject_lists_the_requirements_files_ranges():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert sorted(project["dependencies"] + extras["test"]) == sorted(requirements("requirements.txt"))
    assert extras["ray"] == requirements("requirements-ray.txt")
    assert extras["dev"] == requirements("requirements-dev.txt")
    assert project["scripts"] == {"ftcompare": "main:main"}


def untracked() -> set[str]:
    """Files git would offer to add: anything a build leaves in the checkout outside .gitignore."""
    listing = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    return {line[3:] for line in listing.splitlines() if line.startswith("??")}


def test_pip_install_e_gives_the_ftcompare_command_in_a_fresh_venv(tmp_path):
    """Offline: the virtualenv sees this interpreter's packages (setuptools among them), so nothing is downloaded."""
    before = untracked()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)  # the venv's own pip would bring an old setuptools
    python = env_dir / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--no-index", "-e", str(ROOT)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    command = env_dir / "bin" / "ftcompare"
    helped = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert helped.stdout.startswith("usage: ftcompare [run] ")
    assert re.search(r"^ +ftcompare predict RUN_ID", helped.stdout, re.MULTILINE)
    version = subprocess.run([str(command), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert version.stdout == f"ftcompare {PYPROJECT['project']['version']}\n", version.stderr[-3000:]
    wrong = subprocess.run([str(command), "train"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: unknown command 'train'")
    where = subprocess.run([str(python), "-c", "import main, pipeline.runner; print(main.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(ROOT / "main.py"), where.stderr[-3000:]  # editable: this checkout's code
    assert untracked() == before  # the build wrote nothing into the checkout but what .gitignore covers


def test_python_main_py_still_runs_from_any_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--version"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == f"ftcompare {PYPROJECT['project']['version']}\n", done.stderr
