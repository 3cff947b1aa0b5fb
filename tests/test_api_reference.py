"""docs/API.md lists every public construct, argument, default and attribute, and follows the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("api_reference", ROOT / "scripts" / "api_reference.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_is_what_the_code_says() -> None:
    generator = _generator()
    assert generator.main(["--check"]) == 0, "docs/API.md is out of date: run python scripts/api_reference.py"


def test_every_public_argument_is_in_the_reference() -> None:
    import inspect

    import pipeline_constructs

    text = (ROOT / "docs" / "API.md").read_text()
    for name in pipeline_constructs.__all__:
        cls = getattr(pipeline_constructs, name)
        if f"## `{name}`" not in text:
            continue
        section = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if param.name not in ("scope", "construct_id"):
                assert f"| `{param.name}` |" in section, f"{name}({param.name}=...) is missing from docs/API.md"


def test_an_argument_without_a_docstring_line_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline_constructs
    from pipeline_constructs.storage import PipelineStorage

    generator = _generator()
    original = PipelineStorage.__init__

    def undocumented(self, scope, construct_id, *, new_setting: int = 1, **kwargs) -> None:  # type: ignore[no-untyped-def]
        """:param removal_policy: x"""
        original(self, scope, construct_id, **kwargs)

    monkeypatch.setattr(PipelineStorage, "__init__", undocumented)
    assert pipeline_constructs.PipelineStorage is PipelineStorage
    with pytest.raises(generator.UndocumentedArgument, match=r"PipelineStorage\.new_setting"):
        generator.render()
