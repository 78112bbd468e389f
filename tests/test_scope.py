"""Attribution scopes: nesting, decorators, and propagation into asyncio tasks and threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tokentrail._record import Attribution
from tokentrail.scope import ScopedThreadPoolExecutor, current_scope, propagate, scope


def test_outside_any_scope_the_attribution_is_empty() -> None:
    assert current_scope() == Attribution()


def test_a_scope_sets_its_fields_and_restores_on_exit() -> None:
    with scope(agent="researcher", session="s1", user="alice", tool="search", tags=["eval"]) as entered:
        assert current_scope() is entered
        assert entered == Attribution("researcher", "s1", "alice", "search", ("eval",), ("researcher",))
    assert current_scope() == Attribution()


def test_inner_values_override_and_tags_accumulate() -> None:
    with scope(agent="writer", user="alice", tags="draft"), scope(agent="editor", tags=["b", "a"]):
        inner = current_scope()
    assert inner.agent == "editor"
    assert inner.user == "alice"
    assert inner.tags == ("a", "b", "draft")


def test_a_new_agent_or_a_name_opens_a_path_level_but_a_tool_does_not() -> None:
    with scope(agent="team"), scope(agent="researcher"), scope(tool="search"), scope("step-1"):
        assert current_scope().path == ("team", "researcher", "step-1")
    with scope(agent="writer"), scope(agent="writer", tool="x"):
        assert current_scope().path == ("writer",)


def test_the_scope_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), scope(agent="a"):
        raise RuntimeError("boom")
    assert current_scope() == Attribution()


def test_decorates_sync_functions() -> None:
    @scope(agent="planner")
    def plan() -> str | None:
        return current_scope().agent

    assert plan() == "planner"
    assert current_scope().agent is None


def test_decorates_async_functions() -> None:
    @scope(agent="writer", tags=["async"])
    async def write() -> tuple[str | None, tuple[str, ...]]:
        await asyncio.sleep(0)
        return current_scope().agent, current_scope().tags

    assert asyncio.run(write()) == ("writer", ("async",))


def test_refuses_to_decorate_generator_functions() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        scope(agent="x")(numbers)


def test_asyncio_tasks_inherit_the_scope_they_were_created_in() -> None:
    async def agent_of_child() -> str | None:
        return current_scope().agent

    async def main() -> str | None:
        with scope(agent="orchestrator"):
            task = asyncio.create_task(agent_of_child())
        return await task

    assert asyncio.run(main()) == "orchestrator"


def test_concurrent_tasks_keep_their_own_scopes() -> None:
    async def worker(i: int) -> bool:
        with scope(agent=f"agent-{i}", session=f"s-{i}"):
            for _ in range(3):
                await asyncio.sleep(0)
                if current_scope().agent != f"agent-{i}" or current_scope().session != f"s-{i}":
                    return False
        return current_scope().agent is None

    async def main() -> list[bool]:
        return await asyncio.gather(*(worker(i) for i in range(200)))

    assert all(asyncio.run(main()))


def test_one_scope_object_can_be_entered_by_many_tasks_at_once() -> None:
    shared = scope(agent="shared")

    async def worker() -> bool:
        async with shared:
            await asyncio.sleep(0)
            inside = current_scope().agent == "shared"
        return inside and current_scope().agent is None

    async def main() -> list[bool]:
        return await asyncio.gather(*(worker() for _ in range(50)))

    assert all(asyncio.run(main()))


def test_plain_threads_do_not_inherit_the_scope() -> None:
    seen: list[str | None] = []
    with scope(agent="main"):
        thread = threading.Thread(target=lambda: seen.append(current_scope().agent))
        thread.start()
        thread.join()
    assert seen == [None]


def test_propagate_carries_the_scope_into_threads() -> None:
    seen: list[str | None] = []
    with scope(agent="main"):
        thread = threading.Thread(target=propagate(lambda: seen.append(current_scope().agent)))
    thread.start()
    thread.join()
    assert seen == ["main"]


def test_a_propagated_function_can_run_in_many_threads_at_once() -> None:
    with scope(agent="fan-out"):
        work = propagate(lambda i: (i, current_scope().agent))
    with ScopedThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(100)))
    assert results == [(i, "fan-out") for i in range(100)]


def test_scoped_executor_runs_tasks_in_the_submitters_scope() -> None:
    with ScopedThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        for i in range(20):
            with scope(agent=f"a{i}"):
                futures.append(pool.submit(lambda: current_scope().agent))
        assert [f.result() for f in futures] == [f"a{i}" for i in range(20)]
