"""pytest-xdist's ``loadgroup`` scheduling, with each server group sent to the worker that
started its server.

A worker starts the registry or MLflow in the background as soon as it has collected the
tests (``conftest.pytest_collection_finish``), before it is given any, so the group of
tests that needs that server must come to that worker: ``groups_of_worker`` says which,
here and in the worker alike. Everything else is xdist's ``loadgroup``: a group runs on one
worker, other tests go wherever there is room, in collection order (longest first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

GroupsOfWorker = Callable[[str, int], set[str]]


class ServerGroupScheduling(LoadGroupScheduling):
    """``loadgroup``, each worker's own server groups first."""

    def __init__(self, config: pytest.Config, groups_of_worker: GroupsOfWorker, log: Any) -> None:
        super().__init__(config, log)
        self._groups_of_worker = groups_of_worker

    def _assign_work_unit(self, node: WorkerController) -> None:
        for group in self._groups_of_worker(node.gateway.id, self.numnodes):
            if group in self.workqueue:
                self.workqueue.move_to_end(group, last=False)
        super()._assign_work_unit(node)


class ServerGroupHooks:
    """The xdist hook that installs ``ServerGroupScheduling`` for ``--dist loadgroup``."""

    def __init__(self, groups_of_worker: GroupsOfWorker) -> None:
        self._groups_of_worker = groups_of_worker

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        return ServerGroupScheduling(config, self._groups_of_worker, log)
