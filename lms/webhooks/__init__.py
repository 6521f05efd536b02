"""Webhooks to partners: signed HTTP POSTs of domain events (hold.expired, accrual.reversed,
statement.closed), enqueued from the outbox and sent by Celery with retries."""
