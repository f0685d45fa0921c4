"""docs/configuration.md is generated from the schema and kept in sync; the fetch script fails in one line
offline; the committed documents carry no issue numbers and no absolute machine paths."""
from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from conftest import ROOT
from scripts import config_docs, fetch_defaults


def test_configuration_md_is_in_sync_with_the_schema():
    assert config_docs.main(["--check"]) == 0, "run: python scripts/config_docs.py"


def test_a_new_schema_key_makes_the_check_fail(monkeypatch, capsys):
    class Extra(BaseModel):
        brand_new: int = 3  # a key the committed file does not have

    monkeypatch.setattr(config_docs, "SECTIONS", config_docs.SECTIONS + [("`extra`", "extra.", Extra)])
    assert config_docs.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert "| `extra.brand_new` | int | `3` | a key the committed file does not have |" in config_docs.render()


def test_comments_above_beside_and_continued_become_the_meaning():
    class Sample(BaseModel):
        # the comment above
        first: int = 1  # and beside
        second: str = "x"  # a sentence that goes on;
        # on the next line
        third: float = 0.5  # type: ignore[misc]
        fourth: bool = False  # beside only
        #                       continued with indentation

    notes = config_docs.comments(Sample)
    assert notes == {"first": "the comment above and beside", "second": "a sentence that goes on; on the next line",
                     "third": "", "fourth": "beside only continued with indentation"}


def test_fetch_defaults_offline_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_defaults.main(["--dest", str(tmp_path / "shared")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not fetch sentence-transformers/all-MiniLM-L6-v2") and err.count("\n") == 1


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_documents_name_no_issue_numbers(path):
    assert not re.findall(r"issue [0-9]+", path.read_text(encoding="utf-8"), flags=re.IGNORECASE)


def test_committed_reports_hold_no_absolute_paths():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "results").rglob("*.md")
                 if re.search(r"(^|[\s(`'\"])/(work|home|tmp|root|Users)/", p.read_text(encoding="utf-8"))]
    assert offenders == []


LINKED = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_committed_file(path):
    text = path.read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)]
    missing = [t for t in targets if t and not t.startswith(("http://", "https://", "mailto:"))
               and not (path.parent / t).exists()]
    assert missing == []


def test_the_readme_example_config_is_valid_and_gives_every_method_one_budget():
    import yaml

    from core.config import validate
    from pipeline.plan import build_plan

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Compare methods on your own CSV in 3 steps", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = validate(yaml.safe_load(block))
    runs = build_plan(config)
    assert [r.base_run_id for r in runs if r.seed == 42] == ["baseline", "probe1", "full1_v1", "lora1_v1", "ia31_v1"]
    trained = [r.training for r in runs if r.training is not None]
    assert {(t.epochs, t.batch_size) for t in trained} == {(3, 16)}
