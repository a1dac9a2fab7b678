"""Owned background tasks: what every component with a task of its own does on close."""

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel these tasks (None and finished ones are skipped) and wait until they are done.
    What they raised is theirs to log; closing goes on."""
    live = [task for task in tasks if task is not None and not task.done()]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


class OwnedTask:
    """A component that runs one background task of its own, `_run`, from `start()` until
    `close()`; `task_name` names it in task dumps."""

    task_name = "owned"
    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def _run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await cancel_and_wait(self._task)
