"""The end-to-end canary: the sample finding, the stream watch, the scheduled handler."""
