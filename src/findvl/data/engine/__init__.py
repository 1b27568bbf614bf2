"""The FIND-Bench data engine (paper Algorithm 1) and the visual references of entity phrases.

:mod:`.run` drives a chat model over a split (:mod:`.inputs` reads it, :mod:`.prompt` writes the
prompt and parses replies, :mod:`.client` talks to the server, :mod:`.progress` makes the work
resumable); :mod:`.references` adds to each phrase its most similar segment elsewhere, with the
embedders of :mod:`.reference_vision`.
"""
