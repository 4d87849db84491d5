"""pytest-xdist's ``loadgroup`` scheduling, aware of each worker's servers.

A worker starts its servers in the background as soon as it has collected the tests
(``conftest.pytest_collection_finish``): Kafka and Redis, and the registry or MLflow when
``groups_of_worker`` gives it that server's group of tests. Each server touches a file
when it is up (``ready_file``). Until then the worker is given tests that need no server
(unit and deploy tests), so no worker sits waiting for a JVM; then its own server group,
then the integration tests, then whatever is left. A server group only ever goes to the
worker that started its server (unless that worker is gone), so no server starts twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

GroupsOfWorker = Callable[[str, int], set[str]]
ReadyFile = Callable[[str, str], Path]
"""(worker id, server name) -> the file that server touches once it is up."""


def needs_servers(scope: str) -> bool:
    """Whether a work unit (a test id, or a group name) needs a server of its worker."""
    return "::" not in scope or "/integration/" in scope


class ServerAwareScheduling(LoadGroupScheduling):
    """``loadgroup``, choosing each unit by what the asking worker's servers are ready for."""

    def __init__(
        self,
        config: pytest.Config,
        log: Any,
        groups_of_worker: GroupsOfWorker,
        ready_file: ReadyFile,
    ) -> None:
        super().__init__(config, log)
        self._groups_of_worker = groups_of_worker
        self._ready_file = ready_file

    def _assign_work_unit(self, node: WorkerController) -> None:
        choice = self._choose(node.gateway.id)
        if choice is not None:
            self.workqueue.move_to_end(choice, last=False)
            super()._assign_work_unit(node)

    def _choose(self, worker: str) -> str | None:
        """The unit for ``worker``: its ready group, else a server test once its Kafka is up
        (a test needing none before), else anything but another live worker's group."""
        mine = self._groups_of_worker(worker, self.numnodes)
        ready = {name for name in ("stack", *mine) if self._ready_file(worker, name).exists()}
        taken = self._groups_of_live_workers() - mine
        units = [s for s in self.workqueue if s not in taken]
        free = [s for s in units if s not in mine or s in ready]
        if "stack" in ready:
            wanted = (s for s in free if s in mine or needs_servers(s))
        else:
            wanted = (s for s in free if not needs_servers(s))
        return next(wanted, None) or next(iter(free or units), None)

    def _groups_of_live_workers(self) -> set[str]:
        live = {node.gateway.id for node in self.nodes if not node.shutting_down}
        return {g for worker in live for g in self._groups_of_worker(worker, self.numnodes)}


class ServerGroupHooks:
    """The xdist hook that installs ``ServerAwareScheduling`` for ``--dist loadgroup``."""

    def __init__(self, groups_of_worker: GroupsOfWorker, ready_file: ReadyFile) -> None:
        self._groups_of_worker = groups_of_worker
        self._ready_file = ready_file

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        return ServerAwareScheduling(config, log, self._groups_of_worker, self._ready_file)


class StructuredGroupIds:
    """In a worker: carry each test's ``xdist_group`` into the id the controller reads.

    pytest 9.2 builds ``nodeid`` from a structured id, while xdist 3.8 writes the group
    suffix (``…@registry``) into the legacy ``_nodeid`` only, so ``loadgroup`` silently
    stops grouping (pytest-dev/pytest-xdist#1386). A no-op where the two agree.
    """

    @pytest.hookimpl(trylast=True)  # after xdist's own hook has written ``_nodeid``
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            legacy = getattr(item, "_nodeid", None)
            structured = getattr(item, "_id", None)
            stale = isinstance(legacy, str) and "@" in legacy and item.nodeid != legacy
            if stale and structured is not None:
                item._id = type(structured).parse(legacy)  # type: ignore[attr-defined]
