"""Real sanlock-msg daemons for the tests: two hosts sharing a lockspace on
an image file in /var/tmp, io_timeout 1, no watchdog.

The binary is $SANLOCK_MSG_BIN, else built from this repository with go
(/usr/local/go/bin is added to PATH). Under CI=true a missing prerequisite
fails the tests instead of skipping them, as in the Go tests.
"""

import os
import select
import shutil
import subprocess
import tempfile
import time
import unittest

import sanlock_msg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOCKSPACE = "PYLS"


def require(ok, why):
    """Skip the test (fail under CI=true) unless ok."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        raise AssertionError("missing prerequisite under CI=true (no test may skip): " + why)
    raise unittest.SkipTest(why)


def read_one(reg, timeout=15):
    """Wait on reg's fd with select and return the first record."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no record within %ss" % timeout)
        r, _, _ = select.select([reg.fileno()], [], [], left)
        if r:
            recs = reg.read()
            if recs:
                return recs[0]


class Pair:
    """Two daemons (host 1 and host 2) joined to LOCKSPACE, seeing each
    other LIVE. Each has a run directory and a state directory of its own,
    and a fixed host name, so that a killed daemon restarts and joins again
    at once."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sanlock-msg-py.", dir="/var/tmp")
        self.procs = []
        self.runs = []
        self.bin = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        self.bin = self._binary()
        self.image = os.path.join(self.dir, "disk.img")
        with open(self.image, "wb") as f:
            f.truncate(8 << 20)
        self.run("init", "-o", "1", "-s", "%s:0:%s:0" % (LOCKSPACE, self.image))
        self.runs = [os.path.join(self.dir, "r%d" % i) for i in (1, 2)]
        self.procs = [self._spawn(i) for i in (1, 2)]
        for r in self.runs:
            self.wait(lambda r=r: self._answers(r), "daemon in %s to answer" % r)
        joins = [self._join(i) for i in (1, 2)]
        for j in joins:
            out, _ = j.communicate(timeout=60)
            if j.returncode != 0:
                raise RuntimeError("add-lockspace: %s" % out.decode())
        for r, other in ((self.runs[0], 2), (self.runs[1], 1)):
            self.wait(lambda r=r, other=other: self.state(r, other) == "LIVE", "host %d LIVE from %s" % (other, r))

    def _spawn(self, i):
        r = self.runs[i - 1]
        with open(os.path.join(self.dir, "d%d.log" % i), "ab") as log:
            return subprocess.Popen(
                [self.bin, "daemon", "--run-dir", r, "--state-dir", os.path.join(r, "state"), "--watchdog", "none",
                 "-e", "py-host%d" % i],
                stdout=log, stderr=log)

    def _join(self, i):
        return subprocess.Popen([self.bin, "add-lockspace", "--run-dir", self.runs[i - 1], "-o", "1",
                                 "-s", "%s:%d:%s:0" % (LOCKSPACE, i, self.image)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def kill(self, i):
        """kill -9 host i's daemon (ours, by pid) and wait for it."""
        p = self.procs[i - 1]
        p.kill()
        p.wait()

    def restart(self, i):
        """Start host i's daemon again on its run and state directories, and
        join LOCKSPACE with the next generation."""
        self.procs[i - 1] = self._spawn(i)
        self.wait(lambda: self._answers(self.runs[i - 1]), "daemon %d to answer" % i)
        j = self._join(i)
        out, _ = j.communicate(timeout=60)
        if j.returncode != 0:
            raise RuntimeError("add-lockspace after a restart: %s" % out.decode())

    def _binary(self):
        b = os.environ.get("SANLOCK_MSG_BIN")
        if b:
            return b
        go = shutil.which("go", path=os.environ.get("PATH", "") + ":/usr/local/go/bin")
        require(go is not None, "no sanlock-msg binary ($SANLOCK_MSG_BIN) and no go to build one")
        out = os.path.join(self.dir, "sanlock-msg")
        subprocess.run([go, "build", "-o", out, "./cmd/sanlock-msg"], cwd=REPO, check=True)
        return out

    def run(self, *args):
        p = subprocess.run([self.bin] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise RuntimeError("sanlock-msg %s: %s" % (" ".join(args), p.stdout.decode()))
        return p.stdout.decode()

    @staticmethod
    def _answers(run_dir):
        try:
            sanlock_msg.status(run_dir=run_dir)
            return True
        except sanlock_msg.NoDaemon:
            return False

    @staticmethod
    def state(run_dir, host_id):
        for h in sanlock_msg.host_status(LOCKSPACE, run_dir=run_dir):
            if h["host_id"] == host_id:
                return h["state"]
        return None

    @staticmethod
    def wait(cond, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for " + what)
            time.sleep(0.05)

    def logs(self):
        out = []
        for i in (1, 2):
            with open(os.path.join(self.dir, "d%d.log" % i), errors="replace") as f:
                out.append("--- daemon %d ---\n%s" % (i, f.read()))
        return "\n".join(out)

    def close(self):
        for r in self.runs if self.bin else []:
            subprocess.run([self.bin, "shutdown", "--run-dir", r, "--force", "--wait", "--timeout", "20s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
