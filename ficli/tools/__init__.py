"""The tools people run beside enhancing: scoring, profiles, benchmarks and exports.

Belongs here: folder pairing and metric tables (`evaluate`), line profiles (`profile`), `ficli
bench` and its timing helpers (`bench`, `timing`), exports for other tools (`export`) and what a
bioimage.io package says and shows besides its weights (`modelzoo`).

Must not be here: the interfaces (`ficli.cli`, `ficli.console`, `ficli.api`) that call these. May
import every other subpackage (`image`, `model`, `inference`, `video`, `training`).
"""
