"""Errors a user can cause (bad config, data row, file, model output).

The CLI prints them as one sentence and exits with code 2; anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input; the message is one sentence naming the culprit."""


EXIT_USER_ERROR = 2


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a command works; the message says where it can go on from."""
