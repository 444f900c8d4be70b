"""User-facing errors.

Every problem a user can cause (a bad file, a wrong preset, a labels file that does not fit) is
raised as a `VlavadError`. The CLI prints its message on one line and exits non-zero; the web app
shows it with `gr.Error`. Anything else is a bug and keeps its traceback.
"""


class VlavadError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class VideoError(VlavadError):
    """A video that cannot be opened, decoded, or has no frames."""


class DatasetError(VlavadError):
    """A dataset folder or labels file that does not match a known layout."""


class ConfigError(VlavadError):
    """An unknown preset, backend or setting."""


class ModelError(VlavadError):
    """A fitted model that is missing, corrupt, or incompatible with the request."""


class OutputError(VlavadError):
    """An output path that would overwrite something vlavad did not write, or cannot be written."""


def one_line(error: BaseException) -> str:
    """A library's exception (FFmpeg, OpenCV, Pillow, the OS) as one short line for a VlavadError's
    message: its `strerror` where it has one (PyAV's message repeats the file name), else its text."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())
