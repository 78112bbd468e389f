"""The exactly-once rule between layers (`tokentrail._claims`): whoever is closest to the provider records."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from tokentrail._claims import close_claim, current_claim, open_claim, take_claim


def test_an_instrumented_call_takes_the_open_claim() -> None:
    claim = open_claim("framework")
    assert current_claim() is claim and not claim.taken
    assert take_claim() is claim and claim.taken
    close_claim(claim)
    assert current_claim() is None


def test_without_a_claim_nothing_is_taken() -> None:
    assert take_claim() is None


def test_an_inner_framework_claim_takes_the_outer_one() -> None:
    outer = open_claim("langchain")
    inner = open_claim("litellm")
    assert outer.taken and not inner.taken  # the inner layer records (or a layer below it)
    close_claim(inner)
    assert current_claim() is outer
    close_claim(outer)


def test_a_claim_is_taken_from_a_copied_context_and_another_thread() -> None:
    claim = open_claim("framework")
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(context.run, take_claim).result()
    assert claim.taken
    close_claim(claim)


def test_a_claim_is_taken_from_a_task_created_inside_it() -> None:
    async def run() -> bool:
        claim = open_claim("framework")
        await asyncio.create_task(asyncio.sleep(0, result=take_claim()))
        close_claim(claim)
        return claim.taken

    assert asyncio.run(run())


def test_a_claim_closed_from_another_context_is_passed_over_here() -> None:
    outer = open_claim("outer")
    claim = open_claim("framework")
    contextvars.copy_context().run(close_claim, claim)  # the framework ended the call in another task
    assert current_claim() is outer  # later calls here no longer take the ended call's claim
    outer.taken = False
    assert take_claim() is outer and claim.closed
    close_claim(claim)  # twice: harmless
    close_claim(outer)
    assert take_claim() is None
