"""Loading stays safe: YAML through safe_load, weights from safetensors, no remote code unless asked."""
import re

import pytest

from conftest import ROOT

SOURCES = [p for p in ROOT.rglob("*.py") if ".cache" not in p.parts and "tests" not in p.parts]


def test_sources_found():
    assert any(p.name == "main.py" for p in SOURCES) and len(SOURCES) > 15


@pytest.mark.parametrize("pattern, why", [
    (r"\byaml\.load\(", "use yaml.safe_load"),
    (r"\btorch\.load\((?![^)]*weights_only=True)", "torch.load needs weights_only=True"),
    (r"trust_remote_code\s*=\s*True", "trust_remote_code comes from the config only"),
    (r"\bpickle\.loads?\(", "no pickle"),
])
def test_no_unsafe_loading(pattern, why):
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if re.search(pattern, line)]
    assert not offenders, f"{why}: {offenders}"


def test_weights_load_from_safetensors_only(tmp_path, tiny_models):
    """A model folder holding only a pickled pytorch_model.bin is refused."""
    import torch
    from transformers import AutoModel

    from core.models import ModelError, load_classifier

    folder = tmp_path / "pickled"
    model = AutoModel.from_pretrained(tiny_models["bert"])
    model.save_pretrained(folder)
    (folder / "model.safetensors").rename(folder / "hidden.bin")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_models["bert"] / name).is_file():
            (folder / name).write_bytes((tiny_models["bert"] / name).read_bytes())
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_classifier(str(folder), 4, ["a", "b", "c", "d"])
