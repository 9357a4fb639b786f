"""amqp_broker.pytest_plugin: the fixtures as a project that installs amqp-broker sees them.

Each test writes a small project (a test file, maybe a pytest.ini) into tmp_path
and runs pytest on it in a subprocess, so the plugin is found through its
`pytest11` entry point as in a user's project. The last one installs the
package non-editable into a fresh virtual environment first, as a user would.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from amqp_broker.broker import Broker
from amqp_broker.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
HAS_MANAGEMENT_PORT = "management_port" in {f.name for f in dataclasses.fields(Config)}

pytestmark = pytest.mark.timeout(120)


def write_project(root: Path, tests: str, ini: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # an ini file of its own: the project's root, not this repository's settings
    (root / "pytest.ini").write_text("[pytest]\n" + textwrap.dedent(ini))
    (root / "test_app.py").write_text(textwrap.dedent(tests))
    return root


def run_pytest(project: Path, *args: str, python: str = sys.executable,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "AMQP_TEST_")) and k != "PYTHONPATH"}
    return subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=project, env=env, capture_output=True, text=True,
                          timeout=timeout)


def passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(rf"\b{count} passed\b", output), output


ROUND_TRIP = '''
    import pika

    def round_trip(url, queue="q"):
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"hi")
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        connection.close()
        return body
'''


def test_session_and_fresh_fixtures(tmp_path: Path) -> None:
    project = write_project(tmp_path, ROUND_TRIP + '''
    seen = {}

    def test_session_broker_one(amqp_broker):
        assert amqp_broker.url == f"amqp://guest:guest@127.0.0.1:{amqp_broker.port}/%2F"
        assert (amqp_broker.host, amqp_broker.vhost) == ("127.0.0.1", "/")
        assert amqp_broker.management_url is None
        assert amqp_broker.data_dir is None
        assert round_trip(amqp_broker.url) == b"hi"
        seen["session"] = amqp_broker.port

    def test_session_broker_is_shared(amqp_broker):
        assert amqp_broker.port == seen["session"]

    def test_fresh_one(amqp_broker_fresh):
        assert amqp_broker_fresh.port != seen["session"]
        assert round_trip(amqp_broker_fresh.url) == b"hi"
        seen["fresh"] = amqp_broker_fresh.port

    def test_fresh_two(amqp_broker_fresh, amqp_broker):
        assert amqp_broker_fresh.port not in (seen["fresh"], seen["session"])

    def test_the_first_fresh_one_is_gone():
        import socket
        try:
            socket.create_connection(("127.0.0.1", seen["fresh"]), timeout=2).close()
        except ConnectionRefusedError:
            return
        raise AssertionError("the function-scoped broker still accepts connections")
    ''')
    passed(run_pytest(project), 5)


def test_options_on_the_command_line_and_in_the_ini_file(tmp_path: Path) -> None:
    tests = '''
    import os

    def test_persistent(amqp_broker):
        assert amqp_broker.data_dir and os.path.isdir(amqp_broker.data_dir)
        open(os.path.join(os.path.dirname(__file__), "data_dir.txt"), "w").write(
            amqp_broker.data_dir)
    '''
    by_flag = write_project(tmp_path / "flag", tests)
    passed(run_pytest(by_flag, "--amqp-broker-persistent"), 1)
    by_ini = write_project(tmp_path / "ini", tests, ini="amqp_broker_persistent = true\n")
    passed(run_pytest(by_ini), 1)
    for project in (by_flag, by_ini):  # the temporary data directory went with the broker
        assert not os.path.exists((project / "data_dir.txt").read_text())
    plain = write_project(tmp_path / "plain", tests)
    assert run_pytest(plain).returncode == 1  # off by default: in memory


def test_management_option(tmp_path: Path) -> None:
    project = write_project(tmp_path, '''
    def test_management(amqp_broker):
        assert amqp_broker.management_url == f"http://127.0.0.1:{amqp_broker.server.config.management_port}/"
    ''')  # noqa: E501
    result = run_pytest(project, "--amqp-broker-management")
    if HAS_MANAGEMENT_PORT:
        passed(result, 1)
    else:
        assert result.returncode != 0
        assert "has no management API" in result.stdout + result.stderr


def test_help_lists_the_options(tmp_path: Path) -> None:
    result = run_pytest(write_project(tmp_path, "def test_nothing(): pass\n"), "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--amqp-broker-persistent", "--amqp-broker-management",
                   "amqp_broker_persistent", "amqp_broker_management"):
        assert option in result.stdout


def test_a_failing_test_still_stops_its_fresh_broker(tmp_path: Path) -> None:
    project = write_project(tmp_path, '''
    import socket
    ports = []

    def test_fails(amqp_broker_fresh):
        ports.append(amqp_broker_fresh.port)
        raise RuntimeError("the test body failed")

    def test_after():
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=2).close()
        except ConnectionRefusedError:
            return
        raise AssertionError("the failed test's broker is still running")
    ''')
    result = run_pytest(project)
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout, result.stdout


@pytest.mark.skipif(not hasattr(Broker, "add_vhost"), reason="runtime vhosts not available yet")
def test_vhost_per_test_on_the_shared_broker(tmp_path: Path) -> None:
    project = write_project(tmp_path, ROUND_TRIP + '''
    import pika
    import pytest
    seen = []

    @pytest.mark.parametrize("n", [1, 2])
    def test_own_vhost(amqp_broker, amqp_broker_vhost, n):
        assert amqp_broker_vhost.port == amqp_broker.port
        assert amqp_broker_vhost.vhost not in ("/", *seen)
        seen.append(amqp_broker_vhost.vhost)
        # the same queue name in each test's vhost: nothing left from the one before
        connection = pika.BlockingConnection(pika.URLParameters(amqp_broker_vhost.url))
        channel = connection.channel()
        assert channel.queue_declare("jobs").method.message_count == 0
        channel.basic_publish("", "jobs", b"left behind")
        connection.close()

    def test_vhosts_were_deleted(amqp_broker):
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            pika.BlockingConnection(pika.URLParameters(
                amqp_broker.in_vhost(seen[0]).url))
    ''')
    passed(run_pytest(project), 3)


# --- as a user installs it ---------------------------------------------------------------------

def copy_source(dest: Path) -> Path:
    """The files a build needs (no .git, no build/ or egg-info of the working tree), so
    the build writes nothing into the repository."""
    import shutil
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    for name in ("amqp_broker", "exchanges", "storage"):
        shutil.copytree(REPO_ROOT / name, dest / name, symlinks=True, ignore=ignore)
    return dest


INSTALLED_PROJECT = ROUND_TRIP + '''
    import os
    import sysconfig

    import amqp_broker
    from amqp_broker.testing import running_broker

    def test_installed_copy_is_used():
        site = sysconfig.get_paths()["purelib"]
        assert amqp_broker.__file__.startswith(site), amqp_broker.__file__

    def test_fixture(amqp_broker):
        assert round_trip(amqp_broker.url) == b"hi"

    def test_context_manager():
        with running_broker() as broker:
            assert round_trip(broker.url) == b"hi"
'''


@pytest.mark.slow
def test_installed_non_editable_in_a_fresh_venv(tmp_path: Path) -> None:
    """pip install of the package (not editable) into a new venv; its pytest finds the
    plugin by the entry point alone, and nothing but amqp_broker lands in site-packages.
    The venv sees the system's packages so the dependencies need no download."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=30).stdout.strip())
    assert site != Path(sysconfig.get_paths()["purelib"])
    before = set(os.listdir(site))
    source = copy_source(tmp_path / "src")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    added = set(os.listdir(site)) - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"amqp_broker"}, added
    dist_infos = [name for name in added if name.endswith(".dist-info")]
    assert len(dist_infos) == 1 and dist_infos[0].startswith("amqp_broker-"), added
    entry_points = (site / dist_infos[0] / "entry_points.txt").read_text()
    assert "[pytest11]" in entry_points and "amqp_broker.pytest_plugin" in entry_points
    project = write_project(tmp_path / "project", INSTALLED_PROJECT)
    passed(run_pytest(project, python=python), 3)
