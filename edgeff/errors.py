"""The one exception type users see: a message that names the problem and what to do."""


class EdgeFFError(Exception):
    """A problem with the user's input, files or environment, explained in plain words.

    The CLI prints the message and exits with status 2 instead of a traceback.
    """
