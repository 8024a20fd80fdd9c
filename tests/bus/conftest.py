"""The ``bus_factory`` fixture: every contract and crash test runs once per backend.

The "kafka" parameter needs the session fixture ``kafka_bootstrap`` (tests/conftest.py starts a
real broker) and ``monitor.bus.kafka``; without either it is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest

from monitor.bus.base import Bus, Consumer, Message, TopicPartition

from ._busopen import make_bus

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BusFactory:
    """Makes buses of one kind over one log; remembers them so teardown closes them."""

    kind: str
    address: str
    created: list[Bus] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __call__(self, partitions: int = 3) -> Bus:
        bus = make_bus(self.kind, self.address, partitions)
        self.created.append(bus)
        return bus

    def track(self, obj: Any) -> Any:
        """Close ``obj`` (a producer or consumer) at teardown if the test did not."""
        self.closers.append(obj.close)
        return obj

    @staticmethod
    def name(prefix: str) -> str:
        return f"t.{prefix}.{uuid.uuid4().hex[:10]}"

    def close_all(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # teardown must go on; the failure is shown
                print(f"teardown: close failed: {exc!r}", file=sys.stderr)
        for bus in self.created:
            bus.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusFactory]:
    if request.param == "embedded":
        factory = BusFactory("embedded", str(tmp_path / "bus.sqlite"))
    else:
        try:
            import monitor.bus.kafka  # noqa: F401
        except ImportError as exc:
            pytest.skip(f"kafka bus backend not available yet: {exc}")
        try:
            bootstrap = request.getfixturevalue("kafka_bootstrap")
        except pytest.FixtureLookupError:
            pytest.skip("no kafka_bootstrap fixture (tests/conftest.py starts the broker)")
        factory = BusFactory("kafka", str(bootstrap))
    yield factory
    factory.close_all()


# -- helpers shared by the bus tests ---------------------------------------------------------


def wait_assigned(
    consumer: Consumer, expected: set[TopicPartition], timeout: float = 60.0
) -> list[Message]:
    """Poll until ``consumer`` owns ``expected``; return whatever the polls delivered."""
    got: list[Message] = []
    deadline = _deadline(timeout)
    while consumer.assignment() != expected:
        if _expired(deadline):
            raise AssertionError(
                f"assignment {sorted(consumer.assignment())} never became {sorted(expected)}"
            )
        got.extend(consumer.poll(500, 0.2))
    return got


def consume_until(
    consumer: Consumer,
    done: Callable[[list[Message]], bool],
    timeout: float = 60.0,
    commit: bool = False,
    initial: list[Message] | None = None,
) -> list[Message]:
    """Poll until ``done(all messages so far)``; optionally commit after every batch."""
    got: list[Message] = list(initial or [])
    deadline = _deadline(timeout)
    while not done(got):
        if _expired(deadline):
            state = getattr(consumer, "diagnostics", dict)()
            raise AssertionError(
                f"condition not met after {timeout}s with {len(got)} messages; consumer {state}"
            )
        batch = consumer.poll(500, 0.2)
        got.extend(batch)
        if commit and batch:
            consumer.commit()
    return got


def _deadline(timeout: float) -> float:
    return time.monotonic() + timeout


def _expired(deadline: float) -> bool:
    return time.monotonic() > deadline


def partitions_of(bus: Bus, topic: str) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in bus.partitions(topic)}


class Proc:
    """A python subprocess whose stdout lines are read by a thread, awaited with timeouts."""

    def __init__(self, script: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / script), *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: Queue[str | None] = Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)

    def next_line(self, timeout: float = 60.0) -> str | None:
        """The next stdout line, or None at end of output."""
        try:
            return self.lines.get(timeout=timeout)
        except Empty:
            raise AssertionError(
                f"no output from subprocess within {timeout}s; stderr:\n{''.join(self.stderr)}"
            ) from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        self.popen.wait(timeout=60)
