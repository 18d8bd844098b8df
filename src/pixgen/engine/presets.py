"""Style and camera-movement presets, as data: one table each.

Each entry is a prompt fragment, a negative-prompt fragment and the file name of an optional LoRA. The fragments
are applied by ``pixgen.engine.prompting``; the LoRA is used only when the model folder has that file under
``loras/`` (see ``pixgen.engine.ltx2.lora``). ``docs/presets.md`` is generated from these tables
(``python -m pixgen.engine.presets > docs/presets.md``) and a test keeps it in step.

This module imports nothing heavy: the job layer and the docs can read it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    prompt: str  # a sentence added to the prompt ("" adds nothing)
    negative: str = ""  # comma-separated terms added to the negative prompt
    lora: str | None = None  # file name under the model folder's ``loras/``, used when present

    @property
    def is_empty(self) -> bool:
        return not (self.prompt or self.negative or self.lora)


# The style leads the prompt: it sets the medium the whole description is read in.
STYLES: dict[str, Preset] = {
    "none": Preset(""),
    "anime": Preset(
        "Anime style: cel-shaded 2D animation with clean line art, flat vivid colours and expressive characters.",
        "photorealistic, live action, photograph, 3d render", "style_anime.safetensors"),
    "3d_animation": Preset(
        "3D animation style: a polished CGI animated-film look with soft global illumination, stylised characters "
        "and smooth shading.",
        "photograph, live action, 2d, flat shading, sketch", "style_3d_animation.safetensors"),
    "clay": Preset(
        "Claymation style: stop-motion clay figures with handmade textures and fingerprints, miniature sets and "
        "slightly stepped motion.",
        "photorealistic, smooth cgi, glossy plastic, 2d drawing", "style_clay.safetensors"),
    "comic": Preset(
        "Comic book style: bold ink outlines, halftone dots, flat graphic colours and dramatic panel-like framing.",
        "photorealistic, soft gradients, 3d render, blurry lines", "style_comic.safetensors"),
    "cyberpunk": Preset(
        "Cyberpunk style: a rain-slick, neon-lit futuristic city mood with magenta and cyan light, holograms and "
        "high-contrast night atmosphere.",
        "daylight, pastoral, muted colours, historical", "style_cyberpunk.safetensors"),
    "realistic": Preset(
        "Photorealistic live-action footage: natural skin and material textures, real-world lighting, shot on a "
        "cinema camera with shallow depth of field.",
        "cartoon, anime, illustration, 3d render, painting, cgi, plastic skin", "style_realistic.safetensors"),
}

# The camera sentence follows the scene description (or takes the camera slot of a rewritten prompt).
CAMERA_MOVEMENTS: dict[str, Preset] = {
    "zoom_in": Preset("The camera slowly zooms in on the subject, the framing tightening smoothly.",
                      "static camera, zooming out", "camera_zoom_in.safetensors"),
    "zoom_out": Preset("The camera slowly zooms out from the subject, revealing more of the surroundings.",
                       "static camera, zooming in", "camera_zoom_out.safetensors"),
    "pan_left": Preset("The camera pans smoothly to the left across the scene.",
                       "static camera, panning right", "camera_pan_left.safetensors"),
    "pan_right": Preset("The camera pans smoothly to the right across the scene.",
                        "static camera, panning left", "camera_pan_right.safetensors"),
    "tilt_up": Preset("The camera tilts up smoothly, revealing what is above.",
                      "static camera, tilting down", "camera_tilt_up.safetensors"),
    "tilt_down": Preset("The camera tilts down smoothly, revealing what is below.",
                        "static camera, tilting up", "camera_tilt_down.safetensors"),
    "crane_up": Preset("The camera rises on a crane, lifting up and away to a high angle over the scene.",
                       "static camera, descending camera", "camera_crane_up.safetensors"),
    "crane_down": Preset("The camera descends on a crane from a high angle down to eye level.",
                         "static camera, rising camera", "camera_crane_down.safetensors"),
    "dolly_in": Preset("The camera dollies forward toward the subject on a smooth track, the perspective deepening.",
                       "static camera, zoom, moving backward", "camera_dolly_in.safetensors"),
    "dolly_out": Preset("The camera dollies backward away from the subject on a smooth track.",
                        "static camera, zoom, moving forward", "camera_dolly_out.safetensors"),
    "orbit_left": Preset("The camera orbits to the left around the subject in a smooth arc, keeping it centred.",
                         "static camera, orbiting right", "camera_orbit_left.safetensors"),
    "orbit_right": Preset("The camera orbits to the right around the subject in a smooth arc, keeping it centred.",
                          "static camera, orbiting left", "camera_orbit_right.safetensors"),
    "whip_pan": Preset("A fast whip pan swings the camera sharply sideways with strong motion blur, then settles "
                       "on the new view.", "static camera, slow movement", "camera_whip_pan.safetensors"),
    "handheld": Preset("Handheld camera: natural shake and small organic drifts, as if filmed by an operator on "
                       "foot.", "tripod, perfectly stable camera, gimbal", "camera_handheld.safetensors"),
    "static": Preset("Static camera on a tripod: the framing stays completely fixed while the scene moves.",
                     "camera movement, camera shake, panning, zooming", "camera_static.safetensors"),
    "auto_camera": Preset("The camera moves naturally with the action, with motivated cinematic movement and "
                          "framing."),
}


def style_preset(name: str) -> Preset:
    return STYLES[name]


def camera_preset(name: str | None) -> Preset:
    """``None`` (no camera movement asked) adds nothing."""
    return CAMERA_MOVEMENTS[name] if name is not None else Preset("")


def markdown() -> str:
    """``docs/presets.md``, generated from the tables above."""
    lines = ["# Style and camera presets", "",
             "Generated from `src/pixgen/engine/presets.py` by `python -m pixgen.engine.presets > docs/presets.md`;",
             "a test keeps this file and the tables in step. The style sentence leads the prompt, the camera",
             "sentence follows the scene description; both negative fragments are added to the negative prompt.",
             "A LoRA is used when the model folder has the named file under `loras/` (and `peft` is installed).",
             ""]
    for title, field, table in (("Styles", "style", STYLES), ("Camera movements", "camera_movement",
                                                                CAMERA_MOVEMENTS)):
        lines += [f"## {title} (`{field}`)", "", "| value | prompt fragment | negative fragment | LoRA file |",
                  "|---|---|---|---|"]
        for name, preset in table.items():
            lora = f"`loras/{preset.lora}`" if preset.lora else ""
            lines.append(f"| `{name}` | {_cell(preset.prompt)} | {_cell(preset.negative)} | {lora} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


if __name__ == "__main__":
    print(markdown(), end="")
