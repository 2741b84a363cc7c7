"""The one exception type that reaches users as a single clear line."""


class UserError(Exception):
    """Bad input or an unusable environment: the message names the input and what to do.

    Scripts catch it in :func:`src.cli.run_main` and exit non-zero without a traceback.
    """


# What reading a damaged file can raise besides OSError (h5py: KeyError for an object header it cannot
# decode, TypeError or ValueError for a mangled datatype or shape, RuntimeError for the rest), caught where a
# reader turns them into one UserError naming the file.
CORRUPT_FILE_ERRORS = (OSError, KeyError, TypeError, ValueError, RuntimeError)
