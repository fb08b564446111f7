"""SIGTERM during start-up: a broker that cannot finish starting still stops on SIGTERM.

A broker of a larger quorum starts serving only once the quorum has taken its registration, which
never happens while the quorum has no majority. Its stop task (the controlled shutdown) runs only
once it serves, so a signal arriving before that must end start-up itself: here one broker of
three is restarted alone (the others dead, so no majority), SIGTERMed while it waits for the
quorum, and must exit by itself, with code 0, within a few seconds.
"""

import socket

import pytest

from harness import CONTROLLER_PORT, wait_until

TEST_TIMEOUT_S = 60
# From SIGTERM to the exit: the signal is looked at every 50 ms, and nothing is open to sync.
EXIT_TIMEOUT_S = 3.0
# How long the restarted broker may take to open its quorum (its controller listener answers).
QUORUM_OPEN_TIMEOUT_S = 15.0
# How long the killed broker's controller listener may outlive it (io_uring teardown).
LISTENER_GONE_TIMEOUT_S = 10.0

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_S)


def controller_listens(node):
    try:
        with socket.create_connection((node.host, CONTROLLER_PORT), timeout=1.0):
            return True
    except OSError:
        return False


def test_sigterm_ends_a_start_waiting_for_a_quorum_majority(cluster):
    for node in cluster.nodes.values():
        node.kill9()
    alone = cluster.node(1)
    wait_until("the killed node 1's controller listener gone",
               lambda: not controller_listens(alone), LISTENER_GONE_TIMEOUT_S)
    alone.start(wait=False)
    # Its quorum is open (past the signal handler's installation): start-up now waits for a
    # majority that cannot form.
    wait_until("node 1's metadata quorum listening", lambda: controller_listens(alone),
               QUORUM_OPEN_TIMEOUT_S)
    assert alone.is_running(), alone.log_tail()
    assert not alone.answers(timeout_s=1.0), "node 1 serves without a quorum majority"
    code = alone.terminate(EXIT_TIMEOUT_S)
    assert code == 0, f"node 1 exited with code {code} after SIGTERM\n{alone.log_tail()}"
    assert "stopping on a signal during start-up" in alone.log_path.read_text(errors="replace")
