"""Engine benchmark (issue 2): per-stage times of a 5 s 720p toy job, peak RSS of a 15 s 1080p 21:9 job,
MP4 writing time of PyAV against the ffmpeg command line on the same frames, and (``--queue N``) jobs per hour of a
queue of N toy jobs through the worker with ``--overlap-jobs`` against without (a CPU proxy; the GPU figure is
``gpu_bench.py``'s).

    .venv/bin/python bench/engine_bench.py [--skip-big] [--queue 10] [--json OUT]

Ratios are measured in one run, interleaved, so a noisy shared machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import vm_hwm_bytes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def stage_times() -> dict:
    from pixgen.core.spec import parse_request
    from pixgen.engine import load_engine

    t0 = time.perf_counter()
    engine = load_engine("tiny")
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        engine.generate(parse_request({"prompt": "warm up", "duration": 1, "quality": "360p", "seed": 1}),
                        Path(tmp) / "w.mp4")
        t0 = time.perf_counter()
        result = engine.generate(parse_request({"prompt": "A golden retriever running through sunflowers",
                                                "duration": 5, "quality": "720p", "seed": 42}), Path(tmp) / "a.mp4")
        total = time.perf_counter() - t0
    return {"load_s": round(load_s, 2), "total_s": round(total, 2),
            "stages_s": result.timings.as_dict()}


def run_with_peak_rss(cmd: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``cmd``; its result and its peak RSS in bytes (its ``VmHWM``, read while it runs: see
    ``common.vm_hwm_bytes`` for why not ``getrusage``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, vm_hwm_bytes(proc.pid) or 0)  # None while it exits
            time.sleep(0.05)
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read()), peak


def big_job_peak_rss() -> dict:
    """A 15 s 1080p 21:9 job (2520×1080, 361 frames) in a child process, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "big.mp4"
        t0 = time.perf_counter()
        proc, peak = run_with_peak_rss([sys.executable, "-m", "pixgen", "generate", "a wide canyon at sunset",
                                        "--duration", "15", "--aspect-ratio", "21:9", "--quality", "1080p",
                                        "--seed", "3", "-o", str(out)])
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        from pixgen.media.probe import probe

        facts = probe(out)
    return {"peak_rss_gib": round(peak / 2**30, 3), "peak_rss_bytes": peak, "wall_s": round(seconds, 1),
            "size": f"{facts.width}x{facts.height}", "frames": facts.num_frames,
            "audio_s": round(facts.audio_seconds or 0, 3), "target": "3 GB"}


def decode_peak_rss(seconds: int = 2) -> dict:
    """The decode + encode path alone at 2520×1080 (bench/decode_rss.py), in a child process."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("decode_rss.py")), "--seconds",
                           str(seconds)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "target": "3 GB"}  # it reads its own VmHWM


def synthetic_frames(n: int, width: int, height: int) -> np.ndarray:
    """Moving gradients with some texture: compressible like real footage, unlike the toy model's noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 6, (height, width)).astype(np.float32)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = np.clip(128 + 100 * np.sin((x + 4 * i) / 90) + texture, 0, 255)
        frames[i, ..., 1] = np.clip(128 + 100 * np.cos((y - 3 * i) / 70) + texture, 0, 255)
        frames[i, ..., 2] = np.clip((x + y + 5 * i) % 256, 0, 255)
    return frames


def write_pyav(frames: np.ndarray, audio: np.ndarray, rate: int, out: Path, preset: str, crf: int) -> float:
    from pixgen.media.mp4 import Mp4Writer

    t0 = time.perf_counter()
    with Mp4Writer(out, frames.shape[2], frames.shape[1], audio_sample_rate=rate, preset=preset, crf=crf) as w:
        w.write_audio(audio)
        for start in range(0, len(frames), 24):
            w.write_frames(frames[start : start + 24])
    return time.perf_counter() - t0


def write_ffmpeg(frames: np.ndarray, wav: Path, out: Path, preset: str, crf: int) -> float:
    h, w = frames.shape[1:3]
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "24",
           "-i", "-", "-i", str(wav), "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-movflags", "+faststart", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for start in range(0, len(frames), 24):
        proc.stdin.write(frames[start : start + 24].tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg failed")
    return time.perf_counter() - t0


def mp4_vs_ffmpeg(repeats: int = 3, preset: str = "veryfast", crf: int = 20) -> dict:
    if shutil.which("ffmpeg") is None:
        return {"skipped": "no ffmpeg command line (apt-get install ffmpeg)"}
    rate, seconds = 24000, 15
    frames = synthetic_frames(seconds * 24 + 1, 1280, 720)
    t = np.arange(int(rate * seconds)) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    pyav, ffmpeg = [], []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        with wave.open(str(wav), "wb") as wf:
            wf.setnchannels(2), wf.setsampwidth(2), wf.setframerate(rate)
            wf.writeframes((audio.T * 32767).astype("<i2").tobytes())
        for _ in range(repeats):  # interleaved, so load on the machine hits both alike
            pyav.append(write_pyav(frames, audio, rate, Path(tmp) / "p.mp4", preset, crf))
            ffmpeg.append(write_ffmpeg(frames, wav, Path(tmp) / "f.mp4", preset, crf))
    p, f = statistics.median(pyav), statistics.median(ffmpeg)
    return {"clip": "15 s 1280x720 + 24 kHz stereo", "preset": preset, "crf": crf, "pyav_s": round(p, 2),
            "ffmpeg_cli_s": round(f, 2), "ratio": round(p / f, 3), "target_ratio": 1.0}


def queue_jobs_per_hour(jobs: int, quality: str = "720p", duration: int = 2) -> dict:
    """A queue of ``jobs`` toy jobs through pixgen's worker loop (``queue_run.worker_queue``), one job after the
    other and with ``--overlap-jobs``, twice each in the order A B B A so the shared machine's drift falls on both
    alike: jobs per hour of each and their ratio. On a CPU the overlapped parts compete for the same cores, so this
    is a proxy, not the GPU's figure (``gpu_bench.py``'s queue step)."""
    from queue_run import worker_queue

    from pixgen.core.spec import parse_request
    from pixgen.engine import load_engine

    engine = load_engine("tiny")
    requests = [parse_request({"prompt": "A golden retriever running through sunflowers", "duration": duration,
                               "quality": quality, "seed": 100 + i}) for i in range(jobs)]
    walls = {"serial": 0.0, "overlap_jobs": 0.0}
    stages: dict[str, dict[str, float]] = {name: {} for name in walls}
    with tempfile.TemporaryDirectory() as tmp:
        engine.generate(requests[0], Path(tmp) / "warm.mp4")  # warm at the shape
        for run, name in enumerate(("serial", "overlap_jobs", "overlap_jobs", "serial")):
            measured = worker_queue(engine, requests, Path(tmp) / f"q{run}", overlap_jobs=name == "overlap_jobs")
            walls[name] += measured["wall_s"]
            for stage, seconds in measured["stage_s"].items():
                stages[name][stage] = stages[name].get(stage, 0.0) + seconds
    per_hour = {name: round(2 * jobs / wall * 3600, 1) for name, wall in walls.items()}
    return {"jobs": jobs, "job": f"{quality} {duration} s toy", "jobs_per_hour": per_hour,
            "ratio": round(per_hour["overlap_jobs"] / per_hour["serial"], 3),
            "mean_stages_s": {n: {k: round(v / (2 * jobs), 3) for k, v in st.items()} for n, st in stages.items()},
            "machine": {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--queue", type=int, default=0, metavar="N",
                        help="also jobs per hour of a queue of N jobs, --overlap-jobs against without")
    parser.add_argument("--queue-only", action="store_true", help="only the queue measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.queue_only:
        text = json.dumps({"queue": queue_jobs_per_hour(args.queue or 10)}, indent=2)
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text)
        return
    results = {"decode_peak_rss_2520x1080": decode_peak_rss()}
    if not args.skip_big:
        results["peak_rss_15s_1080p_21x9"] = big_job_peak_rss()
    results |= {"stage_times_5s_720p": stage_times(), "mp4_writing": mp4_vs_ffmpeg()}
    if args.queue:
        results["queue"] = queue_jobs_per_hour(args.queue)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
