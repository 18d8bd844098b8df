"""Streaming MP4 writer: H.264 (libx264, yuv420p) video + optional AAC audio, frames pushed as they are decoded.

Memory stays flat: the writer holds no frames, the caller pushes uint8 chunks of any length.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from pixgen.core.sizes import FPS


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
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        video = self._container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, fps)
        video.codec_context.thread_count = 0  # let x264 pick its own threads
        # Frame threads, as the ffmpeg command line uses: PyAV defaults to slice threads, which libx264 runs
        # as "sliced threads", slower for whole-file encoding.
        video.codec_context.thread_type = "FRAME"
        video.options = {"crf": str(crf), "preset": preset}
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

    def write_frames(self, frames: np.ndarray) -> None:
        """Append frames: uint8 array (N, H, W, 3) in RGB, exactly width × height."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, {self.height}, {self.width}, 3), got "
                             f"{frames.dtype} {frames.shape}")
        for frame in self._convert.map(_to_yuv420p, frames):
            frame.pts = self.frames_written
            self._container.mux(self._video.encode(frame))
            self.frames_written += 1

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
        step = 1024 * 64
        for start in range(0, samples.shape[1], step):
            chunk = samples[:, start : start + step]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._audio.layout.name)
            frame.sample_rate = self._audio.rate
            frame.pts = start
            self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        if self._container is None:
            return
        self._convert.shutdown()
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            self._container.mux(self._audio.encode(None))
        self._container.close()
        self._container = None

    def abort(self) -> None:
        """Close without flushing and remove the partial file."""
        self._convert.shutdown(cancel_futures=True)
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
            self._container = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _to_yuv420p(rgb: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def fit_audio(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Cut or zero-pad ``samples`` (channels, n) to exactly ``seconds`` of audio."""
    want = int(round(seconds * sample_rate))
    have = samples.shape[1]
    if have >= want:
        return samples[:, :want]
    return np.pad(samples, ((0, 0), (0, want - have)))
