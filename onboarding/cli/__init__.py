"""The `watershed` command line (operator only: the Lambda functions never import it)."""
