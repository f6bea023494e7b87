"""watershed relay: forwards regional Kinesis records to the destination stream."""
