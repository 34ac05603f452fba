"""Request sharing in the gateway (gateway/coalescing.py), with a model stand-in that
records the batches it is sent.  The served path is tested in test_gateway.py."""
from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from mlplatform.gateway.coalescing import Coalescer
from mlplatform.gateway.errors import ModelFailed, Unavailable

KEY = ("echo", "1")


class Recorder:
    """Doubles each number after ``delay``; a non-number fails the whole call, as MLServer does."""

    def __init__(self, delay: float = 0.01, error: Exception = None):
        self.batches: List[List[Any]] = []
        self.delay, self.error = delay, error

    async def __call__(self, documents: List[Any]) -> List[Any]:
        self.batches.append(list(documents))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if any(not isinstance(d, int) for d in documents):
            raise ModelFailed("not a number", model="echo")
        return [2 * d for d in documents]


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_lone_call_goes_at_once_on_its_own():
    recorder = Recorder()

    async def main():
        return [await Coalescer().score(KEY, n, recorder) for n in range(3)]

    assert run(main()) == [0, 2, 4]
    assert recorder.batches == [[0], [1], [2]]


def test_concurrent_calls_share_requests_and_each_gets_its_own_answer():
    recorder = Recorder()
    coalescer = Coalescer(max_batch=8, max_in_flight=2)

    async def main():
        return await asyncio.gather(*(coalescer.score(KEY, n, recorder) for n in range(40)))

    assert run(main()) == [2 * n for n in range(40)]
    assert sorted(d for batch in recorder.batches for d in batch) == list(range(40))
    assert len(recorder.batches) < 40 and max(len(b) for b in recorder.batches) == 8


def test_a_failing_document_does_not_fail_its_neighbours():
    recorder = Recorder()
    coalescer = Coalescer()

    async def main():
        documents = [1, 2, "x", 4, 5, 6]
        return await asyncio.gather(*(coalescer.score(KEY, d, recorder) for d in documents),
                                    return_exceptions=True)

    answers = run(main())
    assert [a for i, a in enumerate(answers) if i != 2] == [2, 4, 8, 10, 12]
    assert isinstance(answers[2], ModelFailed) and answers[2].detail == "not a number"


def test_an_unavailable_server_fails_every_waiting_call():
    recorder = Recorder(error=Unavailable("down"))
    coalescer = Coalescer()

    async def main():
        return await asyncio.gather(*(coalescer.score(KEY, n, recorder) for n in range(5)),
                                    return_exceptions=True)

    assert all(isinstance(a, Unavailable) for a in run(main()))


def test_models_do_not_share_requests():
    recorder = Recorder()
    coalescer = Coalescer()

    async def main():
        return await asyncio.gather(*(coalescer.score((name, "1"), 1, recorder)
                                      for name in ("a", "b", "a", "b", "a", "b")))

    run(main())
    assert all(len(batch) <= 3 for batch in recorder.batches)


def test_a_caller_that_goes_away_does_not_break_the_others():
    recorder = Recorder(delay=0.5)  # the cancel below lands long before any answer
    coalescer = Coalescer()

    async def main():
        tasks = [asyncio.ensure_future(coalescer.score(KEY, n, recorder)) for n in range(6)]
        await asyncio.sleep(0.01)
        tasks[4].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = run(main())
    assert isinstance(answers[4], asyncio.CancelledError)
    assert [a for i, a in enumerate(answers) if i != 4] == [0, 2, 4, 6, 10]
    assert all(4 not in batch for batch in recorder.batches)  # its document is not sent


@pytest.mark.parametrize("max_batch", [1, 3])
def test_max_batch_bounds_every_request(max_batch):
    recorder = Recorder()
    coalescer = Coalescer(max_batch=max_batch)

    async def main():
        return await asyncio.gather(*(coalescer.score(KEY, n, recorder) for n in range(20)))

    assert run(main()) == [2 * n for n in range(20)]
    assert max(len(b) for b in recorder.batches) == max_batch
