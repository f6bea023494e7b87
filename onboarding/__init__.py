"""watershed onboarding: turns organization lifecycle events into configured member accounts."""
