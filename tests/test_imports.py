"""What an import costs: `import unetzoo` and `import unetzoo.models` load no heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import unetzoo

HEAVY = ("onnx", "onnxruntime", "openvino", "albumentations", "matplotlib", "tifffile", "PIL")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return set(json.loads(out.stdout))


def unetzoo_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "unetzoo" or m.startswith("unetzoo.")}


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_import_unetzoo_loads_nothing_else() -> None:
    modules = loaded_after("import unetzoo")
    assert unetzoo_modules(modules) == {"unetzoo", "unetzoo.version"}
    assert "torch" not in modules and not heavy(modules)


def test_import_models_costs_the_models_alone() -> None:
    modules = loaded_after("import unetzoo.models")
    ours = unetzoo_modules(modules)
    assert ours == {"unetzoo", "unetzoo.version", "unetzoo.errors"} | {
        m for m in ours if m.startswith(("unetzoo.models", "unetzoo.nn"))}
    assert "unetzoo.models.unetpp" in ours and "unetzoo.nn.factory" in ours
    assert not heavy(modules)


def test_the_trainer_loads_when_first_used() -> None:
    modules = loaded_after("import unetzoo\nunetzoo.create_model('unet', preset='tiny')")
    assert not {"unetzoo.engine.training.trainer", "unetzoo.engine.distributed",
                "unetzoo.engine.export.exporter"} & modules
    assert "unetzoo.engine.training.trainer" in loaded_after("import unetzoo\nunetzoo.train")


def test_public_names_resolve_and_unknown_ones_raise() -> None:
    for name in unetzoo.__all__:
        assert getattr(unetzoo, name) is not None, name
    assert unetzoo.evaluate.__name__ == "evaluate_checkpoint"
    assert set(unetzoo.__all__) <= set(dir(unetzoo))
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        unetzoo.trian  # noqa: B018


HELP = ("import contextlib, io\nfrom unetzoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main({argv!r})")


@pytest.mark.parametrize("statement", [
    "import unetzoo.config", HELP.format(argv=["--help"]), HELP.format(argv=["train", "--help"]),
])
def test_the_config_and_the_help_load_no_engine_module(statement: str) -> None:
    ours = unetzoo_modules(loaded_after(statement))
    assert "unetzoo.config" in ours
    assert not {m for m in ours if m.startswith("unetzoo.engine")}
