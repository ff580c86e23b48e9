"""The one exception type the CLI turns into a single error line."""


class TextlstmError(Exception):
    """A problem the user can fix: bad input, a missing file, a corrupt checkpoint.

    Its message is one line that says what is wrong and, where it helps, what to do.
    """


class ReportedElsewhere(TextlstmError):
    """An error that another process reports (process 0, when several train one model): this one
    exits with it without telling it again."""
