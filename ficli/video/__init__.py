"""Video: frames streamed through the inference engine with ffmpeg.

Belongs here: ffmpeg processes and probing (`ffmpeg`), the work on one frame (`frames`) and the
decoder-inference-encoder pipeline with its plan and options (`pipeline`).

Must not be here: image-file I/O or model code of its own. May import `ficli.image` and
`ficli.inference`.
"""
