"""The ``discoseq`` group: its commands, their help, and a light import."""

import subprocess
import sys

from click.testing import CliRunner

from discoseq.cli.main import main
from tests.cli.runner import run


def test_help_documents_every_option():
    for cmd in ("analyze", "benchmark", "demo"):
        r = run(cmd, "--help")
        assert r.exit_code == 0
        for param in main.commands[cmd].params:
            if param.param_type_name == "option":
                assert param.help, f"{cmd} {param.name} has no help"
    r = run("--help")
    assert "Exit codes" in r.output


def test_the_group_registers_each_command_module() -> None:
    from discoseq.cli import analyze, benchmark, demo

    assert main.commands == {
        "analyze": analyze.analyze,
        "benchmark": benchmark.benchmark,
        "demo": demo.demo,
    }


def test_importing_the_cli_loads_neither_torch_nor_lhotse() -> None:
    code = (
        "import sys; import discoseq.cli.main; "
        "print(sorted(m for m in ('lhotse', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_and_python_dash_m() -> None:
    from discoseq import __version__
    from discoseq.cli.index_cli import main as index_main

    assert run("--version").output == f"discoseq, version {__version__}\n"
    assert CliRunner().invoke(index_main, ["-V"]).output == (
        f"discoseq-index, version {__version__}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "discoseq", "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("Usage: discoseq [OPTIONS] COMMAND")
    assert "analyze" in out.stdout and "benchmark" in out.stdout and "demo" in out.stdout


def test_synth_help_describes_every_option() -> None:
    from discoseq.synth import _parser

    for action in _parser()._actions:
        assert action.help, action.dest
    out = subprocess.run(
        [sys.executable, "-m", "discoseq.synth", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "duration distribution" in out.stdout and "random seed" in out.stdout
