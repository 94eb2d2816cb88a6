"""Validation shared by the built-in tasks' settings."""

from maspo.errors import UserError


def check_int(task: str, setting: str, value: object, low: int, high: int) -> None:
    """Raise a UserError naming the task and setting unless `low <= value <= high`."""
    if type(value) is not int or not low <= value <= high:
        raise UserError(
            f"Task {task!r} setting {setting!r} must be an integer from {low} to {high}, "
            f"got {value!r}."
        )
