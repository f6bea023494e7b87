"""The relay's exceptions: one base, so callers can catch everything the relay refuses."""


class RelayError(Exception):
    """Base of everything the relay raises on purpose."""


class ConfigurationError(RelayError, ValueError):
    """An environment variable is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class DestinationIsSourceError(RelayError):
    """The destination stream is the stream the batch came from: relaying would loop forever."""

    def __init__(self, stream_arn: str) -> None:
        super().__init__(
            f"refusing to relay: DESTINATION_STREAM_ARN {stream_arn} is the event source of this "
            "batch, so every record would be written back to the stream it was read from"
        )
        self.stream_arn = stream_arn


class NotAKinesisEventError(RelayError, ValueError):
    """The handler was invoked with something other than a Kinesis event source mapping batch."""
