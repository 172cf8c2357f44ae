"""The ``discoseq`` group: its commands, their help, and a light import."""

import subprocess
import sys

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
