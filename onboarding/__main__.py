"""`python -m onboarding` is the `watershed` command line."""

from onboarding.cli.cli import main

raise SystemExit(main())
