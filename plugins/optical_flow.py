"""Optical flow between consecutive decoded frames, and its on-disk cache.

Flow is computed on grayscale frames at the decode size (shorter side 256) by
TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``, OpenCV's default
parameters, as the paper), or by DIS / Farneback when speed matters more
than fidelity. Frame pairs are spread over a thread pool: OpenCV releases the
GIL, so the threads run in parallel.

Flow values are rounded to float16 whether or not a cache is used, so the
cached and the freshly computed paths give identical tensors.

Cache: the flow modality keeps its fields in the video's modality store
(``<video cache>/modalities/flow/<algorithm>-s<decode short side>/<i>.npy``,
:class:`adamml_core.media.cache.ModalityStore`): the flow from frame i to i+1
(``[H, W, 2]`` float16, unbounded pixels), each file written atomically, so an
interrupted run leaves no half file. :func:`prepare_flows` fills it offline
(``adamml prepare``); loading fills it too, pair by pair.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Literal

import cv2
import numpy as np

from adamml_core.api import ModalityStore

Algorithm = Literal["tvl1", "dis", "farneback"]
ALGORITHMS: tuple[str, ...] = ("tvl1", "dis", "farneback")
FLOW_DTYPE = np.float16

_local = threading.local()


def _tvl1() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if not hasattr(cv2, "optflow") or not hasattr(cv2.optflow, "DualTVL1OpticalFlow_create"):
        raise RuntimeError("TV-L1 needs opencv-contrib-python (cv2.optflow.DualTVL1OpticalFlow_create is missing)")
    engine = cv2.optflow.DualTVL1OpticalFlow_create()
    return lambda a, b: engine.calc(a, b, None)


def _dis() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda a, b: engine.calc(a, b, None)


def _farneback() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


_FACTORIES = {"tvl1": _tvl1, "dis": _dis, "farneback": _farneback}


def flow_function(algorithm: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A per-thread flow engine (OpenCV algorithm objects keep state and must not be shared)."""
    if algorithm not in _FACTORIES:
        raise ValueError(f"unknown optical-flow algorithm '{algorithm}'; known: {', '.join(ALGORITHMS)}")
    engines = getattr(_local, "engines", None)
    if engines is None:
        engines = _local.engines = {}
    if algorithm not in engines:
        engines[algorithm] = _FACTORIES[algorithm]()
    return engines[algorithm]


def to_gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def compute_flow(previous: np.ndarray, following: np.ndarray, algorithm: str) -> np.ndarray:
    """Flow ``[H, W, 2]`` (x, y in pixels) from ``previous`` to ``following`` (RGB or gray uint8)."""
    a = previous if previous.ndim == 2 else to_gray(previous)
    b = following if following.ndim == 2 else to_gray(following)
    flow = flow_function(algorithm)(a, b)
    return flow.astype(FLOW_DTYPE)


def param_key(algorithm: str, decode_short_side: int) -> str:
    return f"{algorithm}-s{decode_short_side}"


def flow_item(index: int) -> str:
    """The store item holding the flow from frame ``index`` to ``index + 1``."""
    return f"{index:06d}"


def flows_for_pairs(
    frames: dict[int, np.ndarray],
    starts: Iterable[int],
    algorithm: str,
    *,
    threads: int = 1,
    cache: ModalityStore | None = None,
    last_index: int | None = None,
) -> dict[int, np.ndarray]:
    """Flow from frame i to i+1 for each i in ``starts``; ``frames`` maps index -> RGB frame.

    A pair whose second index is past ``last_index`` (the clamped end of a
    short clip) has zero flow: the frame does not move.
    """
    starts = sorted(set(starts))
    result: dict[int, np.ndarray] = {}
    todo: list[int] = []
    for i in starts:
        if last_index is not None and i + 1 > last_index:
            shape = frames[i].shape[:2]
            result[i] = np.zeros((*shape, 2), dtype=FLOW_DTYPE)
            continue
        cached = cache.get(flow_item(i)) if cache is not None else None
        if cached is not None:
            result[i] = cached
        else:
            todo.append(i)
    if not todo:
        return result
    gray = {i: to_gray(frames[i]) for i in {j for t in todo for j in (t, t + 1)}}

    def one(i: int) -> tuple[int, np.ndarray]:
        flow = compute_flow(gray[i], gray[i + 1], algorithm)
        if cache is not None:
            cache.put(flow_item(i), flow.astype(FLOW_DTYPE))
        return i, flow

    if threads > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(todo))) as pool:
            result.update(pool.map(one, todo))
    else:
        result.update(map(one, todo))
    return result


def prepare_flows(frames: Iterator[tuple[int, np.ndarray]], store: ModalityStore, algorithm: str, *,
                  threads: int = 2) -> int:
    """Flow for every consecutive pair of ``frames`` (``(i, rgb)`` in order) into ``store``; returns the pairs.

    One sequential pass; pairs go to a thread pool, at most ``4 * threads`` in
    flight so that a long video does not pile its frames up in memory.
    """
    pairs = 0
    previous: tuple[int, np.ndarray] | None = None
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = []
        for index, rgb in frames:
            gray = to_gray(rgb)
            if previous is not None:
                first, before = previous
                pending.append(pool.submit(lambda i, a, b: store.put(flow_item(i), compute_flow(a, b, algorithm)),
                                           first, before, gray))
                pairs += 1
                if len(pending) > 4 * max(1, threads):
                    pending.pop(0).result()
            previous = (index, gray)
        for job in pending:
            job.result()
    return pairs


def tvl1_gflops_estimate(height: int, width: int) -> float:
    """A rough per-pair cost of OpenCV's TV-L1: an estimate, not a count.

    Default parameters: 5 pyramid levels (about 4/3 of the finest level's
    pixels), 5 warps per level; the inner solver stops on epsilon = 0.01, which
    we take as ~50 iterations of ~30 floating-point operations per pixel:
    ``pixels * 4/3 * 5 * 50 * 30``, about 0.87 GFLOPs for a 256x340 pair.
    """
    return height * width * (4 / 3) * 5 * 50 * 30 / 1e9
