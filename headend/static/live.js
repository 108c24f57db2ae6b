// The /live page: microphone -> AudioWorklet (16 kHz PCM, 20 ms chunks) -> the session's
// WebSocket. The session is made and stopped through the API with the page's CSRF token; the
// socket authenticates with the session cookie and the same token (?csrf=). Closing the tab
// closes the socket, which ends the session on every receiver within a few seconds.
"use strict";

(function () {
  const root = document.getElementById("live");
  if (!root) return;
  const strings = JSON.parse(root.dataset.strings);
  const csrf = root.dataset.csrf;
  const form = root.querySelector("[data-live-form]");
  const startButton = root.querySelector("[data-start]");
  const stopButton = root.querySelector("[data-stop]");
  const statusLine = root.querySelector("[data-status]");
  const errorLine = root.querySelector("[data-error]");
  const meter = root.querySelector("[data-level]");
  const bar = meter.querySelector(".meter-bar");
  const receivers = document.querySelector("[data-receivers]");
  const deviceList = receivers.querySelector("[data-devices]");
  const count = receivers.querySelector("[data-count]");
  const RATE = 16000;
  const CHUNK_MS = 20;

  let session = null;   // the API's answer
  let socket = null;
  let audio = null;     // {context, stream, node}
  let poller = null;
  let sentBytes = 0;

  function say(text, onAir) {
    statusLine.textContent = text;
    root.classList.toggle("on-air", !!onAir);
  }

  function fail(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
  }

  function targets() {
    const chosen = form.querySelector('input[name="target"]:checked');
    if (!chosen || chosen.value === "all") return {all: true};
    const zones = Array.from(form.querySelectorAll('input[name="zones"]:checked'),
                             (box) => box.value);
    return zones.length ? {zones: zones} : null;
  }

  function showLevel(level) {
    const percent = Math.min(100, Math.round(Math.sqrt(level) * 100));  // speech sits low
    bar.style.width = percent + "%";
    bar.className = "meter-bar" + (percent > 95 ? " clip" : percent > 80 ? " hot" : "");
    meter.setAttribute("aria-valuenow", String(percent));
  }

  async function openMicrophone() {
    if (!window.AudioWorkletNode || !navigator.mediaDevices) throw new Error(strings["live.no_worklet"]);
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({audio: {
        // Nothing plays back on this page, so there is no echo to cancel (and that would add
        // delay); noise suppression and gain control keep a voice clear and even on the horns.
        channelCount: 1, echoCancellation: false, noiseSuppression: true, autoGainControl: true}});
    } catch (err) {
      throw new Error(err && err.name === "NotFoundError" ? strings["live.mic_missing"]
                                                           : strings["live.mic_refused"]);
    }
    // The browser resamples the microphone to the context's rate: 16 kHz, the receivers'.
    let context;
    let source;
    try {
      context = new AudioContext({sampleRate: RATE, latencyHint: "interactive"});
      source = context.createMediaStreamSource(stream);
    } catch (err) {
      // A browser that cannot resample a microphone: its own rate, if the head-end takes it.
      if (context) context.close();
      context = new AudioContext({latencyHint: "interactive"});
      source = context.createMediaStreamSource(stream);
    }
    await context.audioWorklet.addModule("/static/live-worklet.js");
    const node = new AudioWorkletNode(context, "loaxa-pcm", {
      processorOptions: {chunk: Math.round(context.sampleRate * CHUNK_MS / 1000)}});
    source.connect(node);
    // Not connected to the speakers (no echo), but the graph must be pulled: a muted sink.
    const mute = context.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(context.destination);
    node.port.onmessage = (event) => {
      showLevel(event.data.level);
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(event.data.pcm);
        sentBytes += event.data.pcm.byteLength;
      }
    };
    await context.resume();
    // A microphone unplugged or taken by another program: end now rather than after the
    // head-end's 3 s of silence.
    stream.getAudioTracks().forEach((track) => track.addEventListener("ended", () => {
      if (socket) socket.close();
    }));
    return {context: context, stream: stream, node: node};
  }

  function closeMicrophone() {
    if (!audio) return;
    audio.node.port.onmessage = null;
    audio.stream.getTracks().forEach((track) => track.stop());
    audio.context.close();
    audio = null;
    showLevel(0);
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method: method, credentials: "same-origin", cache: "no-store",
      headers: Object.assign({"X-CSRF-Token": csrf},
                             body ? {"Content-Type": "application/json"} : {}),
      body: body ? JSON.stringify(body) : undefined});
    let answer = null;
    try { answer = await response.json(); } catch (err) { answer = null; }
    if (!response.ok) {
      const lang = document.documentElement.lang;
      throw new Error((answer && (lang === "vi" ? answer.message_vi : answer.detail)) ||
                      String(response.status));
    }
    return answer;
  }

  function showDevices(detail) {
    receivers.hidden = false;
    deviceList.replaceChildren(...detail.devices.map((device) => {
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = device.name || device.id;
      const badge = document.createElement("span");
      badge.className = "badge state-" + device.state;
      badge.textContent = strings["state." + device.state] || device.state;
      item.append(name, badge);
      item.dataset.device = device.id;
      item.dataset.state = device.state;
      return item;
    }));
    const playing = detail.devices.filter((d) => d.state === "playing").length;
    count.textContent = fill(strings["live.playing_count"],
                             {playing: playing, total: detail.devices.length});
  }

  async function poll() {
    if (!session) return;
    try {
      const detail = await api("GET", "/api/v1/live/" + session.id);
      showDevices(detail);
      if (detail.state === "ended") { finished(detail.reason); return; }
    } catch (err) { /* a missed poll: the next one tells */ }
    poller = setTimeout(poll, 1000);
  }

  function finished(reason) {
    closeMicrophone();
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    const why = strings["reason." + reason];
    say(strings["live.ended"] + (why ? " (" + why + ")" : ""), false);
    root.dataset.state = "ended";
    form.querySelector("fieldset").disabled = false;
    startButton.hidden = false;
    startButton.disabled = false;
    stopButton.hidden = true;
    if (session) {
      const id = session.id;
      session = null;
      clearTimeout(poller);
      // One last look, so the list shows how each receiver ended.
      setTimeout(() => api("GET", "/api/v1/live/" + id).then(showDevices, () => {}), 1500);
    }
  }

  async function start() {
    fail("");
    const chosen = targets();
    if (!chosen) { fail(strings["live.pick_zone"]); return; }
    startButton.disabled = true;
    try {
      say(strings["live.mic_opening"]);
      audio = await openMicrophone();
      say(strings["live.connecting"]);
      session = await api("POST", "/api/v1/live",
                          {source: {microphone: true}, targets: chosen, until: null});
      root.dataset.liveId = session.id;
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + session.websocket + "?rate=" +
                             audio.context.sampleRate + "&csrf=" + encodeURIComponent(csrf));
      socket.binaryType = "arraybuffer";
      socket.onopen = () => {
        say(strings["live.on_air"], true);
        form.querySelector("fieldset").disabled = true;  // the targets are set now
        root.dataset.state = "live";
        startButton.hidden = true;
        stopButton.hidden = false;
        stopButton.disabled = false;
        poll();
      };
      socket.onmessage = (event) => {
        try {
          const message = JSON.parse(event.data);
          if (message.state === "ended") finished(message.reason);
        } catch (err) { /* not ours */ }
      };
      socket.onclose = (event) => finished(event.reason || "socket-closed");
    } catch (err) {
      closeMicrophone();
      if (session) { api("DELETE", "/api/v1/live/" + session.id).catch(() => {}); session = null; }
      say(strings["live.failed"], false);
      fail(err.message);
      startButton.disabled = false;
    }
  }

  async function stop() {
    if (!session) return;
    stopButton.disabled = true;
    say(strings["live.stopping"], false);
    try {
      await api("DELETE", "/api/v1/live/" + session.id);
    } catch (err) {
      // Already over (409): the socket's message says why. Closing it ends it anyway.
    }
    if (socket) socket.close();
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  // Leaving the page ends the broadcast at once rather than after the silence timeout.
  window.addEventListener("pagehide", () => { if (socket) socket.close(); });
  window.loaxaLive = {sentBytes: () => sentBytes};  // for the browser test
})();
