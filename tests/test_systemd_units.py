"""The systemd units work as shipped: socket activation needs no edit, apps under /home can start."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from ahtwist.scaffold import create_app
from tests.helpers import REPO, require

UNITS = REPO / "etc" / "systemd"
TWISTD = str(Path(sys.executable).parent / "twistd")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def verify(*paths: Path) -> str:
    """``systemd-analyze verify`` output (empty: the units are valid)."""
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze")
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    return (result.stdout + result.stderr).strip()


def test_the_socket_starts_a_service_that_listens_on_it():
    socket = unit(UNITS / "ahtwist.socket")
    service = unit(UNITS / socket["Socket"]["Service"])
    name = socket["Socket"]["FileDescriptorName"]
    assert socket["Socket"]["Service"] == "ahtwist-activated.service"
    assert service["Service"]["ExecStart"].endswith(f" --web systemd:domain=INET:name={name}")
    assert "systemd:" not in unit(UNITS / "ahtwist.service")["Service"]["ExecStart"]


def test_no_unit_hides_home():
    for path in UNITS.glob("*.service"):
        assert unit(path)["Service"]["ProtectHome"] == "read-only", path


def test_shipped_units_verify_once_their_paths_exist(tmp_path):
    for name in ("ahtwist.socket", "ahtwist-activated.service", "ahtwist.service"):
        text = (UNITS / name).read_text()
        text = text.replace("/opt/ahtwist/.venv/bin/twistd", TWISTD).replace("/opt/ahtwist", str(tmp_path))
        (tmp_path / name).write_text(text)
    assert verify(tmp_path / "ahtwist.socket", tmp_path / "ahtwist-activated.service", tmp_path / "ahtwist.service") == ""


def test_generated_app_unit_verifies(tmp_path):
    files = create_app(tmp_path / "home-app", twistd=TWISTD)
    [service] = [f for f in files if f.suffix == ".service"]
    assert verify(service) == ""
    section = unit(service)["Service"]
    assert section["ExecStart"] == f"{TWISTD} -n --pidfile= ahtwist --config {tmp_path / 'home-app' / 'ahtwist.toml'}"
    assert section["WorkingDirectory"] == str(tmp_path / "home-app")
