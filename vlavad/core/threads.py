"""Work handed to threads of their own."""

from __future__ import annotations

import importlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def prefetched(items: Iterator[T], depth: int = 8, name: str = "vlavad-prefetch") -> Iterator[T]:
    """`items`, produced ahead in a thread of its own, so that while the consumer works on one item
    the next ones are already being made: worth it when producing releases the GIL (decoding,
    OpenCV, the networks). At most `depth` items wait. Errors reach the consumer in order; closing
    the consumer stops the producer, and the producer closes `items` when it stops (a video file)."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((done, exc))
        finally:
            getattr(items, "close", lambda: None)()

    thread = threading.Thread(target=produce, daemon=True, name=name)
    thread.start()
    try:
        while True:
            item, error = waiting.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def import_in_background(module: str) -> None:
    """Starts importing `module` in a thread of its own, so that a later import of it in this
    thread waits for that one (Python's import lock) instead of starting from scratch. An error
    is left to that later import to raise, where it is needed. Not a daemon thread, unlike
    `in_background`'s: an extension module's import cut short at exit can crash the process."""

    def run() -> None:
        try:
            importlib.import_module(module)
        except Exception:
            pass

    threading.Thread(target=run, name=f"import {module}").start()


def in_background(function, *args, **kwargs) -> Future:
    """`function(*args, **kwargs)` in a daemon thread: unlike a thread pool's workers, which
    Python waits for at exit, it cannot hold up Ctrl-C by decoding a long video to its end."""
    future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=run, name=f"vlavad {function.__name__}", daemon=True).start()
    return future
