import threading
import time

import pytest

from vlavad.core.errors import VideoError
from vlavad.core.threads import prefetched


def test_prefetched_keeps_order_and_raises_where_the_source_did():
    def source():
        yield from range(50)
        raise VideoError("frame 50 is damaged")

    seen = []
    with pytest.raises(VideoError, match="frame 50"):
        for item in prefetched(source(), depth=4):
            seen.append(item)
    assert seen == list(range(50))


def test_closing_the_consumer_stops_the_producer_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()  # as a video file is closed

    items = prefetched(endless(), depth=2, name="test-prefetch")
    assert [next(items) for _ in range(5)] == list(range(5))
    items.close()
    assert closed.wait(timeout=5)
    deadline = time.monotonic() + 5
    while any(t.name == "test-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())
