"""The one exception type that reaches users as a single clear line."""


class UserError(Exception):
    """Bad input or an unusable environment: the message names the input and what to do.

    Scripts catch it in :func:`src.cli.run_main` and exit non-zero without a traceback.
    """
