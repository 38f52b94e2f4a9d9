-- Parking: an outbox row the broker refuses for good (too large, unknown topic, not authorised,
-- invalid record) is set aside with the time and the broker's error instead of being retried
-- forever in front of every row after it. It is no longer read or counted as backlog, and
-- retention keeps it (it has no `published_at`). An operator re-queues it, once the cause is
-- fixed, by clearing both columns:
--     UPDATE outbox SET publish_failed_at = NULL, publish_error = NULL WHERE id = ...;

ALTER TABLE outbox
    ADD COLUMN publish_failed_at TIMESTAMPTZ,
    ADD COLUMN publish_error     TEXT,
    ADD CONSTRAINT outbox_parked_with_its_error CHECK ((publish_failed_at IS NULL) = (publish_error IS NULL)),
    ADD CONSTRAINT outbox_parked_or_published CHECK (publish_failed_at IS NULL OR published_at IS NULL);

-- The publisher's read: unpublished rows that are not parked, in id order.
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL AND publish_failed_at IS NULL;
-- The parked-rows gauge and the operator's look at them.
CREATE INDEX outbox_parked ON outbox (id) WHERE publish_failed_at IS NOT NULL;
