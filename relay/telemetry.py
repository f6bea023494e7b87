"""The relay's one Powertools Logger, shared by every module (cheap to build at import).

One instance rather than child loggers: a child logger takes its name from the service at the
moment it is built, so it would detach from the handler's logger whenever the modules are
imported before POWERTOOLS_SERVICE_NAME is set (as under pytest). Logs carry counts, codes and
stream ARNs, never record contents.
"""

from aws_lambda_powertools import Logger

logger = Logger()
