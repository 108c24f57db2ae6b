"""The desktop simulator: many receivers running the real firmware under CPython.

``host`` (a board: clock, storage, sensors), ``sink`` (records what would have played),
``network`` (a link that can be cut, delayed or made lossy), ``operator`` (the head-end's device
side, scripted, planning with the head-end's code), ``media`` (test audio served through the
head-end's media route), ``fleet`` (N receivers in one loop) and
``cli`` (`loaxa sim`).
"""
