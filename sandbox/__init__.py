"""watershed's local sandbox: the whole pipeline on an embedded AWS (moto), in one process.

Not shipped in the Lambda packages. `python -m sandbox` (or `watershed demo`) plays the story;
sandbox.shims says exactly where the sandbox stands in for AWS.
"""
