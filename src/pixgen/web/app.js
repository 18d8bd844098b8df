// pixgen web page: a thin client of the public job API (CONTRACT.md), no build step.
//
//   POST /api/v1/models/pixverse-v6/run   start a job
//   POST /api/v1/models/pixverse-v6/estimate   what it would cost and when it would be ready (nothing charged)
//   GET  /api/v1/models                   the control types the server's model folder offers, and whether its
//                                         duration head can choose the length (duration "auto")
//   GET  /api/v1/jobs/{id}/events         follow it (server-sent events, read with fetch so the key stays in a header;
//                                         a "preview" event brings the early draft of a two-stage video)
//   GET  /api/v1/jobs/{id}                the job (fallback when the event stream is unavailable)
//   POST /api/v1/jobs/{id}/cancel         cancel it
//   POST /api/v1/jobs/{id}/retake         regenerate a part of a finished video (a new job)
//   POST /api/v1/jobs/{id}/sound          new sound for a finished video, its frames kept (a new job)
//   GET  /api/v1/jobs                     the key's recent jobs and credits left
"use strict";

(() => {
  const API = new URL("api/v1/", document.baseURI);
  const MODEL = "pixverse-v6";
  const KEY_STORAGE = "pixgen.apiKey";
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const POLL_MS = 1000;
  const STAGE_NAMES = {
    queued: "Starting",
    load: "Loading the model",
    prepare: "Preparing",
    text: "Reading the prompt",
    denoise: "Denoising",
    upsample: "Upscaling",
    decode: "Decoding frames",
    encode: "Encoding the video",
    done: "Done",
  };
  // Short edge per quality; long edge = short × ratio rounded to even (CONTRACT.md "The output video").
  const QUALITY_SHORT = { "360p": 360, "540p": 540, "720p": 720, "1080p": 1080 };
  const FPS = 24;

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("gen-form"),
    key: $("api-key"),
    prompt: $("prompt"),
    negative: $("negative-prompt"),
    duration: $("duration"),
    ratio: $("aspect-ratio"),
    quality: $("quality"),
    audio: $("audio"),
    multiClip: $("multi-clip"),
    style: $("style"),
    camera: $("camera"),
    thinking: $("thinking"),
    seed: $("seed"),
    startImage: $("start-image"),
    endImage: $("end-image"),
    controlFields: $("control-fields"),
    audioFields: $("audio-fields"),
    controlType: $("control-type"),
    estimate: $("estimate"),
    estimateButton: $("estimate-button"),
    outputSize: $("output-size"),
    durationAuto: $("duration-auto"),
    durationAutoField: $("duration-auto-field"),
    resultDuration: $("result-duration"),
    formError: $("form-error"),
    generate: $("generate"),
    job: $("job"),
    jobId: $("job-id"),
    running: $("job-running"),
    status: $("job-status"),
    progress: $("job-progress"),
    percent: $("job-percent"),
    cancel: $("cancel"),
    jobError: $("job-error"),
    preview: $("job-preview"),
    result: $("job-result"),
    video: $("result-video"),
    resultSeed: $("result-seed"),
    resultPrompt: $("result-prompt"),
    download: $("download"),
    useSeed: $("use-seed"),
    credits: $("credits"),
    recentMessage: $("recent-message"),
    recentList: $("recent-list"),
    refresh: $("refresh"),
  };

  // Request field → the control that sets it (its data-field), to point at the field an API error names.
  const FIELD_CONTROLS = {
    ...Object.fromEntries(Array.from(el.form.querySelectorAll("[data-field]"), (c) => [c.dataset.field, c])),
    resolution: el.quality,
  };

  const images = { "start-image": null, "end-image": null }; // data URIs, by input (previews, the auto ratio)
  const media = {}; // request field → data URI of the file chosen for it
  let following = null; // {jobId, abort: AbortController}
  let currentJob = null;

  // ---------------------------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      // Job API errors are {code, message, field}; anything else (a proxy's page) shows its status.
      const e = body || {};
      let message = e.message || `HTTP ${status}`;
      if (status === 429 && retryAfter) message += ` Try again in ${retryAfter} s.`;
      super(message);
      this.status = status;
      this.code = e.code || "";
      this.field = e.field || "";
    }
  }

  function headers(extra = {}) {
    const h = { Accept: "application/json", ...extra };
    const key = el.key.value.trim();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    const init = { method, headers: headers(), signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(new URL(path, API), init);
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text.slice(0, 300) };
    }
    if (!res.ok) throw new ApiError(res.status, data, res.headers.get("Retry-After"));
    return data;
  }

  // Server-sent events from a fetch() response: yields {event, data} per message.
  async function* readEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Following a job

  async function follow(jobId) {
    if (following) following.abort.abort();
    const abort = new AbortController();
    following = { jobId, abort };
    try {
      if (await followEvents(jobId, abort.signal)) return;
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof ApiError && err.status !== 404 && err.status < 500) {
        showJobError(err.message);
        return;
      }
      // Stream unavailable or broken: fall back to polling the job.
    }
    await poll(jobId, abort.signal);
  }

  // True when the stream ended the job (a "done" event); false when it stopped early.
  async function followEvents(jobId, signal) {
    const res = await fetch(new URL(`jobs/${encodeURIComponent(jobId)}/events`, API), {
      headers: headers({ Accept: "text/event-stream" }),
      signal,
      cache: "no-store",
    });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      throw new ApiError(res.status, body, res.headers.get("Retry-After"));
    }
    for await (const { event, data } of readEvents(res)) {
      if (signal.aborted) return true;
      let payload;
      try { payload = JSON.parse(data); } catch { continue; }
      if (event === "progress") renderProgress(payload);
      else if (event === "preview") showPreview(payload);
      else if (event === "done") {
        renderJob(payload);
        return true;
      } else if (event === "error") {
        showJobError(payload.message || "The event stream failed.");
      }
    }
    return false;
  }

  async function poll(jobId, signal) {
    while (!signal.aborted) {
      try {
        const job = await api(`jobs/${encodeURIComponent(jobId)}`, { signal });
        renderJob(job);
        if (TERMINAL.has(job.status)) return;
      } catch (err) {
        if (signal.aborted) return;
        showJobError(err.message);
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) return;
      }
      await sleep(POLL_MS, signal);
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // Rendering a job

  function startJobView(jobId) {
    currentJob = { jobId };
    el.job.hidden = false;
    el.jobId.textContent = jobId;
    el.running.hidden = false;
    el.result.hidden = true;
    el.jobError.hidden = true;
    el.cancel.disabled = false;
    el.cancel.hidden = false;
    el.video.removeAttribute("src");
    el.video.load();
    clearPreview();
    setProgress(null);
    setStatus("Starting…");
  }

  function setProgress(value) {
    if (value === null || value === undefined) {
      el.progress.removeAttribute("value"); // indeterminate
      el.percent.textContent = "";
    } else {
      const v = Math.max(0, Math.min(100, Math.round(value)));
      el.progress.value = v;
      el.percent.textContent = `${v}%`;
    }
  }

  // The status line is a live region: only touch it when its words change, so each change is announced once.
  function setStatus(text) {
    if (el.status.textContent !== text) el.status.textContent = text;
  }

  function statusLine(status, stage, queuePosition) {
    if (status === "pending") {
      return queuePosition !== null && queuePosition !== undefined
        ? `Waiting in the queue: position ${queuePosition}`
        : "Waiting in the queue";
    }
    if (status === "processing") return stage ? `${STAGE_NAMES[stage] || stage} (${stage})` : "Starting";
    if (status === "completed") return "Done";
    if (status === "failed") return "Failed";
    if (status === "cancelled") return "Cancelled";
    return status || "";
  }

  // One "progress" event: {jobId, status, progress, stage, queuePosition}.
  function renderProgress(ev) {
    if (!currentJob || ev.jobId !== currentJob.jobId) return;
    setStatus(statusLine(ev.status, ev.stage, ev.queuePosition));
    el.status.dataset.stage = ev.stage || "";
    el.status.dataset.status = ev.status || "";
    if (ev.status === "pending" && !ev.progress) setProgress(null);
    else setProgress(ev.progress || 0);
  }

  // A full job: {jobId, status, progress, output: {video}, seed, prompt, error, creditCost, ...}.
  function renderJob(job) {
    if (!currentJob || job.jobId !== currentJob.jobId) return;
    currentJob = job;
    renderProgress(job);
    if (!TERMINAL.has(job.status)) {
      if (job.output && job.output.preview) showPreview({ jobId: job.jobId, preview: job.output.preview });
      return;
    }
    clearPreview();
    el.cancel.disabled = true;
    if (job.status === "completed") {
      el.running.hidden = true;
      showResult(job);
    } else {
      el.cancel.hidden = true;
      if (job.status === "failed") showJobError(errorMessage(job.error) || "The job failed.");
    }
    loadRecent();
  }

  function errorMessage(error) {
    if (!error) return "";
    if (typeof error === "string") return error;
    return error.message || error.code || JSON.stringify(error);
  }

  function showResult(job) {
    const video = job.output && job.output.video;
    el.result.hidden = false;
    el.video.src = video || "";
    const thumb = job.output && job.output.thumbnail;
    if (thumb) el.video.poster = thumb;
    else el.video.removeAttribute("poster");
    el.resultSeed.textContent = job.seed !== undefined && job.seed !== null ? String(job.seed) : "";
    el.resultPrompt.textContent = job.prompt || "(none: image only)";
    el.resultDuration.textContent = job.chosenDuration !== undefined && job.chosenDuration !== null
      ? `${job.chosenDuration} s (${job.frames} frames), chosen by the model`
      : `${job.duration} s` + (job.frames ? ` (${job.frames} frames)` : "");
    el.download.href = video || "#";
    el.download.setAttribute("download", `pixgen-${job.jobId}.mp4`);
    el.useSeed.disabled = job.seed === undefined || job.seed === null;
    $("retake-error").hidden = true;
    $("sound-error").hidden = true;
    markRetake();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Retake: a part of the finished video, marked over the player, made again as a new job

  function videoSeconds() {
    if (currentJob && currentJob.chosenDuration) return Number(currentJob.chosenDuration);
    return currentJob && Number(currentJob.duration) ? Number(currentJob.duration) : el.video.duration || 1;
  }

  function markRetake() {
    const total = videoSeconds();
    const start = Math.max(0, Number($("retake-start").value) || 0);
    const end = Math.min(total, Math.max(start, Number($("retake-end").value) || 0));
    const mark = $("retake-mark");
    mark.style.left = `${(100 * start) / total}%`;
    mark.style.width = `${(100 * (end - start)) / total}%`;
  }

  function retakeFromPlayer() {
    const start = Math.round(el.video.currentTime * 20) / 20;
    $("retake-start").value = String(start);
    $("retake-end").value = String(Math.min(videoSeconds(), start + 1));
    markRetake();
  }

  async function onRetake() {
    if (!currentJob || currentJob.status !== "completed") return;
    const body = { start: Number($("retake-start").value), end: Number($("retake-end").value) };
    const prompt = $("retake-prompt").value.trim();
    if (prompt) body.prompt = prompt;
    await startFromJob("retake", body, { start: $("retake-start"), end: $("retake-end"), prompt: $("retake-prompt") });
  }

  // New sound: the finished video's frames kept bit for bit, its sound made anew (a new job of kind "sound")
  async function onNewSound() {
    if (!currentJob || currentJob.status !== "completed") return;
    const body = {};
    const prompt = $("sound-prompt").value.trim();
    if (prompt) body.prompt = prompt;
    const seed = $("sound-seed").value.trim();
    if (seed !== "") body.seed = Number(seed);
    await startFromJob("sound", body, { prompt: $("sound-prompt"), seed: $("sound-seed") });
  }

  // A new job made from the finished one on view (POST jobs/{id}/{action}: retake, sound), then followed; a
  // refusal is shown under the action's form (#{action}-error), the control it names marked and focused.
  async function startFromJob(action, body, controls) {
    const error = $(`${action}-error`);
    const submit = $(`${action}-submit`);
    error.hidden = true;
    submit.disabled = true;
    try {
      const started = await api(`jobs/${encodeURIComponent(currentJob.jobId)}/${action}`, { method: "POST", body });
      if (typeof started.creditsRemaining === "number") showCredits(started.creditsRemaining);
      startJobView(started.jobId);
      renderProgress({ jobId: started.jobId, status: started.status || "pending", progress: 0 });
      follow(started.jobId);
      loadRecent();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      const control = controls[err.field];
      if (control) {
        control.setAttribute("aria-invalid", "true");
        control.focus();
      }
    } finally {
      submit.disabled = false;
    }
  }

  // The early draft ({jobId, preview}: its signed link), shown until the final video replaces it. The <video> is
  // made here and removed again, so the page holds one player when there is no draft.
  function showPreview(ev) {
    if (!currentJob || ev.jobId !== currentJob.jobId || !ev.preview) return;
    let video = document.getElementById("preview-video");
    if (video && video.dataset.src === ev.preview) return;
    if (!video) {
      video = document.createElement("video");
      video.id = "preview-video";
      video.muted = true;
      video.loop = true;
      video.autoplay = true;
      video.playsInline = true;
      video.controls = true;
      video.setAttribute("aria-label", "Draft preview");
      el.preview.prepend(video);
    }
    video.dataset.src = ev.preview;
    video.src = ev.preview;
    el.preview.hidden = false;
  }

  function clearPreview() {
    const video = document.getElementById("preview-video");
    if (video) {
      video.removeAttribute("src");
      video.load();
      video.remove();
    }
    el.preview.hidden = true;
  }

  function showJobError(message) {
    el.jobError.textContent = message;
    el.jobError.hidden = false;
  }

  // ---------------------------------------------------------------------------------------------------------
  // The form

  // The request the form describes: every control with a data-field (see index.html), then the keyframes.
  function requestBody() {
    const body = {};
    for (const control of el.form.querySelectorAll("[data-field]")) {
      if (control.closest("[hidden]")) continue; // a field this server does not offer
      const value = fieldValue(control);
      if (value !== undefined) body[control.dataset.field] = value;
    }
    for (const control of el.form.querySelectorAll("[data-with]")) {
      if (!(control.dataset.with in body)) delete body[control.dataset.field];
    }
    const keyframes = window.pixgenKeyframes && window.pixgenKeyframes.body();
    if (keyframes) body.keyframes = keyframes;
    if (autoDuration()) body.duration = "auto";
    return body;
  }

  // A control's value as its field takes it; undefined leaves the field out (the server's default).
  function fieldValue(control) {
    if (control.type === "checkbox") return control.checked;
    if (control.type === "file") return media[control.dataset.field] || undefined;
    if (!control.value.trim() && !control.required) return undefined;
    return control.type === "number" ? Number(control.value) : control.value;
  }

  function clearFieldErrors() {
    el.formError.hidden = true;
    el.formError.textContent = "";
    for (const control of el.form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  }

  function showFormError(err) {
    el.formError.textContent = err.message;
    el.formError.hidden = false;
    const control = FIELD_CONTROLS[err.field] || (err.code === "unauthorized" ? el.key : null) ||
      ((err.field || "").startsWith("keyframes") && window.pixgenKeyframes ? window.pixgenKeyframes.control() : null);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearFieldErrors();
    if (!el.key.value.trim()) {
      showFormError({ message: "Enter your API key first.", code: "unauthorized" });
      return;
    }
    saveKey();
    el.generate.disabled = true;
    try {
      const started = await api(`models/${MODEL}/run`, { method: "POST", body: requestBody() });
      if (typeof started.creditsRemaining === "number") showCredits(started.creditsRemaining);
      startJobView(started.jobId);
      el.job.scrollIntoView({ behavior: "smooth", block: "nearest" });
      renderProgress({ jobId: started.jobId, status: started.status || "pending", progress: 0 });
      follow(started.jobId);
      loadRecent();
    } catch (err) {
      showFormError(err);
    } finally {
      el.generate.disabled = false;
    }
  }

  // "Estimate: 10 credits (90 left), queue position 1, ready in about 12 s (measured on 3 jobs like it)".
  async function onEstimate() {
    clearFieldErrors();
    if (!el.key.value.trim()) {
      showFormError({ message: "Enter your API key first.", code: "unauthorized" });
      return;
    }
    el.estimateButton.disabled = true;
    try {
      const e = await api(`models/${MODEL}/estimate`, { method: "POST", body: requestBody() });
      const credits = `${e.creditCost} credits (${e.creditsRemaining} left${e.affordable ? "" : ": not enough"})`;
      const basis = e.estimateBasis.source === "default" ? "a default guess: no finished jobs yet"
        : `measured on ${e.estimateBasis.jobs} finished job${e.estimateBasis.jobs === 1 ? "" : "s"}`;
      const when = e.expectedFinishAt === null ? "no worker is running, so no finish time"
        : `ready in about ${Math.max(1, Math.round(e.expectedFinishAt - Date.now() / 1000))} s (${basis})`;
      el.estimate.textContent = `Estimate: ${e.width}×${e.height}, ${e.frames} frames, ${credits}, ` +
        `queue position ${e.queuePosition}, ${when}.`;
      el.estimate.hidden = false;
    } catch (err) {
      showFormError(err);
    } finally {
      el.estimateButton.disabled = false;
    }
  }

  // The control-video fields appear only when the server's model folder has an IC-LoRA for some type; the
  // "Automatic duration" switch only when it has a duration head (LTX-2.5).
  async function loadModels() {
    if (!el.key.value.trim()) return;
    try {
      const model = (await api("models")).models.find((m) => m.id === MODEL);
      const types = (model && model.parameters.control_type) || [];
      el.controlType.replaceChildren(...types.map((t) => new Option(t, t)));
      el.controlFields.hidden = types.length === 0;
      // A soundtrack to make the video to, where the model offers it.
      el.audioFields.hidden = !(model && model.capabilities.includes("audio-to-video"));
      el.durationAutoField.hidden = !(model && model.parameters.duration && model.parameters.duration.auto);
      onDurationAuto();
    } catch { /* the recent list shows key errors */ }
  }

  // A file chosen for a media field (data-field on a file input: the control video, or any later one) is sent
  // as its data URI; its type is checked against the input's accept list first.
  function readMedia(input) {
    const field = input.dataset.field;
    const file = input.files && input.files[0];
    delete media[field];
    if (!file) return updateOutputSize();
    const accepted = (input.accept || "").split(",").map((t) => t.trim()).filter(Boolean);
    if (accepted.length && !accepted.includes(file.type)) {
      input.value = "";
      showFormError({ message: `${file.name}: choose ${accepted.join(" or ")}.`, field });
      return;
    }
    const reader = new FileReader();
    reader.onload = () => { media[field] = reader.result; updateOutputSize(); };
    reader.onerror = () => showFormError({ message: `Could not read ${file.name}.`, field });
    reader.readAsDataURL(file);
  }

  async function onCancel() {
    if (!currentJob) return;
    el.cancel.disabled = true;
    try {
      const job = await api(`jobs/${encodeURIComponent(currentJob.jobId)}/cancel`, { method: "POST" });
      if (job && job.jobId) renderJob(job);
    } catch (err) {
      showJobError(err.message);
      el.cancel.disabled = false;
    }
  }

  function onUseSeed() {
    if (!currentJob || currentJob.seed === undefined || currentJob.seed === null) return;
    el.seed.value = String(currentJob.seed);
    el.seed.focus();
  }

  function readImage(input) {
    const name = input.id;
    const preview = $(`${name}-preview`);
    const file = input.files && input.files[0];
    images[name] = null;
    delete media[input.dataset.field];
    preview.hidden = true;
    input.removeAttribute("aria-invalid");
    if (!file) return updateOutputSize();
    if (!["image/png", "image/jpeg", "image/webp"].includes(file.type)) {
      input.value = "";
      showFormError({ message: `${file.name}: choose a PNG, JPEG or WebP image.`, field: input.dataset.field });
      return updateOutputSize();
    }
    const reader = new FileReader();
    reader.onload = () => {
      images[name] = media[input.dataset.field] = reader.result;
      const img = preview.querySelector("img");
      img.onload = updateOutputSize; // its natural size picks the automatic aspect ratio
      img.src = reader.result;
      preview.hidden = false;
      updateOutputSize();
    };
    reader.onerror = () => showFormError({ message: `Could not read ${file.name}.`, field: input.dataset.field });
    reader.readAsDataURL(file);
  }
  function clearImage(name) {
    const input = $(name);
    input.value = "";
    readImage(input);
    input.focus();
  }

  // "Output: 640×360 (16:9), 1 s, 25 frames at 24 fps": what the contract promises for these settings.
  function updateOutputSize() {
    el.prompt.required = !images["start-image"];
    // With a soundtrack chosen, an empty duration means "as long as the sound" (the field is left out).
    const soundtrack = Boolean(media.audio) && !el.audioFields.hidden;
    el.duration.required = !soundtrack;
    const short = QUALITY_SHORT[el.quality.value];
    const ratio = el.ratio.value || autoRatio();
    const length = soundtrack && !el.duration.value.trim() ? "as long as the soundtrack"
      : secondsText(Number(el.duration.value));
    el.outputSize.textContent = `Output: ${size(ratio, short)} (${ratio}), ${length}`;
  }

  const RATIOS = Array.from(el.ratio.options, (o) => o.value).filter(Boolean);
  const ratioValue = (r) => { const [w, h] = r.split(":").map(Number); return w / h; };

  // With no ratio chosen: 16:9, or the listed ratio nearest the start image's (compared on a log scale).
  function autoRatio() {
    const img = $("start-image-preview").querySelector("img");
    if (!images["start-image"] || !img.naturalWidth) return "16:9";
    const own = Math.log(img.naturalWidth / img.naturalHeight);
    const distance = (r) => Math.abs(Math.log(ratioValue(r)) - own);
    return RATIOS.reduce((best, r) => (distance(r) < distance(best) ? r : best));
  }

  function size(ratio, short) {
    const value = ratioValue(ratio);
    const even = (x) => 2 * Math.round(x / 2);
    return value >= 1 ? `${even(short * value)}×${short}` : `${short}×${even(short / value)}`;
  }

  // duration "auto": the seconds field is off while the model chooses
  function autoDuration() {
    return el.durationAuto.checked && !el.durationAutoField.hidden;
  }

  function onDurationAuto() {
    el.duration.disabled = autoDuration();
    updateOutputSize();
  }

  function secondsText(duration) {
    if (autoDuration()) return "length chosen by the model (1 to 15 s)";
    if (!Number.isInteger(duration) || duration < 1 || duration > 15) return "1 to 15 seconds";
    return `${duration} s, ${duration * FPS + 1} frames at ${FPS} fps`;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Recent jobs and credits

  function showCredits(n) {
    el.credits.textContent = `Credits left: ${n}`;
  }

  let recentSeq = 0;
  async function loadRecent() {
    const seq = ++recentSeq;
    if (!el.key.value.trim()) {
      el.recentList.replaceChildren();
      el.credits.textContent = "";
      el.recentMessage.textContent = "Enter an API key to see your videos.";
      el.recentMessage.hidden = false;
      return;
    }
    try {
      const data = await api("jobs?limit=20");
      if (seq !== recentSeq) return;
      const jobs = data.jobs || [];
      if (typeof data.creditsRemaining === "number") showCredits(data.creditsRemaining);
      el.recentList.replaceChildren(...jobs.map(recentItem));
      el.recentMessage.textContent = jobs.length ? "" : "No videos yet.";
      el.recentMessage.hidden = jobs.length > 0;
    } catch (err) {
      if (seq !== recentSeq) return;
      el.recentList.replaceChildren();
      el.recentMessage.textContent = err.message;
      el.recentMessage.hidden = false;
    }
  }

  function recentItem(job) {
    const li = document.createElement("li");
    li.className = "recent-item";
    const button = document.createElement("button");
    button.type = "button";
    const thumbUrl = job.output && job.output.thumbnail;
    let thumb;
    if (thumbUrl) {
      thumb = document.createElement("img");
      thumb.src = thumbUrl;
      thumb.alt = "";
      thumb.loading = "lazy";
    } else {
      thumb = document.createElement("span");
      thumb.setAttribute("aria-hidden", "true");
    }
    thumb.className = "thumb";
    const text = document.createElement("span");
    text.className = "recent-text";
    const prompt = document.createElement("span");
    prompt.className = "recent-prompt";
    prompt.textContent = job.prompt || "(image only)";
    const meta = document.createElement("span");
    meta.className = "recent-meta";
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status;
    meta.append(badge);
    const when = job.createdAt ? new Date(typeof job.createdAt === "number" ? job.createdAt * 1000 : job.createdAt) : null;
    const details = [job.status === "processing" && typeof job.progress === "number" ? `${job.progress}%` : "",
      when && !isNaN(when) ? when.toLocaleString() : ""].filter(Boolean).join(" · ");
    if (details) meta.append(` · ${details}`);
    text.append(prompt, meta);
    button.append(thumb, text);
    button.setAttribute("aria-label", `${job.status}: ${job.prompt || "image only"}`);
    button.addEventListener("click", () => openJob(job.jobId));
    li.append(button);
    return li;
  }

  async function openJob(jobId) {
    startJobView(jobId);
    try {
      const job = await api(`jobs/${encodeURIComponent(jobId)}`);
      renderJob(job);
      if (!TERMINAL.has(job.status)) follow(jobId);
    } catch (err) {
      showJobError(err.message);
    }
    el.job.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ---------------------------------------------------------------------------------------------------------
  // Wiring

  function saveKey() {
    try {
      const key = el.key.value.trim();
      if (key) localStorage.setItem(KEY_STORAGE, key);
      else localStorage.removeItem(KEY_STORAGE);
    } catch { /* storage blocked: the key just is not remembered */ }
  }

  function init() {
    try {
      el.key.value = localStorage.getItem(KEY_STORAGE) || "";
    } catch { /* storage blocked: the key just is not remembered */ }
    el.key.addEventListener("change", () => {
      saveKey();
      el.key.removeAttribute("aria-invalid");
      loadRecent();
      loadModels();
    });
    el.form.addEventListener("submit", onSubmit);
    el.estimateButton.addEventListener("click", onEstimate);
    for (const input of el.form.querySelectorAll("input[type=file][data-field]")) {
      if (!(input.id in images)) input.addEventListener("change", () => readMedia(input));
    }
    el.cancel.addEventListener("click", onCancel);
    el.useSeed.addEventListener("click", onUseSeed);
    el.refresh.addEventListener("click", loadRecent);
    $("retake-submit").addEventListener("click", onRetake);
    $("sound-submit").addEventListener("click", onNewSound);
    for (const id of ["sound-prompt", "sound-seed"]) {
      $(id).addEventListener("input", () => $(id).removeAttribute("aria-invalid"));
    }
    $("retake-from-player").addEventListener("click", retakeFromPlayer);
    for (const id of ["retake-start", "retake-end"]) {
      $(id).addEventListener("input", () => { $(id).removeAttribute("aria-invalid"); markRetake(); });
    }
    for (const input of [el.startImage, el.endImage]) input.addEventListener("change", () => readImage(input));
    for (const button of el.form.querySelectorAll("[data-clear]")) {
      button.addEventListener("click", () => clearImage(button.dataset.clear));
    }
    for (const control of [el.duration, el.ratio, el.quality]) control.addEventListener("input", updateOutputSize);
    el.durationAuto.addEventListener("change", onDurationAuto);
    el.form.addEventListener("input", (e) => e.target.removeAttribute && e.target.removeAttribute("aria-invalid"));
    el.form.addEventListener("change", () => { el.estimate.hidden = true; }); // an estimate is for the form as it was
    updateOutputSize();
    loadRecent();
    loadModels();
  }

  init();
})();
