"""Check (and show) that imports point one way: entry points -> stages -> core -> base.

    python tools/import_layers.py            # the layers, who imports what across them, and any violation
    python tools/import_layers.py --quiet    # violations only; exit code 1 if there are any

Layers, lowest first (a module may import its own layer and those below, never above):

    base    src.errors, src.io, src.cli, src.run, src.runtime, src.distributed, src.dsp, src.progress
    core    src.data, src.networks, src.diffusion, src.features, src.figures
    stages  src.trainers (training), src.ood (reconstruction, detection), src.field (score.py: streaming
            new recordings, localisation, the timeline)
    entry   the top-level scripts and src/data/signal_trim_and_unpack.py (only the train_*.py scripts
            may import src.trainers)

Three more rules: the OOD side and the core never import ``src.trainers`` (training is not a
runtime service); ``src.trainers`` imports neither ``src.ood`` nor ``src.field``; and ``src.ood``
never imports ``src.field`` (score.py's side builds on the OOD stages, not the reverse). Every
import counts, also one inside a function, read as written (``from src import x`` is src.x), relative
(resolved against the importing module) or dynamic (``importlib.import_module("src.x")`` with a
literal name), in the repository root, ``src/``, ``benchmarks/`` and ``tools/`` (the last two are
entry points). The rules are checked by tests/test_layers.py.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

LAYERS = {
    "base": ("src", "src.errors", "src.io", "src.cli", "src.run", "src.runtime", "src.distributed", "src.dsp",
             "src.progress"),
    "core": ("src.data", "src.networks", "src.diffusion", "src.features", "src.figures"),
    "stages": ("src.trainers", "src.ood", "src.field"),
}
ORDER = ["base", "core", "stages", "entry"]
ENTRY_MODULES = ("src.data.signal_trim_and_unpack",)
TRAINING_SCRIPTS = ("train_ddpm", "train_autoencoder", "train_vqvae", "train_features")
OOD_PACKAGES = ("src.ood", "src.field")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in ENTRY_MODULES or not module.startswith("src"):
        return "entry"
    for layer, prefixes in LAYERS.items():
        if any(module == prefix or (prefix != "src" and module.startswith(prefix + ".")) for prefix in prefixes):
            return layer
    return "unassigned"


def imported_modules(path: Path, module: str) -> set[str]:
    """Every ``src...`` module a file imports, anywhere in it: ``import src.x``, ``from src.x import y``,
    ``from src import x`` (src.x), relative imports (resolved against ``module``) and
    ``importlib.import_module("src.x")`` / ``__import__("src.x")`` with a literal name."""
    found = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = package[:len(package) - node.level + 1] if node.level else []
            base = ".".join(part for part in [*parent, node.module or ""] if part)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.add(node.args[0].value)
    return {name for name in found if name == "src" or name.startswith("src.")}


def _is_dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module``, ``import_module`` or ``__import__``."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def project_files(root: Path) -> list[Path]:
    return sorted([*root.glob("*.py"), *(root / "src").rglob("*.py"), *(root / "benchmarks").rglob("*.py"),
                   *(root / "tools").rglob("*.py")])


def violations(root: Path) -> tuple[list[str], dict[tuple[str, str], set[str]]]:
    """(problems, {(importer layer, imported layer): importer modules})."""
    problems, edges = [], {}
    for path in project_files(root):
        importer = module_name(path, root)
        source = layer_of(importer)
        if source == "unassigned":
            problems.append(f"{importer}: not in any layer; add it to LAYERS in tools/import_layers.py")
        for imported in sorted(imported_modules(path, importer)):
            target = layer_of(imported)
            edges.setdefault((source, target), set()).add(importer)
            if source in ORDER and target in ORDER and ORDER.index(target) > ORDER.index(source):
                problems.append(f"{importer} ({source}) imports {imported} ({target}): upward")
            if imported.startswith("src.trainers") and not _may_import_trainers(importer):
                problems.append(f"{importer} imports {imported}: only training code may use src.trainers")
            if _in_package(importer, "src.trainers") and _in_package(imported, *OOD_PACKAGES):
                problems.append(f"{importer} imports {imported}: the training and OOD stages stay apart")
            if _in_package(importer, "src.ood") and _in_package(imported, "src.field"):
                problems.append(f"{importer} imports {imported}: src.ood never imports src.field (score.py's side)")
    return problems, edges


def _in_package(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _may_import_trainers(importer: str) -> bool:
    return importer.startswith("src.trainers") or importer in TRAINING_SCRIPTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root to check (default: this one)")
    parser.add_argument("--quiet", action="store_true", help="print violations only")
    args = parser.parse_args()
    problems, edges = violations(args.root)
    if not args.quiet:
        for layer in ORDER:
            members = sorted(module_name(p, args.root) for p in project_files(args.root)
                             if layer_of(module_name(p, args.root)) == layer)
            print(f"{layer:7s} {', '.join(members)}")
        print("\nimports between layers (importer layer -> imported layer: importers)")
        for (source, target), importers in sorted(edges.items(), key=lambda e: (ORDER + ["unassigned"]).index(e[0][0])):
            print(f"  {source:>7s} -> {target:7s} {len(importers):3d} modules")
    print("\n".join(problems) if problems else "no layering violations")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
