"""User-facing error types of avnas-nni.

Every error a user can cause by bad input derives from :class:`AVNASError`, so a command-line face can
catch that one class and print its one-line message instead of a traceback. Any other exception is a bug
(or a failure of the machine) and keeps its traceback (``avnas -v``).
"""

from __future__ import annotations

__all__ = ["AVNASError", "DataError", "SettingsError", "VideoError"]


class AVNASError(Exception):
    """Base class of every user-facing avnas-nni error; the message is one line."""


class DataError(AVNASError, ValueError):
    """Bad feature data: a config, split list or HDF5 file that does not follow the expected layout.

    The message names the file and the offending field, video id or line, and what was expected.
    """


class SettingsError(AVNASError, ValueError):
    """A bad setting or argument: an unknown strategy, method, preset or split name, a number out of range.

    Raised where a face's arguments or a run's settings are validated; a ``ValueError`` too, so callers that
    check arguments the usual way still catch it. The message names the setting and what was expected.
    """


class VideoError(AVNASError):
    """A video file that cannot be used: unreadable, no video stream, no decodable frame.

    The message is one line naming the file and what went wrong; feature extraction skips such a video and
    reports the message as the reason.
    """
