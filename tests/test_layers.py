"""The import layering rule (tools/import_layers.py): this repository keeps it, and a break is caught."""
from pathlib import Path

from conftest import run_cli


def test_this_repository_imports_only_downward():
    result = run_cli("tools/import_layers.py", "--quiet", check=False)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "no layering violations"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_an_upward_import_inside_a_function_and_a_trainers_import_are_caught(tmp_path):
    write(tmp_path, "src/__init__.py", "")
    write(tmp_path, "src/cli.py", "def add_score_args():\n    from src.ood.flags import x\n")  # base -> stages
    write(tmp_path, "src/diffusion/engine.py", "from src.trainers.runtime import autocast\n")  # core -> trainers
    write(tmp_path, "src/ood/flags.py", "x = 1\n")
    write(tmp_path, "src/trainers/runtime.py", "")
    write(tmp_path, "score.py", "from src.trainers.distributed import shard\n")  # a non-training script
    result = run_cli("tools/import_layers.py", "--quiet", f"--root={tmp_path}", check=False)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert "src.cli (base) imports src.ood.flags (stages): upward" in lines
    assert "src.diffusion.engine (core) imports src.trainers.runtime (stages): upward" in lines
    assert "score imports src.trainers.distributed: only training code may use src.trainers" in lines



def test_an_ood_module_importing_score_py_side_is_caught(tmp_path):
    write(tmp_path, "src/__init__.py", "")
    write(tmp_path, "src/field/localisation.py", "BAND_Z = 3.0\n")
    write(tmp_path, "src/field/scoring_stage.py", "from src.ood.detector import x\n")  # field -> ood: allowed
    write(tmp_path, "src/ood/detector.py", "x = 1\n\ndef band():\n    import src.field.localisation\n")  # ood -> field
    result = run_cli("tools/import_layers.py", "--quiet", f"--root={tmp_path}", check=False)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines == ["src.ood.detector imports src.field.localisation: src.ood never imports src.field "
                     "(score.py's side)"]


def test_relative_package_and_dynamic_imports_and_benchmarks_are_read(tmp_path):
    write(tmp_path, "src/__init__.py", "")
    write(tmp_path, "src/trainers/__init__.py", "")
    write(tmp_path, "src/ood/flags.py", "x = 1\n")
    write(tmp_path, "src/data/__init__.py", "")
    write(tmp_path, "src/data/prep.py", "from ..ood import flags\n")  # relative: core -> stages
    write(tmp_path, "src/diffusion/engine.py", "import importlib\nm = importlib.import_module('src.ood.flags')\n")
    write(tmp_path, "src/features.py", "from src import trainers\n")  # core -> src.trainers
    write(tmp_path, "benchmarks/bench_x.py", "from src import trainers\n")  # not training code
    write(tmp_path, "src/data/images.py", "from . import prep\n")  # relative, same layer: allowed
    result = run_cli("tools/import_layers.py", "--quiet", f"--root={tmp_path}", check=False)
    assert result.returncode == 1
    lines = set(result.stdout.strip().splitlines())
    assert lines == {
        "src.data.prep (core) imports src.ood (stages): upward",
        "src.data.prep (core) imports src.ood.flags (stages): upward",
        "src.diffusion.engine (core) imports src.ood.flags (stages): upward",
        "src.features (core) imports src.trainers (stages): upward",
        "src.features imports src.trainers: only training code may use src.trainers",
        "benchmarks.bench_x imports src.trainers: only training code may use src.trainers",
    }
