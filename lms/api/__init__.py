"""HTTP plumbing shared by every domain: problem responses, idempotency, health."""
