"""Live practice (``sandbox practice``): a person plays one side, an agent the other, through the one
engine loop (:func:`sandbox.engine.negotiate`) with a turn policy that waits for the person.

- :mod:`.commands`: what a typed line means (pure).
- :mod:`.human`: the person's turn policy and the controls (undo, restart, end) it raises.
- :mod:`.difficulty`: a prospect at a practice level, as its persona file states it.
- :mod:`.session`: one session: the cast, the engine, undo by replay, the hint, judging, saving.
- :mod:`.scorecard`: the judge's verdicts turned into a scorecard with a pass mark (pure).
- :mod:`.terminal`, :mod:`.web`: the two faces (plain ``input()``; a Starlette page on 127.0.0.1).
"""
