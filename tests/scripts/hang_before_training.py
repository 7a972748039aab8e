"""A user's script that hangs before it trains (as on a stuck collective or a dead file system)."""

import time


def wait_for_a_peer_that_never_comes() -> None:
    while True:
        time.sleep(1)


wait_for_a_peer_that_never_comes()
