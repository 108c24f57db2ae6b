"""Audio for Loaxa: whatever an operator has, turned into what the receivers play.

- ``audio.probe``: what a file is, and whether it can go on the air (``AudioRejected``).
- ``audio.loudness``: EBU R128 measurement and the speech normalising chain.
- ``audio.renditions``: ``make_renditions`` (MP3 and IMA-ADPCM, cached by content hash).
- ``audio.adpcm`` / ``audio.mp3``: block and frame layout, for cutting and checking.
- ``audio.decode``: renditions back to PCM (what a receiver would have played).
- ``audio.tts``, ``audio.textnorm``: Vietnamese text to speech.
- ``audio.tones``: attention chimes and alert tones. ``audio.live``: paced live frames.
- ``audio.settings``: ``AudioSettings``, the one settings object, with its defaults explained.
- ``audio.ffmpeg``: which ffmpeg (system, else the imageio-ffmpeg wheel) and how it is run.

Submodules are imported where used, so ``import audio`` stays cheap.
"""
