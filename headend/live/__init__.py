"""Live from the microphone to chosen receivers, in step (docs/live.md).

    session.py   a session, its streams and its state table
    timeline.py  PCM sample positions on the wall clock (one timeline for every codec)
    planning.py  its play delay, ``stream`` and ``stop`` commands
    encoder.py   PCM -> signed frames of one rendition (audio/live.py's framer)
    devices.py   each receiver's part, from its reports
    service.py   the sessions of one head-end: create, feed, end
"""
