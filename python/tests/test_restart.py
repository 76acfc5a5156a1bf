"""A send with wait whose daemon is killed (-9): the error names the
message's id, and after the daemon's restart result() tells that it was
delivered, once. Its own pair of daemons: the restart changes host 1's
generation, which test_client's tests assume is 1."""

import threading
import time
import unittest

import sanlock_msg

import daemons
from daemons import LOCKSPACE, read_one

pair = None


def setUpModule():
    global pair
    pair = daemons.Pair()


def tearDownModule():
    if pair is not None:
        pair.close()


class RestartTest(unittest.TestCase):
    def test_send_survives_its_daemon(self):
        r1, r2 = pair.runs
        with sanlock_msg.listen(LOCKSPACE, run_dir=r2, manual_ack=True) as reg:
            accepted, failed = [], []

            def send():
                try:
                    sanlock_msg.send(LOCKSPACE, [2], sanlock_msg.USER0, data=11, wait=True, run_dir=r1,
                                     on_accept=accepted.append)
                except sanlock_msg.Error as e:
                    failed.append(e)

            t = threading.Thread(target=send)
            t.start()
            rec = read_one(reg)  # delivered, not acked: the send waits
            self.assertTrue(rec.ack_needed)
            pair.kill(1)
            t.join(30)
            self.assertFalse(t.is_alive())
            self.assertEqual(len(failed), 1, "send --wait did not fail when its daemon was killed")
            e = failed[0]
            self.assertIsInstance(e, sanlock_msg.ProtocolError)
            self.assertEqual((e.msg_id, accepted[0].id), (rec.id, rec.id))
            self.assertIn("result(%r, %r)" % (LOCKSPACE, rec.id), str(e))

            pair.restart(1)
            got = sanlock_msg.result(LOCKSPACE, rec.id, run_dir=r1)
            self.assertEqual(got.state, "pending")  # sent again, still waiting for our ack
            reg.ack(rec)
            got = sanlock_msg.result(LOCKSPACE, rec.id, wait=True, timeout=60, run_dir=r1)
            self.assertTrue(got.ok, got)
            self.assertEqual((got.targets[0]["outcome"], got.targets[0]["status"]), ("acked", "delivered"))
            time.sleep(1)
            self.assertEqual(reg.read(), [], "delivered again after its sender's restart")


if __name__ == "__main__":
    unittest.main()
