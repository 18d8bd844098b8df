"""`pixgen generate` as users run it: settings from PIXGEN_* variables, and errors named by the flag typed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixgen.cli import build_parser, main
from pixgen.cli.generate_cmd import FLAG_FOR_FIELD
from pixgen.core.spec import VideoRequest

SHORT = ("--duration", "1", "--quality", "360p", "--seed", "3")


def generate(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXGEN_") or k == "PIXGEN_CACHE_DIR"}
    return subprocess.run([sys.executable, "-m", "pixgen", "generate", *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env={**clean, **(env or {})})


# -- settings from the environment ------------------------------------------------------------------------------
def test_model_from_pixgen_model_is_used_and_the_command_line_model_wins(tmp_path):
    missing = tmp_path / "no-such-model"
    out = tmp_path / "bird.mp4"
    failed = generate("a bird", *SHORT, "-o", str(out), env={"PIXGEN_MODEL": str(missing)})
    assert failed.returncode == 2, failed.stderr
    assert str(missing) in failed.stderr and "PIXGEN_MODEL" in failed.stderr
    assert "Traceback" not in failed.stderr and not out.exists()

    done = generate("a bird", *SHORT, "--model", "tiny", "-o", str(out), env={"PIXGEN_MODEL": str(missing)})
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "640x360" in done.stdout


def test_cache_dir_flag_wins_over_pixgen_cache_dir(tmp_path):
    from_env, from_flag = tmp_path / "env-cache", tmp_path / "flag-cache"
    out = tmp_path / "o.mp4"
    done = generate("a bird", *SHORT, "--cache-dir", str(from_flag), "-o", str(out),
                    env={"PIXGEN_CACHE_DIR": str(from_env)})
    assert done.returncode == 0, done.stderr
    assert list(from_flag.rglob("model_index.json")) and not from_env.exists()  # the toy model was built there


# -- errors name the flag ----------------------------------------------------------------------------------------
def test_every_request_field_but_the_prompt_has_a_flag_in_the_parser():
    assert set(FLAG_FOR_FIELD) == set(VideoRequest.model_fields) - {"prompt"}
    generate_parser = build_parser()._subparsers._group_actions[0].choices["generate"]
    flags = {s for action in generate_parser._actions for s in action.option_strings}
    assert set(FLAG_FOR_FIELD.values()) <= flags


def _png(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    return path


@pytest.mark.parametrize(("argv", "flag", "words"), [
    (["--image", "{gif}"], "--image", ["is not a PNG, JPEG or WebP image"]),
    (["--image", "{missing}"], "--image", ["is not a file"]),
    (["--end-image", "{png}"], "--end-image", ["--end-image needs --image"]),
    (["--thinking", "maybe"], "--thinking", ["'disabled', 'enabled' or 'auto'"]),
    (["--camera-movement", "wobble"], "--camera", ["'zoom_in'"]),
    (["--negative-prompt", "n" * 3000], "--negative-prompt", ["2048"]),
    (["--duration", "16"], "--duration", ["15"]),
    (["--seed", "-1"], "--seed", ["0"]),
])
def test_bad_input_names_the_flag_and_exits_2_without_loading_the_model(tmp_path, monkeypatch, capsys, argv, flag,
                                                                        words):
    import pixgen.engine

    monkeypatch.setattr(pixgen.engine, "load_engine", lambda *a, **k: pytest.fail("model loaded for bad input"))
    (tmp_path / "a.gif").write_bytes(b"GIF89a" + b"\0" * 32)
    paths = {"gif": str(tmp_path / "a.gif"), "missing": str(tmp_path / "none.png"),
             "png": str(_png(tmp_path / "e.png"))}
    out = tmp_path / "o.mp4"
    assert main(["generate", "x", *(a.format(**paths) for a in argv), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pixgen: error ({flag}): "), err
    assert all(w in err for w in words), err
    for field in ("image_input", "end_image_input", "thinking_type", "camera_movement", "negative_prompt"):
        assert field not in err
    assert not out.exists()


def test_prompt_error_points_at_the_image_flag(tmp_path, capsys):
    assert main(["generate", "", "-o", str(tmp_path / "o.mp4")]) == 2
    assert capsys.readouterr().err.strip() == (
        "pixgen: error (prompt): prompt is required (1 to 2048 characters) unless --image is given")


def test_a_gif_start_frame_is_refused_by_its_flag_in_a_real_run(tmp_path):
    gif = tmp_path / "some.gif"
    gif.write_bytes(b"GIF89a" + b"\0" * 32)
    done = generate("x", "--image", str(gif), "-o", str(tmp_path / "o.mp4"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"pixgen: error (--image): {gif} is not a PNG, JPEG or WebP image"
