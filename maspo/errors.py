"""Errors a user can cause (bad config, data row, file, model output).

The CLI prints them as one sentence and exits with code 2; anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input; the message is one sentence naming the culprit."""


class FieldError(UserError, ValueError):
    """A value a setting does not allow. ``field`` names the setting as the library knows
    it (``optim.lr``, ``eval.temperature``); a front end names it as its user wrote it
    (the command line: ``maspo.cli_parser.FLAGS``), ``problem`` (the rest of the
    sentence, other fields quoted) unchanged."""

    def __init__(self, field: str, problem: str, what: str = "setting") -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{what} {field!r}{problem}")

    def named(self, names: dict[str, str]) -> UserError:
        """The same sentence with each field of ``names`` (quoted) given its name there
        (itself when ``names`` does not name its field)."""
        if self.field not in names:
            return self
        text = self.problem
        for field, name in names.items():
            text = text.replace(repr(field), name)
        return UserError(names[self.field] + text)


EXIT_USER_ERROR = 2


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a command works; the message says where it can go on from."""
