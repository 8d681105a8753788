"""Training: the two-stage loop, its runs and its data.

Belongs here: run folders, settings and checkpoints (`runs`), training pairs and batches made by the
degradation family (`pairs`) and the loop with validation through the engine (`train`).

Must not be here: command-line code or inference for users. May import `ficli.image`,
`ficli.model` and `ficli.inference`.
"""
