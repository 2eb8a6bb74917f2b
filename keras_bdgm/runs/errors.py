"""Errors that a user caused and one line can explain: the scripts print them without a traceback.

Each is also a built-in exception type (ValueError, FileExistsError, ...), so code that
catches those keeps working. Anything else that escapes a script is a bug and keeps its
traceback (see `keras_bdgm.runs.cli`).
"""


class UserError(Exception):
    """A problem with the user's input; the message names it and the fix, on one line."""


class ConfigError(UserError, ValueError):
    """A bad setting: an unknown name, a value out of range, flags that contradict a run."""


class DataNotFoundError(UserError, FileNotFoundError):
    """The data cannot be found or prepared; the message says where it looked."""


class RunExistsError(UserError, FileExistsError):
    """The run folder already holds a finished run."""


class RunNotFoundError(UserError, FileNotFoundError):
    """No finished run (no saved model) where one was expected."""


class DivergedError(UserError, FloatingPointError):
    """Training went non-finite or skipped most of its updates; nothing final was saved."""
