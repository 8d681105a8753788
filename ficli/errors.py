"""Errors a user can cause and fix. `cli` prints their message on one line and exits with 1."""


class FicliError(Exception):
    """A user-facing error: the message names the file or option and says what to do."""


class InputError(FicliError):
    """An input path, image or video that cannot be used as given."""


class OutputError(FicliError):
    """An output path that cannot be written, or would overwrite an input."""


class ModelFileError(FicliError):
    """A model file that is missing, unsafe, damaged or of an unknown architecture."""


class ConfigError(FicliError):
    """An option or combination of options that cannot work."""
