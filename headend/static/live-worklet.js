// AudioWorklet of the /live page: the microphone's samples as 16-bit PCM chunks, and a level.
// Runs on the audio thread; every `chunk` samples (20 ms at the context's rate) it posts
// {pcm: ArrayBuffer of Int16 little-endian, level: peak 0..1} to the page, which sends the
// PCM over the WebSocket. Nothing is allocated per render quantum except the posted chunk.
"use strict";

class LoaxaPcm extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = (options.processorOptions && options.processorOptions.chunk) || 320;
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;  // no input yet (the track is starting)
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      const a = s < 0 ? -s : s;
      if (a > this.peak) this.peak = a;
      this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.size) {
        const out = this.buffer.slice(0);  // Int16Array is little-endian on every browser host
        this.port.postMessage({pcm: out.buffer, level: this.peak}, [out.buffer]);
        this.filled = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

registerProcessor("loaxa-pcm", LoaxaPcm);
