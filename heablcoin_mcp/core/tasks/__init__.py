"""The task queue: queue, worker, scheduler, task handlers, webhooks and the publishing flow."""
