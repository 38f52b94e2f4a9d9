-- Refunds (issue 22): money given back for a paid order, at most once per refund id, never more
-- in total than the order's payment. Each refund is a row here, a credit entry in the ledger
-- (kind 'refund', with its order and refund id) and an `order.refunded` outbox row, all written
-- by the unit of work that claims the command.

CREATE TABLE refunds (
    -- The primary key makes a second credit for one refund id impossible.
    refund_id       TEXT PRIMARY KEY CHECK (char_length(refund_id) BETWEEN 1 AND 128),
    -- Linked to the payment it gives money back for; deferred, as a payment and its refund may be
    -- written by the same statement.
    order_id        TEXT NOT NULL REFERENCES payments (order_id) DEFERRABLE INITIALLY DEFERRED,
    user_id         TEXT NOT NULL REFERENCES accounts (user_id),
    amount          NUMERIC NOT NULL CHECK (amount > 0 AND amount <= 1000000000000 AND scale(amount) <= 2),
    -- The amount the command asked; NULL when it asked for what was left.
    requested       NUMERIC CHECK (requested IS NULL OR requested = amount),
    refundable_left NUMERIC NOT NULL CHECK (refundable_left >= 0 AND scale(refundable_left) <= 2),
    reason          TEXT CHECK (char_length(reason) <= 256),
    transaction_id  UUID NOT NULL UNIQUE,
    event_id        UUID NOT NULL UNIQUE,
    refunded_at     TIMESTAMPTZ NOT NULL
);
-- An order's refunds, loaded with every batch that refunds it.
CREATE INDEX refunds_order_id ON refunds (order_id);

-- The ledger gains the refund entry: a credit with its order id and refund id.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_kind_check,
    DROP CONSTRAINT ledger_entries_check,
    ADD COLUMN refund_id TEXT REFERENCES refunds (refund_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT ledger_entries_kind_check CHECK (kind IN ('deposit', 'payment', 'refund')),
    ADD CONSTRAINT ledger_entries_order_id_check CHECK ((kind = 'deposit') = (order_id IS NULL)),
    ADD CONSTRAINT ledger_entries_refund_id_check CHECK ((kind = 'refund') = (refund_id IS NOT NULL));
-- One credit per refund.
CREATE UNIQUE INDEX ledger_entries_refund_id ON ledger_entries (refund_id) WHERE refund_id IS NOT NULL;

ALTER TABLE outbox
    DROP CONSTRAINT outbox_topic_check,
    ADD CONSTRAINT outbox_topic_check CHECK (
        topic IN ('order.paid', 'order.payment_failed', 'pay.order.dlq', 'order.refunded', 'order.refund_failed')
    );

-- The refunds of an order never add up to more than its payment, even when the application is
-- bypassed: checked at commit (deferred, as a payment and its refunds may be written by one
-- statement), for each refund written; the order's refunds are few and indexed.
CREATE FUNCTION refunds_within_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = NEW.order_id)
       > (SELECT amount FROM payments WHERE order_id = NEW.order_id) THEN
        RAISE EXCEPTION 'refunds of order % exceed its payment', NEW.order_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER refunds_within_payment AFTER INSERT ON refunds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refunds_within_payment();
