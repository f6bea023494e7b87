"""What watershed owns in a member account: one module per resource kind, ensure/plan/remove."""
