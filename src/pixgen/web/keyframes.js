// pixgen web page: the keyframe timeline. Pictures at times (seconds), shown over the video's duration; the
// request's `keyframes` field (app.js asks window.pixgenKeyframes.body() when it sends the form).
"use strict";

(() => {
  const MAX = 8;
  const TYPES = ["image/png", "image/jpeg", "image/webp"];
  const $ = (id) => document.getElementById(id);
  const keyframes = []; // {image: data URI, time: seconds}

  const duration = () => Math.max(1, Number($("duration").value) || 1);

  function render() {
    keyframes.sort((a, b) => a.time - b.time);
    const marks = keyframes.map((k) => {
      const img = document.createElement("img");
      img.src = k.image;
      img.alt = "";
      img.style.left = `${Math.min(100, (100 * k.time) / duration())}%`;
      return img;
    });
    $("keyframe-timeline").replaceChildren(...marks);
    $("keyframe-list").replaceChildren(...keyframes.map((k, i) => {
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.src = k.image;
      img.alt = `Keyframe at ${k.time} s`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link-button";
      remove.textContent = `Remove keyframe at ${k.time} s`;
      remove.addEventListener("click", () => { keyframes.splice(i, 1); render(); });
      li.append(img, ` at ${k.time} s `, remove);
      return li;
    }));
    $("add-keyframe").disabled = keyframes.length >= MAX;
  }

  function add() {
    const input = $("keyframe-image");
    const file = input.files && input.files[0];
    const time = Number($("keyframe-time").value);
    const error = $("form-error");
    const fail = (message, control) => {
      error.textContent = message;
      error.hidden = false;
      control.setAttribute("aria-invalid", "true");
      control.focus();
    };
    if (!file || !TYPES.includes(file.type)) return fail("Choose a PNG, JPEG or WebP keyframe image.", input);
    if (!Number.isFinite(time) || time < 0 || time > duration()) {
      return fail(`A keyframe's time is 0 to ${duration()} s (the duration).`, $("keyframe-time"));
    }
    const reader = new FileReader();
    reader.onload = () => {
      keyframes.push({ image: reader.result, time });
      input.value = "";
      error.hidden = true;
      render();
    };
    reader.readAsDataURL(file);
  }

  window.pixgenKeyframes = {
    // The request's keyframes, or undefined when there are none.
    body: () => (keyframes.length ? keyframes.map((k) => ({ image: k.image, time: k.time })) : undefined),
    control: () => $("keyframe-time"),
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("add-keyframe").addEventListener("click", add);
    $("duration").addEventListener("input", render);
    render();
  });
})();
