"""The set-up script both README commands start with: ci/deps.sh.

apt-get and dpkg-query are replaced by stand-ins on PATH (nothing is installed, nothing leaves the
machine), and the policy-rc.d path is a scratch file (DEPS_POLICY_RC), so the script's own logic
is what is tested: its exit status after an install, and that it leaves policy-rc.d as it found it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO, require


def stand_ins(tmp_path: Path, apt_status: int) -> dict[str, str]:
    require(os.geteuid() == 0, "ci/deps.sh uses sudo when not root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    # Every package reads as missing; apt-get records its arguments and exits with apt_status.
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >>"{log}"\nexit {apt_status}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["DEPS_POLICY_RC"] = str(tmp_path / "policy-rc.d")
    return env


def run_deps(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "ci/deps.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_deps_succeeds_when_policy_rc_d_already_exists(tmp_path):
    """Regression: with policy-rc.d already present (Debian container images ship one), the EXIT
    trap's `[[ $own_policy -eq 1 ]] && ...` made the script exit 1 after a successful install."""
    env = stand_ins(tmp_path, 0)
    policy = Path(env["DEPS_POLICY_RC"])
    policy.write_text("#!/bin/sh\nexit 101\n")
    r = run_deps(env, "test")
    assert r.returncode == 0, r.stderr
    assert policy.read_text() == "#!/bin/sh\nexit 101\n", "someone else's policy-rc.d was changed"
    log = (tmp_path / "apt.log").read_text()
    assert "update" in log and "install" in log and "shellcheck" in log, log


def test_deps_removes_only_its_own_policy_rc_d(tmp_path):
    env = stand_ins(tmp_path, 0)
    r = run_deps(env, "build")
    assert r.returncode == 0, r.stderr
    assert not Path(env["DEPS_POLICY_RC"]).exists()


def test_deps_fails_with_a_message_when_apt_fails(tmp_path):
    env = stand_ins(tmp_path, 100)
    r = run_deps(env, "build")
    assert r.returncode == 1
    assert "ci/deps.sh: apt-get update failed" in r.stderr, r.stderr
    assert not Path(env["DEPS_POLICY_RC"]).exists()


def test_deps_rejects_an_unknown_set():
    r = subprocess.run(["bash", str(REPO / "ci/deps.sh"), "everything"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
