"""End to end: an initializer that fails to start stops twistd with one line and exit status 1."""

import textwrap

from tests.e2e.twistd import run_twistd


def test_failing_initializer_ends_start_up_with_one_line_and_status_1(tmp_path):
    (tmp_path / "initializers").mkdir()
    (tmp_path / "initializers" / "db.py").write_text(
        textwrap.dedent(
            """
            from ahtwist import Initializer

            class Db(Initializer):
                name = "db"

                async def start(self, node):
                    raise OSError("connection refused")
            """
        )
    )
    (tmp_path / "app.toml").write_text('[general.paths]\nactions = []\ninitializers = ["initializers"]\n')
    result = run_twistd(
        "--config", str(tmp_path / "app.toml"), "--web", "tcp:0:interface=127.0.0.1", "--socket", "none"
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    failures = [line for line in output.splitlines() if "failed" in line or "Traceback" in line]
    assert len(failures) == 1, output
    assert failures[0].endswith("ahtwist: initializer 'db' failed in start: OSError: connection refused")
    assert "ready: initializers started" not in output
