"""Where the pipeline's requests run: in this process (``workers=0``) or in worker processes.

Each request names a worker (``video position % workers``), so a video's stage 2 goes to
the worker that did its stage 1 and still holds it open. Replies are matched by key;
a worker that dies or raises stops the run with one clear message.

Start method: ``fork`` where no CUDA context exists yet (cheap, the dataset is not
pickled); ``forkserver`` once CUDA is initialised, since a forked CUDA context is
unusable. Workers never touch CUDA either way.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
import torch.multiprocessing as mp

from adamml_core.engine.inference.pipeline.workers import VideoWork, worker_main
from adamml_core.media.errors import MediaError

_POLL_SECONDS = 5.0
STALL_SECONDS = 600.0  # no reply at all for this long while waiting: report it instead of hanging


class PipelineError(RuntimeError):
    """A worker crashed or raised something other than a media error."""


class InlinePool:
    """Runs every request at once in this process (tests, ``workers=0``)."""

    def __init__(self, dataset: Any, options: dict[str, Any]):
        self.work = VideoWork(dataset, **options)
        self.workers = 1
        self._done: dict[Any, tuple] = {}

    def submit(self, worker: int, request: tuple) -> None:
        reply = self.work.handle(request)
        self._done[reply[0]] = reply

    def collect(self, key: Any) -> tuple:
        return _checked(self._done.pop(key))

    def close(self) -> None:
        self.work.close()


class ProcessPool:
    """``workers`` processes, one request queue each, one shared reply queue."""

    def __init__(self, dataset: Any, options: dict[str, Any], workers: int, start_method: str | None = None):
        method = start_method or ("forkserver" if torch.cuda.is_initialized() else "fork")
        ctx = mp.get_context(method)
        self.workers = workers
        # SimpleQueue: a worker's put pickles in its own main thread, so a reply that cannot be sent
        # is reported as an error reply instead of being dropped by a feeder thread (a silent hang).
        self.replies = ctx.SimpleQueue()
        self.requests = [ctx.Queue() for _ in range(workers)]
        self.processes = [
            ctx.Process(target=worker_main, args=(dataset, options, q, self.replies), daemon=True)
            for q in self.requests
        ]
        # Objects the parent still holds (or holds as garbage) must not be freed by a forked child's
        # garbage collector: some (FFmpeg contexts) own threads that do not exist in the child.
        gc.freeze()
        try:
            for p in self.processes:
                p.start()
        finally:
            gc.unfreeze()
        self._done: dict[Any, tuple] = {}

    def submit(self, worker: int, request: tuple) -> None:
        self.requests[worker % self.workers].put(request)

    def collect(self, key: Any) -> tuple:
        waited = 0.0
        while key not in self._done:
            if not self.replies._reader.poll(_POLL_SECONDS):
                dead = [p.pid for p in self.processes if not p.is_alive()]
                if dead:
                    raise PipelineError(f"pipeline worker(s) {dead} died (out of memory?)")
                waited += _POLL_SECONDS
                if waited >= STALL_SECONDS:
                    raise PipelineError(f"no reply from the pipeline workers for {waited:.0f} s (waiting for {key})")
                continue
            reply = self.replies.get()
            self._done[reply[0]] = reply
            waited = 0.0
        return _checked(self._done.pop(key))

    def close(self) -> None:
        for q in self.requests:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self.processes:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def _checked(reply: tuple) -> tuple:
    """``(status, payload, times)``; a worker's unexpected exception is raised here, with its traceback text."""
    _, status, payload, times = reply
    if status == "error":
        raise PipelineError(f"pipeline worker failed:\n{payload}")
    return status, payload, times


def make_pool(dataset: Any, options: dict[str, Any], workers: int, start_method: str | None = None) -> Any:
    return ProcessPool(dataset, options, workers, start_method) if workers > 0 else InlinePool(dataset, options)


def media_error(payload: tuple[str, str]) -> MediaError:
    path, reason = payload
    return MediaError(path, reason)
