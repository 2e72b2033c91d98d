"""User mistakes through the real CLI: one line, exit code 2, no traceback."""

import subprocess

import pytest

from .conftest import DEEPMIMIC, ROOT


def deepmimic(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*DEEPMIMIC, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,fragment", [
    (["run", "nowhere.yaml"], "nowhere.yaml: no such file"),
    (["run", "search_spaces/quickstart.yaml", "--set", "oops"], "--set 'oops': expected KEY=VALUE"),
    (["run", "search_spaces/quickstart.yaml", "--set", "mentor.architecture=c-q"], "mentor.architecture: architecture 'c-q': unknown token 'q'"),
    (["run", "search_spaces/quickstart.yaml", "--set", "split.mentor_ratio=0"], "split.mentor_ratio: Input should be greater than 0"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_user_mistakes_get_one_line_and_exit_2(args, fragment):
    proc = deepmimic(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepmimic: error: ") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
