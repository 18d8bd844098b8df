"""Streaming MP4 writer: H.264 (libx264, yuv420p) video + optional AAC audio, frames pushed as they are decoded.

Memory stays flat: the writer holds no frames, the caller pushes uint8 chunks of any length.

``background=True`` (``--overlap``) moves the encoding onto a thread of its own, fed through a queue of
``QUEUE_CHUNKS`` chunks: the caller's next chunk (the next decoded tile) is made while this one is encoded. Every
call on the container (audio, frames, flush) still runs in the order it was made, on that one thread, so the file is
byte for byte the serial writer's.
"""

from __future__ import annotations

import contextlib
import platform
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from pixgen.core.sizes import FPS

# Chunks waiting for the background encoder: one waits while one is encoded, so at most two decoded tiles (the
# largest ~135 MB of uint8 each at 1080p) are held beyond the decoder's own.
QUEUE_CHUNKS = 1


def _x264_params() -> dict[str, str]:
    """On an x86-64 CPU with AVX2: libx264 held to its AVX code (``asm=AVX``). Its AVX2 paths read memory past the
    picture when the height is not a multiple of 16 (360), so the same frames made a different file now and then
    (a few pixels of the first frames, off by up to 30): a seed did not give the same video twice. Its C code and
    its SSE2 and AVX code give the same file every time, and AVX is as fast here (121 720p frames: 1.90 s against
    1.84-1.96 s). Elsewhere libx264 picks its own code."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return {}
    return {"x264-params": "asm=AVX"} if "avx2" in flags else {}


X264_PARAMS = _x264_params()


class Mp4Writer:
    def __init__(
        self,
        path: Path | str,
        width: int,
        height: int,
        *,
        fps: int = FPS,
        audio_sample_rate: int | None = None,
        audio_channels: int = 2,
        crf: int = 20,
        preset: str = "veryfast",
        background: bool = False,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._closed = False
        video = self._container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, fps)
        video.codec_context.thread_count = 0  # let x264 pick its own threads
        # Frame threads, as the ffmpeg command line uses: PyAV defaults to slice threads, which libx264 runs
        # as "sliced threads", slower for whole-file encoding.
        video.codec_context.thread_type = "FRAME"
        video.options = {"crf": str(crf), "preset": preset, **X264_PARAMS}
        self._video = video
        # RGB → yuv420p conversion runs on its own threads (sws_scale releases the GIL), overlapping x264's work,
        # as the ffmpeg command line does with its filter threads.
        self._convert = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mp4-convert")
        self._audio = None
        if audio_sample_rate:
            layout = "stereo" if audio_channels == 2 else "mono"
            audio = self._container.add_stream("aac", rate=audio_sample_rate, layout=layout)
            audio.time_base = Fraction(1, audio_sample_rate)
            self._audio = audio
            self._audio_channels = audio_channels
        self._encoder = _Encoder() if background else None

    def write_frames(self, frames: np.ndarray) -> None:
        """Append frames: uint8 array (N, H, W, 3) in RGB, exactly width × height. In the background mode the
        writer keeps ``frames`` until they are encoded: the caller must not change them."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, {self.height}, {self.width}, 3), got "
                             f"{frames.dtype} {frames.shape}")
        start, self.frames_written = self.frames_written, self.frames_written + len(frames)
        self._run(lambda: self._encode_frames(frames, start))

    def _encode_frames(self, frames: np.ndarray, start: int) -> None:
        for pts, frame in enumerate(self._convert.map(_to_yuv420p, frames), start):
            frame.pts = pts
            self._container.mux(self._video.encode(frame))

    def _run(self, work: Callable[[], None]) -> None:
        """``work`` on the container: now, or queued for the background encoder."""
        if self._encoder is None:
            work()
        else:
            self._encoder.put(work)

    def write_audio(self, samples: np.ndarray) -> None:
        """Write the whole audio track: float32 (channels, n) in [-1, 1]."""
        if self._audio is None:
            raise RuntimeError("this writer was opened without an audio track")
        # A model that diverged gives NaN or inf samples, which the AAC encoder refuses ("Input contains NaN"):
        # they are written as silence and full scale, and the picture still reaches the user.
        samples = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        samples = np.ascontiguousarray(np.clip(samples, -1.0, 1.0))
        if samples.ndim != 2 or samples.shape[0] != self._audio_channels:
            raise ValueError(f"audio must be float32 ({self._audio_channels}, n), got {samples.shape}")
        self._run(lambda: self._encode_audio(samples))

    def _encode_audio(self, samples: np.ndarray) -> None:
        assert self._audio is not None
        step = 1024 * 64
        for start in range(0, samples.shape[1], step):
            chunk = samples[:, start : start + step]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._audio.layout.name)
            frame.sample_rate = self._audio.rate
            frame.pts = start
            self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        """Flush and finish the file (waiting for the background encoder); its error, if it had one, is raised."""
        if self._closed:
            return
        if self._encoder is not None:
            self._encoder.finish()
        self._convert.shutdown()
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            self._container.mux(self._audio.encode(None))
        self._container.close()
        self._closed = True

    def abort(self) -> None:
        """Close without flushing and remove the partial file."""
        if self._encoder is not None:
            self._encoder.stop()
        self._convert.shutdown(cancel_futures=True)
        if not self._closed:
            with contextlib.suppress(Exception):  # the file is being thrown away
                self._container.close()
            self._closed = True
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Encoder:
    """One thread running the writer's container work in the order it was queued; an error there is raised to
    the caller at its next ``put`` or at ``finish``."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mp4-encode", daemon=True)
        self._thread.start()

    def put(self, work: Callable[[], None]) -> None:
        while True:
            self._raise()
            try:
                self._queue.put(work, timeout=0.1)  # not forever: the thread may have died meanwhile
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def stop(self) -> None:
        """Drop what is queued and end the thread (the file is being thrown away)."""
        self._stopping.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._thread.join(timeout=0.05)

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the MP4 encoder failed: {self._error}") from self._error

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                work = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if work is None:
                return
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
                return


def _to_yuv420p(rgb: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def fit_audio(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Cut or zero-pad ``samples`` (channels, n) to exactly ``seconds`` of audio."""
    want = round(seconds * sample_rate)
    have = samples.shape[1]
    if have >= want:
        return samples[:, :want]
    return np.pad(samples, ((0, 0), (0, want - have)))
