"""Tests of the sanlock_msg client against two real sanlock-msg daemons."""

import asyncio
import errno
import inspect
import os
import select
import subprocess
import sys
import time
import unittest

import sanlock_msg
from sanlock_msg import events

import daemons
from daemons import LOCKSPACE, read_one

pair = None


def setUpModule():
    global pair
    pair = daemons.Pair()


def tearDownModule():
    if pair is not None:
        pair.close()


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.r1, self.r2 = pair.runs

    def test_status(self):
        st = sanlock_msg.status(run_dir=self.r1)
        self.assertGreater(st["pid"], 0)
        self.assertEqual(st["run_dir"], self.r1)
        self.assertEqual(st["watchdog"]["device"], "none")
        [ls] = st["lockspaces"]
        self.assertEqual((ls["name"], ls["host_id"], ls["state"], ls["io_timeout"]), (LOCKSPACE, 1, "joined", 1))

    def test_host_status(self):
        hosts = {h["host_id"]: h for h in sanlock_msg.host_status(LOCKSPACE, run_dir=self.r1)}
        self.assertTrue(hosts[1].get("self"))
        self.assertEqual(hosts[2]["state"], "LIVE")
        self.assertEqual(hosts[2]["host_name"], "py-host2")
        self.assertEqual(hosts[2]["runs"], "sanlock-msg")

    def test_send_wait_and_listen_with_select(self):
        with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2) as reg:
            self.assertEqual(reg.read(), [])  # nothing yet, and no blocking
            r = sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.user(0), data=42, wait=True, run_dir=self.r1)
            self.assertTrue(r.done and r.ok, r)
            [t] = r.targets
            self.assertEqual((t["host_id"], t["outcome"], t["status"], t["ok"]), (2, "acked", "delivered", True))
            rec = read_one(reg)
            self.assertEqual(rec.type, "message")
            self.assertEqual((rec.lockspace, rec.from_host_id, rec.seq, rec.code, rec.data, rec.codes),
                             (LOCKSPACE, 1, r.seq, sanlock_msg.USER0, 42, ["user0"]))
            self.assertEqual(rec["status"], "delivered")
            self.assertEqual((rec.id, rec.origin, rec.redelivered, rec.ack_needed), (r.id, r.origin, False, False))
            self.assertEqual(reg.read(), [])  # delivered once

    def test_send_without_wait_and_poll(self):
        with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2) as reg:
            p = select.poll()
            p.register(reg, select.POLLIN)
            r = sanlock_msg.send(LOCKSPACE, 2, sanlock_msg.user(3), run_dir=self.r1)
            self.assertGreater(r.seq, 0)
            self.assertEqual(r.id, "1:%d:%d" % (r.origin, r.seq))
            self.assertFalse(r.done)
            self.assertTrue(p.poll(15000), "poll saw nothing")
            [rec] = reg.read()
            self.assertEqual((rec.seq, rec.data, rec.codes), (r.seq, r.seq, ["user3"]))  # data defaults to the seq

    def test_asyncio(self):
        async def main():
            loop = asyncio.get_running_loop()
            got = asyncio.Queue()
            with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2) as reg:
                loop.add_reader(reg.fileno(), lambda: [got.put_nowait(rec) for rec in reg.read()])
                try:
                    r = await loop.run_in_executor(None, lambda: sanlock_msg.send(
                        LOCKSPACE, [2], sanlock_msg.user(1), data=7, wait=True, run_dir=self.r1))
                    rec = await asyncio.wait_for(got.get(), 15)
                finally:
                    loop.remove_reader(reg.fileno())
            return r, rec

        r, rec = asyncio.run(main())
        self.assertTrue(r.ok)
        self.assertEqual((rec.seq, rec.data, rec.codes), (r.seq, 7, ["user1"]))

    def test_no_listener(self):
        r = sanlock_msg.send(LOCKSPACE, [1], sanlock_msg.user(2), wait=True, run_dir=self.r2)
        self.assertTrue(r.done)
        self.assertFalse(r.ok)
        self.assertEqual((r.targets[0]["outcome"], r.targets[0]["status"]), ("acked", "no-listener"))
        self.assertIn("no-listener", r.error)

    def test_client_reuse(self):
        with sanlock_msg.Client(self.r1, timeout=30) as c:
            self.assertEqual(c.status()["lockspaces"][0]["name"], LOCKSPACE)
            self.assertEqual(len(c.host_status(LOCKSPACE)), 2)
            with self.assertRaises(sanlock_msg.NotJoined) as cm:
                c.host_status("NOPE")
            self.assertEqual((cm.exception.code, cm.exception.op), ("not_joined", "host_status"))
            self.assertTrue(c.status())  # the connection survives an error

    def test_errors(self):
        with self.assertRaises(sanlock_msg.NotJoined):
            sanlock_msg.send("NOPE", [2], sanlock_msg.USER0, run_dir=self.r1)
        with self.assertRaises(sanlock_msg.Invalid):
            sanlock_msg.send(LOCKSPACE, [2], 0, run_dir=self.r1)
        with self.assertRaises(sanlock_msg.Invalid):
            sanlock_msg.send(LOCKSPACE, [1], sanlock_msg.USER0, run_dir=self.r1)  # ourselves
        with self.assertRaises(sanlock_msg.NotJoined):
            sanlock_msg.listen("NOPE", run_dir=self.r1)
        with self.assertRaises(sanlock_msg.NoDaemon) as cm:
            sanlock_msg.status(run_dir=os.path.join(pair.dir, "nowhere"))
        self.assertIn("no daemon at", str(cm.exception))
        with self.assertRaises(ValueError):
            sanlock_msg.user(16)
        with sanlock_msg.Client(self.r1) as c:
            with self.assertRaises(sanlock_msg.Unsupported) as cm:
                c.request("frobnicate")  # an op from a newer protocol
            self.assertEqual(cm.exception.code, "unsupported")
            self.assertTrue(c.status())  # the connection survives it

    def test_access_hint(self):
        # What a user who may not open the socket is told (EACCES cannot
        # happen to root, who runs these tests, so the hint is tested
        # directly): the socket's owner, group and mode, and what to do.
        from sanlock_msg import client
        hint = client._access_hint(os.path.join(self.r1, "sanlock-msg.sock"))
        for want in ("the socket is owned by user", "mode 0660", "--group"):
            self.assertIn(want, hint)

    def test_run_dir_from_environment(self):
        old = os.environ.get(sanlock_msg.ENV_RUN_DIR)
        os.environ[sanlock_msg.ENV_RUN_DIR] = self.r2
        try:
            self.assertEqual(sanlock_msg.status()["lockspaces"][0]["host_id"], 2)
        finally:
            if old is None:
                del os.environ[sanlock_msg.ENV_RUN_DIR]
            else:
                os.environ[sanlock_msg.ENV_RUN_DIR] = old

    def test_end_of_registration(self):
        # A lockspace of its own (another area of the image), removed while
        # a client iterates its registration.
        spec = "PYEND:2:%s:%d" % (pair.image, 4 << 20)
        pair.run("init", "-o", "1", "-s", "PYEND:0:%s:%d" % (pair.image, 4 << 20))
        pair.run("add-lockspace", "--run-dir", self.r2, "-o", "1", "-s", spec)
        reg = sanlock_msg.listen("PYEND", run_dir=self.r2)
        pair.run("rem-lockspace", "--run-dir", self.r2, "-s", "PYEND")
        recs = list(reg)  # blocks until the end record, then stops
        reg.close()
        self.assertEqual([r.type for r in recs], ["end"])
        self.assertIn("removed", recs[0].reason)
        self.assertTrue(reg.ended)

    def test_module_listen_command(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        p = subprocess.Popen([sys.executable, "-m", "sanlock_msg", "listen", "--run-dir", self.r2, LOCKSPACE],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            self.assertEqual(p.stdout.readline().decode().strip(), "registered for lockspace " + LOCKSPACE)
            r = sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.user(4), data=5, wait=True, run_dir=self.r1)
            self.assertTrue(r.ok)
            line = p.stdout.readline().decode()
            self.assertIn("message from host 1 generation 1: id %s seq %d code 0x100000 (user4) data 5 [delivered]"
                          % (r.id, r.seq), line)
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()


class DurableTest(unittest.TestCase):
    """Message ids, results and manual acks."""

    def setUp(self):
        self.r1, self.r2 = pair.runs

    def test_result(self):
        accepted = []
        r = sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.user(8), wait=True, run_dir=self.r1,
                             on_accept=accepted.append)
        self.assertEqual([a.id for a in accepted], [r.id])  # before the result, with the same id
        self.assertTrue(accepted[0].raw.get("accepted"))
        for ls in (LOCKSPACE, None):  # None: every lockspace
            got = sanlock_msg.result(ls, r.id, run_dir=self.r1)
            self.assertEqual((got.id, got.state, got.done, got.ok, got.seq, got.origin),
                             (r.id, "done", True, r.ok, r.seq, r.origin))
            self.assertEqual([(t["host_id"], t["outcome"], t.get("status")) for t in got.targets],
                             [(t["host_id"], t["outcome"], t.get("status")) for t in r.targets])
        with self.assertRaises(sanlock_msg.NotFound) as cm:
            sanlock_msg.result(LOCKSPACE, "1:1:999999", run_dir=self.r1)
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(sanlock_msg.Invalid):
            sanlock_msg.result(LOCKSPACE, "not-an-id", run_dir=self.r1)

    def test_manual_ack(self):
        with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2, manual_ack=True) as reg:
            self.assertTrue(reg.manual_ack)
            r = sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.user(9), data=9, run_dir=self.r1)
            rec = read_one(reg)
            self.assertEqual((rec.id, rec.data, rec.ack_needed, rec.redelivered), (r.id, 9, True, False))
            # Not acked: the sender is not told "delivered".
            time.sleep(1)
            self.assertEqual(sanlock_msg.result(LOCKSPACE, r.id, run_dir=self.r1).state, "pending")
            reg.ack(rec)
            got = sanlock_msg.result(LOCKSPACE, r.id, wait=True, timeout=30, run_dir=self.r1)
            self.assertTrue(got.ok, got)
            self.assertEqual((got.targets[0]["outcome"], got.targets[0]["status"]), ("acked", "delivered"))
            self.assertEqual(reg.read(), [])

    def test_unacked_is_delivered_again(self):
        first = sanlock_msg.listen(LOCKSPACE, run_dir=self.r2, manual_ack=True)
        try:
            r = sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.user(10), data=10, run_dir=self.r1)
            rec = read_one(first)
            self.assertEqual(rec.id, r.id)
            with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2, manual_ack=True) as second:
                first.close()  # goes away without acking: the message is given back
                again = read_one(second)
                self.assertEqual((again.id, again.data, again.redelivered, again.ack_needed), (r.id, 10, True, True))
                second.ack(again.id)  # by id, too
                got = sanlock_msg.result(LOCKSPACE, r.id, wait=True, timeout=30, run_dir=self.r1)
                self.assertTrue(got.ok, got)
        finally:
            first.close()

    def test_ack_errors(self):
        with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2) as reg:
            self.assertFalse(reg.manual_ack)
            with self.assertRaises(ValueError):
                reg.ack("1:1:1")  # an auto-ack registration
        with sanlock_msg.listen(LOCKSPACE, run_dir=self.r2, manual_ack=True) as reg:
            with self.assertRaises(ValueError):
                reg.ack(sanlock_msg.Record(type="message", native=True))  # no id
        with self.assertRaises(sanlock_msg.ProtocolError):
            reg.ack("1:1:1")  # closed


class EventsShimTest(unittest.TestCase):
    """sanlock_msg.events against python3-sanlock's shapes, and working."""

    def setUp(self):
        self.r1, self.r2 = pair.runs
        self.old = os.environ.get(sanlock_msg.ENV_RUN_DIR)

    def tearDown(self):
        if self.old is None:
            os.environ.pop(sanlock_msg.ENV_RUN_DIR, None)
        else:
            os.environ[sanlock_msg.ENV_RUN_DIR] = self.old

    def on(self, run_dir):
        os.environ[sanlock_msg.ENV_RUN_DIR] = run_dir

    def test_shapes_match_python3_sanlock(self):
        try:
            import sanlock
        except ImportError:
            sanlock = None
        daemons.require(sanlock is not None, "python3-sanlock is not installed (apt-get install python3-sanlock)")
        for name in ("reg_event", "get_event", "set_event", "end_event", "get_hosts"):
            # python3-sanlock is a C module: its signatures are in the
            # first line of each docstring, e.g. "get_event(fd) -> list".
            theirs = getattr(sanlock, name).__doc__.strip().splitlines()[0].split(" -> ")[0]
            ours = name + str(inspect.signature(getattr(events, name)))
            self.assertEqual(ours, theirs)
        for name in ("SETEV_CUR_GENERATION", "SETEV_CLEAR_HOSTID", "SETEV_CLEAR_EVENT", "SETEV_REPLACE_EVENT",
                     "SETEV_ALL_HOSTS", "HOST_UNKNOWN", "HOST_FREE", "HOST_LIVE", "HOST_FAIL", "HOST_DEAD"):
            self.assertEqual(getattr(events, name), getattr(sanlock, name), name)
        self.assertTrue(hasattr(events, "SanlockException"))

    def test_round_trip(self):
        self.on(self.r2)
        fd = events.reg_event(LOCKSPACE.encode())  # bytes, as python3-sanlock takes them
        try:
            self.assertEqual(events.get_event(fd), [])
            gen2 = [h for h in sanlock_msg.host_status(LOCKSPACE, run_dir=self.r1) if h["host_id"] == 2][0]["generation"]
            self.on(self.r1)
            self.assertIsNone(events.set_event(LOCKSPACE, 2, 0, sanlock_msg.user(5), data=99,
                                               flags=events.SETEV_CUR_GENERATION))
            self.assertIsNone(events.set_event(LOCKSPACE, 2, 0, sanlock_msg.user(6)))  # queued, not EBUSY
            got = []
            deadline = time.monotonic() + 15
            while len(got) < 2 and time.monotonic() < deadline:
                select.select([fd], [], [], 1)
                got += events.get_event(fd)
            self.assertEqual(got, [
                {"from_host_id": 1, "from_generation": 1, "host_id": 2, "generation": gen2,
                 "event": sanlock_msg.user(5), "data": 99},
                {"from_host_id": 1, "from_generation": 1, "host_id": 2, "generation": gen2,
                 "event": sanlock_msg.user(6), "data": 0},
            ])
            self.assertEqual(events.set_event(LOCKSPACE, 2, 0, 1, flags=events.SETEV_CLEAR_EVENT), None)
        finally:
            self.on(self.r2)
            events.end_event(fd, LOCKSPACE)
        with self.assertRaises(events.SanlockException) as cm:
            events.get_event(fd)
        self.assertEqual(cm.exception.errno, errno.EBADF)

    def test_all_hosts(self):
        self.on(self.r2)
        fd = events.reg_event(LOCKSPACE)
        try:
            self.on(self.r1)
            events.set_event(LOCKSPACE, 1, 0, sanlock_msg.user(7), data=3,
                             flags=events.SETEV_ALL_HOSTS | events.SETEV_REPLACE_EVENT)
            got = []
            deadline = time.monotonic() + 15
            while not got and time.monotonic() < deadline:
                select.select([fd], [], [], 1)
                got = events.get_event(fd)
            self.assertEqual([(e["from_host_id"], e["event"], e["data"]) for e in got], [(1, sanlock_msg.user(7), 3)])
        finally:
            self.on(self.r2)
            events.end_event(fd, LOCKSPACE)

    def test_errors(self):
        self.on(self.r1)
        with self.assertRaises(events.SanlockException) as cm:
            events.reg_event("NOPE")
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.assertEqual(cm.exception.args[2], os.strerror(errno.ENOENT))
        with self.assertRaises(events.SanlockException) as cm:
            events.set_event("NOPE", 2, 0, 1 << 16)
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        with self.assertRaises(events.SanlockException) as cm:
            events.set_event(LOCKSPACE, 1, 0, 1 << 16)  # ourselves
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        with self.assertRaises(events.SanlockException) as cm:
            events.end_event(12345, LOCKSPACE)
        self.assertEqual(cm.exception.errno, errno.EBADF)

    def test_get_hosts(self):
        self.on(self.r1)
        hosts = {h["host_id"]: h for h in events.get_hosts(LOCKSPACE)}
        self.assertEqual(hosts[2]["flags"], events.HOST_LIVE)
        self.assertEqual(set(hosts[2]), {"host_id", "generation", "timestamp", "io_timeout", "flags"})
        self.assertEqual([h["host_id"] for h in events.get_hosts(LOCKSPACE, 2)], [2])


if __name__ == "__main__":
    unittest.main()
