"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """A mistake in user input (config, data files, CLI arguments).

    The CLI prints its message as one line and exits with code 2; anything else
    is a bug and keeps its traceback.
    """

    def line(self) -> str:
        """The message as one printable line: a newline or other control character a user's file put in a key
        or value is shown escaped, as Python writes it in a string."""
        cause = getattr(self, "cause", None)  # raised in a Ray task: Ray's copy of it holds the traceback
        text = str(cause if isinstance(cause, UserError) else self)
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the command: stop, keep what finished, exit 128 + the signal's number.

    A BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def interruption(error: BaseException) -> Interrupted | None:
    """The Interrupted behind `error`, if any: raised from a signal handler while Ray's compiled code
    waits, it arrives wrapped (a SystemError caused by it)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, Interrupted):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
