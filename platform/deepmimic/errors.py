"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """A mistake in user input (config, data files, CLI arguments).

    The CLI prints its message as one line and exits with code 2; anything else
    is a bug and keeps its traceback.
    """
