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
    """Whether `error` says memory ran out: Python's MemoryError (numpy), torch.OutOfMemoryError
    (a RuntimeError; named, not imported: this module needs no torch), torch's CUDA and MPS
    "out of memory" and its CPU allocator's "DefaultCPUAllocator: can't allocate memory".

    The one test of it: the engine (halving tiles), `runtime.CompiledGenerator` (passing it on)
    and `batch.run_batch` (failing one file) all ask here."""
    if isinstance(error, MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error).lower()
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text
