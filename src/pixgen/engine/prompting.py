"""The prompt actually sent to the model, from the request's prompt and its prompt-shaping fields.

Order of work: thinking (keep the text, or rewrite it into a detailed shot description), then the presets:

    prompt   = [style sentence] + description (+ camera sentence, in the description's camera place)
    negative = request negative + style negative + camera negative

thinking_type:
- ``disabled``: the description is the prompt verbatim.
- ``enabled``: rewritten: by the folder's LTX-2 prompt enhancer when it has one (the engine runs it), else by
  ``rewrite_prompt`` here, which is deterministic (same text → same rewrite; no randomness).
- ``auto``: rewritten only when ``needs_rewrite``: fewer than ``SHORT_PROMPT_WORDS`` words, or no motion cue
  (no word ending in "-ing" and none of ``MOTION_WORDS``), i.e. a short or bare prompt.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from pixgen.core.spec import VideoRequest
from pixgen.engine.presets import Preset, camera_preset, style_preset

SHORT_PROMPT_WORDS = 12

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
MOTION_WORDS = frozenset("""
    move moves moved walk walks walked run runs ran fly flies flew swim swims jump jumps jumped dance dances
    turn turns turned spin spins rise rises rose fall falls fell drift drifts drifted roll rolls rolled flow flows
    sway sways wave waves crash crashes splash splashes chase chases follow follows pass passes passed climb climbs
    ride rides rode drive drives drove race races glide glides float floats burst bursts explode explodes open
    opens opened close closes closed look looks looked smile smiles laugh laughs talk talks speak speaks say says
    sing sings play plays eat eats drink drinks pour pours throw throws catch catches push pushes pull pulls
    lift lifts drop drops hit hits kick kicks shake shakes nod nods blink blinks grow grows melt melts burn burns
    sits sit stands stand leans lean reaches reach enters enter leaves leave arrives arrive
""".split())
# Nouns that end in "-ing" but are no motion cue.
_ING_NOUNS = frozenset("""morning evening building ceiling clothing painting wedding spring string nothing something
    everything anything lighting sibling pudding earring feeling meaning setting ending beginning""".split())

# Words that show the prompt already covers an aspect of the shot (then the rewriter leaves that aspect alone).
ASPECT_CUES: dict[str, frozenset[str]] = {
    "camera": frozenset("""camera shot shots pan pans panning zoom zooms zooming dolly tracking close-up closeup
        wide aerial drone handheld tilt tilts orbit orbits crane angle framing pov footage lens""".split()),
    "light": frozenset("""light lights lighting lit sunlight sunset sunrise dawn dusk night neon glow glowing
        shadow shadows golden moonlight lamp lamps candle candlelight backlit overcast spotlight daylight
        bright dark""".split()),
    "sound": frozenset("""sound sounds audio music song songs sing sings singing voice voices says speaks
        dialogue noise silence silent quiet hum humming buzz roar roars chirp chirping whistle whistles echo
        echoing ambient ambience soundtrack""".split()),
}

# Fillers for aspects a prompt leaves out; one of each is picked from a hash of the prompt (stable across runs).
_MOTION = (
    "The main subject moves naturally and continuously, with small lifelike motions, while the background stays "
    "alive with subtle movement.",
    "Gentle, continuous motion runs through the scene: the subject shifts and reacts as air and light move softly "
    "around it.",
    "The action unfolds at a natural pace, the subject moving with smooth, believable weight and momentum.",
)
_CAMERA = (
    "The camera holds a steady medium shot at eye level with a slow, smooth push in.",
    "A smooth tracking shot follows the subject at a steady distance.",
    "A slow cinematic pan reveals the scene from a wide angle before settling on the subject.",
)
_LIGHT = (
    "Soft natural daylight gives gentle shadows and true-to-life colour.",
    "Warm golden-hour light rakes across the scene with long, soft shadows.",
    "Even, diffused light brings out rich natural tones and fine detail.",
)
_SOUND = (
    "The sound is natural ambience that matches the scene, with subtle effects synchronised to the motion.",
    "Quiet environmental ambience plays under clear, synchronised sound effects of the action.",
    "A soft room tone and the nearby sounds of the scene accompany the movement, with no music.",
)


@dataclass(frozen=True)
class PromptPlan:
    prompt: str  # what is sent to the model
    negative_prompt: str
    original: str  # the request's (or shot's) text before thinking and presets
    description: str  # the scene description: the original, or its rewrite
    thinking: str  # "verbatim", "rewritten" (built-in rewriter) or "model" (the folder's enhancer)
    style: Preset
    camera: Preset
    enhance_with_model: bool = False  # the engine still has to run the folder's enhancer on ``enhancer_input``

    @property
    def enhancer_input(self) -> str:
        """What the model's enhancer is asked to expand: the text and the camera move, so its caption agrees."""
        return _join(self.original, self.camera.prompt) or self.original

    @property
    def loras(self) -> tuple[str, ...]:
        """LoRA file names the presets ask for (used where the folder has them)."""
        return tuple(p.lora for p in (self.style, self.camera) if p.lora)

    def with_model_rewrite(self, text: str) -> PromptPlan:
        """The plan once the folder's enhancer has written ``text``: presets re-applied around it."""
        text = text.strip() or self.original
        prompt = _join(self.style.prompt, text, self.camera.prompt)
        return replace(self, prompt=prompt, description=text, enhance_with_model=False)


def plan_prompt(request: VideoRequest, *, has_enhancer: bool, prompt: str | None = None) -> PromptPlan:
    """The prompt to send for ``request`` (or for one shot's ``prompt`` of a multi-clip request)."""
    original = request.prompt if prompt is None else prompt
    style = style_preset(request.style)
    camera = camera_preset(request.camera_movement)
    negative = ", ".join(p for p in (request.negative_prompt.strip(), style.negative, camera.negative) if p)
    rewrite = should_rewrite(original, request.thinking_type)
    if rewrite and has_enhancer:
        # Placeholder until the engine has run the enhancer (``with_model_rewrite``).
        return PromptPlan(_join(style.prompt, original, camera.prompt), negative, original, original, "model",
                          style, camera, enhance_with_model=True)
    if rewrite:
        description = rewrite_prompt(original, camera=camera.prompt, context=style.prompt)
        return PromptPlan(_join(style.prompt, description), negative, original, description, "rewritten",
                          style, camera)
    return PromptPlan(_join(style.prompt, original, camera.prompt), negative, original, original, "verbatim",
                      style, camera)


def should_rewrite(text: str, thinking_type: str) -> bool:
    if thinking_type == "disabled":
        return False
    if thinking_type == "enabled":
        return True
    return needs_rewrite(text)


def needs_rewrite(text: str) -> bool:
    """The ``auto`` rule: short (< SHORT_PROMPT_WORDS words) or bare (no motion cue) prompts are rewritten."""
    return len(_WORD.findall(text)) < SHORT_PROMPT_WORDS or not has_motion(text)


def has_motion(text: str) -> bool:
    """A motion cue: one of ``MOTION_WORDS``, or a word of 5+ letters ending in "-ing" (bar a few nouns)."""
    words = [w.lower() for w in _WORD.findall(text)]
    return any(w in MOTION_WORDS or (w.endswith("ing") and len(w) > 4 and w not in _ING_NOUNS) for w in words)


def covered_aspects(text: str) -> set[str]:
    """Which of camera / light / sound ``text`` already mentions."""
    words = {w.lower() for w in _WORD.findall(text)}
    return {aspect for aspect, cues in ASPECT_CUES.items() if words & cues}


def rewrite_prompt(text: str, *, camera: str = "", context: str = "") -> str:
    """The built-in rewriter: ``text`` verbatim as the subject, then motion, camera, light and sound sentences.

    Deterministic: the fillers are picked by a SHA-256 of the text. An aspect the text (or ``context``, e.g. the
    style sentence) already covers is not filled in; ``camera`` (a preset sentence) takes the camera place.
    """
    subject = text.strip()
    if subject and subject[-1] not in ".!?":
        subject += "."
    digest = hashlib.sha256(" ".join(subject.lower().split()).encode()).digest()
    covered = covered_aspects(_join(text, context))
    parts = [subject]
    if not has_motion(text):
        parts.append(_pick(_MOTION, digest[0]))
    if camera:
        parts.append(camera)
    elif "camera" not in covered:
        parts.append(_pick(_CAMERA, digest[1]))
    if "light" not in covered:
        parts.append(_pick(_LIGHT, digest[2]))
    if "sound" not in covered:
        parts.append(_pick(_SOUND, digest[3]))
    return _join(*parts)


def _pick(options: tuple[str, ...], byte: int) -> str:
    return options[byte % len(options)]


def _join(*parts: str) -> str:
    """Sentences joined with spaces; a part that does not end a sentence gets a full stop before the next."""
    kept = [p.strip() for p in parts if p and p.strip()]
    return " ".join(p if i == len(kept) - 1 or p[-1] in ".!?…\"'" else p + "." for i, p in enumerate(kept))
