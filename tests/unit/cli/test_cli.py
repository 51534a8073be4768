"""The `shoprank` command: every Makefile target calls a command that exists, and the
dispatcher answers help and unknown commands plainly."""
from __future__ import annotations

import re
import subprocess
import sys

from shoprank import config
from shoprank.cli import COMMANDS, main


def test_every_command_the_makefile_calls_exists_and_has_help():
    makefile = (config.PROJECT_ROOT / "Makefile").read_text()
    called = set(re.findall(r"\$\(SHOPRANK\) ([a-z][a-z0-9-]*)", makefile))
    assert called and called <= set(COMMANDS), called - set(COMMANDS)
    for name in COMMANDS:
        run = subprocess.run([sys.executable, "-m", "shoprank.cli", name, "--help"], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "usage: shoprank" in run.stdout, (name, run.stderr[-2000:])


def test_help_lists_every_command_and_an_unknown_command_is_refused(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["fine-tune"]) == 2
    assert "unknown command 'fine-tune'" in capsys.readouterr().err


def test_status_without_a_server_says_so(capsys):
    from shoprank.serving.server import free_ports

    assert main(["status", "--http-port", str(free_ports(1)[0])]) == 1
    assert capsys.readouterr().out.strip().startswith("not ready")


def test_rules_bench_refuses_too_few_rounds_or_requests_in_one_line(capsys):
    assert main(["rules-bench", "--rounds", "0"]) == 2
    assert main(["rules-bench", "--requests", "20"]) == 2
    assert capsys.readouterr().out.count("--rounds must be >= 1 and --requests >= 100") == 2
