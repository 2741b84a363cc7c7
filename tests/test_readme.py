"""Every command in the README runs as written: its flags parse with the script's own parser."""
from __future__ import annotations

import importlib
import re
import runpy
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PARSERS = {  # script -> (module to load, function that builds its parser)
    "src/data/signal_trim_and_unpack.py": ("src.data.signal_trim_and_unpack", "build_parser"),
    "-m src.data.synthetic": ("src.data.synthetic", "build_parser"),
}


def commands() -> list[str]:
    """The README's shell commands: bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        found += [line.split("#")[0].strip() for line in joined.splitlines() if line.split("#")[0].strip()]
    return found


def parser_of(script: str):
    if script in PARSERS:
        module, builder = PARSERS[script]
        return getattr(importlib.import_module(module), builder)()
    return runpy.run_path(str(ROOT / script), run_name="readme_check")["create_argparser"]()


def test_the_readme_holds_the_commands_it_promises():
    found = commands()
    assert {"make demo", "make test"} <= set(found)
    scripts = {shlex.split(command)[1] for command in found if command.startswith("python ")}
    assert {"train_ddpm.py", "reconstruct.py", "ood_detection.py", "score.py", "train_vqvae.py",
            "src/data/signal_trim_and_unpack.py"} <= scripts
    assert len(README.encode()) < 6600, "the README is a front door: keep it near 6 KB, details go to docs/"


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("python ")])
def test_each_python_command_parses(command):
    words = shlex.split(re.sub(r"\$\{(\w+)\}", r"/data/\1", command))[1:]
    script, argv = (" ".join(words[:2]), words[2:]) if words[0] == "-m" else (words[0], words[1:])
    parser_of(script).parse_args(argv)  # a bad flag exits 2 (SystemExit fails the test)


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("make ")])
def test_each_make_target_exists(command):
    target = command.split()[1]
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), flags=re.M), target
