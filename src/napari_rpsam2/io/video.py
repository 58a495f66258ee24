"""Videos (MP4, AVI, MOV, MKV) as lazy stacks: one frame decoded at a time, with seeking (PyAV).

Opening reads the packet index only (no decoding): every frame's presentation
time and which packets are keyframes.  ``video[i]`` seeks to the last keyframe
at or before frame ``i`` and decodes forward to it; reading on from there
(``i + 1``, ``i + 2`` …) continues without seeking.  A few decoded frames are
kept, nothing more, so memory does not grow with the video's length.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .source import ImageSource, InputError

__all__ = ["VIDEO_SUFFIXES", "VideoFrames", "open_video", "frame_names"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
_FORWARD_LIMIT = 32
"""Decode forward instead of seeking when the wanted frame is at most this many frames ahead."""


def frame_names(n: int) -> list[str]:
    """``frame_000000`` … (six digits, more when the video needs them)."""
    width = max(6, len(str(max(n - 1, 0))))
    return [f"frame_{i:0{width}d}" for i in range(n)]


def _ts(obj) -> int | None:
    """Presentation time of a packet or frame, else its decoding time."""
    return obj.pts if obj.pts is not None else getattr(obj, "dts", None)


class VideoFrames:
    """A video as a read-only ``(N, H, W, 3)`` uint8 stack decoded on demand.

    Parameters
    ----------
    path : path-like
        A video file PyAV (FFmpeg) can decode.
    cache_frames : int
        Decoded frames kept for repeated access.
    """

    def __init__(self, path: str | os.PathLike, cache_frames: int = 8) -> None:
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError, OSError) as err:
            raise InputError(f"cannot open video {self.path}: {err}; is it a video file FFmpeg can read?") from err
        self._stream = stream
        self._pts, self._keys = self._index(stream)
        if len(self._pts) == 0:
            raise InputError(f"video {self.path} has no frames")
        self._frame_of = {int(p): i for i, p in enumerate(self._pts)}
        width, height = stream.codec_context.width, stream.codec_context.height
        self.shape = (len(self._pts), int(height), int(width), 3)
        self.dtype, self.ndim = np.dtype(np.uint8), 4
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(1, int(cache_frames))
        self._lock = threading.Lock()
        self._frames = None  # the decoder's frame iterator after the last seek
        self._last = None  # index of the last decoded frame
        self.seeks = 0  # how many seeks were made (to check that reading on does not seek)

    def _index(self, stream) -> tuple[np.ndarray, np.ndarray]:
        """Sorted presentation times of all frames and, among them, the keyframes' (from packets only)."""
        pts, keys = [], []
        try:
            for packet in self._container.demux(stream):
                t = _ts(packet)
                if t is None or packet.size == 0:
                    continue
                pts.append(t)
                if packet.is_keyframe:
                    keys.append(t)
        except Exception as err:
            raise InputError(f"cannot read video {self.path}: {err}") from err
        return np.unique(np.asarray(pts, dtype=np.int64)), np.unique(np.asarray(keys or pts[:1], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"frame {index} is outside the video's {len(self)} frames")
            return self._frame(i)
        if isinstance(index, slice):
            return np.stack([self._frame(i) for i in range(len(self))[index]])
        if isinstance(index, tuple):
            return self[index[0]][index[1:]] if isinstance(index[0], (int, np.integer)) else \
                self[index[0]][(slice(None), *index[1:])]
        return np.stack([self._frame(int(i)) for i in np.asarray(index).ravel()])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _frame(self, i: int) -> np.ndarray:
        with self._lock:
            hit = self._cache.get(i)
            if hit is not None:
                self._cache.move_to_end(i)
                return hit
            frame = self._decode(i)
            self._cache[i] = frame
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
            return frame

    def _decode(self, i: int) -> np.ndarray:
        target = int(self._pts[i])
        last = self._last
        ahead = last is not None and last < i and (
            i - last <= _FORWARD_LIMIT or not np.any((self._keys > self._pts[last]) & (self._keys <= target)))
        if ahead:
            found = self._decode_until(target)
            if found is not None:
                return found
        k = int(np.searchsorted(self._keys, target, side="right")) - 1
        for start in range(max(k, 0), -1, -1):  # open GOPs: step back a keyframe if the frame was skipped
            self._seek(int(self._keys[start]))
            found = self._decode_until(target)
            if found is not None:
                return found
        raise InputError(f"cannot decode frame {i} of {self.path}; the file may be damaged")

    def _seek(self, pts: int) -> None:
        import av

        self.seeks += 1
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as err:
            raise InputError(f"cannot seek in {self.path}: {err}") from err
        self._frames = self._container.decode(self._stream)
        self._last = None

    def _decode_until(self, target: int) -> np.ndarray | None:
        """Decode forward to the frame shown at ``target``; ``None`` if decoding passed it."""
        if self._frames is None:
            self._seek(int(self._keys[0]))
        for frame in self._frames:
            t = _ts(frame)
            if t is None:
                continue
            index = self._frame_of.get(int(t))
            if index is not None:
                self._last = index
            if t == target:
                return frame.to_ndarray(format="rgb24")
            if t > target:
                return None
        self._frames, self._last = None, None
        return None

    def close(self) -> None:
        """Close the file (the object cannot read afterwards)."""
        with self._lock:
            self._container.close()
            self._cache.clear()


def open_video(path: str | os.PathLike) -> ImageSource:
    """A video as an :class:`ImageSource` of RGB frames named ``frame_000000`` …"""
    frames = VideoFrames(path)
    return ImageSource(frames, Path(path), "video", frame_names(len(frames)), rgb=True,
                       contrast_limits=(0.0, 255.0), meta={"fps": frames.fps})
