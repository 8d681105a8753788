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


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says memory ran out: Python's MemoryError (numpy), torch's CUDA and MPS
    "out of memory" (torch.OutOfMemoryError is a RuntimeError) and its CPU allocator's
    "DefaultCPUAllocator: can't allocate memory"."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
